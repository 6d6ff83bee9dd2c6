"""The seed-style peer: the project's original design, as a tutorial would write it.

``python bench/seed_server.py --port 9002 --repo /srv/site --secret-file secret.txt``

A Tornado ``RequestHandler`` reads the secret file, verifies X-Hub-Signature-256
(``hmac.compare_digest``) and parses the JSON; a push to another branch than
``--branch`` gets 202.  For a push to ``--branch`` it hands GitPython's
``repo.remotes.origin.pull()`` and ``repo.git.submodule("update", "--init",
"--recursive")`` (as the seed ran it; ``--submodules gitpython``: GitPython's own
``repo.submodule_update(recursive=True, init=True)``) to a ``ThreadPoolExecutor``
(one worker: one checkout) through ``IOLoop.run_in_executor``, so the IOLoop stays
unblocked, and answers 200 once they are done (500 if git fails).  One module-level
``git.Repo`` is kept for the life of the process, so the persistent ``git cat-file``
helpers GitPython starts stay alive as its children.  GET /health answers 200.

The seed also autoreloads after a successful pull; that would restart the process
in the middle of the benchmark, so it is behind ``--autoreload`` (off in bench/).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import git
import tornado.autoreload
import tornado.ioloop
import tornado.web

EXECUTOR = ThreadPoolExecutor(max_workers=1)
REPO: git.Repo | None = None  # set in main(), kept for the process lifetime


def deploy(submodules: str = "command") -> str:
    """Pull, then update the submodules, in the module-level repository; git's output.
    ``submodules``: "command" runs ``git submodule update --init --recursive`` through
    ``repo.git`` (as the seed did); "gitpython" calls ``repo.submodule_update(recursive=True,
    init=True)`` (GitPython's own implementation, a Repo and cat-file helpers per
    submodule).  Raises git.GitCommandError when a git command fails."""
    assert REPO is not None
    infos = REPO.remotes.origin.pull()
    output = "".join(f"{info.ref} -> {info.commit}\n" for info in infos)
    if submodules == "gitpython":
        REPO.submodule_update(recursive=True, init=True)
        return output
    return output + REPO.git.submodule("update", "--init", "--recursive")


class HookHandler(tornado.web.RequestHandler):
    """Verify, then deploy in the executor."""

    def initialize(self, secret_file: str, branch: str, autoreload: bool,
                   submodules: str) -> None:
        self.secret_file, self.branch, self.autoreload = secret_file, branch, autoreload
        self.submodules = submodules

    def verify_and_parse(self) -> dict[str, Any] | None:
        """The payload if the signature matches the secret file's secret, else None."""
        with open(self.secret_file, "rb") as f:
            secret = f.read().strip()
        expected = "sha256=" + hmac.new(secret, self.request.body, hashlib.sha256).hexdigest()
        signature = self.request.headers.get("X-Hub-Signature-256")
        if not signature or not hmac.compare_digest(expected, signature):
            return None
        return json.loads(self.request.body)

    async def post(self) -> None:
        payload = self.verify_and_parse()
        if payload is None:
            self.set_status(401)
            self.finish("bad signature\n")
            return
        if payload.get("ref") != f"refs/heads/{self.branch}":
            self.set_status(202)
            self.finish("ignored\n")
            return
        try:
            output = await tornado.ioloop.IOLoop.current().run_in_executor(EXECUTOR, deploy,
                                                                        self.submodules)
        except git.GitCommandError as exc:
            self.set_status(500)
            self.finish(f"{exc}\n")
            return
        self.finish(output)
        if self.autoreload:  # the seed re-executes the process once the pull succeeded
            tornado.ioloop.IOLoop.current().call_later(0.1, tornado.autoreload._reload)


class HealthHandler(tornado.web.RequestHandler):
    """A cheap GET."""

    def get(self) -> None:
        self.finish("ok\n")


def main() -> None:
    """Parse the arguments, open the repository and serve forever."""
    global REPO
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--branch", default="main")
    parser.add_argument("--autoreload", action="store_true",
                        help="restart the process after a successful pull (the seed's way)")
    parser.add_argument("--submodules", choices=["command", "gitpython"], default="command",
                        help="command: repo.git.submodule('update', '--init', '--recursive'); "
                        "gitpython: repo.submodule_update(recursive=True, init=True)")
    args = parser.parse_args()
    REPO = git.Repo(args.repo)
    app = tornado.web.Application([
        (r"/hooks/deploy", HookHandler, {"secret_file": args.secret_file,
                                         "branch": args.branch,
                                         "autoreload": args.autoreload,
                                         "submodules": args.submodules}),
        (r"/health", HealthHandler),
    ])
    app.listen(args.port, address="127.0.0.1", max_body_size=64 << 20)
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
