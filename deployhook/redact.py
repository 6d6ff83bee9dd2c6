"""Keep credentials out of what is recorded and shown: URLs' user-info, the webhook
secret, and the argument values of a configured command.

At the bottom of the package (it imports nothing of deployhook), so that every layer,
from ``forges/`` up, may use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote

MASK = "***"
MIN_HIDDEN = 6  # shorter argument values ("-v", "build") are not masked in output
NOT_SHOWN = "\u2026 (arguments not shown)"
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^/@\s]+)@")
_SECRET_VAR = re.compile(r"(\bDEPLOYHOOK_SECRET\b[\"']?\s*[=:]\s*[\"']?)[^\s\"',}]+")


def redact(text: str) -> str:
    """Remove credentials from URLs (``https://user:token@host`` -> ``https://***@host``)
    and the value of a ``DEPLOYHOOK_SECRET=...`` assignment (as an environment dump by an
    older deployhook's post_deploy would show it)."""
    return _SECRET_VAR.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def url_secrets(url: str) -> list[str]:
    """What output must not show of a notification URL (``notify``: Apprise URLs, whose
    tokens sit anywhere after the scheme: user-info, host, port, path, query): the URL
    itself, everything after its scheme, and each part between ``@ : / ? & = #`` of
    ``MIN_HIDDEN`` characters or more, as written and percent-decoded, longest first.
    A host that is a DNS name or an IP address (it has a dot) names a server, not an
    account, and is shown."""
    rest = url.partition("://")[2] or url
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    parts = [p for p in re.split(r"[@:]", netloc) if "." not in p]
    parts += re.split(r"[/?&=#]", rest[len(netloc):])
    found = {url, rest, *parts, *(unquote(p) for p in (url, rest, *parts))}
    return sorted((v for v in found if len(v) >= MIN_HIDDEN), key=len, reverse=True)


def hidden_values(args: Sequence[str]) -> list[str]:
    """What output must not show of a command's arguments (all but the program): each
    argument, its part after the first ``=``, and the user-info of a URL in it; only
    values of ``MIN_HIDDEN`` characters or more, longest first."""
    found: set[str] = set()
    for arg in args[1:]:
        found.update((arg, arg.partition("=")[2]))
        for match in _USERINFO.finditer(arg):
            userinfo = match.group(2)
            found.update((userinfo, userinfo.partition(":")[2]))
    return sorted((v for v in found if len(v) >= MIN_HIDDEN), key=len, reverse=True)


def mask(text: str, hidden: Iterable[str]) -> str:
    """``text`` with each of ``hidden`` (longest first) replaced by ``***``, then
    :func:`redact`-ed."""
    for value in sorted(set(hidden), key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    return redact(text)


def shown_command(args: Sequence[str]) -> str:
    """A command as it may be recorded and shown: the program only, its arguments
    (configuration that may hold credentials) replaced by a note."""
    program = redact(args[0]) if args else ""
    return f"{program} {NOT_SHOWN}" if len(args) > 1 else program


def redact_recorded(run: dict[str, Any], post_deploy_command: str | None = None
                    ) -> dict[str, Any]:
    """A run read from the record (``reason`` and, if present, ``steps``), made safe to
    show even when an older deployhook stored it unredacted: URLs lose their user-info,
    a post_deploy step's command keeps only its program, and the values of its arguments
    are masked in the output and the run's reason (``post_deploy_command``: the stored
    command of the run's post_deploy step when ``steps`` is absent).  Idempotent."""
    hidden = _stored_hidden(post_deploy_command)
    for step in run.get("steps", ()):
        command = step["command"] or ""
        if step["name"] == "post_deploy":
            hidden += _stored_hidden(command)
            if not command.endswith(NOT_SHOWN):
                command = shown_command(command.split(" "))
        step["command"] = redact(command)
    for step in run.get("steps", ()):
        step["output"] = mask(step["output"] or "", hidden)
    run["reason"] = mask(run.get("reason") or "", hidden)
    return run


def _stored_hidden(command: str | None) -> list[str]:
    """:func:`hidden_values` of a post_deploy command stored with its arguments."""
    if not command or command.endswith(NOT_SHOWN):
        return []
    return hidden_values(command.split(" "))
