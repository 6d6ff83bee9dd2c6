"""Sphinx configuration of deployhook's documentation.

Build it (the ``docs`` extra: ``pip install -e '.[docs]'``)::

    python -m sphinx -W -b html docs docs/_build/html
    python -m sphinx -W -b man docs docs/_build/man     # deployhook.1, deployhook.conf.5

The configuration and CLI references are generated from the code by the extension in
``_ext/deployhook_docs.py``; ``tests/test_docs.py`` builds both with ``-W``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]  # the extension; this checkout's code

from deployhook.version import __version__  # noqa: E402

project = "deployhook"
author = "deployhook's authors"
copyright = "deployhook's authors"
version = release = __version__

extensions = ["deployhook_docs", "sphinx.ext.autodoc", "sphinx.ext.autosectionlabel"]
autosectionlabel_prefix_document = True  # :ref:`page:Section title`
suppress_warnings = ["autosectionlabel.*"]  # the changelog repeats "Added", "Fixed", ...
autodoc_typehints = "description"
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "reliability-input.rst"]  # included by reliability.rst
root_doc = "index"
html_theme = "furo"
html_title = f"deployhook {release}"
templates_path: list[str] = []
nitpicky = False
smartquotes = False  # "--target" in the generated references stays two hyphens

man_pages = [
    ("cli", "deployhook", "keep a server's git checkout in step with a forge's pushes",
     [author], 1),
    ("configuration", "deployhook.conf", "deployhook's configuration file, config.py",
     [author], 5),
]
man_show_urls = False  # internal links would print as "<>"
