"""Atomic releases (``deploy_mode = "releases"``, issue 13): real repositories, real
daemons, a real local web server for ``health_url``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deployhook.cli.main import main
from deployhook.errors import ConfigError
from deployhook.git import release_build, releases
from deployhook.git.checkout import Checkout
from deployhook.record.store import Store
from deployhook.service.runs import run_deploy
from deployhook.settings import Config, TargetConfig, load
from tests.helpers import Repos, basic_auth, deliver_push, git, http, start_daemon


def target(repos: Repos, **values: Any) -> TargetConfig:
    """A target in releases mode over ``repos.deployed`` (the store)."""
    return Config().default_target(repo_path=str(repos.deployed), branch="main", reload="none",
                        deploy_mode="releases", releases_path=str(repos.root / "site"),
                        **values)


def deploy(config: TargetConfig, store: Store, trigger: str = "cli") -> Any:
    checkout = Checkout(config)
    try:
        return run_deploy(checkout, store, target=config.name, trigger=trigger,
                          branch="main")
    finally:
        checkout.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    record = Store(str(tmp_path / "record.sqlite3"))
    yield record
    record.close()


def live(repos: Repos) -> Path:
    return Path(os.path.realpath(repos.root / "site" / "current"))


def test_a_deploy_builds_a_release_and_switches_current(repos: Repos, store: Store) -> None:
    """The release is a clone at the pushed commit with its submodule, the shared paths
    linked, post_deploy run inside it; current points at it; the store is not live."""
    (repos.root / "site" / "shared").mkdir(parents=True)
    (repos.root / "site" / "shared" / ".env").write_text("KEY=1\n")
    config = target(repos, shared_paths=("uploads", ".env"),
                    post_deploy=("sh", "-c", "pwd > built.txt"))
    sha = repos.commit("index.html", "one\n")
    result = deploy(config, store)
    assert result.ok, result.reason
    assert result.head_after == sha and releases.live_sha(config) == sha
    release = live(repos)
    assert release.parent.name == "releases" and release.name.endswith("-" + sha[:12])
    assert os.readlink(repos.root / "site" / "current") == f"releases/{release.name}"
    assert (release / "index.html").read_text() == "one\n"
    assert (release / "posts" / "index.rst").exists()  # the submodule
    assert (release / "built.txt").read_text().strip() == str(release)
    assert (release / ".env").read_text() == "KEY=1\n" and (release / ".env").is_symlink()
    assert (release / "uploads").is_symlink() and (release / "uploads").is_dir()
    assert not (repos.deployed / "built.txt").exists()  # post_deploy ran in the release
    git(release, "fsck", "--no-progress")
    assert deploy(config, store).ok and live(repos) == release  # nothing new: no release
    [(name, _)] = [(r.name, r.sha) for r in releases.releases(config)]
    assert name == release.name


def test_a_failing_pre_deploy_runs_in_the_live_release_and_changes_nothing(
        repos: Repos, store: Store) -> None:
    """pre_deploy runs in the live release; when it fails, nothing is built, current and
    the store stay where they were, and on_failure hears the reason (issue 17)."""
    config = target(repos)
    repos.commit("index.html", "one\n")
    assert deploy(config, store).ok
    release, store_head = live(repos), repos.head(repos.deployed)
    report = repos.root / "failure.txt"
    config = target(repos, pre_deploy=("sh", "-c", "pwd > ran-here.txt; exit 3"),
                    on_failure=("sh", "-c", f'echo "$DEPLOYHOOK_REASON" > {report}'))
    repos.commit("index.html", "two\n")
    result = deploy(config, store)
    assert not result.ok and "pre_deploy" in result.reason, result.reason
    assert live(repos) == release and (release / "index.html").read_text() == "one\n"
    assert (release / "ran-here.txt").read_text().strip() == str(release)
    assert repos.head(repos.deployed) == store_head
    assert [r.name for r in releases.releases(config)] == [release.name]
    assert "pre_deploy" in report.read_text()


def _reader(current: Path, stop: threading.Event, counts: dict[str, int]) -> None:
    """Resolve ``current`` once per pair (as a web server resolves its root per request)
    and read a.txt and b.txt, which change together in every commit."""
    while not stop.is_set():
        try:
            root = os.path.realpath(current)
            a = Path(root, "a.txt").read_text()
            b = Path(root, "b.txt").read_text()
        except OSError:
            counts["errors"] += 1
            continue
        counts["reads"] += 1
        if a != b:
            counts["mixed"] += 1


def _mixed_pairs(repos: Repos, store: Store, config: TargetConfig, current: Path,
                 deploys: int = 20) -> dict[str, int]:
    counts = {"reads": 0, "mixed": 0, "errors": 0}
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(current, stop, counts))
    reader.start()
    try:
        for n in range(deploys):
            body = f"{n}\n" * 2000
            (repos.pusher / "a.txt").write_text(body)
            (repos.pusher / "b.txt").write_text(body)
            git(repos.pusher, "add", "a.txt", "b.txt")
            git(repos.pusher, "commit", "-q", "-m", f"pair {n}")
            git(repos.pusher, "push", "-q", "origin", "HEAD:main")
            assert deploy(config, store).ok
    finally:
        stop.set()
        reader.join()
    return counts


def test_a_reader_of_current_never_sees_a_mixed_pair(repos: Repos, store: Store) -> None:
    """Acceptance: 20 deploys while a reader resolves current once per pair: 0 mixed
    pairs.  The same against an in-place checkout is printed for comparison."""
    repos.commit("a.txt", "start\n", push=False)
    repos.commit("b.txt", "start\n")
    config = target(repos)
    assert deploy(config, store).ok
    counts = _mixed_pairs(repos, store, config, repos.root / "site" / "current")
    assert counts["reads"] > 0 and counts["mixed"] == 0 and counts["errors"] == 0, counts
    in_place = Config().default_target(repo_path=str(repos.deployed), branch="main", reload="none")
    assert deploy(in_place, store).ok
    compared = _mixed_pairs(repos, store, in_place, repos.deployed)
    print(f"\nreleases: {counts}; in-place: {compared}")


def test_keep_releases_holds_and_never_removes_the_live_one(repos: Repos, store: Store) -> None:
    """Pruned releases leave releases/ at once; their files are deleted after the
    answer (the checkout's housekeeping), or at the next start if that never came."""
    config = target(repos, keep_releases=3)
    pruned = repos.root / "site" / ".pruned"
    for n in range(5):
        repos.commit("index.html", f"{n}\n")
        checkout = Checkout(config)
        try:
            result = run_deploy(checkout, store, target=config.name, trigger="cli",
                                branch="main")
            assert result.ok, result.reason
            gone = [s.output for s in result.steps if s.name == "prune"]
            assert len(gone) == (1 if n >= 3 else 0)
            if gone:
                assert [p.name for p in pruned.iterdir()] == gone
            if n < 4:
                checkout.housekeep()
                assert not pruned.exists() or not any(pruned.iterdir())
        finally:
            checkout.close()
    found = releases.releases(config)
    assert len(found) == 3 and found[-1].live
    assert found[-1].sha == Repos.head(repos.pusher)
    assert len(list(pruned.iterdir())) == 1  # the last run's housekeeping never came
    releases.clean_partial(config)  # as at the next start
    assert not any(pruned.iterdir())


def _commit_starting(repos: Repos, digits: str, text: str) -> str:
    """Commit ``text`` (not pushed) with a SHA starting with one of ``digits`` (a quarter
    of them: retried with a counter in the text, four times on average)."""
    for n in range(200):
        sha = repos.commit("index.html", f"{text} {n}\n", push=False)
        if sha[0] in digits:
            return sha
    raise AssertionError(f"no SHA starting with one of {digits} in 200 commits")


def test_releases_made_within_one_second_roll_back_and_prune_in_the_order_made(
        repos: Repos, store: Store) -> None:
    """Three releases made back to back (within one second), each of a commit whose SHA
    sorts before the last: listed in the order made, prune removes the oldest, and
    rollback goes to the one made before the live one (issue 23 finding 5)."""
    config = target(repos, keep_releases=2)
    shas = [_commit_starting(repos, digits, str(n))  # each SHA sorts before the last
            for n, digits in enumerate(("cdef", "89ab", "0123"))]
    for sha in shas:
        git(repos.pusher, "push", "-q", "--force", "origin", f"{sha}:main")
        assert deploy(config, store).ok
    assert [r.sha for r in releases.releases(config)] == shas[1:]  # the oldest pruned
    assert releases.live_sha(config) == shas[2]
    ok, reason, _ = releases.roll_back(config, None)
    assert ok and releases.live_sha(config) == shas[1], reason


@pytest.mark.parametrize(("older", "newer"), [
    ("20261201T031500Z-1a2b3c4d5e6f", "20261201T031501Z-0a2b3c4d5e6f"),  # old names: time
    ("20261201T031500Z-1a2b3c4d5e6f", "20261201T031500Z-1a2b3c4d5e6f-2"),  # same second
    ("20261201T031500Z-ffffffffffff", "20261201T031500.000001Z-1-0a2b3c4d5e6f"),
    ("20261201T031500.000002Z-1-0a2b3c4d5e6f", "20261201T031500.000001Z-2-0a2b3c4d5e6f"),
    ("20261201T031500.5Z-oops", "20261201T031500Z-1a2b3c4d5e6f"),  # not a release name
])
def test_release_names_sort_in_the_order_made(older: str, newer: str) -> None:
    """The sequence orders releases even when the clock went back; a name made before
    the sequence sorts by its time, before every name with one."""
    assert releases.made_order(older) < releases.made_order(newer)


def test_a_failed_build_leaves_the_previous_release_live(repos: Repos, store: Store) -> None:
    """A failing post_deploy: the previous release stays live, the failed one is gone,
    and the next deploy builds it again."""
    config = target(repos, post_deploy=("sh", "-c", "test ! -e ../../fail"))
    first = live_sha_after(repos, config, store)
    (repos.root / "site" / "fail").touch()
    repos.commit("index.html", "broken\n")
    result = deploy(config, store)
    assert not result.ok and "not switched to" in result.reason
    assert releases.live_sha(config) == first and result.head_after == first
    assert len(releases.releases(config)) == 1
    (repos.root / "site" / "fail").unlink()
    assert deploy(config, store).ok and releases.live_sha(config) == Repos.head(repos.pusher)


def live_sha_after(repos: Repos, config: TargetConfig, store: Store) -> str:
    """Deploy a first release; its commit."""
    sha = repos.commit("index.html", "first\n")
    assert deploy(config, store).ok
    return sha


class _Health(BaseHTTPRequestHandler):
    status = 500

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"sick\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sick_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case", ["post_deploy", "activate", "health"])
def test_a_failure_answers_500_and_leaves_the_previous_release_live(
        repos: Repos, secret_file: Path, sick_server: str, case: str) -> None:
    """Through a real daemon: a failing post_deploy, a failing activate, a health_url
    answering 500: each answered 500 with the reason, the previous release live."""
    flag = repos.root / "fail"
    check = ["sh", "-c", f"test ! -e {flag}"]
    extra: dict[str, Any] = {
        "post_deploy": {"post_deploy": check}, "activate": {"activate": check},
        "health": {"health_url": sick_server, "health_timeout": 5.0}}[case]
    daemon = start_daemon(repos, secret_file, branch="main", deploy_mode="releases",
                          releases_path=str(repos.root / "site"), **extra)
    try:
        daemon.wait_ready()
        site = repos.root / "site"
        if case != "health":
            first = repos.commit("index.html", "first\n")
            status, body = deliver_push(daemon.url, first, "ok-1")
            assert status == 200, body
        else:  # a first release made while the health check passes
            _Health.status = 200
            first = repos.commit("index.html", "first\n")
            status, body = deliver_push(daemon.url, first, "ok-1")
            assert status == 200, body
            _Health.status = 500
        old = os.readlink(site / "current")
        flag.touch()
        sha = repos.commit("index.html", "second\n")
        status, body = deliver_push(daemon.url, sha, "bad-1")
        assert status == 500, body
        if case == "post_deploy":
            assert "not switched to" in body["reason"] and "exit status 1" in body["reason"]
        elif case == "activate":
            assert body["reason"].startswith("rolled back: activate")
        else:
            assert body["reason"].startswith("rolled back: health_url") and "500" in \
                body["reason"]
        assert os.readlink(site / "current") == old and body["head"] == first
        assert len(list((site / "releases").iterdir())) == 1
    finally:
        _Health.status = 500
        daemon.stop()


