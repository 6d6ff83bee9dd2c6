"""README.rst, run as a newcomer runs it: every command its Quick start, Connecting
GitHub, Connecting other forges, Commands and Running the tests sections show, as
written, in a fresh clone, in a fresh shell; the documentation built by the commands
its Documentation section shows; and every file it names there.

The clone is of this checkout's last commit (pushed to a throw-away origin as
``main``, as a clone from GitHub would be), so commit before running this test.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, git
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("Quick start", "Connecting GitHub", "Connecting other forges", "Commands",
            "Running the tests")
DOCUMENTATION = "Documentation"  # its commands need Sphinx: run by their own test below
QUICKSTART = "sh quickstart.sh"  # starts the daemon in the foreground
TEST_COMMAND = "sh tests/run.sh"
# Shown, but not run here: the whole suite, of which this test is a part (.ci/run runs it,
# test_the_test_command_is_the_one_ci_runs checks that).
NOT_RUN = {TEST_COMMAND: "the test suite itself; .ci/run runs it"}
# Inline ``literals`` that are commands to run as written (the others are names,
# values, or the synopses that test_synopses_match_the_cli checks).
INLINE_COMMAND = re.compile(r"^(cat \S+|sh \S+|\.venv/bin/deployhook \S.*|\. \.venv/bin/activate)$")


def sections(text: str) -> dict[str, str]:
    """README.rst's top-level sections (titles underlined with '='), by title."""
    lines = text.splitlines()
    starts = [i for i in range(len(lines) - 1)
              if lines[i].strip() and re.fullmatch(r"=+", lines[i + 1])
              and len(lines[i + 1]) == len(lines[i]) and (i == 0 or lines[i - 1] != lines[i + 1])]
    return {lines[s]: "\n".join(lines[s + 2:e])
            for s, e in zip(starts, [*starts[1:], len(lines)], strict=True)}


def literal_commands(section: str) -> list[str]:
    """The lines of the section's literal blocks (a paragraph ending in '::')."""
    commands: list[str] = []
    in_block = False
    for line in section.splitlines():
        if line.rstrip().endswith("::"):
            in_block = True
        elif in_block and line.strip() and not line.startswith(" "):
            in_block = False
        elif in_block and line.strip():
            commands.append(line.strip())
    return commands


def inline_literals(section: str) -> list[str]:
    return [" ".join(x.split()) for x in re.findall(r"``(.+?)``", section, re.S)]


def readme(names: tuple[str, ...] = SECTIONS) -> dict[str, str]:
    """README.rst's sections of these titles (all of them must be there), by title."""
    found = sections((ROOT / "README.rst").read_text(encoding="utf-8"))
    assert set(names) <= set(found), list(found)
    return {name: found[name] for name in names}


def shown_commands() -> list[str]:
    """Every command the sections show: literal blocks first, then inline ones."""
    parts = readme().values()
    commands = [c for part in parts for c in literal_commands(part)]
    commands += [c for part in parts for c in inline_literals(part) if INLINE_COMMAND.match(c)]
    return list(dict.fromkeys(commands))


def synopses() -> list[str]:
    """The Commands section's ``deployhook SUBCOMMAND ...`` forms."""
    return [c for c in inline_literals(readme()["Commands"])
            if re.match(r"deployhook [a-z]+\b", c)]


def test_the_sections_show_commands() -> None:
    """The parsing finds what a reader sees (so the test below cannot pass vacuously)."""
    commands = shown_commands()
    assert commands[0] == QUICKSTART
    assert ".venv/bin/deployhook send --event ping" in commands
    assert "cat secret.txt" in commands
    assert TEST_COMMAND in commands
    assert {s.split()[1] for s in synopses()} >= {
        "init", "serve", "check", "history", "show", "deploy", "send"}


