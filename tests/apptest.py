"""HookTestCase: a real DeployHook app on a real HTTP server (AsyncHTTPTestCase)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from deployhook import Config, DeployHook, make_app
from tests.helpers import REPOSITORY, SECRET, STATUS_PASSWORD, make_repos, signed

# The request defaults of a client that logs in to the record (pages, API, /health).
LOGIN = {"auth_username": "deployhook", "auth_password": STATUS_PASSWORD}


class HookTestCase(AsyncHTTPTestCase):
    """Each test gets fresh repositories and a hook deploying ``repos.deployed``."""

    settings: ClassVar[dict[str, Any]] = {}

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="deployhook-test-"))
        self.repos = make_repos(self.tmp)
        self.secret_path = self.tmp / "secret.txt"
        self.secret_path.write_bytes(SECRET + b"\n")
        self.password_path = self.tmp / "status-password.txt"
        self.password_path.write_text(STATUS_PASSWORD + "\n")
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        self.hook.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def make_config(self, **overrides: Any) -> Config:
        values: dict[str, Any] = {
            "repo_path": str(self.repos.deployed), "secret_file": str(self.secret_path),
            "repository": REPOSITORY, "reload": "none", "git_timeout": 30.0,
            "poll_interval": 0,  # tests of polling (test_poll.py) set it
            "state_db": str(self.tmp / "state.sqlite3"),
            "status_password_file": str(self.password_path),
            **self.settings, **overrides,
        }
        return Config(**values)

    def get_http_client(self) -> AsyncHTTPClient:
        """A client that logs in with STATUS_PASSWORD (``anonymous()`` does not)."""
        return AsyncHTTPClient(force_instance=True, defaults=LOGIN)

    def anonymous(self) -> AsyncHTTPClient:
        """A client without credentials; closed at tearDown."""
        client = AsyncHTTPClient(force_instance=True)
        self.addCleanup(client.close)
        return client

    def get_app(self) -> Any:
        self.hook = DeployHook(self.make_config())
        self.io_loop.run_sync(self.hook.start)
        return make_app(self.hook)

    async def deliver(self, payload: dict[str, Any] | bytes, event: str = "push",
                      **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """POST a signed delivery; return (status, JSON body)."""
        body, headers = signed(payload, event, **kwargs)
        response = await self.http_client.fetch(self.get_url("/github"), method="POST",
                                                body=body, headers=headers, raise_error=False,
                                                request_timeout=60)
        return response.code, _json(response)

    async def until(self, check: Callable[[], Any], what: str, timeout: float = 10) -> None:
        """Let the IOLoop run until ``check()`` is true.  Raises AssertionError naming
        ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
            await asyncio.sleep(0.01)

    async def send(self, body: bytes, headers: dict[str, str],
                   method: str = "POST", path: str = "/github") -> tuple[int, dict[str, Any]]:
        response = await self.http_client.fetch(
            self.get_url(path), method=method, body=body if method != "GET" else None,
            headers=headers, raise_error=False, request_timeout=60,
            allow_nonstandard_methods=True)
        return response.code, _json(response)


def _json(response: HTTPResponse) -> dict[str, Any]:
    try:
        return json.loads(response.body or b"{}")
    except ValueError:
        return {"raw": response.body.decode(errors="replace")}
