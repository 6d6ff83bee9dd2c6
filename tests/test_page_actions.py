"""The status page's buttons (issue 24): redeploy, pause and resume, and in releases mode
roll back to a chosen release, each a POST form protected by Tornado's XSRF token,
behind the status login, recorded with who asked.

In process (a real DeployHook on a real server, real git, real record) over plain HTTP,
and in headless Chromium driven over the DevTools protocol: the buttons are clicked.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

from tornado.httpclient import HTTPResponse
from tornado.testing import gen_test

from deployhook.git import paused, releases
from tests.fleet_helpers import Fleet, RedisServer, make_node, wait_for
from tests.helpers import (
    REPOSITORY,
    Daemon,
    Repos,
    basic_auth,
    free_port,
    http,
    push_payload,
    write_config,
)
from tests.test_fleet import commit, world  # noqa: F401 (world: a fixture of the fleet test)
from tests.test_live_page import DevTools, Navigated
from tests.test_pages import CHROMIUM, PageTestCase, chromium_command
from tests.tools import require_tool

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def token(html: str) -> str:
    """The ``_xsrf`` value of the first form in ``html``."""
    found = re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert found is not None, html
    return found[1]


class ActionTestCase(PageTestCase):
    """PageTestCase with a logged-in form poster that keeps the page's XSRF cookie."""

    async def form(self, path: str = "/") -> tuple[str, str]:
        """GET ``path``; return (its HTML, the ``_xsrf`` cookie it set)."""
        status, html, response = await self.page(path)
        assert status == 200, html
        cookie = re.search(r"_xsrf=([^;]+)", response.headers.get("Set-Cookie", ""))
        assert cookie is not None, response.headers
        return html, cookie[1]

    async def post(self, path: str, fields: dict[str, str], cookie: str | None,
                   login: bool = True) -> HTTPResponse:
        """POST ``fields`` as a form to ``path`` with the ``_xsrf`` ``cookie`` (None: no
        cookie), logged in unless ``login`` is False; redirects are not followed."""
        client = self.http_client if login else self.anonymous()
        headers = {**FORM, **({"Cookie": f"_xsrf={cookie}"} if cookie else {})}
        response = await client.fetch(self.get_url(path), method="POST",
                                      body=urlencode(fields), headers=headers,
                                      follow_redirects=False, raise_error=False,
                                      request_timeout=60)
        assert response.code != 599, response.error
        return response

    async def events(self) -> list[dict[str, Any]]:
        """The events ``/deployments`` shows."""
        response = await self.http_client.fetch(self.get_url("/deployments"))
        return json.loads(response.body)["events"]


class RefusalTest(ActionTestCase):
    """No valid XSRF token: 403 and nothing changes; no login: 401; a GET changes nothing."""

    @gen_test(timeout=60)
    async def test_a_post_without_a_valid_token_is_403_and_changes_nothing(self) -> None:
        html, cookie = await self.form("/")
        good = token(html)
        refused = [  # (fields, cookie, logged in, status)
            ({}, cookie, True, 403),  # no token
            ({"_xsrf": good}, None, True, 403),  # no cookie to match
            ({"_xsrf": "2|00000000|" + "0" * 32 + "|1"}, cookie, True, 403),  # a wrong one
            ({"_xsrf": "not a token"}, cookie, True, 403),
            ({"_xsrf": good}, cookie, False, 401),  # the token, but no login
        ]
        for action in ("pause", "resume", "redeploy", "rollback"):
            for fields, sent_cookie, login, status in refused:
                response = await self.post(f"/targets/default/{action}",
                                           {**fields, "release": "x"}, sent_cookie, login)
                assert response.code == status, (action, fields, response.code)
                assert "Location" not in response.headers
        await self.hook.idle()
        assert paused.read(str(self.repos.deployed)) is None
        assert self.hook.targets["default"].paused is None
        assert (await self.hook.record.runs_page(10))[1] == 0  # no run
        assert await self.events() == []

    @gen_test(timeout=60)
    async def test_a_get_changes_nothing(self) -> None:
        for action in ("pause", "resume", "redeploy"):
            status, html, _ = await self.page(f"/targets/default/{action}")
            assert status == 405, (action, html)
        assert paused.read(str(self.repos.deployed)) is None
        assert (await self.hook.record.runs_page(10))[1] == 0


