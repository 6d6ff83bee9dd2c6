"""Logging set-up: one line per event on stderr, journald-friendly."""

from __future__ import annotations

import logging
import os
import sys


def setup(level: str = "info") -> None:
    """Log to stderr; no timestamps under systemd (``$JOURNAL_STREAM`` set), else ISO time."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    # The format uses none of these: skip gathering them for every line (the logging
    # HOWTO's "Optimization"); a line per delivery is then a smaller part of its cost.
    logging._srcfile = None  # caller's file and line
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
