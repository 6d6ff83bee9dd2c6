"""The status page, end to end: real server, real git, real record, real browser.

HookTestCase runs a real DeployHook on a real Tornado server; runs are made by
signed pushes (one of them failing because origin is gone) or written into the
record with the Store.  The browser test starts the daemon as a subprocess and
loads the page in headless Chromium (Debian's ``chromium``; skipped, saying so,
where it is not installed: ``.ci/setup-chromium.sh`` installs it).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from tornado.httpclient import HTTPResponse
from tornado.testing import gen_test

from deployhook.git.steps import Step
from deployhook.record.store import DeliveryRecord, Store
from tests.apptest import HookTestCase
from tests.helpers import (
    REPOSITORY,
    SECRET,
    STATUS_PASSWORD,
    Daemon,
    Repos,
    free_port,
    http,
    push_payload,
    signed,
    write_config,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LEAKY_URL = "https://user:s3cret@example.com/x.git"
PASSWORD = "correct horse battery staple"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PageTestCase(HookTestCase):
    """HookTestCase with page helpers; every page is checked for the webhook secret."""

    async def page(self, path: str = "/", headers: dict[str, str] | None = None,
                   ) -> tuple[int, str, HTTPResponse]:
        """GET ``path`` logged in, or with exactly ``headers`` when given; return
        (status, HTML text, response)."""
        client = self.http_client if headers is None else self.anonymous()
        response = await client.fetch(self.get_url(path), headers=headers or {},
                                      raise_error=False, request_timeout=60)
        assert response.code != 599, response.error
        text = (response.body or b"").decode()
        assert SECRET.decode() not in text
        assert response.headers.get("Content-Type", "").startswith("text/html"), response.code
        return response.code, text, response

    async def push(self, delivery: str, pusher: str = "octocat") -> tuple[int, dict[str, Any]]:
        """Commit, push to origin and deliver the signed push; return the answer."""
        sha = self.repos.commit()
        return await self.deliver(push_payload(sha, pusher=pusher), delivery=delivery)

    async def failed_push(self, delivery: str) -> tuple[int, dict[str, Any]]:
        """A push whose deploy fails: origin is unreachable while it runs."""
        sha = self.repos.commit()
        gone = self.repos.origin.with_name("origin-gone.git")
        self.repos.origin.rename(gone)
        try:
            return await self.deliver(push_payload(sha, pusher="hubot"), delivery=delivery)
        finally:
            gone.rename(self.repos.origin)


def rows(html: str) -> list[str]:
    """The runs table's body rows, newest first."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr class=\"[a-z]+\">.*?</tr>", body, re.S)


class StatusPageTest(PageTestCase):
    """GET / and GET /runs/<id> after real deploys, one failed and then one ok."""

    @gen_test(timeout=120)
    async def test_status_and_run_pages(self) -> None:
        assert (await self.push("d-1"))[0] == 200
        status, body = await self.failed_push("d-2")
        assert status == 500 and body["result"] == "failed", body
        status, body = await self.push("d-3", pusher="monalisa")
        assert status == 200, body
        head = self.repos.head(self.repos.deployed)
        assert head == body["head"]

        status, html, response = await self.page("/")
        assert status == 200, html
        assert '<meta name="viewport"' in html
        assert "<script" not in html
        assert response.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert REPOSITORY in html and "main" in html
        assert head in html and head[:7] in html  # full and short deployed SHA
        assert "no deploy running" in html
        runs = rows(html)
        assert len(runs) == 3, runs
        newest, failed, first = runs
        assert 'class="ok"' in newest and "\u2713 ok" in newest and "monalisa" in newest
        assert 'href="runs/3"' in newest and "webhook" in newest
        assert re.search(r'<time datetime="[0-9-]+T[0-9:]+\+00:00">[0-9-]+ [0-9:]+</time>',
                         newest), newest
        assert 'class="failed"' in failed and "\u2717 failed" in failed and "hubot" in failed
        assert "fetch failed" in failed  # the failure reason
        assert "\u2713 ok" in first
        assert re.search(r'id="last-outcome">\u2713 ok<', html)
        assert f"{head[:7]}</span>" in newest  # before -> after, short SHAs

        status, html, _ = await self.page("/runs/2")
        assert status == 200, html
        assert "Run #2" in html and "\u2717 failed" in html
        assert "<h3>1. fetch</h3>" in html and "git fetch" in html
        assert "exit 128" in html
        assert re.search(r"<pre>.*(fatal|does not appear to be a git repository).*</pre>",
                         html, re.S), html
        assert "<code>d-2</code>" in html and "refs/heads/main" in html and "hubot" in html
        assert "500 failed" in html  # the delivery's answer

        status, html, _ = await self.page("/runs/3")
        assert status == 200
        assert "\u2713 ok" in html and "<h3>1. fetch</h3>" in html and "exit 0" in html
        assert head in html and "<code>d-3</code>" in html and "200 deployed" in html

    @gen_test(timeout=60)
    async def test_running_deploy(self) -> None:
        """While a (slow) deploy runs, the page says so, shows the run as running and
        refreshes itself."""
        self.repos.slow(3)
        answer = asyncio.ensure_future(self.push("d-slow"))
        html = ""
        for _ in range(100):
            await asyncio.sleep(0.05)
            _, html, _ = await self.page("/")
            if "\u2026 running</span></td>" in html:
                break
        assert "a deploy is running" in html, html
        assert '<meta http-equiv="refresh" content="5">' in html
        assert 'class="running"' in html
        status, run_html, _ = await self.page("/runs/1")
        assert status == 200 and "the run is still going" in run_html
        assert (await answer)[0] == 200
        _, html, _ = await self.page("/")
        assert "no deploy running" in html and 'http-equiv="refresh"' not in html

    @gen_test(timeout=60)
    async def test_no_runs_yet(self) -> None:
        status, html, _ = await self.page("/")
        assert status == 200
        assert "No deploy has run yet" in html
        assert self.repos.head(self.repos.deployed) in html

    @gen_test(timeout=60)
    async def test_unknown_run_is_404_page(self) -> None:
        for path in ("/runs/999", "/runs/0", "/runs/999999999999999999"):
            status, html, _ = await self.page(path)
            assert status == 404, (path, html)
            assert "404" in html and "no run" in html
        response = await self.http_client.fetch(self.get_url("/runs/x"), raise_error=False)
        assert response.code == 404  # no route: the JSON 404 of the app


