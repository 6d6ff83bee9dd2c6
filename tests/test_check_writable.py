"""``deployhook check`` reports a repo_path or state_db folder the service cannot write.

The service runs as its own user inside the unit's mount namespace, where
``ProtectSystem=strict`` makes everything read-only except ``ReadWritePaths=``.
The check uses access(2) as whoever runs it, where it runs, so the tests put it
in those two situations for real, also when the tests run as root (as CI does;
root passes every permission bit, so chmod alone would prove nothing):

- **read-only**: ``check`` runs in a private mount namespace (``unshare --mount``)
  where the folder is bind-mounted read-only, as the unit's ``ProtectSystem=strict``
  does to a folder missing from ``ReadWritePaths=``.  access(2) answers EROFS there,
  for root too.
- **another user's folder**: a forked child of the test drops to ``nobody``
  (``setresuid``; Python and deployhook are already loaded, so it needs no access
  to the interpreter's folder) and runs ``check``, as ``sudo -u deployhook
  deployhook check`` does for a checkout owned by someone else.  Run without root,
  the test removes the write bits instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployhook.cli import main as cli
from tests.helpers import REPOSITORY, SECRET, Repos, free_port, make_repos, write_config
from tests.tools import require_tool

ROOT = Path(__file__).parents[1]


def writable_lines(out: str) -> dict[str, str]:
    """The ``writable`` results by setting: {"repo_path": "FAIL ...", "state_db": ...}."""
    lines = out.splitlines()
    found = {}
    for index, line in enumerate(lines):
        if " writable " in line:
            name = "repo_path" if " repo_path " in line else "state_db"
            fix = lines[index + 1] if index + 1 < len(lines) else ""
            found[name] = line + ("\n" + fix if "fix:" in fix else "")
    return found


def config_for(repos: Repos, secret_file: Path, state: Path) -> Path:
    return write_config(repos.root / "config.py", port=free_port(),
                        repo_path=str(repos.deployed), secret_file=str(secret_file),
                        repository=REPOSITORY, state_db=str(state / "deployhook.sqlite3"))


def test_writable_folders_are_ok(repos: Repos, secret_file: Path) -> None:
    state = repos.root / "state"
    state.mkdir()
    secret_file.chmod(0o600)
    proc = subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                           str(config_for(repos, secret_file, state))],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = writable_lines(proc.stdout)
    assert found["repo_path"].startswith("OK"), proc.stdout
    assert found["state_db"].startswith("OK"), proc.stdout


@pytest.mark.parametrize("which", ["repo_path", "state_db"])
def test_read_only_folder_fails(repos: Repos, secret_file: Path, which: str) -> None:
    """A folder the unit's ProtectSystem=strict leaves read-only: FAIL, with the fix."""
    unshare = shutil.which("unshare")
    state = repos.root / "state"
    state.mkdir()
    config = config_for(repos, secret_file, state)
    folder = repos.deployed if which == "repo_path" else state
    script = ('mount --bind -o ro "$1" "$1" || exit 99; shift; exec "$@"')
    command = [str(unshare), "--mount", "sh", "-c", script, "sh", str(folder),
               sys.executable, "-m", "deployhook", "check", "--config", str(config)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    if unshare is None or proc.returncode == 99:
        require_tool(False, "cannot bind-mount read-only here (needs root and unshare): "
                     f"{proc.stderr}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = writable_lines(proc.stdout)
    assert found[which].startswith("FAIL"), proc.stdout
    assert "read-only file system" in found[which]
    assert "ReadWritePaths=" in found[which] and "fix:" in found[which]
    other = "state_db" if which == "repo_path" else "repo_path"
    assert found[other].startswith("OK"), proc.stdout
    assert [line for line in proc.stdout.splitlines() if line.startswith("FAIL")] == [
        found[which].splitlines()[0]], proc.stdout


def check_as_nobody(config: Path, home: Path) -> tuple[int, str]:
    """``deployhook check`` in a forked child running as ``nobody``; (status, output).

    The check runs once as ourselves first, so every module it imports is loaded before
    the fork: ``nobody`` may not read the interpreter's own library folder."""
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["check", "--config", str(config)])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 70
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.environ["HOME"] = str(home)
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                status = cli.main(["check", "--config", str(config)])
            os.write(write, out.getvalue().encode())
        except BaseException as exc:  # reported to the parent
            os.write(write, f"child failed: {exc!r}".encode())
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out


@pytest.fixture
def open_repos() -> Iterator[Repos]:
    """:func:`make_repos` in a folder of its own in /tmp that anyone may enter: pytest's
    base folder is 0700, and opening it up would race every pytest that starts meanwhile
    (each closes it again)."""
    folder = Path(tempfile.mkdtemp(prefix="deployhook-check-"))
    folder.chmod(0o755)
    try:
        yield make_repos(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_folder_of_another_user_fails(open_repos: Repos) -> None:
    """A checkout owned by another user than the one running check: FAIL, with the fix."""
    repos = open_repos
    secret_file = repos.root / "secret.txt"
    secret_file.write_bytes(SECRET + b"\n")
    state = repos.root / "state"
    state.mkdir()
    config = config_for(repos, secret_file, state)
    if os.geteuid() != 0:
        repos.deployed.chmod(0o555)
        try:
            status, out = 1, ""
            proc = subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                                   str(config)], capture_output=True, text=True, timeout=60)
            status, out = proc.returncode, proc.stdout
        finally:
            repos.deployed.chmod(0o755)
    else:
        # nobody must read the files and own the state folder.
        secret_file.chmod(0o644)
        os.chown(state, 65534, 65534)
        home = repos.root / "nobody-home"
        home.mkdir()
        os.chown(home, 65534, 65534)
        status, out = check_as_nobody(config, home)
    assert status == 1, out
    found = writable_lines(out)
    assert found["repo_path"].startswith("FAIL"), out
    assert "is not writable" in found["repo_path"] and "chown -R" in found["repo_path"]
    assert found["state_db"].startswith("OK"), out