class ButtonsTest(ActionTestCase):
    """Pause, resume and redeploy over HTTP: 303 back to the page, which shows it; each
    recorded with the status user and the client's address."""

    @gen_test(timeout=120)
    async def test_pause_resume_and_redeploy_are_recorded_with_who(self) -> None:
        html, cookie = await self.form("/")
        xsrf = {"_xsrf": token(html)}
        assert 'id="pause"' in html and 'id="resume"' not in html
        assert 'class="rollback"' not in html  # not in releases mode
        response = await self.post("/targets/default/pause", xsrf, cookie)
        assert response.code == 303 and response.headers["Location"] == "../../"
        state = paused.read(str(self.repos.deployed))
        assert state is not None and state.by == "deployhook from 127.0.0.1"
        _, html, _ = await self.page("/")
        assert 'id="resume"' in html and 'id="pause"' not in html
        assert "paused</span> by deployhook from 127.0.0.1" in html

        sha = self.repos.commit()  # on origin, never delivered: the redeploy fetches it
        response = await self.post("/targets/default/redeploy", xsrf, cookie)
        assert response.code == 303 and response.headers["Location"] == "../../"
        await self.hook.idle()
        assert self.repos.head(self.repos.deployed) == sha
        response = await self.post("/targets/default/resume", xsrf, cookie)
        assert response.code == 303
        assert paused.read(str(self.repos.deployed)) is None

        runs, total = await self.hook.record.runs_page(10)
        assert total == 1, runs
        assert runs[0]["trigger"] == "page" and runs[0]["outcome"] == "ok"
        assert runs[0]["pushers"] == "deployhook from 127.0.0.1"
        assert runs[0]["head_after"] == sha
        events = await self.events()
        assert [(e["kind"], e["by"]) for e in events] == [
            ("resume", "deployhook from 127.0.0.1"), ("pause", "deployhook from 127.0.0.1")]
        assert events[0]["reason"].startswith("deploys resumed (were paused by deployhook")
        _, html, _ = await self.page("/")
        assert 'id="pause"' in html and "<h2>Pauses and resumes</h2>" in html
        assert "resume by deployhook from 127.0.0.1" in html
        assert re.search(r'<td data-label="Trigger">page</td>', html), html


