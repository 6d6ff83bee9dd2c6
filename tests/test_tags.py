"""Tags mode (``tags = "v*"``): the newest pushed tag matching the pattern is deployed,
checked out detached; branch pushes change nothing.  Real git repositories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployhook import forges
from deployhook.cli.check import run_checks
from deployhook.forges import payloads
from deployhook.forges.delivery import Push
from deployhook.git.checkout import Checkout, RunResult, resolve_target
from deployhook.record.store import Store
from deployhook.settings import Config
from tests.helpers import (
    REPOSITORY,
    SECRET,
    ZERO,
    Daemon,
    Repos,
    free_port,
    git,
    http,
    write_config,
)

TAGS = "v*"


def tag(repos: Repos, name: str, annotated: bool = False, sha: str = "HEAD") -> str:
    """Tag ``sha`` in the pusher clone as ``name`` and push the tag; return what the
    tag ref points to (the tag object for an annotated tag)."""
    extra = ["-a", "-m", f"release {name}"] if annotated else []
    git(repos.pusher, "tag", *extra, name, sha)
    git(repos.pusher, "push", "-q", "origin", f"refs/tags/{name}")
    return git(repos.pusher, "rev-parse", f"refs/tags/{name}")


def push_of(name: str, after: str) -> Push:
    return Push(f"refs/tags/{name}", ZERO, after, False, "octo-org/blog", "main", "octocat",
                f"d-{name}")


def checkout(repos: Repos, **extra: object) -> Checkout:
    values = {"repo_path": str(repos.deployed), "git_timeout": 30.0, "tags": TAGS, **extra}
    return Checkout(Config(**values))  # type: ignore[arg-type]


def deploy_tag(co: Checkout, name: str, after: str) -> RunResult:
    return co.deploy(f"refs/tags/{name}", [push_of(name, after)])


def detached_at(repos: Repos) -> str | None:
    """The commit of a detached HEAD in the deployed clone, None when on a branch."""
    if git(repos.deployed, "symbolic-ref", "-q", "HEAD", check=False):
        return None
    return Repos.head(repos.deployed)


def test_tag_pushes_deploy_detached_and_branch_pushes_change_nothing(repos: Repos) -> None:
    co = checkout(repos)
    first = repos.commit("a.txt", "one\n")
    v1 = tag(repos, "v1")
    result = deploy_tag(co, "v1", v1)
    assert result.ok and result.moved, result.reason
    assert result.branch == "refs/tags/v1"
    assert detached_at(repos) == first
    assert (repos.deployed / "a.txt").read_text() == "one\n"
    assert git(repos.deployed, "tag", "--list") == "v1"  # only the deployed tag is fetched

    repos.commit("a.txt", "two\n")  # a branch push: nothing changes (the decision ignores
    assert detached_at(repos) == first  # it, and no deploy of the branch is asked for)

    again = deploy_tag(co, "v1", v1)  # a replay of the v1 push: already deployed
    assert again.ok and not again.moved and again.steps == []
    assert again.contains == {v1: True}

    second = repos.commit("a.txt", "three\n")
    v2 = tag(repos, "v2")
    result = deploy_tag(co, "v2", v2)
    assert result.ok and result.moved, result.reason
    assert detached_at(repos) == second
    assert (repos.deployed / "a.txt").read_text() == "three\n"
    assert not co.unfinished()


def test_annotated_tag_deploys_its_commit(repos: Repos) -> None:
    commit = repos.commit("b.txt", "annotated\n")
    tag_object = tag(repos, "v1.0", annotated=True)
    assert tag_object != commit
    result = deploy_tag(checkout(repos), "v1.0", tag_object)
    assert result.ok and result.moved, result.reason
    assert detached_at(repos) == commit
    again = deploy_tag(checkout(repos), "v1.0", tag_object)
    assert again.ok and not again.moved and again.steps == []
    assert again.contains == {tag_object: True}


def test_no_tag_given_deploys_the_newest_matching_remote_tag(repos: Repos) -> None:
    """``deployhook deploy`` in tags mode: version sort (v10 is newer than v9), and a
    tag not matching the pattern (``latest``, on a newer commit) is not deployed."""
    v9 = repos.commit("c.txt", "nine\n")
    tag(repos, "v9")
    v10 = repos.commit("c.txt", "ten\n")
    tag(repos, "v10", annotated=True)
    repos.commit("c.txt", "unreleased\n")
    tag(repos, "latest")
    result = checkout(repos).deploy("", [])
    assert result.ok, result.reason
    assert result.branch == "refs/tags/v10"
    assert detached_at(repos) == v10 != v9
    assert git(repos.deployed, "tag", "--list") == "v10"


def test_no_matching_tag_fails_and_changes_nothing(repos: Repos) -> None:
    head = Repos.head(repos.deployed)
    repos.commit("d.txt")
    tag(repos, "release-1")
    result = checkout(repos).deploy("", [])
    assert not result.ok
    assert "has no tag matching 'v*'" in result.reason
    assert Repos.head(repos.deployed) == head
    assert not checkout(repos).unfinished()


def test_post_deploy_runs_in_tags_mode(repos: Repos, tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    script = ("import os, sys; open(sys.argv[1], 'w').write(' '.join(os.environ[k] for k in "
              "('DEPLOYHOOK_TAG', 'DEPLOYHOOK_REF', 'DEPLOYHOOK_HEAD_AFTER')) + "
              "' [' + os.environ['DEPLOYHOOK_BRANCH'] + ']')")
    co = checkout(repos, post_deploy=(sys.executable, "-c", script, str(out)))
    commit = repos.commit("e.txt")
    v3 = tag(repos, "v3")
    result = deploy_tag(co, "v3", v3)
    assert result.ok, result.reason
    assert [step.name for step in result.steps][-1] == "post_deploy"
    assert out.read_text() == f"v3 refs/tags/v3 {commit} []"


def test_failed_post_deploy_is_finished_by_the_next_run(repos: Repos, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    flag.write_text("x")
    co = checkout(repos, post_deploy=(sys.executable, "-c",
                                      f"import os, sys; sys.exit(os.path.exists({str(flag)!r}))"))
    v1 = (repos.commit("f.txt"), tag(repos, "v1"))[1]
    first = deploy_tag(co, "v1", v1)
    assert not first.ok and co.unfinished()
    flag.unlink()
    second = deploy_tag(co, "v1", v1)  # the same push again: post_deploy runs again
    assert second.ok and second.deployed and not co.unfinished()


def test_local_changes_are_kept_and_never_overwritten(repos: Repos) -> None:
    v1 = (repos.commit("g.txt", "one\n"), tag(repos, "v1"))[1]
    co = checkout(repos)
    assert deploy_tag(co, "v1", v1).ok
    (repos.deployed / "g.txt").write_text("edited on the server\n")
    before = Repos.head(repos.deployed)
    v2 = (repos.commit("g.txt", "two\n"), tag(repos, "v2"))[1]
    result = deploy_tag(co, "v2", v2)
    assert not result.ok
    assert "would be overwritten" in result.reason
    assert Repos.head(repos.deployed) == before
    assert (repos.deployed / "g.txt").read_text() == "edited on the server\n"
    assert not co.unfinished()  # put back as it was: nothing left undone


def test_untracked_file_in_the_way_refuses(repos: Repos) -> None:
    before = Repos.head(repos.deployed)
    v1 = (repos.commit("new.txt", "from the tag\n"), tag(repos, "v1"))[1]
    (repos.deployed / "new.txt").write_text("mine\n")
    result = deploy_tag(checkout(repos), "v1", v1)
    assert not result.ok and "untracked working tree files" in result.reason
    assert Repos.head(repos.deployed) == before
    assert (repos.deployed / "new.txt").read_text() == "mine\n"


def test_failing_hook_puts_the_checkout_back(repos: Repos) -> None:
    """A post-checkout hook that fails after git moved HEAD: HEAD goes back."""
    before = Repos.head(repos.deployed)
    hook = repos.deployed / ".git" / "hooks" / "post-checkout"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    v1 = (repos.commit("h.txt"), tag(repos, "v1"))[1]
    result = deploy_tag(checkout(repos), "v1", v1)
    assert not result.ok
    assert "checkout restored to " + before in result.reason
    assert Repos.head(repos.deployed) == before
    assert not (repos.deployed / "h.txt").exists()


def test_submodules_are_updated_in_tags_mode(repos: Repos) -> None:
    bumped = repos.commit_submodule("new post\n")
    v1 = tag(repos, "v1")
    result = deploy_tag(checkout(repos), "v1", v1)
    assert result.ok, result.reason
    assert detached_at(repos) == bumped
    assert (repos.deployed / "posts" / "index.rst").read_text() == "new post\n"


def test_first_clone_in_tags_mode(repos: Repos, tmp_path: Path) -> None:
    commit = repos.commit("i.txt")
    tag(repos, "v5", annotated=True)
    target = tmp_path / "fresh" / "site"
    co = Checkout(Config(repo_path=str(target), repo_url=repos.origin.as_uri(),
                         git_timeout=30.0, tags=TAGS))
    result = co.deploy("", [])
    assert result.ok, result.reason
    assert git(target, "rev-parse", "HEAD") == commit
    assert git(target, "symbolic-ref", "-q", "HEAD", check=False) == ""
    assert (target / "posts" / "index.rst").exists()
    assert git(target, "config", "remote.origin.fetch") == "+refs/heads/*:refs/remotes/origin/*"
    assert not co.unfinished()


def test_resolve_target_accepts_a_detached_head_in_tags_mode(repos: Repos) -> None:
    v1 = (repos.commit("j.txt"), tag(repos, "v1"))[1]
    co = checkout(repos, repository="octo-org/blog")
    assert deploy_tag(co, "v1", v1).ok
    config = Config(repo_path=str(repos.deployed), tags=TAGS, repository="octo-org/blog")
    assert resolve_target(co, config) == (None, "octo-org/blog", Repos.head(repos.deployed))
    with pytest.raises(Exception, match="detached HEAD"):
        resolve_target(co, Config(repo_path=str(repos.deployed)))


def test_check_accepts_a_detached_checkout_in_tags_mode(repos: Repos, tmp_path: Path) -> None:
    v1 = (repos.commit("k.txt"), tag(repos, "v1"))[1]
    assert deploy_tag(checkout(repos), "v1", v1).ok
    config = Config(repo_path=str(repos.deployed), tags=TAGS, repository="octo-org/blog",
                    secret_file=str(tmp_path / "secret.txt"), port=0)
    results = {r.name: r for r in run_checks(config, str(tmp_path / "config.py"))}
    assert results["checkout"].level == "OK", results["checkout"]
    assert "(detached); deploys the newest tag matching 'v*'" in results["checkout"].detail
    assert "branch" not in results


# -- end to end: a real daemon with a tags target -------------------------------------------

def signed_tag(ref: str, after: str, number: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed GitHub push of ``ref``, delivery ``d-<number>``."""
    payload = payloads.push_payload(
        "github", repository=REPOSITORY, ref=ref, before=ZERO, after=after, pusher="octocat",
        email="octocat@example.com", default_branch="main")
    body = json.dumps(payload).encode()
    headers = {**forges.sign_headers("github", SECRET, body, "tag" if "/tags/" in ref
                                     else "push", delivery_id=f"d-{number}"),
               "Content-Type": "application/json"}
    return body, headers


