"""Parse a large delivery body in a child process, so ``json.loads`` never holds our GIL.

``python -m deployhook.web.bigparse CONTENT_TYPE`` reads the body on stdin and prints
one JSON line: ``{"payload": <essentials>}`` or ``{"status": N, "reason": "..."}``.
:func:`parse_in_child` runs it with the body's file as stdin and only the few
fields a deploy needs coming back, so the parent never parses or copies the body.
One child runs at a time, at a lower priority than the daemon.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

from deployhook.errors import DeliveryError
from deployhook.forges.delivery import essentials, parse_body

CHILD_TIMEOUT = 60.0  # seconds; a 25 MB body parses in well under one


async def parse_in_child(content_type: str | None, body: IO[bytes]) -> dict[str, Any]:
    """Parse ``body`` (a file, read from its start) in a child; return its essentials.

    Raises:
        DeliveryError: the child's answer for a malformed or unsupported body, or a
            500 when the child fails or outlives ``CHILD_TIMEOUT``.
    """
    async with _one_at_a_time():
        return await _parse(content_type, body)


def _one_at_a_time() -> asyncio.Semaphore:
    """One child at a time: each may need several times the body's size in memory."""
    global _SEMAPHORE
    if _SEMAPHORE is None:
        import asyncio  # here, not at the top: the child imports only what parsing needs

        _SEMAPHORE = asyncio.Semaphore(1)
    return _SEMAPHORE


_SEMAPHORE: asyncio.Semaphore | None = None


async def _parse(content_type: str | None, body: IO[bytes]) -> dict[str, Any]:
    import asyncio

    body.flush()
    body.seek(0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYHOOK_")}
    proc = await asyncio.create_subprocess_exec(
        *isolated_python(), content_type or "",
        stdin=body.fileno(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DeliveryError("parsing the payload took too long", status=500) from None
    try:
        answer = json.loads(out)
    except ValueError:
        raise DeliveryError(f"the payload parser failed (exit {proc.returncode})",
                            status=500) from None
    if "payload" not in answer:
        raise DeliveryError(str(answer.get("reason")), status=int(answer.get("status", 400)))
    payload: dict[str, Any] = answer["payload"]
    return payload


def isolated_python() -> list[str]:
    """The command that runs :func:`main` in an isolated interpreter (``-I``: no working
    directory, ``PYTHON*`` variable or user site on ``sys.path``, so a ``json.py`` in
    the daemon's folder is never imported); the folder holding this ``deployhook`` is
    appended to ``sys.path`` (after the standard library).  Arguments follow it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    bootstrap = (f"import sys; sys.path.append({root!r}); "
                 "from deployhook.web.bigparse import main; sys.exit(main())")
    return [sys.executable, "-I", "-c", bootstrap]


def main() -> int:
    """The child: parse stdin as ``argv[1]``'s content type, print the answer line."""
    content_type = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        os.nice(10)  # the daemon's loop first (refused under the unit's filter: fine)
    except OSError:
        pass
    try:
        payload = parse_body(content_type or None, sys.stdin.buffer.read())
        answer: dict[str, Any] = {"payload": essentials(payload)}
    except DeliveryError as exc:
        answer = {"status": exc.status, "reason": exc.reason}
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
