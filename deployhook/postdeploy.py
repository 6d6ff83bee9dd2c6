"""Run the user's ``post_deploy`` command: no shell, a timeout, bounded output.

Blocking; call it from the git worker's executor.  The command runs in its own
process group so that a timeout kills everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence

from .steps import OUTPUT_LIMIT, Step, tail


def run(
    args: Sequence[str],
    cwd: str,
    env: Mapping[str, str],
    timeout: float,
    limit: int = OUTPUT_LIMIT,
) -> Step:
    """Run ``args`` in ``cwd`` with ``env`` added to the environment.

    Returns a Step whose status is the exit status, 127 when the program cannot
    be started, or -9 after a timeout (the whole process group is killed).
    Output (stdout and stderr together) is kept to its last ``limit`` bytes.
    """
    start = time.monotonic()
    command = " ".join(args)
    try:
        proc = subprocess.Popen(
            list(args), cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
    except OSError as exc:
        return Step("post_deploy", command, 127, time.monotonic() - start, str(exc))
    chunks: deque[bytes] = deque()
    reader = threading.Thread(target=_drain, args=(proc, chunks, limit), daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout)
        note = ""
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        status = -signal.SIGKILL
        note = f"\n[post_deploy timed out after {timeout:g}s; its process group was killed]"
    reader.join(5)
    output = b"".join(chunks).decode("utf-8", "replace")
    return Step("post_deploy", command, status, time.monotonic() - start, tail(output + note))


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
