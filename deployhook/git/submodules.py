"""``git submodule update`` with the fewest processes.

In git 2.38 to 2.4x, ``git submodule`` is a shell script (``git-submodule.sh``) whose
``update`` only parses its options, sets ``GIT_PROTOCOL_FROM_USER=0`` and runs
``git submodule--helper update`` with the same options: about a dozen processes (sh,
basename, sed, gettext, envsubst, uname, five ``git rev-parse``) before any work, 40-50
ms on a small server, more than the update itself.  When the installed script is that
thin wrapper, :func:`update_command` gives the helper call it would make (run it from
the top of the work tree, as the script does); otherwise (a builtin ``git submodule``,
an older or unknown script) the public command.  Blocking: call it from the git worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

Git = Callable[..., tuple[int, str, str]]
PUBLIC = ("submodule", "update")
HELPER = ("submodule--helper", "update")
HELPER_ENV = {"GIT_PROTOCOL_FROM_USER": "0"}  # what the script exports for its URLs
# The line of git-submodule.sh's cmd_update that hands everything to the helper.
_HANDOVER = 'git ${wt_prefix:+-C "$wt_prefix"} submodule--helper update'
_WRAPPER_LIMIT = 64 * 1024
_exec_path: list[str] = []  # git's exec path, asked once per process
_known: dict[tuple[int, int, int], bool] = {}  # the script's (inode, size, mtime) -> thin
_lock = threading.Lock()


def update_command(git: Git) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the words that start ``git submodule update``'s command line, the environment
    it needs): the helper's when the wrapper is thin, else the public command's.  The
    script is looked at again whenever it changes (git upgraded under a running daemon)."""
    with _lock:
        if not _exec_path:
            status, out, _ = git("--exec-path")
            if status != 0:
                return PUBLIC, {}
            _exec_path.append(out.strip())
        script = Path(_exec_path[0]) / "git-submodule"
        try:
            info = script.stat()
        except OSError:
            return PUBLIC, {}
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        if key not in _known:
            _known[key] = thin_wrapper(script)
        thin = _known[key]
    return (HELPER, HELPER_ENV) if thin else (PUBLIC, {})


def thin_wrapper(script: Path) -> bool:
    """True when ``script`` is a git-submodule.sh whose ``update`` hands over to
    ``submodule--helper update`` (and tells it URLs do not come from the user)."""
    try:
        if not script.is_file() or script.stat().st_size > _WRAPPER_LIMIT:
            return False
        text = script.read_text(errors="replace")
    except OSError:
        return False
    return (text.startswith("#!") and _HANDOVER in text
            and "GIT_PROTOCOL_FROM_USER=0" in text and "cmd_update()" in text)