def _deliver(daemon: Daemon, ref: str, after: str, number: int) -> tuple[int, dict[str, Any]]:
    """POST a signed GitHub push of ``ref`` to /hooks/site."""
    return http("POST", daemon.url + "/hooks/site", *signed_tag(ref, after, number))


def _tags_daemon(repos: Repos, secret_file: Path, **extra: Any) -> Daemon:
    """A daemon (started, maybe not ready yet) with one target ``site`` deploying
    ``repos.deployed`` in tags mode."""
    port = free_port()
    config = write_config(
        repos.root / "config.py", port=port, secret_file=str(secret_file),
        targets={"site": {"repo_path": str(repos.deployed), "repository": REPOSITORY,
                          "tags": TAGS, "reload": "none", **extra}})
    return Daemon(config, port)


def test_daemon_deploys_pushed_tags_and_ignores_the_rest(repos: Repos, secret_file: Path
                                                         ) -> None:
    marker = repos.root / "post_deploy.log"
    script = (f"import os; open({str(marker)!r}, 'a')"
              ".write(os.environ['DEPLOYHOOK_TAG'] + '\\n')")
    daemon = _tags_daemon(repos, secret_file, post_deploy=[sys.executable, "-c", script])
    try:
        daemon.wait_ready()
        start = Repos.head(repos.deployed)
        v1_commit = repos.commit("site.txt", "one\n")
        status, answer = _deliver(daemon, "refs/tags/v1", tag(repos, "v1", annotated=True), 1)
        assert status == 200, answer
        assert detached_at(repos) == v1_commit

        branch_sha = repos.commit("site.txt", "unreleased\n")  # a branch push: ignored
        status, answer = _deliver(daemon, "refs/heads/main", branch_sha, 2)
        assert status == 202 and answer["result"] == "ignored", answer
        status, answer = _deliver(daemon, "refs/tags/nightly", tag(repos, "nightly"), 3)
        assert status == 202 and answer["result"] == "ignored", answer
        assert detached_at(repos) == v1_commit

        v2_commit = repos.commit("site.txt", "two\n")
        status, answer = _deliver(daemon, "refs/tags/v2", tag(repos, "v2"), 4)
        assert status == 200, answer
        assert detached_at(repos) == v2_commit != start
        assert (repos.deployed / "site.txt").read_text() == "two\n"
        assert marker.read_text() == "v1\nv2\n"
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log(), daemon.log()


