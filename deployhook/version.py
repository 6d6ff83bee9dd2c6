"""deployhook's version, at the bottom of the package so that any layer may show it
(``deployhook --version``); ``deployhook.__version__`` is the same string."""

__version__ = "0.1.0"
