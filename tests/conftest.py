"""Fixtures: an isolated git configuration and fresh repositories per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SECRET, Repos, isolate_git, make_repos


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
