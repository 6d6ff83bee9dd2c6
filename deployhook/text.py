"""Text that came from outside (a payload, the record, Redis, a command's output) made
safe to show on one line: of a terminal, of the log."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1
_CONTROL_BUT_TAB = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str, *, tab: bool = False) -> str:
    """``text`` safe to print on one line: each control character (C0, newline included,
    DEL and C1; a tab is kept when ``tab``, for a line of output) becomes its escape,
    ``\\x1b`` for ESC, so that it can neither forge a line nor drive a terminal."""
    pattern = _CONTROL_BUT_TAB if tab else _CONTROL
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
