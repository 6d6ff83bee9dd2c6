"""Run the user's ``post_deploy`` command (and ``pre_deploy``, ``on_failure``): no shell,
a timeout, bounded output.

Blocking; call it from the git worker's executor.  The command runs in its own
process group so that a timeout kills everything it started.  What it gets and
what is kept of it are safe: its environment never holds the webhook secret, the
values added to it (facts from a delivery) are cleaned of what could stop it from
starting, and the recorded step shows neither its arguments nor their values.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from deployhook.forges.delivery import Push
from deployhook.git.steps import OUTPUT_LIMIT, Step, tail
from deployhook.redact import hidden_values, mask, shown_command
from deployhook.settings import SECRET_ENV

LIVE_EVERY = 0.2  # seconds between looks at a running command's new output
ENV_VALUE_LIMIT = 16 * 1024  # characters kept of one added variable (Linux allows 128 KiB)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def run(
    args: Sequence[str],
    cwd: str,
    env: Mapping[str, str],
    timeout: float,
    limit: int = OUTPUT_LIMIT,
    hidden: Iterable[str] = (),
    name: str = "post_deploy",
    on_output: Callable[[str], None] | None = None,
) -> Step:
    """Run ``args`` in ``cwd`` with ``env`` added to the environment (each value through
    :func:`env_value`; ``$DEPLOYHOOK_SECRET`` left out).

    Returns a Step whose status is the exit status, 127 when the program cannot
    be started, or -9 after a timeout (the whole process group is killed).
    Output (stdout and stderr together) is kept to its last ``limit`` bytes.  The
    step's command is the program alone (:func:`~deployhook.redact.shown_command`);
    in its output the arguments' values (:func:`~deployhook.redact.hidden_values`),
    each of ``hidden`` (say, the webhook secret) and URL credentials are masked.  ``name``
    is the step's name (``post_deploy``, ``pre_deploy``, ``on_failure``).

    ``on_output`` (when given) is called from this thread with the output so far (its
    kept tail, masked the same way) within :data:`LIVE_EVERY` seconds of new output
    arriving, so a run can be watched while it runs; its errors are ignored.
    """
    start = time.monotonic()
    command = shown_command(args)
    secrets = [*hidden_values(args), *hidden]
    environ = {name: value for name, value in os.environ.items() if name != SECRET_ENV}
    environ.update((name, env_value(value)) for name, value in env.items())
    try:
        proc = subprocess.Popen(
            list(args), cwd=cwd, env=environ, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        return Step(name, command, 127, time.monotonic() - start,
                    mask(str(exc), secrets))
    chunks: deque[bytes] = deque()
    reader = threading.Thread(target=_drain, args=(proc, chunks, limit), daemon=True)
    reader.start()
    try:
        status = _wait(proc, timeout, chunks, secrets, on_output)
        note = ""
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        status = -signal.SIGKILL
        note = f"\n[{name} timed out after {timeout:g}s; its process group was killed]"
    reader.join(5)
    output = b"".join(chunks).decode("utf-8", "replace")
    return Step(name, command, status, time.monotonic() - start,
                tail(mask(output, secrets) + note))


def _wait(proc: subprocess.Popen[bytes], timeout: float, chunks: deque[bytes],
          secrets: list[str], on_output: Callable[[str], None] | None) -> int:
    """``proc.wait(timeout)``, passing new output to ``on_output`` meanwhile.

    Raises:
        subprocess.TimeoutExpired: ``proc`` ran past ``timeout``.
    """
    if on_output is None:
        return proc.wait(timeout)
    deadline = time.monotonic() + timeout
    seen: bytes | None = None
    while True:
        try:
            return proc.wait(min(LIVE_EVERY, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        latest = chunks[-1] if chunks else None
        if latest is not seen:
            seen = latest
            try:
                on_output(tail(mask(b"".join(list(chunks)).decode("utf-8", "replace"),
                                    secrets)))
            except Exception:  # watching must never change the run
                pass


def push_env(path: str, branch: str, pushes: Sequence[Push], before: str | None,
             after: str | None, tag: str = "") -> dict[str, str]:
    """The ``DEPLOYHOOK_*`` facts a command of the user's gets about a run (the newest
    push's ref, SHAs, pusher and repository; every delivery ID; in tags mode the tag)."""
    last = pushes[-1] if pushes else None
    return {
        "DEPLOYHOOK_REPO_PATH": path,
        "DEPLOYHOOK_BRANCH": branch,
        "DEPLOYHOOK_TAG": tag,
        "DEPLOYHOOK_HEAD_BEFORE": before or "",
        "DEPLOYHOOK_HEAD_AFTER": after or "",
        "DEPLOYHOOK_REF": last.ref if last else "",
        "DEPLOYHOOK_BEFORE": last.before if last else "",
        "DEPLOYHOOK_AFTER": last.after if last else "",
        "DEPLOYHOOK_PUSHER": last.pusher if last else "",
        "DEPLOYHOOK_REPOSITORY": last.repository if last else "",
        "DEPLOYHOOK_DELIVERY": ",".join(p.delivery_id for p in pushes),
    }


def env_value(text: str, limit: int = ENV_VALUE_LIMIT) -> str:
    """``text`` as an environment variable's value that cannot stop a program from
    starting: control characters (NUL included) removed, what UTF-8 cannot encode (a
    lone surrogate from JSON) replaced by ``?``, at most ``limit`` characters."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)[:limit]


def _drain(proc: subprocess.Popen[bytes], chunks: deque[bytes], limit: int) -> None:
    """Read all output, keeping roughly the last ``limit`` bytes."""
    assert proc.stdout is not None
    size = 0
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
        chunks.append(chunk)
        size += len(chunk)
        while size - len(chunks[0]) > limit:
            size -= len(chunks.popleft())
    proc.stdout.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