@pytest.mark.parametrize(("values", "words"), [
    ({"deploy_mode": "releases", "releases_path": None}, "needs releases_path"),
    ({"deploy_mode": "atomic"}, "deploy_mode must be one of in-place, releases"),
    ({"shared_paths": ("../etc",)}, "shared_paths entries must be relative"),
    ({"shared_paths": ("/srv/x",)}, "shared_paths entries must be relative"),
    ({"keep_releases": 1}, "keep_releases must be at least 2"),
    ({"activate": ()}, "activate must be a non-empty list"),
    ({"health_timeout": 0.0}, "health_timeout must be a positive"),
])
def test_bad_release_settings_are_refused(values: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Config().default_target(**{"releases_path": "/srv/site", **values})


def test_release_settings_load_from_a_target(tmp_path: Path) -> None:
    """The keys are per target, releases_path resolved against the config's folder."""
    path = tmp_path / "config.py"
    path.write_text("targets = {'site': {'repo_path': 'repo', 'deploy_mode': 'releases', "
                    "'releases_path': 'site', 'shared_paths': ['uploads', '.env'], "
                    "'activate': ['true'], 'health_url': 'http://127.0.0.1/h', "
                    "'keep_releases': 3}}\n")
    site = load(path, environ={}).target("site")
    assert (site.deploy_mode, site.releases_path, site.shared_paths, site.activate,
            site.keep_releases, site.health_timeout) == (
        "releases", str(tmp_path / "site"), ("uploads", ".env"), ("true",), 3, 10.0)


def cli(repos: Repos, *args: str) -> int:
    return main([*args, "--config", str(repos.root / "config.py")])


def test_rollback_from_the_cli_is_recorded(repos: Repos, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    """``deployhook rollback`` goes to the release before the live one, ``--to`` to any
    release (by name or SHA); both are recorded with trigger rollback; ``deployhook
    releases`` marks the live one."""
    (repos.root / "config.py").write_text(
        f"repo_path = {str(repos.deployed)!r}\nbranch = 'main'\nreload = 'none'\n"
        f"deploy_mode = 'releases'\nreleases_path = {str(repos.root / 'site')!r}\n"
        f"state_db = {str(repos.root / 'record.sqlite3')!r}\n")
    shas = []
    for n in range(3):
        shas.append(repos.commit("index.html", f"{n}\n"))
        assert cli(repos, "deploy") == 0
    config = target(repos)
    assert releases.live_sha(config) == shas[2]
    assert cli(repos, "rollback") == 0
    assert releases.live_sha(config) == shas[1]
    assert cli(repos, "rollback", "--to", shas[0][:10]) == 0
    assert releases.live_sha(config) == shas[0]
    assert (live(repos) / "index.html").read_text() == "0\n"
    name = releases.releases(config)[2].name
    assert cli(repos, "rollback", "--to", name) == 0 and releases.live_sha(config) == shas[2]
    assert cli(repos, "rollback", "--to", "nosuchrelease") == 1
    capsys.readouterr()
    assert cli(repos, "releases") == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed if name in line] == ["*"]
    db = sqlite3.connect(repos.root / "record.sqlite3")
    rows = db.execute("SELECT trigger, outcome, head_before, head_after FROM runs "
                      "WHERE trigger = 'rollback' ORDER BY id").fetchall()
    db.close()
    assert rows[:3] == [("rollback", "ok", shas[2], shas[1]),
                        ("rollback", "ok", shas[1], shas[0]),
                        ("rollback", "ok", shas[0], shas[2])]
    assert rows[3][1] == "failed"


def test_sigkill_during_a_build_keeps_the_old_release_and_deploys_after_restart(
        repos: Repos, secret_file: Path) -> None:
    """kill -9 of the daemon during a slow post_deploy: current stays on the old complete
    release; at the next start the half-built one is removed and the accepted push is
    deployed by the recovery."""
    slow, started = repos.root / "slow", repos.root / "started"
    build = ["sh", "-c", f"if [ -e {slow} ]; then touch {started}; sleep 60; fi"]
    settings = {"branch": "main", "deploy_mode": "releases", "post_deploy": build,
                "releases_path": str(repos.root / "site")}
    daemon = start_daemon(repos, secret_file, new_session=True, **settings)
    site = repos.root / "site"
    try:
        daemon.wait_ready()
        first = repos.commit("index.html", "first\n")
        assert deliver_push(daemon.url, first, "k-1")[0] == 200
        old = os.readlink(site / "current")
        slow.touch()
        sha = repos.commit("index.html", "second\n")
        sender = threading.Thread(target=lambda: _quietly(deliver_push, daemon.url, sha, "k-2"))
        sender.start()
        deadline = time.monotonic() + 20
        while not started.exists():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.02)
        assert list((site / "releases").glob("*.partial"))
        daemon.kill_group()
        sender.join(10)
    finally:
        daemon.stop()
    assert os.readlink(site / "current") == old
    slow.unlink()
    daemon = start_daemon(repos, secret_file, port=daemon.port, **settings)
    try:
        daemon.wait_ready()
        deadline = time.monotonic() + 30
        while releases.live_sha(target(repos)) != sha:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert not list((site / "releases").glob("*.partial"))
        assert len(list((site / "releases").iterdir())) == 2  # old + new, no half-built
        assert "removed the half-built release" in daemon.log()
        while http("GET", daemon.url + "/health")[1].get("head") != sha:  # the run ends
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        page = _page(daemon.url + "/")  # the status page lists the releases, live marked
        live_name = os.readlink(site / "current").split("/")[-1]
        assert f"<strong>{live_name}</strong> <span class=\"badge ok\">live</span>" in page
        assert old.split("/")[-1] in page
    finally:
        daemon.stop()