def test_synopses_match_the_cli() -> None:
    """Each ``deployhook SUB [--option ...]`` in Commands is a subcommand taking those options."""
    for synopsis in synopses():
        sub = synopsis.split()[1]
        result = subprocess.run([sys.executable, "-m", "deployhook", sub, "--help"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, (synopsis, result.stderr)
        for option in re.findall(r"--[a-z][a-z-]*", synopsis):
            assert option in result.stdout, (synopsis, option)


class Foreground:
    """``sh quickstart.sh`` in its own session, its output collected line by line."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        # As an interactive shell runs it: fork and exec `sh quickstart.sh` (a `sh -c`
        # around it would itself die of the Ctrl-C after the daemon exited 0).
        self.proc = subprocess.Popen(shlex.split(QUICKSTART), cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "listening on" in line:
                self.listening.set()
        self.listening.set()  # ended: let the waiter see it

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        """Ctrl-C, as the README says; returns the exit status."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    """A fresh clone of this checkout's last commit, its origin holding it as ``main``."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(ROOT, "push", "-q", str(origin), "HEAD:refs/heads/main")
    git(tmp_path, "clone", "-q", str(origin), "deployhook")
    yield tmp_path / "deployhook"


def test_a_newcomer_runs_every_command_the_readme_shows(clone: Path) -> None:
    """From a fresh clone: ``sh quickstart.sh`` (until "listening"), then every other
    command of the sections in a fresh shell, as written: exit status 0, no
    traceback, and neither the secret nor the password shown (but by ``cat``)."""
    port = free_port()
    env = {**os.environ, "DEPLOYHOOK_PORT": str(port)}  # the only change: a free port
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(ROOT)))  # not this .venv
    commands = shown_commands()
    daemon = Foreground(clone, env)
    try:
        assert daemon.listening.wait(timeout=180), daemon.output()
        assert f"listening on http://127.0.0.1:{port}/github" in daemon.output(), daemon.output()
        secrets = [(clone / name).read_text().strip()
                   for name in ("secret.txt", "status-password.txt")]
        for command in commands[1:]:
            if command in NOT_RUN:
                continue
            shell = f"{command} && deployhook --version" if command.startswith(". ") else command
            result = subprocess.run(["sh", "-c", shell], cwd=clone, env=env, text=True,
                                    capture_output=True, timeout=120)
            output = result.stdout + result.stderr
            assert result.returncode == 0, (command, output, daemon.output())
            assert "Traceback" not in output, (command, output)
            if not command.startswith("cat "):
                assert not any(s in output for s in secrets), (command, output)
    finally:
        status = daemon.stop()
    log = daemon.output()
    assert status == 0 and "stopped" in log, log
    assert "Traceback" not in log and not any(s in log for s in secrets), log


def test_the_test_command_is_the_one_ci_runs() -> None:
    """Running the tests shows one command, and .ci/run runs exactly that command."""
    assert literal_commands(readme(("Running the tests",))["Running the tests"]) == [
        TEST_COMMAND]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci, ci


def test_the_files_the_readme_points_to_exist() -> None:
    """Every ``docs/...`` page and other file README.rst names is in the repository."""
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    named = {x for x in inline_literals(text)
             if re.fullmatch(r"(docs/\S*|\S+\.(rst|sh|py|yaml)|debian/\S+)", x)}
    assert {"docs/configuration.rst", "docs/cli.rst", "CHANGELOG.rst"} <= named, named
    assert [x for x in sorted(named) if not (ROOT / x).exists()] == []


def test_the_documentation_builds_as_the_readme_says(clone: Path) -> None:
    """The Documentation section's commands, as written (``python`` being one with the
    ``docs`` extra, as the section says: this test's), in a fresh clone: the HTML site
    and the man pages deployhook(1) and deployhook.conf(5), every warning an error."""
    require_tool(importlib.util.find_spec("sphinx") and importlib.util.find_spec("furo"),
                 "Sphinx and Furo are not installed: pip install -e '.[docs]'")
    commands = literal_commands(readme((DOCUMENTATION,))[DOCUMENTATION])
    builders = {}
    for command in commands:
        argv = shlex.split(command)
        assert argv[:4] == ["python", "-m", "sphinx", "-W"], command
        result = subprocess.run([sys.executable, *argv[1:]], cwd=clone, text=True,
                                capture_output=True, timeout=600)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        builders[argv[argv.index("-b") + 1]] = clone / argv[-1]
    assert set(builders) == {"html", "man"}, commands
    assert (builders["html"] / "configuration.html").is_file()
    assert {"deployhook.1", "deployhook.conf.5"} <= {
        p.name for p in builders["man"].iterdir()}
