"""deployhook's version, at the bottom of the package so that any layer may show it
(``deployhook --version``); ``deployhook.__version__`` is the same string.

The one place the version is written: setup.py reads it from this file (without
importing the package), and CHANGELOG.rst has an entry for each release."""

__version__ = "0.3.0"