def _page(url: str) -> str:
    request = urllib.request.Request(url, headers=basic_auth())
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError:
        pass


def _push_symlink(repos: Repos, name: str, to: str) -> str:
    """Replace ``name`` in the pusher clone by a symlink to ``to``, commit and push it;
    the new SHA."""
    git(repos.pusher, "rm", "-r", "-q", "--ignore-unmatch", name)
    os.symlink(to, repos.pusher / name)
    git(repos.pusher, "add", name)
    git(repos.pusher, "commit", "-q", "-m", f"{name} -> {to}")
    git(repos.pusher, "push", "-q", "origin", "HEAD:main")
    return Repos.head(repos.pusher)


@pytest.mark.parametrize(("link", "victim"), [
    ("../../shared/public", "site/shared/public/uploads/user-photo.jpg"),
    ("../../../other-site", "other-site/uploads/keep.txt"),
])
def test_a_pushed_symlink_never_lets_shared_paths_touch_files_outside_the_release(
        repos: Repos, store: Store, link: str, victim: str) -> None:
    """A commit making ``public`` a symlink (into shared/, or to another site's folder)
    with ``shared_paths = ["public/uploads"]``: the deploy fails naming the path before
    anything is deleted or moved; the file outside the release survives, the live
    release stays live and intact."""
    config = target(repos, shared_paths=("public/uploads",))
    repos.commit("index.html", "one\n")
    assert deploy(config, store).ok  # public/ made in the release, shared/public/uploads too
    before, release = os.readlink(repos.root / "site" / "current"), live(repos)
    victim_path = repos.root / victim
    victim_path.parent.mkdir(parents=True, exist_ok=True)
    victim_path.write_text("keep me\n")
    time.sleep(1.05)  # release names carry the second
    _push_symlink(repos, "public", link)
    result = deploy(config, store)
    assert not result.ok
    assert "shared path public/uploads: public is a symlink in the pushed tree" in \
        result.reason, result.reason
    assert victim_path.read_text() == "keep me\n"
    assert os.readlink(repos.root / "site" / "current") == before
    assert (release / "index.html").read_text() == "one\n"
    assert (release / "public" / "uploads").is_symlink()
    assert [r.name for r in releases.releases(config)] == [release.name]