class SafeDisplayTest(PageTestCase):
    """Credentials in URLs, the secret, the password and post_deploy are never shown;
    everything from the record is HTML-escaped."""

    settings: ClassVar[dict[str, Any]] = {
        "repo_url": LEAKY_URL, "post_deploy": ("notify", "--token=tok3n", LEAKY_URL)}

    @gen_test(timeout=60)
    async def test_credentials_are_not_shown(self) -> None:
        def insert(store: Store) -> int:
            row = store.add_delivery(DeliveryRecord(
                "d-<b>", "push", "203.0.113.9", "valid", "refs/heads/main", "a" * 40, "b" * 40,
                "<script>alert(1)</script>", accepted=True))
            run_id = store.start_run("webhook", "main", "a" * 40, [row],
                                     ["<script>alert(1)</script>"])
            store.answer_delivery(row, 500, "failed", "x", run_id)
            store.finish_run(run_id, False, "a" * 40, "a" * 40,
                             f"fetch failed: could not read from {LEAKY_URL}", [
                                 Step("fetch", f"git fetch {LEAKY_URL}", 128, 0.5,
                                      f"fatal: could not read from {LEAKY_URL}\n<i>x</i>"),
                                 Step("post_deploy", f"notify --token=tok3n {LEAKY_URL}", 1,
                                      0.1, "ok")])
            return run_id

        run_id = await self.hook.record.run(insert)
        for path in ("/", f"/runs/{run_id}"):
            status, html, _ = await self.page(path)
            assert status == 200, html
            assert "s3cret" not in html, path
            assert "tok3n" not in html, path
            assert "https://***@example.com/x.git" in html, path
            assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html, path
        assert "<i>x</i>" not in html and "&lt;i&gt;x&lt;/i&gt;" in html
        assert "d-&lt;b&gt;" in html
        assert "notify \u2026 (arguments not shown)" in html


