"""Fixtures: an isolated git configuration and fresh repositories per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SECRET, Repos, isolate_git, make_repos

# The modules that take longest, run first: tests/run.sh hands whole modules (classes
# of tests, for unittest-style modules) to its processes in this order, so none of them
# starts last and holds up the end; each module's fixtures are built once.
FIRST = ("test_systemd.py", "test_fleet.py", "test_container.py", "test_deploy.py",
         "test_cli_targets.py", "test_git_faults.py", "test_debian.py", "test_releases.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests of :data:`FIRST`'s modules to the front, in that order."""
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST
               else len(FIRST))


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