@pytest.mark.parametrize(("link", "words"), [
    ("uploads", "uploads is a symlink in the pushed tree"),  # would seed shared/uploads
    ("shared", "shared is a symlink in "),                   # shared/ itself
])
def test_a_shared_path_is_never_seeded_or_linked_through_a_symlink(
        repos: Repos, store: Store, link: str, words: str) -> None:
    """A pushed ``uploads`` symlink is never moved into shared/ as its seed, and a
    shared/ that is a symlink is not followed: the first deploy fails, nothing is live,
    the other site's folder is untouched."""
    other = repos.root / "other-site" / "uploads"
    other.mkdir(parents=True)
    (other / "keep.txt").write_text("keep me\n")
    config = target(repos, shared_paths=("uploads",))
    if link == "uploads":
        _push_symlink(repos, "uploads", "../../../other-site/uploads")
    else:
        (repos.root / "site").mkdir()
        os.symlink(repos.root / "other-site", repos.root / "site" / "shared")
        repos.commit("uploads/keep.txt", "from the tree\n")
    result = deploy(config, store)
    assert not result.ok and words in result.reason, result.reason
    assert result.reason.startswith("shared path uploads: "), result.reason
    assert (other / "keep.txt").read_text() == "keep me\n" and sorted(other.iterdir()) == [
        other / "keep.txt"]
    assert not os.path.lexists(repos.root / "site" / "current")
    assert not (repos.root / "site" / "shared" / "uploads").is_symlink()