class LoginTest(PageTestCase):
    """The pages are private by default: 401 (asking for basic auth as status_user)
    unless the login is right; nothing of the record shows before."""

    settings: ClassVar[dict[str, Any]] = {"address": "0.0.0.0"}

    def make_config(self, **overrides: Any) -> Any:
        password_file = self.tmp / "status-password"
        password_file.write_text(PASSWORD + "\n")
        return super().make_config(status_password_file=str(password_file), **overrides)

    @staticmethod
    def basic(user: str, password: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    @gen_test(timeout=60)
    async def test_basic_auth(self) -> None:
        for headers in ({}, self.basic("deployhook", "wrong"), self.basic("other", PASSWORD)):
            for path in ("/", "/runs/1"):
                status, html, response = await self.page(path, headers)
                assert status == 401, html
                assert response.headers["WWW-Authenticate"].startswith(
                    'Basic realm="deployhook"')
                assert REPOSITORY not in html and PASSWORD not in html
                assert "status_user" in html  # how to log in
        status, html, _ = await self.page("/", self.basic("deployhook", PASSWORD))
        assert status == 200, html
        assert self.repos.head(self.repos.deployed) in html
        assert PASSWORD not in html
        status, _, _ = await self.page("/runs/1", self.basic("deployhook", PASSWORD))
        assert status == 404  # allowed in, and there is no run yet


class PagePathTest(PageTestCase):
    """``routes(page_path=...)`` mounts the pages under a prefix; None leaves them out."""

    def get_app(self) -> Any:
        import tornado.web

        from deployhook import DeployHook

        self.hook = DeployHook(self.make_config())
        self.io_loop.run_sync(self.hook.start)
        return tornado.web.Application(self.hook.routes(page_path="/status/"))

    @gen_test(timeout=60)
    async def test_prefix(self) -> None:
        status, body = await self.push("d-1")
        assert status == 200, body
        status, html, _ = await self.page("/status/")
        assert status == 200 and 'href="runs/1"' in html
        status, html, _ = await self.page("/status/runs/1")
        assert status == 200 and "Run #1" in html and 'href="../"' in html
        response = await self.http_client.fetch(self.get_url("/status"), raise_error=False,
                                                follow_redirects=False)
        assert response.code == 301 and response.headers["Location"] == "/status/"
        response = await self.http_client.fetch(self.get_url("/"), raise_error=False)
        assert response.code == 404


# -- the browser -----------------------------------------------------------------------

def chromium_command(args: list[str], profile: Path) -> list[str]:
    """The headless Chromium command line with the flags known to work on a closed
    network, using the profile folder ``profile``."""
    return [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args]


def chromium(args: list[str], profile: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run headless Chromium (:func:`chromium_command`) to the end; assert it exited 0."""
    command = chromium_command(args, profile)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return proc


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", data[:32]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def deliver(daemon: Daemon, repos: Repos, delivery: str, pusher: str,
            unreachable: bool = False) -> tuple[int, dict]:
    """Commit, push to origin and POST the signed delivery to the daemon (with origin
    moved away while it is answered when ``unreachable``)."""
    sha = repos.commit()
    if unreachable:
        gone = repos.origin.with_name("origin-gone.git")
        repos.origin.rename(gone)
        try:
            return deliver_sha(daemon, sha, delivery, pusher)
        finally:
            gone.rename(repos.origin)
    return deliver_sha(daemon, sha, delivery, pusher)


def deliver_sha(daemon: Daemon, sha: str, delivery: str, pusher: str) -> tuple[int, dict]:
    """POST a signed push of ``sha`` to the daemon; return (status, JSON body)."""
    body, headers = signed(push_payload(sha, pusher=pusher), delivery=delivery)
    return http("POST", daemon.url + "/github", body, headers, timeout=60)


def test_browser_renders_status_page(repos: Repos, secret_file: Path, tmp_path: Path) -> None:
    """The daemon as a real process, a few pushes (one failing), and headless Chromium:
    the rendered DOM shows the deployed SHA and the last outcome; wide and phone-size
    screenshots are PNGs of the window's size.  With STATUS_PAGE_SHOTS=FOLDER the
    screenshots are also copied there (docs/status-page.png is made this way)."""
    port = free_port()
    config = write_config(tmp_path / "config.py", port=port, repo_path=str(repos.deployed),
                          secret_file=str(secret_file), repository=REPOSITORY, reload="none",
                          state_db=str(tmp_path / "state.sqlite3"))
    daemon = Daemon(config, port)  # private by default: log in with the URL's userinfo
    url = f"http://deployhook:{quote(STATUS_PASSWORD)}@127.0.0.1:{port}"
    try:
        daemon.wait_ready()
        assert deliver(daemon, repos, "a1b2c3d4-0001", "octocat")[0] == 200
        assert deliver(daemon, repos, "a1b2c3d4-0002", "monalisa")[0] == 200
        status, body = deliver(daemon, repos, "a1b2c3d4-0003", "hubot", unreachable=True)
        assert status == 500, body
        status, body = deliver(daemon, repos, "a1b2c3d4-0004", "octocat")
        assert status == 200, body
        head = body["head"]

        denied = chromium(["--dump-dom", daemon.url + "/"], tmp_path / "profile-denied").stdout
        assert head not in denied  # the login prompt, never the record
        dom = chromium(["--dump-dom", url + "/"], tmp_path / "profile-dom").stdout
        assert head in dom and head[:7] in dom
        assert re.search(r'id="last-outcome">\u2713 ok<', dom), dom
        assert "\u2717 failed" in dom and "hubot" in dom
        run_dom = chromium(["--dump-dom", url + "/runs/3"], tmp_path / "profile-run")
        assert "Run #3" in run_dom.stdout and "<pre>" in run_dom.stdout

        shots = {"wide": (1280, 760), "phone": (390, 844)}
        for name, (width, height) in shots.items():
            shot = tmp_path / f"status-{name}.png"
            chromium([f"--screenshot={shot}", f"--window-size={width},{height}",
                      url + "/"], tmp_path / f"profile-{name}")
            assert shot.stat().st_size > 1000
            assert png_size(shot) == (width, height)
        run_shot = tmp_path / "run-phone.png"
        chromium([f"--screenshot={run_shot}", "--window-size=390,844", url + "/runs/3"],
                 tmp_path / "profile-run-shot")
        assert png_size(run_shot) == (390, 844)
        if os.environ.get("STATUS_PAGE_SHOTS"):  # a folder to keep the screenshots in
            for shot in (*tmp_path.glob("status-*.png"), run_shot):
                shutil.copyfile(shot, Path(os.environ["STATUS_PAGE_SHOTS"]) / shot.name)
    finally:
        daemon.stop()