def test_a_replayed_old_tag_delivery_does_not_move_the_checkout_back(
        repos: Repos, secret_file: Path) -> None:
    """v1 deployed, then v2; v1's exact signed body and signature again under a fresh
    ``X-GitHub-Delivery`` (GitHub does not sign it) is answered 409 without deploying,
    recorded and logged, and HEAD stays at v2.  v1's own delivery ID again is answered
    as a replay, as before; a new tag still deploys."""
    marker = repos.root / "post_deploy.log"
    script = (f"import os; open({str(marker)!r}, 'a')"
              ".write(os.environ['DEPLOYHOOK_TAG'] + '\\n')")
    daemon = _tags_daemon(repos, secret_file, post_deploy=[sys.executable, "-c", script])
    url = daemon.url + "/hooks/site"
    try:
        daemon.wait_ready()
        repos.commit("site.txt", "one\n")
        v1 = tag(repos, "v1", annotated=True)
        v1_body, v1_headers = signed_tag("refs/tags/v1", v1, 1)
        status, answer = http("POST", url, v1_body, v1_headers)
        assert status == 200, answer
        v2_commit = repos.commit("site.txt", "two\n")
        status, answer = _deliver(daemon, "refs/tags/v2", tag(repos, "v2"), 2)
        assert status == 200 and detached_at(repos) == v2_commit, answer

        replay = {**v1_headers, "X-GitHub-Delivery": "d-replayed"}
        status, answer = http("POST", url, v1_body, replay)
        assert status == 409 and answer["result"] == "not deployed", answer
        assert f"tag v1 at {v1[:12]} was deployed before (run 1) and v2" in answer["reason"]
        assert "push a new tag to deploy it" in answer["reason"], answer
        assert detached_at(repos) == v2_commit
        assert (repos.deployed / "site.txt").read_text() == "two\n"

        status, answer = http("POST", url, v1_body, v1_headers)  # v1's own delivery ID
        assert answer.get("replayed") is True and "already handled by run 1" in \
            answer["reason"], answer
        assert detached_at(repos) == v2_commit

        v3_commit = repos.commit("site.txt", "three\n")
        status, answer = _deliver(daemon, "refs/tags/v3", tag(repos, "v3"), 3)
        assert status == 200 and detached_at(repos) == v3_commit, answer
        assert marker.read_text() == "v1\nv2\nv3\n"
    finally:
        daemon.stop()
    assert "delivery d-replayed from 127.0.0.1 to site" in daemon.log(), daemon.log()
    assert "-> 409 not deployed: tag v1 at" in daemon.log()
    store = Store(str(repos.root / "deployhook.sqlite3"), readonly=True)
    try:
        rows = store.db.execute("SELECT status, result, run_id FROM deliveries"
                                " WHERE delivery_id='d-replayed'").fetchall()
    finally:
        store.close()
    assert [tuple(row) for row in rows] == [(409, "not deployed", None)]


def test_cli_deploy_in_tags_mode_deploys_the_newest_matching_tag(repos: Repos,
                                                                  secret_file: Path) -> None:
    commit = repos.commit("cli.txt", "released\n")
    tag(repos, "v1.2.0", annotated=True)
    repos.commit("cli.txt", "unreleased\n")  # on main, not tagged
    config = write_config(repos.root / "config.py", repo_path=str(repos.deployed),
                          secret_file=str(secret_file), tags=TAGS, port=free_port())
    result = subprocess.run([sys.executable, "-m", "deployhook", "deploy", "--config",
                             str(config)], capture_output=True, text=True, timeout=120,
                            cwd=repos.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert detached_at(repos) == commit
    assert (repos.deployed / "cli.txt").read_text() == "released\n"
