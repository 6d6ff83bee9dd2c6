"""A reStructuredText blog that publishes itself: deployhook mounted in the blog's own app.

The blog's checkout holds its posts as a submodule (``posts/``).  A push to
GitHub reaches ``/github``; deployhook pulls the blog and updates the posts
submodule in its worker thread, then re-executes this process (``reload =
"autoreload"``) so new code is served too.

Run: ``python examples/blog.py deployhook.py`` (a deployhook config file).
"""

from __future__ import annotations

import asyncio
import html
import sys
import time
from pathlib import Path

import tornado.web
from tornado.ioloop import IOLoop

import deployhook

STARTED = time.time()


class PostsHandler(tornado.web.RequestHandler):
    """Show every post in ``posts/`` (read in the executor: the IOLoop never blocks)."""

    def initialize(self, posts: Path) -> None:
        self.posts = posts

    async def get(self) -> None:
        texts = await IOLoop.current().run_in_executor(None, self.read_posts)
        self.write(f"<!-- started {STARTED} -->\n")
        for name, text in texts:
            self.write(f"<article><h2>{html.escape(name)}</h2><pre>{html.escape(text)}</pre>"
                       "</article>\n")

    def read_posts(self) -> list[tuple[str, str]]:
        return [(p.name, p.read_text()) for p in sorted(self.posts.glob("*.rst"))]


async def main(config_path: str) -> None:
    hook = deployhook.DeployHook(deployhook.load(config_path))
    await hook.start()
    posts = Path(hook.config.repo_path) / "posts"
    app = tornado.web.Application([
        (r"/", PostsHandler, {"posts": posts}),
        *hook.routes(),  # POST /github (the webhook) and GET /health
    ])
    app.listen(hook.config.port, hook.config.address)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "deployhook.py"))
