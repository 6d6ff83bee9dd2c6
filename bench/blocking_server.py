"""The blocking baseline: the common tutorial webhook, pull and submodule update in the handler.

``python bench/blocking_server.py --port 9001 --repo /srv/site --secret-file secret.txt``

POST /hooks/deploy verifies X-Hub-Signature-256, parses the JSON, and for a push
to ``--branch`` runs ``git pull`` and ``git submodule update --init --recursive``
right inside the request (blocking the IOLoop); other pushes get 202.
GET /health answers 200.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import subprocess
from typing import Any

import tornado.ioloop
import tornado.web


def verify_and_parse(secret: bytes, body: bytes, signature: str | None) -> dict[str, Any] | None:
    """The payload if the signature matches, else None."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected, signature):
        return None
    return json.loads(body)


class HookHandler(tornado.web.RequestHandler):
    """Verify, then deploy inside the request."""

    def initialize(self, repo: str, secret: bytes, branch: str) -> None:
        self.repo, self.secret, self.branch = repo, secret, branch

    def post(self) -> None:
        payload = verify_and_parse(self.secret, self.request.body,
                                   self.request.headers.get("X-Hub-Signature-256"))
        if payload is None:
            self.set_status(401)
            self.finish("bad signature\n")
            return
        if payload.get("ref") != f"refs/heads/{self.branch}":
            self.set_status(202)
            self.finish("ignored\n")
            return
        output = ""
        for command in (["git", "pull"], ["git", "submodule", "update", "--init", "--recursive"]):
            proc = subprocess.run(command, cwd=self.repo, capture_output=True, text=True)
            output += proc.stdout + proc.stderr
            if proc.returncode != 0:
                self.set_status(500)
                self.finish(output)
                return
        self.finish(output)


class HealthHandler(tornado.web.RequestHandler):
    """A cheap GET."""

    def get(self) -> None:
        self.finish("ok\n")


def main() -> None:
    """Parse the arguments and serve forever."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--branch", default="main")
    args = parser.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().strip()
    app = tornado.web.Application([
        (r"/hooks/deploy", HookHandler, {"repo": args.repo, "secret": secret,
                                         "branch": args.branch}),
        (r"/health", HealthHandler),
    ])
    app.listen(args.port, address="127.0.0.1", max_body_size=64 << 20)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