class HistoryTest(ActionTestCase):
    """``deployhook history`` lists the pauses and resumes the page recorded."""

    @gen_test(timeout=60)
    async def test_history_shows_the_events(self) -> None:
        html, cookie = await self.form("/")
        for action in ("pause", "resume"):
            assert (await self.post(f"/targets/default/{action}", {"_xsrf": token(html)},
                                    cookie)).code == 303
        config = write_config(self.tmp / "config.py", state_db=str(self.tmp / "state.sqlite3"),
                              repo_path=str(self.repos.deployed))
        out = subprocess.run(
            [*_deployhook(), "history", "--config", str(config)], capture_output=True,
            text=True, timeout=60, check=True).stdout
        assert "pauses and resumes, newest first:" in out, out
        assert re.search(r"default: resume by deployhook from 127\.0\.0\.1", out), out
        assert re.search(r"default: pause by deployhook from 127\.0\.0\.1", out), out
        data = json.loads(subprocess.run(
            [*_deployhook(), "history", "--json", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=True).stdout)
        assert [e["kind"] for e in data["events"]] == ["resume", "pause"]


def _deployhook() -> list[str]:
    return [sys.executable, "-m", "deployhook"]


class LoopbackTest(ActionTestCase):
    """With ``status_access = "loopback"`` the buttons work without a login from this
    machine, recorded as the local user; the XSRF token is still required."""

    settings: ClassVar[dict[str, Any]] = {"status_access": "loopback"}

    @gen_test(timeout=60)
    async def test_loopback_needs_the_token_not_the_login(self) -> None:
        html, cookie = await self.form("/")
        response = await self.post("/targets/default/pause", {}, cookie, login=False)
        assert response.code == 403
        assert paused.read(str(self.repos.deployed)) is None
        response = await self.post("/targets/default/pause", {"_xsrf": token(html)}, cookie,
                                   login=False)
        assert response.code == 303
        state = paused.read(str(self.repos.deployed))
        assert state is not None and state.by == "local user from 127.0.0.1"


class ReleasesTest(ActionTestCase):
    """In releases mode each release but the live one links to a confirmation page (GET:
    nothing changes) whose form rolls back; recorded as a run."""

    def make_config(self, **overrides: Any) -> Any:
        return super().make_config(branch="main", deploy_mode="releases",
                                   releases_path=str(self.tmp / "site"), **overrides)

    @gen_test(timeout=120)
    async def test_rollback_asks_first_then_switches(self) -> None:
        first = self.repos.commit()
        assert (await self.deliver(push_payload(first), delivery="r-1"))[0] == 200
        second = self.repos.commit()
        assert (await self.deliver(push_payload(second), delivery="r-2"))[0] == 200
        config = self.hook.targets["default"].config
        found = releases.releases(config)
        live = next(r for r in found if r.live)
        old = next(r for r in found if not r.live)
        assert len(found) == 2 and live.sha == second and old.sha == first

        html, cookie = await self.form("/")
        link = f'href="targets/default/rollback?release={old.name}"'
        assert link in html and html.count('class="rollback"') == 1  # not the live one
        status, confirm, _ = await self.page(f"/targets/default/rollback?release={old.name}")
        assert status == 200, confirm
        assert f"Roll back to {old.name}" in confirm and live.name in confirm
        assert releases.live_name(config) == live.name  # asking changed nothing
        for bad, words in ((live.name, "is live already"), ("nope", "no release &#x27;nope&#x27;"),
                           ("", "release must name")):
            status, page, _ = await self.page(f"/targets/default/rollback?release={bad}")
            assert status == 400 and words in page, (bad, page)
            response = await self.post("/targets/default/rollback",
                                       {"_xsrf": token(html), "release": bad}, cookie)
            assert response.code == 400, bad

        response = await self.post("/targets/default/rollback",
                                   {"_xsrf": token(html), "release": old.name}, cookie)
        assert response.code == 303 and response.headers["Location"] == "../../"
        for _ in range(600):
            runs, _ = await self.hook.record.runs_page(1)
            if runs[0]["trigger"] == "page-rollback" and runs[0]["outcome"] != "running":
                break
            await asyncio.sleep(0.05)
        assert runs[0]["outcome"] == "ok", runs[0]
        assert runs[0]["head_before"] == second and runs[0]["head_after"] == first
        assert runs[0]["pushers"] == "deployhook from 127.0.0.1"
        assert releases.live_name(config) == old.name


class NotReleasesTest(ActionTestCase):
    """Outside releases mode there is no rollback: no link, and the form is refused."""

    @gen_test(timeout=60)
    async def test_no_rollback_outside_releases_mode(self) -> None:
        html, cookie = await self.form("/")
        assert "rollback?" not in html and 'class="rollback"' not in html
        status, page, _ = await self.page("/targets/default/rollback?release=x")
        assert status == 400 and 'deploy_mode = "releases"' in page.replace("&quot;", '"')
        response = await self.post("/targets/default/rollback",
                                   {"_xsrf": token(html), "release": "x"}, cookie)
        assert response.code == 400
        assert (await self.hook.record.runs_page(10))[1] == 0


# -- the browser -----------------------------------------------------------------------

def fetch(url: str) -> tuple[int, str]:
    """GET ``url`` logged in: (status, text)."""
    request = urllib.request.Request(url, headers=basic_auth())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_buttons_in_the_browser(repos: Repos, secret_file: Path, tmp_path: Path) -> None:
    """A daemon in releases mode as a process and headless Chromium clicking: redeploy
    (twice, one release each), pause then resume, and a rollback through its
    confirmation; each shows on the page it lands on."""
    require_tool(CHROMIUM, "chromium is not installed (.ci/setup-chromium.sh)")
    port = free_port()
    config = write_config(tmp_path / "config.py", port=port, repo_path=str(repos.deployed),
                          secret_file=str(secret_file), repository=REPOSITORY, reload="none",
                          state_db=str(tmp_path / "state.sqlite3"), branch="main",
                          deploy_mode="releases", releases_path=str(tmp_path / "site"))
    daemon = Daemon(config, port)
    debug_port = free_port()
    browser = subprocess.Popen(
        chromium_command([f"--remote-debugging-port={debug_port}", "about:blank"],
                         tmp_path / "profile"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        daemon.wait_ready()
        asyncio.run(click_through(debug_port, daemon, repos))
        _, html = fetch(daemon.url + "/")
        assert "<script" not in html
    finally:
        browser.terminate()
        browser.wait(30)
        daemon.stop()


async def click_through(debug_port: int, daemon: Daemon, repos: Repos) -> None:
    tools = await DevTools.open(debug_port)
    await tools.call("Network.enable")
    await tools.call("Network.setExtraHTTPHeaders", headers=basic_auth())
    await tools.call("Page.navigate", url=daemon.url + "/")
    await tools.wait_for("document.getElementById('redeploy') !== null", 30)

    first = repos.commit()
    await click(tools, "redeploy")
    await until_run(tools, "page", first)
    second = repos.commit()
    await click(tools, "redeploy")
    await until_run(tools, "page", second)
    assert await tools.value("document.querySelectorAll('a.rollback').length") == 1

    await click(tools, "pause")
    await tools.wait_for("document.getElementById('resume') !== null", 30)
    assert "paused" in await tools.value("document.getElementById('paused').textContent")
    await click(tools, "resume")
    await tools.wait_for("document.getElementById('pause') !== null", 30)
    events = await tools.value("document.getElementById('events').textContent")
    assert "resume by deployhook from 127.0.0.1" in events, events
    assert "pause by deployhook from 127.0.0.1" in events, events

    await tools.act("document.querySelector('a.rollback').click()")
    await tools.wait_for("document.getElementById('confirm-rollback') !== null", 30)
    assert "Roll back" in await tools.value("document.querySelector('h1').textContent")
    await click(tools, "confirm-rollback")
    await until_run(tools, "page-rollback", first)
    assert await tools.value("location.pathname") == "/"
    tools.socket.close()


async def click(tools: DevTools, button: str) -> None:
    """Click the button with id ``button`` (a form's submit: the browser posts the form
    with its XSRF field and follows the 303) and wait for the page it lands on."""
    await tools.act(f"window.leaving = true; document.getElementById('{button}').click()")
    await tools.wait_for("window.leaving === undefined && document.readyState === 'complete'",
                         30)


async def until_run(tools: DevTools, trigger: str, head: str, timeout: float = 60) -> None:
    """Reload the page until its newest run has ``trigger``, outcome ok and HEAD
    ``head`` after it."""
    deadline = time.monotonic() + timeout
    newest = ("(document.querySelector('table.stack tbody tr') || {textContent: ''})"
              ".textContent")
    while True:
        try:
            text = await tools.value(newest)
        except Navigated:  # the reload below was still under way
            text = ""
        if trigger in text.split() and "\u2713 ok" in text and head[:7] in text:
            return
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.2)
        await tools.call("Page.reload")
        await tools.wait_for("document.readyState === 'complete'", 30)


# -- fleet mode ----------------------------------------------------------------------------

class _Stay(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: a 303 comes back as an HTTPError to look at."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_form(url: str, fields: dict[str, str], cookie: str) -> tuple[int, str]:
    """POST ``fields`` as a form to ``url``, logged in, with the ``_xsrf`` ``cookie``;
    (status, Location) without following it."""
    request = urllib.request.Request(url, data=urlencode(fields).encode(), method="POST",
                                     headers={**basic_auth(), **FORM,
                                              "Cookie": f"_xsrf={cookie}"})
    try:
        with urllib.request.build_opener(_Stay).open(request, timeout=60) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def page_form(url: str) -> tuple[str, str]:
    """GET the page ``url`` logged in: (its HTML, the ``_xsrf`` cookie it set)."""
    request = urllib.request.Request(url, headers=basic_auth())
    with urllib.request.urlopen(request, timeout=30) as response:
        cookie = re.search(r"_xsrf=([^;]+)", response.headers.get("Set-Cookie", ""))
        assert cookie is not None, response.headers
        return response.read().decode(), cookie[1]


def test_a_redeploy_from_one_nodes_page_moves_the_fleet(
        world: tuple[Path, Path, Path, Path]) -> None:  # noqa: F811 (the fixture)
    """Fleet mode (real Redis, two nodes, no polling): a commit on the origin that no
    delivery brought; the redeploy button of web1's page deploys it there (trigger
    ``page``, by the status user), makes it the fleet's desired commit (kind ``deploy``,
    by that user) and web2's reconcile follows (trigger ``fleet``)."""
    root, origin, pusher, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        for name in ("web1", "web2"):
            fleet.nodes.append(make_node(root, origin, name, fleet.redis, secret).start())
        fleet.wait_registered()
        web1, web2 = fleet.nodes
        sha = commit(pusher, "print('from the page')\n")
        html, cookie = page_form(web1.url + "/")
        assert post_form(web1.url + "/targets/default/redeploy", {"_xsrf": token(html)},
                         cookie) == (303, "../../")
        for node in (web1, web2):
            wait_for(lambda node=node: node.head() == sha, what=f"{node.name} at {sha}")
        desired = wait_for(lambda: (lambda d: d if d.get("kind") == "deploy" else None)(
            fleet.redis.client().hgetall("deployhook:desired:default")),
            what="the fleet told")
        assert desired["sha"] == sha and desired["delivery"].startswith("deploy-"), desired
        assert desired["by"] == "web1 (deploy by deployhook from 127.0.0.1)", desired
        for node, trigger in ((web1, "page"), (web2, "fleet")):
            runs = wait_for(lambda node=node: [
                run for run in http("GET", node.url + "/deployments")[1]["runs"]
                if run["head_after"] == sha and run["outcome"] != "running"],
                what=f"{node.name}'s run")
            assert [(run["trigger"], run["outcome"]) for run in runs] == [(trigger, "ok")]
        assert [run["pushers"] for run in http("GET", web1.url + "/deployments")[1]["runs"]
                ] == ["deployhook from 127.0.0.1"]
    finally:
        fleet.stop()