def _objects_of(repo: Path) -> tuple[str, str]:
    """(loose objects, packs) ``git count-objects`` counts in ``repo`` itself."""
    counts = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    return counts["count"], counts["packs"]


def test_a_release_is_a_repository_of_its_own_that_borrows_the_stores_objects(
        repos: Repos, store: Store) -> None:
    """The release and its submodule are repositories of their own, laid out as a clone
    with its submodules is (the submodule initialised, its git dir under .git/modules,
    linked by relative paths, the remote URLs of the store), holding no object: they
    borrow the store's (alternates).  The store's tags come along; both are whole and
    clean; the store's git maintenance is left for after the answer."""
    git(repos.pusher, "tag", "-a", "-m", "first", "v1.0")
    git(repos.pusher, "push", "-q", "origin", "v1.0")
    git(repos.deployed, "fetch", "-q", "origin", "tag", "v1.0")
    repos.commit_submodule("two\n")
    config = target(repos)
    checkout = Checkout(config)
    try:
        result = run_deploy(checkout, store, target=config.name, trigger="cli", branch="main")
        assert result.ok, result.reason
        assert checkout.maintenance_due  # git maintenance: after the answer, not before
    finally:
        checkout.close()
    release, stored = live(repos), repos.deployed / ".git"
    sub_sha = repos.head(repos.deployed / "posts")
    assert (release / ".git" / "objects" / "info" / "alternates").read_text().strip() == str(
        stored / "objects")
    assert (release / ".git" / "modules" / "posts" / "objects" / "info" / "alternates"
            ).read_text().strip() == str(stored / "modules" / "posts" / "objects")
    assert (release / "posts" / ".git").read_text() == "gitdir: ../.git/modules/posts\n"
    assert git(release / "posts", "config", "core.worktree") == "../../../posts"
    assert git(release, "submodule", "status").split()[:2] == [sub_sha, "posts"]  # no -, +
    assert repos.head(release / "posts") == sub_sha
    assert (release / "posts" / "index.rst").read_text() == "two\n"
    assert git(release, "config", "remote.origin.url") == repos.origin.as_uri()
    assert git(release / "posts", "config", "remote.origin.url") == repos.sub_origin.as_uri()
    assert git(release, "describe", "--tags").startswith("v1.0-")
    for repo in (release, release / "posts"):
        assert _objects_of(repo) == ("0", "0")
        assert git(repo, "status", "--porcelain") == ""
        git(repo, "fsck", "--no-progress")


