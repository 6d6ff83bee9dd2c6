"""The large-repository deploy scenario: delivery -> updated checkout against plain git.

The origin has ``FILES`` files in ``DIRS`` folders and ``COMMITS`` commits of history,
with the submodule ``posts`` (its own ``SUB_COMMITS`` commits, URL ``../posts.git``, so
the pair works wherever it is copied).  Both bare repositories are written once with
``git fast-import`` into ``CACHE`` (outside the checkout; ``DEPLOYHOOK_BENCH_CACHE``
moves it) and copied for each server; its deployed clone, its plain twin and the pusher
are cloned afresh.  Each server then deploys ``reps`` submodule bumps (the same
``measure.overhead`` as the small repository: one warm-up round, the order of the plain
script and the delivery alternating), so the ratio is each server's own against its
plain ``git pull && git submodule update --init --recursive`` twin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import measure
from fixtures import DEPLOY_SCRIPT, Repos, git
from targets import TARGETS, free_port

FILES = 10_000
DIRS = 100
COMMITS = 400
SUB_COMMITS = 50
VERSION = f"v1-{FILES}-{COMMITS}-{SUB_COMMITS}"  # a new shape gets a new cache folder
CACHE = Path(os.environ.get("DEPLOYHOOK_BENCH_CACHE")
             or Path.home() / ".cache" / "deployhook-bench") / f"largerepo-{VERSION}"
AUTHOR = "Bench Pusher <pusher@example.com>"


def _blob(path: str, generation: int) -> str:
    """A file's text at ``generation`` (a few hundred bytes, like a page or a module)."""
    line = f"{path} revision {generation}: lorem ipsum dolor sit amet, consectetur.\n"
    return line * 4


def _commit(out: list[bytes], ref: str, mark: int, when: int, message: str,
            parent: int | None, changes: list[str]) -> None:
    """Append one fast-import commit (``changes`` are its M/D lines)."""
    data = message.encode()
    out.append(f"commit {ref}\nmark :{mark}\ncommitter {AUTHOR} {when} +0000\n"
               f"data {len(data)}\n".encode() + data + b"\n")
    if parent is not None:
        out.append(f"from :{parent}\n".encode())
    out.append("".join(line + "\n" for line in changes).encode())
    out.append(b"\n")


def _inline(path: str, text: str, mode: str = "100644") -> str:
    data = text.encode()
    return f"M {mode} inline {path}\ndata {len(data)}\n{text}"


def _import(bare: Path, stream: list[bytes]) -> None:
    git(bare.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=b"".join(stream),
                   check=True, capture_output=True)
    git(bare, "repack", "-a", "-d", "-q")


def build(cache: Path = CACHE) -> Path:
    """Write origin.git and posts.git into ``cache`` unless they are there; return it."""
    if (cache / "done").exists():
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    start = 1_700_000_000
    sub: list[bytes] = []
    for i in range(SUB_COMMITS):
        _commit(sub, "refs/heads/main", i + 1, start + i * 60, f"post {i}\n",
                i or None, [_inline("index.rst", f"Post {i}\n=======\n")])
    _import(cache / "posts.git", sub)
    sub_tip = git(cache / "posts.git", "rev-parse", "main")
    files = [f"src/d{i % DIRS:03d}/f{i:05d}.txt" for i in range(FILES)]
    top: list[bytes] = []
    first = [_inline(path, _blob(path, 0)) for path in files]
    first.append(_inline(".gitmodules", '[submodule "posts"]\n\tpath = posts\n'
                         "\turl = ../posts.git\n\tbranch = main\n"))
    first.append(f"M 160000 {sub_tip} posts")
    _commit(top, "refs/heads/main", 1, start, "the site\n", None, first)
    for i in range(1, COMMITS):
        touched = [files[(i * 37 + k * 1009) % FILES] for k in range(5)]
        _commit(top, "refs/heads/main", i + 1, start + i * 600, f"change {i}\n", i,
                [_inline(path, _blob(path, i)) for path in touched])
    _import(cache / "origin.git", top)
    (cache / "done").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return cache


def make_large_repos(root: Path, cache: Path = CACHE) -> Repos:
    """The large fixtures under ``root`` (which must exist): copies of the cached
    origins, the pusher clone, the deployed clone and its plain twin."""
    build(cache)
    origin, sub_origin = root / "origin.git", root / "posts.git"
    shutil.copytree(cache / "origin.git", origin)
    shutil.copytree(cache / "posts.git", sub_origin)
    clones = {}
    for name in ("pusher", "deployed", "plain"):
        clones[name] = root / name
        git(root, "clone", "-q", "--recurse-submodules", origin.as_uri(), str(clones[name]))
    git(clones["pusher"] / "posts", "checkout", "-q", "-B", "main", "origin/main")
    script = root / "deploy.sh"
    script.write_text(DEPLOY_SCRIPT)
    script.chmod(0o755)
    return Repos(root, origin, sub_origin, clones["deployed"], clones["plain"],
                 clones["pusher"], root / "fetches.log", root / "delay", script)


def bench(names: list[str], work: Path, reps: int = 7) -> dict[str, dict[str, Any]]:
    """Delivery -> updated checkout on the large repository for each server in
    ``names``, one at a time on its own copy; {name: measure.overhead's figures plus
    ``setup_s``}."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        root = work / f"large-{name}"
        root.mkdir()
        print(f"[{name}] large repository ({FILES:,} files, {COMMITS} commits, a "
              "submodule) ...", flush=True)
        started = time.perf_counter()
        repos = make_large_repos(root)
        setup = time.perf_counter() - started
        target = TARGETS[name](repos, free_port())
        try:
            target.start(timeout=60)
            out[name] = {**measure.overhead(target, repos, reps), "setup_s": round(setup, 1)}
        finally:
            target.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


def rows(t: dict[str, dict[str, Any]], names: list[str]) -> list[list[str]]:
    """The large repository's rows of run.py's table (figure, one cell per server, goal,
    deployhook's verdict); none when it was not measured."""
    if not any("large" in t[n] for n in names):
        return []

    def cell(name: str, key: str, suffix: str = "", digits: int = 1) -> str:
        value = t[name].get("large", {}).get(key)
        return "-" if value is None else f"{value:,.{digits}f}{suffix}"

    ratio = t.get("deployhook", {}).get("large", {}).get("ratio")
    verdict = "" if ratio is None else ("PASS" if ratio <= 1.0 else "MISS")
    return [
        ["deploy (large repo): delivery to updated checkout, median (ms)",
         *[cell(n, "median_ms") for n in names], "", ""],
        ["deploy (large repo): plain pull + submodule update, median (ms)",
         *[cell(n, "plain_median_ms") for n in names], "", ""],
        ["deploy (large repo): overhead (x plain git)",
         *[cell(n, "ratio", "x", 2) for n in names], "<= 1.0x", verdict],
    ]
