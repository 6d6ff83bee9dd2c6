"""The deployment record: survives restarts, stops replays, recovers from crashes."""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from tornado.testing import gen_test

from tests.apptest import HookTestCase
from tests.helpers import (
    Daemon,
    Repos,
    deliver_push,
    git,
    http,
    push_payload,
    start_daemon,
    write_config,
)


def start(repos: Repos, secret_file: Path, port: int | None = None, **extra: object) -> Daemon:
    """The daemon for ``repos``, ready."""
    daemon = start_daemon(repos, secret_file, port, **extra)
    daemon.wait_ready()
    return daemon


def deliver(daemon: Daemon, sha: str, delivery: str) -> tuple[int, dict[str, Any]]:
    return deliver_push(daemon.url, sha, delivery)


def runs(daemon: Daemon) -> list[dict[str, Any]]:
    status, body = http("GET", daemon.url + "/deployments?per_page=100")
    assert status == 200, body
    return body["runs"]


def test_record_survives_restart_and_replays_are_not_deployed(
        repos: Repos, secret_file: Path) -> None:
    """A redelivered ID (GitHub's "Redeliver") is answered from the record, even after a
    restart, with no second deploy and no fetch."""
    daemon = start(repos, secret_file)
    sha = repos.commit()
    status, first = deliver(daemon, sha, "delivery-1")
    assert status == 200 and first["run"] == 1
    assert daemon.stop() == 0

    daemon = start(repos, secret_file, port=daemon.port)
    try:
        recorded = runs(daemon)
        assert [(r["id"], r["outcome"], r["trigger"]) for r in recorded] == [(1, "ok", "webhook")]
        assert recorded[0]["head_after"] == sha and recorded[0]["pushers"] == "octocat"
        fetches = repos.fetches()
        status, again = deliver(daemon, sha, "delivery-1")
        assert status == 200, again
        assert again["replayed"] is True and again["run"] == 1
        assert "already handled by run 1" in again["reason"]
        assert repos.fetches() == fetches
        assert len(runs(daemon)) == 1
        status, run = http("GET", daemon.url + "/deployments/1")
        assert [d["delivery_id"] for d in run["deliveries"]] == ["delivery-1"]
        assert [s["name"] for s in run["steps"]][:2] == ["fetch", "merge"]
    finally:
        daemon.stop()


def test_redelivery_of_a_failed_deploy_retries(repos: Repos, secret_file: Path) -> None:
    daemon = start(repos, secret_file)
    try:
        sha = repos.commit()
        moved = repos.root / "origin-away.git"
        repos.origin.rename(moved)
        status, body = deliver(daemon, sha, "delivery-9")
        assert status == 500, body
        moved.rename(repos.origin)
        status, body = deliver(daemon, sha, "delivery-9")
        assert status == 200 and body["head"] == sha and not body.get("replayed")
        assert [(r["id"], r["outcome"]) for r in runs(daemon)] == [(2, "ok"), (1, "failed")]
    finally:
        daemon.stop()


