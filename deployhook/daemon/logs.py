"""Logging set-up: one line per event on stderr, journald-friendly.

A message is one line whatever it carries: control characters in it (a newline in a
repository name, an escape sequence in a pusher's name) are shown escaped, so that no
input can forge a line of the log.  Tracebacks (our own code's) keep their lines."""

from __future__ import annotations

import logging
import os
import sys

from deployhook.text import printable


class OneLine(logging.Formatter):
    """Formats each record's message on one line (:func:`~deployhook.text.printable`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def setup(level: str = "info") -> None:
    """Log to stderr; no timestamps under systemd (``$JOURNAL_STREAM`` set), else ISO time."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(fmt))
    # The format uses none of these: skip gathering them for every line (the logging
    # HOWTO's "Optimization"); a line per delivery is then a smaller part of its cost.
    logging._srcfile = None  # caller's file and line
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
