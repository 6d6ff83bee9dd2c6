"""``targets`` in config.py: several checkouts in one daemon (settings only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployhook import settings
from deployhook.errors import ConfigError

TWO = '''
secret_file = "secret.txt"
branch = "main"
targets = {
    "blog": {"repo_path": "/srv/blog", "repository": "octo-org/blog",
             "post_deploy": ["make", "html"]},
    "docs": {"repo_path": "docs", "repository": "group/docs", "secret_file": "docs.secret",
             "forge": "gitlab", "branch": "release"},
}
'''


def load(tmp_path: Path, text: str, **environ: str) -> settings.Config:
    path = tmp_path / "config.py"
    path.write_text(text)
    return settings.load(path, environ=environ)


def test_no_targets_is_one_default_target(tmp_path: Path) -> None:
    """A config without ``targets`` is one target named ``default`` made of its keys."""
    config = load(tmp_path, 'repo_path = "site"\nbranch = "main"\n')
    (target,) = config.targets
    assert target.name == "default"
    assert target.repo_path == str(tmp_path / "site")
    assert target.branch == "main"
    assert target.secret_file == str(tmp_path / "secret.txt")


def test_targets_inherit_top_level_keys(tmp_path: Path) -> None:
    config = load(tmp_path, TWO)
    assert config.target_names == ("blog", "docs")
    blog, docs = config.target("blog"), config.target("docs")
    assert blog.repo_path == "/srv/blog" and blog.branch == "main"
    assert blog.post_deploy == ("make", "html")
    assert blog.secret_file == str(tmp_path / "secret.txt")
    assert docs.repo_path == str(tmp_path / "docs") and docs.branch == "release"
    assert docs.secret_file == str(tmp_path / "docs.secret") and docs.forge == "gitlab"
    with pytest.raises(KeyError):
        config.target("nope")


def test_environment_overrides_only_the_defaults(tmp_path: Path) -> None:
    """DEPLOYHOOK_BRANCH changes the default; a target's own branch stays."""
    config = load(tmp_path, TWO, DEPLOYHOOK_BRANCH="trunk")
    assert config.target("blog").branch == "trunk"
    assert config.target("docs").branch == "release"


def test_secret_from_environment_only_for_targets_without_their_own_file(
        tmp_path: Path) -> None:
    config = load(tmp_path, TWO, DEPLOYHOOK_SECRET="s3cr3t")
    assert config.target("blog").secret == b"s3cr3t"
    assert config.target("docs").secret is None


def test_systemd_credential_per_target(tmp_path: Path) -> None:
    """Under systemd a target's secret may be the credential webhook-secret-<name>."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook-secret").write_text("shared\n")
    (creds / "webhook-secret-blog").write_text("blog's own\n")
    text = 'targets = {"blog": {"repo_path": "b"}, "docs": {"repo_path": "d"}}\n'
    config = load(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds))
    assert config.target("blog").secret_file == str(creds / "webhook-secret-blog")
    assert config.target("docs").secret_file == str(creds / "webhook-secret")


@pytest.mark.parametrize(("text", "words"), [
    ('targets = {"Blog": {"repo_path": "b"}}', ["'Blog'", "must match"]),
    ('targets = {"-x": {"repo_path": "b"}}', ["'-x'", "must match"]),
    ('targets = {"a" * 65: {"repo_path": "b"}}', ["must match"]),
    ('targets = {"blog": {"repo_path": "b", "port": 9000}}', ["'port'", "'blog'", "daemon-wide"]),
    ('targets = {"blog": {"repo_path": "b", "colour": 1}}', ["'colour'", "'blog'", "unknown"]),
    ('targets = {"blog": {"repo_path": 3}}', ["'blog'", "repo_path must be str"]),
    ('targets = {"blog": {"pull_strategy": "yolo", "repo_path": "b"}}',
     ["pull_strategy", "'blog'"]),
    ('targets = {"blog": {"forge": "sourcehut", "repo_path": "b"}}', ["forge", "'blog'"]),
    ('targets = {"blog": "b"}', ["'blog'", "must be a dict"]),
    ('targets = {"a": {"repo_path": "s"}, "b": {"repo_path": "./s/"}}',
     ["'a'", "'b'", "share repo_path"]),
    ('targets = {"a": {}, "b": {}}', ["share repo_path"]),
    ('targets = ["a"]', ["targets must be dict"]),
])
def test_bad_targets_stop_the_daemon_naming_target_and_key(
        tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text + "\n")
    for word in words:
        assert word in str(info.value)