def test_a_submodule_the_store_leaves_out_stays_out_of_the_release(
        repos: Repos, store: Store) -> None:
    """A submodule made inactive in the store (``submodule.<name>.active = false``,
    deinitialised) is not checked out there, so not in the release either (as in
    place): an empty folder, no git dir, no fetch of it."""
    git(repos.deployed, "submodule", "deinit", "-q", "-f", "posts")
    git(repos.deployed, "config", "submodule.posts.active", "false")
    config = target(repos)
    repos.commit("index.html", "one\n")
    result = deploy(config, store)
    assert result.ok, result.reason
    release = live(repos)
    assert (release / "index.html").read_text() == "one\n"
    assert (release / "posts").is_dir() and not any((release / "posts").iterdir())
    assert not (release / ".git" / "modules").exists()
    assert [s.output for s in result.steps if s.name == "release submodules"] == [""]


def test_nested_submodules_are_mirrored_at_every_level(repos: Repos, store: Store) -> None:
    """posts has a submodule of its own (assets): the release has both, each a
    repository of its own under the git dir of the one above, as the store has them."""
    assets = repos.root / "assets.git"
    git(repos.root, "init", "-q", "--bare", "-b", "main", str(assets))
    seed = repos.root / "seed-assets"
    git(repos.root, "clone", "-q", assets.as_uri(), str(seed))
    (seed / "logo.svg").write_text("<svg/>\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "logo")
    git(seed, "push", "-q", "origin", "HEAD:main")
    posts = repos.pusher / "posts"
    git(posts, "pull", "-q", "origin", "main")
    git(posts, "submodule", "add", "-q", "-b", "main", assets.as_uri(), "assets")
    git(posts, "commit", "-q", "-m", "posts with assets")
    git(posts, "push", "-q", "origin", "HEAD:main")
    git(repos.pusher, "add", "posts")
    git(repos.pusher, "commit", "-q", "-m", "bump posts")
    git(repos.pusher, "push", "-q", "origin", "HEAD:main")
    config = target(repos)
    result = deploy(config, store)
    assert result.ok, result.reason
    release = live(repos)
    assert (release / "posts" / "assets" / "logo.svg").read_text() == "<svg/>\n"
    assert (release / "posts" / "assets" / ".git").read_text() == \
        "gitdir: ../../.git/modules/posts/modules/assets\n"
    status = git(release, "submodule", "status", "--recursive").splitlines()
    assert [line.split()[1] for line in status] == ["posts", "posts/assets"]
    assert not [line for line in status if line[0] in "-+U"], status  # initialised, in step
    assert _objects_of(release / "posts" / "assets") == ("0", "0")
    assert git(release, "status", "--porcelain") == ""


@pytest.mark.parametrize(("entry", "made"), [
    ("sub", True),             # an empty folder, as a checkout leaves a submodule
    ("./sub", True),
    ("full", False),           # a folder with files is no submodule
    ("file.txt", False),
    ("../outside", False),     # out of the work tree
    ("/tmp", False),
    ("link/sub", False),       # through a symlink to a folder holding an empty one
    ("missing", False),
])
def test_only_empty_folders_inside_the_tree_are_taken_for_submodules(
        tmp_path: Path, entry: str, made: bool) -> None:
    """``.gitmodules`` is pushed content: a path naming anything but an empty folder
    reached without a symlink inside the release is never made a submodule."""
    tree, outside = tmp_path / "release", tmp_path / "outside"
    for folder in (tree / "sub", tree / "full", outside / "sub"):
        folder.mkdir(parents=True)
    (tree / "full" / "page.html").write_text("page\n")
    (tree / "file.txt").write_text("text\n")
    os.symlink(outside, tree / "link")
    (tree / ".gitmodules").write_text(f'[submodule "x"]\n\tpath = {entry}\n\turl = ../x.git\n')
    assert release_build._gitlinks(tree) == (["sub"] if made else [])


@pytest.mark.parametrize("damage", ["none", "removed", "cut short"])
def test_the_empty_repository_releases_copy_is_made_once_and_again_when_damaged(
        repos: Repos, store: Store, damage: str) -> None:
    """The first release runs ``git init`` (step "release init") into
    ``.skeleton-sha1``; the next ones copy it (no init step); one removed, or left
    without its HEAD by a run cut short, is made again, and the release is whole."""
    config = target(repos)
    skeleton = repos.root / "site" / ".skeleton-sha1"
    repos.commit("index.html", "one\n")
    first = deploy(config, store)
    assert first.ok and "release init" in [s.name for s in first.steps]
    assert (skeleton / ".git" / "HEAD").is_file()
    if damage == "removed":
        shutil.rmtree(skeleton)
    elif damage == "cut short":
        (skeleton / ".git" / "HEAD").unlink()
    repos.commit("index.html", "two\n")
    second = deploy(config, store)
    assert second.ok, second.reason
    assert ("release init" in [s.name for s in second.steps]) == (damage != "none")
    release = live(repos)
    assert (release / "index.html").read_text() == "two\n"
    assert git(release, "status", "--porcelain") == ""
    git(release, "fsck", "--no-progress")


@pytest.mark.parametrize(("edit", "checkouts"), [
    ("unchanged", 1),
    ("names one more", 2),  # checked out beside, then removed: the release has no such one
    ("names none", 1),      # none beside: the release's own is made after its checkout
])
def test_the_release_decides_which_submodules_checked_out_beside_it_stay(
        repos: Repos, store: Store, edit: str, checkouts: int) -> None:
    """The store's submodules are checked out beside the release's own checkout, as the
    store's ``.gitmodules`` names them; the release's ``.gitmodules`` decides which it
    has (the store's edited by hand here).  Either way the release is whole and clean,
    with nothing left over."""
    config = target(repos)
    assert deploy(config, store).ok
    git(repos.root, "clone", "-q", repos.sub_origin.as_uri(), str(repos.deployed / "extra"))
    gitmodules = repos.deployed / ".gitmodules"
    if edit == "names one more":
        gitmodules.write_text(gitmodules.read_text() + (
            '[submodule "extra"]\n\tpath = extra\n\turl = ../extra.git\n'))
    elif edit == "names none":
        gitmodules.write_text("")
    site, steps = repos.root / "site", []
    release = site / "releases" / "built"
    checkout = Checkout(config)
    try:
        release_build.build(checkout, site, release, checkout.head() or "", True, steps)
    finally:
        checkout.close()
    assert [s.name for s in steps].count("submodule checkout") == checkouts
    status = git(release, "submodule", "status").splitlines()
    assert [line.split()[1] for line in status] == ["posts"]
    assert not [line for line in status if line[0] in "-+U"], status
    assert [p.name for p in (release / ".git" / "modules").iterdir()] == ["posts"]
    assert not list((release / ".git").glob(release_build.STAGED + "*"))
    assert not (release / "extra").exists()
    for repo in (release, release / "posts"):
        assert git(repo, "status", "--porcelain") == ""


def _answered_then_housekept(config: TargetConfig, store: Store) -> Any:
    """A deploy, then what the daemon does after its answer (``Checkout.housekeep``)."""
    checkout = Checkout(config)
    try:
        result = run_deploy(checkout, store, target=config.name, trigger="cli", branch="main")
        checkout.housekeep()
        return result
    finally:
        checkout.close()


@pytest.mark.parametrize("change", ["none", "submodule left out", "tag added", "cut short"])
def test_the_next_releases_git_dirs_made_after_the_answer_are_used_as_they_stand_now(
        repos: Repos, store: Store, change: str) -> None:
    """After the answer, the git dirs of the next release are made beforehand
    (``.spare-sha1``); the next release takes them, brought up to what the store has
    then (a submodule left out, a new tag), or makes its own when there are none whole
    (a spare cut short); either way it is whole, clean and holds nothing left over, and
    a new spare is made after its answer."""
    config = target(repos)
    spare = repos.root / "site" / ".spare-sha1"
    assert _answered_then_housekept(config, store).ok
    assert (spare / ".git" / "modules" / "posts" / "HEAD").is_file()
    assert not (repos.root / "site" / ".spare-sha1.new").exists()
    if change == "submodule left out":
        git(repos.deployed, "submodule", "deinit", "-q", "-f", "posts")
        git(repos.deployed, "config", "submodule.posts.active", "false")
    elif change == "tag added":
        git(repos.pusher, "tag", "-a", "-m", "first", "v1.0")
        git(repos.pusher, "push", "-q", "origin", "v1.0")
        git(repos.deployed, "fetch", "-q", "origin", "tag", "v1.0")
    elif change == "cut short":
        spare.rename(spare.with_name(spare.name + ".new"))
    repos.commit("index.html", "two\n")
    result = deploy(config, store)
    assert result.ok, result.reason
    assert not spare.exists()
    release = live(repos)
    assert (release / "index.html").read_text() == "two\n"
    assert not list((release / ".git").glob("deployhook-staged-*"))
    modules = [] if change == "submodule left out" else ["posts"]
    assert [p.name for p in (release / ".git" / "modules").glob("*")] == modules
    assert (release / ".git" / "objects" / "info" / "alternates").read_text().strip() == str(
        repos.deployed / ".git" / "objects")
    if change == "tag added":
        assert git(release, "describe", "--tags").startswith("v1.0-")
    for repo in (release, *[release / m for m in modules]):
        assert git(repo, "status", "--porcelain") == ""
        git(repo, "fsck", "--no-progress")
    repos.commit("index.html", "three\n")
    assert _answered_then_housekept(config, store).ok
    assert (spare / ".git" / "HEAD").is_file()
    assert not (repos.root / "site" / ".spare-sha1.new").exists()