def test_sigkill_mid_deploy_is_recovered_on_the_next_start(
        repos: Repos, secret_file: Path) -> None:
    """kill -9 during a slow fetch: the run is marked interrupted at the next start, and
    the accepted push is deployed then (it is not lost)."""
    daemon = start(repos, secret_file)
    sha = repos.commit()
    repos.slow(30)
    sender = threading.Thread(target=lambda: _ignore_errors(deliver, daemon, sha, "lost-1"))
    sender.start()
    deadline = time.monotonic() + 10
    while repos.fetches() == 0:
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.02)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    sender.join(10)
    daemon.stop()
    repos.slow(0)
    assert git(repos.deployed, "rev-parse", "HEAD") != sha

    daemon = start(repos, secret_file, port=daemon.port)
    try:
        deadline = time.monotonic() + 20
        while git(repos.deployed, "rev-parse", "HEAD") != sha:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while (recorded := runs(daemon))[0]["outcome"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [(r["id"], r["trigger"], r["outcome"]) for r in recorded] == [
            (2, "recovery", "ok"), (1, "webhook", "interrupted")]
        assert "interrupted" in daemon.log() and "redeploying 1 accepted" in daemon.log()
        git(repos.deployed, "fsck", "--no-progress")
        # The delivery that was cut off, redelivered by hand: answered from the record.
        status, body = deliver(daemon, sha, "lost-1")
        assert status == 200 and body["replayed"] and body["run"] == 2
    finally:
        daemon.stop()


def test_record_files_are_private_under_umask_022(repos: Repos, secret_file: Path) -> None:
    """Under umask 022 the daemon's record, its -wal and -shm are 0600, and so is the
    record ``deployhook deploy`` creates; a record left readable by others is made
    0600 when the daemon opens it."""
    record = repos.root / "deployhook.sqlite3"
    old_umask = os.umask(0o022)
    try:
        daemon = start(repos, secret_file)
        try:
            status, body = deliver(daemon, repos.commit(), "private-1")
            assert status == 200, body
            files = [record, record.with_name(record.name + "-wal"),
                     record.with_name(record.name + "-shm")]
            assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {
                f.name: "0o600" for f in files}
        finally:
            daemon.stop()

        record.chmod(0o644)
        daemon = start(repos, secret_file, port=daemon.port)
        daemon.stop()
        assert stat.S_IMODE(record.stat().st_mode) == 0o600

        cli_record = repos.root / "cli-record.sqlite3"
        write_config(repos.root / "cli-config.py", repo_path=str(repos.deployed),
                     secret_file=str(secret_file), state_db=str(cli_record), reload="none")
        repos.commit()
        deployed = subprocess.run([sys.executable, "-m", "deployhook", "deploy", "--config",
                                   str(repos.root / "cli-config.py")],
                                  capture_output=True, text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert stat.S_IMODE(cli_record.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)


def _ignore_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError:
        pass


class RetentionTest(HookTestCase):
    """keep_runs prunes old runs; the API pages newest first."""

    settings: ClassVar[dict[str, Any]] = {"keep_runs": 3}

    @gen_test(timeout=60)
    async def test_retention_and_pagination(self) -> None:
        for n in range(5):
            sha = self.repos.commit()
            status, body = await self.deliver(push_payload(sha), delivery=f"d-{n}")
            assert status == 200, body
        await self.hook.record.run(lambda s: None)  # queued writes and pruning are done
        status, page1 = await self.get_json("/deployments?per_page=2")
        assert status == 200
        assert page1["total"] == 3
        assert [r["id"] for r in page1["runs"]] == [5, 4]
        assert page1["next"] == "/deployments?page=2&per_page=2"
        status, page2 = await self.get_json(page1["next"])
        assert [r["id"] for r in page2["runs"]] == [3] and page2["next"] is None
        assert (await self.get_json("/deployments/1"))[0] == 404
        assert (await self.get_json("/deployments?page=0"))[0] == 400

    async def get_json(self, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
        return await self.send(b"", headers, method="GET", path=path)


class LoginTest(HookTestCase):
    """The API is private by default: basic auth as status_user."""

    def make_config(self, **overrides: Any) -> Any:
        password = self.tmp / "status-password"
        password.write_text("correct horse\n")
        return super().make_config(address="0.0.0.0", status_password_file=str(password),
                                   **overrides)

    @gen_test(timeout=30)
    async def test_basic_auth(self) -> None:
        response = await self.anonymous().fetch(self.get_url("/deployments"),
                                                raise_error=False)
        assert response.code == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="deployhook"')
        assert b"status_user" in response.body
        for password, expected in (("wrong", 401), ("correct horse", 200)):
            token = base64.b64encode(f"deployhook:{password}".encode()).decode()
            response = await self.anonymous().fetch(
                self.get_url("/deployments"), headers={"Authorization": f"Basic {token}"},
                raise_error=False)
            assert response.code == expected


class PagingTest(HookTestCase):
    """Finding 9: malformed paging is a 400 with a reason (21d5e9e: 500 and a traceback,
    since str.isdigit() accepts Unicode digits like ² and the size had no bound)."""

    @gen_test(timeout=30)
    async def test_malformed_paging_is_400(self) -> None:
        for query in ("page=%C2%B2", "per_page=%C2%B2", "page=99999999999999999999",
                      "per_page=99999999999999999999", "page=%D9%A3", "page=1000001",
                      "page=0", "page=-1", "page=1e3", "page=", "per_page=0"):
            status, body = await self.send(b"", {}, method="GET", path=f"/deployments?{query}")
            assert status == 400, (query, body)
            assert body["result"] == "error" and "page" in body["reason"], (query, body)
        status, body = await self.send(b"", {}, method="GET",
                                       path="/deployments?page=1000000&per_page=100000")
        assert status == 200 and body["runs"] == [] and body["per_page"] == 100, body

    @gen_test(timeout=30)
    async def test_an_unknown_query_parameter_is_400_naming_it(self) -> None:
        """Second review, finding 10b: a typo (``per-page``) was ignored and the default
        page served; each API route answers 400 naming the parameter and the known ones
        (the name bounded and ASCII in the reason), and takes its known ones still."""
        run_id = await self.hook.record.run(
            lambda s: s.start_run("webhook", "main", "a" * 40, [], ["octocat"]))
        cases = [("/deployments?per-page=5", "'per-page'", "page, per_page, target"),
                 ("/deployments?page=1&perpage=5", "'perpage'", "page, per_page, target"),
                 ("/deployments?target=default&page=1&x=", "'x'", "page, per_page, target"),
                 (f"/deployments/{run_id}?verbose=1", "'verbose'", "none"),
                 ("/deployments?%E2%82%AC=1", "'\\u20ac'", "page, per_page, target"),
                 ("/deployments?" + "y" * 5000 + "=1", "'" + "y" * 40 + "'", "page")]
        for path, name, known in cases:
            status, body = await self.send(b"", {}, method="GET", path=path)
            assert status == 400, (path, body)
            assert body["reason"].startswith(f"unknown query parameter {name}"), body
            assert known in body["reason"] and len(body["reason"]) < 120, body
        for path in ("/deployments?page=1&per_page=5&target=default",
                     f"/deployments/{run_id}"):
            assert (await self.send(b"", {}, method="GET", path=path))[0] == 200, path
