"""A fake forge API (the one allowed fake): a small Tornado app on a free port, in a
thread, that checks each forge's token header, records every request and answers as
scripted (201 by default; 403 with Retry-After, 422, 500, or held until released).

``FakeForge("apprise")`` is a notification endpoint for Apprise's ``json://`` URLs
(:func:`apprise_url`): the token is the basic-auth password, and a path segment."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer

from tests.helpers import free_port

TOKEN = "fake-forge-token-7f3a9c1e"
AUTH = {"github": ("Authorization", f"Bearer {TOKEN}"),
        "gitlab": ("PRIVATE-TOKEN", TOKEN),
        "gitea": ("Authorization", f"token {TOKEN}"),
        "forgejo": ("Authorization", f"token {TOKEN}"),
        "bitbucket": ("Authorization", f"Bearer {TOKEN}"),
        "bitbucket-server": ("Authorization", f"Bearer {TOKEN}"),
        "apprise": ("Authorization",
                    "Basic " + base64.b64encode(f"deployhook:{TOKEN}".encode()).decode())}


@dataclass
class Answer:
    """A scripted answer: status, JSON body, headers; ``hold``: wait until released."""

    status: int = 201
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


@dataclass
class Seen:
    method: str
    path: str
    body: dict[str, Any]
    authorized: bool
    status: int = 0


class FakeForge:
    """Start with :meth:`start`; ``script`` maps a path regex to answers used in turn."""

    def __init__(self, forge: str) -> None:
        self.forge = forge
        self.port = free_port()
        self.requests: list[Seen] = []
        self.script: list[tuple[str, Answer]] = []
        self.next_id = 41
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def apprise_url(self, path: str = "/notify") -> str:
        """An Apprise ``json://`` URL of this server holding :data:`TOKEN` twice (the
        basic-auth password and the last path segment), as a chat service's token."""
        return f"json://deployhook:{TOKEN}@127.0.0.1:{self.port}{path}/{TOKEN}"

    def answer(self, pattern: str, *answers: Answer) -> None:
        self.script += [(pattern, a) for a in answers]

    def start(self) -> FakeForge:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        for _, answer in self.script:
            if answer.hold is not None:
                answer.hold.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 60) -> list[Seen]:
        """The requests, once ``count`` were answered (a generous bound, not a timing)."""
        deadline = time.monotonic() + timeout
        while sum(1 for r in self.requests if r.status) < count:
            assert time.monotonic() < deadline, f"only {self.requests}"
            time.sleep(0.05)
        return list(self.requests)

    def _pick(self, path: str) -> Answer:
        for index, (pattern, answer) in enumerate(self.script):
            if re.search(pattern, path):
                del self.script[index]
                return answer
        body = {"id": self.next_id} if path.endswith("/deployments") else {}
        self.next_id += 1
        return Answer(201, body)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        forge = self

        class Handler(tornado.web.RequestHandler):
            async def post(self, path: str) -> None:
                header, value = AUTH[forge.forge]
                seen = Seen("POST", self.request.path, json.loads(self.request.body or b"{}"),
                            self.request.headers.get(header) == value)
                forge.requests.append(seen)
                if not seen.authorized:
                    answer = Answer(401, {"message": "Bad credentials"})
                else:
                    answer = forge._pick(seen.path)
                if answer.hold is not None:
                    await asyncio.get_running_loop().run_in_executor(None, answer.hold.wait, 60)
                self.set_status(answer.status)
                for name, text in answer.headers.items():
                    self.set_header(name, text)
                seen.status = answer.status
                self.finish(json.dumps(answer.body))

        server = HTTPServer(tornado.web.Application([(r"/(.*)", Handler)]))
        server.listen(self.port, "127.0.0.1")
        self._ready.set()
        self._loop.run_forever()
        server.stop()
