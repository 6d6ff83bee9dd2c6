"""Fixtures: an isolated git configuration and fresh repositories per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SECRET, Daemon, Repos, isolate_git, make_repos

#: how much of each daemon's log a failing test's report shows (its end)
LOG_TAIL = 8000

# The modules that take longest, run first: tests/run.sh hands whole modules (classes
# of tests, for unittest-style modules) to its processes in this order, so none of them
# starts last and holds up the end; each module's fixtures are built once.
FIRST = ("test_systemd.py", "test_fleet.py", "test_container.py", "test_deploy.py",
         "test_cli_targets.py", "test_git_faults.py", "test_debian.py", "test_releases.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests of :data:`FIRST`'s modules to the front, in that order."""
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST
               else len(FIRST))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report ends with the log of every daemon it started: a race seen
    once in a loaded run can then be read, not guessed at."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for daemon in Daemon.started:
            try:
                text = daemon.log()
            except OSError as exc:
                text = f"(unreadable: {exc})"
            report.sections.append((f"daemon log {daemon.log_path.name}", text[-LOG_TAIL:]))
    if report.when == "teardown":  # a daemon of a class or module lives on
        Daemon.started = [d for d in Daemon.started if d.proc.poll() is None]


@pytest.fixture(autouse=True, scope="session")
def git_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Use a throw-away global git config: an identity, and file:// submodules allowed."""
    isolate_git(tmp_path_factory.mktemp("gitconfig"))


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    """origin.git with a submodule, a deployed clone and a pusher clone."""
    return make_repos(tmp_path)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET + b"\n")
    return path
