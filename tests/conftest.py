"""Fixtures: an isolated git configuration and fresh repositories per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SECRET, Repos, make_repos


@pytest.fixture(autouse=True, scope="session")
def git_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Use a throw-away global git config: an identity, and file:// submodules allowed."""
    home = tmp_path_factory.mktemp("gitconfig")
    config = home / "gitconfig"
    config.write_text(
        "[user]\n\tname = Test Pusher\n\temail = pusher@example.com\n"
        "[protocol \"file\"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n"
        "[advice]\n\tdetachedHead = false\n"
    )
    os.environ["GIT_CONFIG_GLOBAL"] = str(config)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    for name in [n for n in os.environ if n.startswith("DEPLOYHOOK_")]:
        del os.environ[name]


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    """origin.git with a submodule, a deployed clone and a pusher clone."""
    return make_repos(tmp_path)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET + b"\n")
    return path
