"""Every page over the settings that change what it shows (issue 24's first bug).

A target without ``repository`` (a clone whose origin is not on GitHub: any GitLab,
Gitea or Bitbucket target that leaves it unset) made ``/`` and ``/targets/<name>``
answer 500 (``templates/fleet.html``'s loop variable ``name`` shadowed the page's).
Real daemons, real git, plain HTTP: the browser tests are in tests/test_pages.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deployhook.forges import payloads, sign_headers
from tests.helpers import (
    REPOSITORY,
    Daemon,
    basic_auth,
    http,
    make_repos,
    start_daemon,
    start_targets,
)

SECRET = "a secret of sixteen bytes or more"
COMBINATIONS = {  # name -> (targets: name -> extra settings, top-level extra settings)
    "one target, repository set": ({"default": {"repository": REPOSITORY}}, {}),
    "one target, no repository": ({"default": {"repository": None}}, {}),
    "two targets, one without repository": (
        {"a": {"repository": "octo-org/a"}, "b": {"repository": None}}, {}),
    "releases mode, no repository": ({"default": {"repository": None,
                                                  "deploy_mode": "releases"}}, {}),
}


def page(daemon: Daemon, path: str) -> tuple[int, str]:
    request = urllib.request.Request(daemon.url + path, headers=basic_auth())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def start(root: Path, targets: dict[str, dict[str, Any]], extra: dict[str, Any]) -> Daemon:
    if targets.get("default", {}).get("deploy_mode") == "releases":
        extra = {**extra, "releases_path": str(root / "site")}
    if list(targets) == ["default"]:
        repos = make_repos(root)
        secret = root / "secret.txt"
        secret.write_text(SECRET + "\n")
        return start_daemon(repos, secret, **targets["default"], **extra)
    settings = {}
    for name, own in targets.items():
        (root / name).mkdir()
        repos = make_repos(root / name)
        secret = root / f"{name}.secret"
        secret.write_text(SECRET + "\n")
        settings[name] = {"repo_path": str(repos.deployed), "secret_file": str(secret), **own}
    return start_targets(root, settings, **extra)


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_every_page_answers_for_every_combination(tmp_path: Path, combination: str) -> None:
    targets, extra = COMBINATIONS[combination]
    daemon = start(tmp_path, targets, extra)
    try:
        daemon.wait_ready()
        name = next(iter(targets))
        repository = targets[name].get("repository") or "octo-org/whatever"
        body = payloads.push_payload("github", repository=repository, ref="refs/heads/main",
                                     before="0" * 40, after="1" * 40, pusher="octocat",
                                     email="octocat@example.com", default_branch="main")
        raw = json.dumps(body).encode()
        headers = sign_headers("github", SECRET.encode(), raw, "push")
        http("POST", daemon.url + f"/hooks/{name}", raw, headers, auth=False)
        for path in ("/", *(f"/targets/{t}" for t in targets), "/runs/1"):
            status, text = page(daemon, path)
            assert status in (200, 404) and "Traceback" not in text, (path, status, text[:500])
            if path != "/runs/1":
                assert status == 200, (path, text[:500])
        assert "UnboundLocalError" not in daemon.log()
    finally:
        daemon.stop()
