"""The handler mounted inside an existing Tornado app: the self-publishing blog."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import tornado.web
from tornado.testing import gen_test

from deployhook import DeployHook
from tests.apptest import HookTestCase
from tests.helpers import (
    REPOSITORY,
    Repos,
    free_port,
    http,
    push_payload,
    signed,
    write_config,
)

BLOG = Path(__file__).parents[1] / "examples" / "blog.py"


class Home(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("the blog")


class EmbeddedTest(HookTestCase):
    """deployhook's routes next to the app's own; the app's pages keep working."""

    def get_app(self) -> tornado.web.Application:
        self.hook = DeployHook(self.make_config())
        self.io_loop.run_sync(self.hook.start)
        return tornado.web.Application([(r"/", Home), *self.hook.routes(health_path=None)])

    @gen_test(timeout=60)
    async def test_push_deploys_through_the_mounted_handler(self) -> None:
        sha = self.repos.commit_submodule("Second post\n")
        status, body = await self.deliver(push_payload(sha))
        assert status == 200 and body["head"] == sha
        home = await self.http_client.fetch(self.get_url("/"))
        assert home.body == b"the blog"
        health = await self.http_client.fetch(self.get_url("/health"), raise_error=False)
        assert health.code == 404  # left out with health_path=None


def test_blog_example_publishes_a_pushed_post(repos: Repos, secret_file: Path) -> None:
    """examples/blog.py as a real process: push a post, see it on the page after the reload."""
    port = free_port()
    config = write_config(repos.root / "deployhook.py", port=port, repo_path=str(repos.deployed),
                          secret_file=str(secret_file), repository=REPOSITORY,
                          reload="autoreload")  # "auto": the checkout does not hold blog.py
    log = (repos.root / "blog.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(BLOG), str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        first = _page(url)
        assert "Hello" in first
        sha = repos.commit_submodule("A post pushed from the laptop\n")
        body, headers = signed(push_payload(sha))
        status, answer = http("POST", url + "/github", body, headers)
        assert status == 200, answer
        deadline = time.monotonic() + 20
        page = first
        while time.monotonic() < deadline:
            page = _page(url)
            if "pushed from the laptop" in page and _started(page) != _started(first):
                break
            time.sleep(0.1)
        assert "pushed from the laptop" in page
        assert _started(page) != _started(first), "the blog process was not reloaded"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def _page(url: str, timeout: float = 20) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _started(page: str) -> str:
    return page.split("started ", 1)[1].split(" ", 1)[0]
