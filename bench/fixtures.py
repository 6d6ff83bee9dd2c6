"""Benchmark fixtures: real git repositories, signed payloads, an isolated git config.

The same repositories as the tests (tests/helpers.py builds the origin with its
submodule, the pusher clone and the counting, slowable upload-pack wrapper),
plus two clones: the deployed one and an equivalent "plain" clone for the
plain-git reference.  Both fetch through the wrapper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root

from tests import helpers
from tests.helpers import counting_upload_pack, make_origin

SECRET = b"bench-secret-0123456789abcdef"
REPOSITORY = "octo-org/blog"
ZERO = "0" * 40
DEPLOY_SCRIPT = ("#!/bin/sh\n# The usual deploy script.\n"
                 "git pull && git submodule update --init --recursive\n")


def isolate_git(root: Path) -> None:
    """The tests' throw-away git config, plus ``pull.ff=only`` for the plain script."""
    helpers.isolate_git(root, "Bench Pusher", "[pull]\n\tff = only\n")


def git(cwd: Path | str, *args: str) -> str:
    """Run git; return stdout stripped; raise with stderr on failure."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def read_head(repo: Path) -> str | None:
    """HEAD's SHA read from the files (no git process), or None mid-update."""
    gitdir = repo / ".git"
    if gitdir.is_file():  # a submodule's gitfile
        gitdir = (repo / gitdir.read_text().split(":", 1)[1].strip()).resolve()
    try:
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = gitdir / ref
        if loose.exists():
            return loose.read_text().strip() or None
        for line in (gitdir / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


@dataclass
class Repos:
    """origin.git (submodule posts -> posts.git), deployed/, plain/ and pusher/."""

    root: Path
    origin: Path
    sub_origin: Path
    deployed: Path
    plain: Path
    pusher: Path
    fetch_log: Path
    delay_file: Path
    script: Path

    def commit(self, name: str = "post.rst") -> str:
        """Commit a file in the pusher clone and push it; return the new SHA."""
        (self.pusher / name).write_text(f"{name} at {time.time_ns()}\n")
        git(self.pusher, "add", name)
        git(self.pusher, "commit", "-q", "-m", f"update {name}")
        git(self.pusher, "push", "-q", "origin", "HEAD:main")
        return git(self.pusher, "rev-parse", "HEAD")

    def commit_submodule(self) -> tuple[str, str]:
        """Commit in the submodule, bump the gitlink upstream; return (SHA, submodule SHA)."""
        sub = self.pusher / "posts"
        (sub / "index.rst").write_text(f"post at {time.time_ns()}\n")
        git(sub, "commit", "-q", "-am", "new post")
        git(sub, "push", "-q", "origin", "HEAD:main")
        git(self.pusher, "add", "posts")
        git(self.pusher, "commit", "-q", "-m", "bump posts")
        git(self.pusher, "push", "-q", "origin", "HEAD:main")
        return git(self.pusher, "rev-parse", "HEAD"), git(sub, "rev-parse", "HEAD")

    def fetches(self) -> int:
        """Fetches from origin so far (both clones), as counted by the wrapper."""
        return len(self.fetch_log.read_text().splitlines()) if self.fetch_log.exists() else 0

    def slow(self, seconds: float) -> None:
        """Make every later fetch from origin wait ``seconds`` first."""
        self.delay_file.write_text(f"{seconds:g}" if seconds > 0 else "")

    def plain_pull(self) -> float:
        """Run the deploy script in plain/ (the reference); return its wall time."""
        start = time.perf_counter()
        proc = subprocess.run(["sh", str(self.script)], cwd=self.plain, capture_output=True,
                              text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"plain pull failed: {proc.stderr.strip()}")
        return elapsed


def make_repos(root: Path) -> Repos:
    """Build the fixtures under ``root`` (which must exist and be empty)."""
    origin, sub_origin, pusher = make_origin(root)
    wrapper, fetch_log, delay_file = counting_upload_pack(root)
    clones = []
    for name in ("deployed", "plain"):
        clone = root / name
        git(root, "clone", "-q", "--recurse-submodules", origin.as_uri(), str(clone))
        git(clone, "config", "remote.origin.uploadpack", str(wrapper))
        clones.append(clone)
    script = root / "deploy.sh"
    script.write_text(DEPLOY_SCRIPT)
    script.chmod(0o755)
    return Repos(root, origin, sub_origin, clones[0], clones[1], pusher, fetch_log, delay_file,
                 script)


def commit_entry(sha: str, message: str = "update post.rst") -> dict[str, Any]:
    """One element of a push payload's ``commits`` array, shaped like GitHub's."""
    who = {"name": "Bench Pusher", "email": "pusher@example.com", "username": "octocat"}
    return {
        "id": sha, "tree_id": sha[::-1], "distinct": True, "message": message,
        "timestamp": "2024-05-01T12:00:00+02:00",
        "url": f"https://github.com/{REPOSITORY}/commit/{sha}",
        "author": who, "committer": who,
        "added": [], "removed": [], "modified": ["post.rst"],
    }


def push_payload(after: str, before: str = ZERO, ref: str = "refs/heads/main",
                 commits: int = 1) -> dict[str, Any]:
    """A push payload with the fields of GitHub's push schema (a realistic ~2 KB)."""
    owner, name = REPOSITORY.split("/")
    entries = [commit_entry(after) for _ in range(commits)]
    return {
        "ref": ref, "before": before, "after": after,
        "created": before == ZERO, "deleted": after == ZERO, "forced": False,
        "base_ref": None, "compare": f"https://github.com/{REPOSITORY}/compare/x",
        "commits": entries, "head_commit": entries[-1] if entries else None,
        "repository": {
            "id": 1, "name": name, "full_name": REPOSITORY,
            "owner": {"login": owner, "name": owner},
            "clone_url": f"https://github.com/{REPOSITORY}.git",
            "ssh_url": f"git@github.com:{REPOSITORY}.git", "default_branch": "main",
        },
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1},
    }


def big_push_body(size: int, ref: str = "refs/heads/feature") -> bytes:
    """A compact push body of at least ``size`` bytes: its commits array filled up."""
    payload = push_payload("a" * 40, "b" * 40, ref=ref, commits=1)
    one = len(json.dumps(commit_entry(f"{0:040x}", "commit 0"), separators=(",", ":"))) + 1
    commits: list[dict[str, Any]] = []
    payload["commits"] = commits
    while True:
        body = json.dumps(payload, separators=(",", ":")).encode()
        if len(body) >= size:
            return body
        start = len(commits)
        commits += [commit_entry(f"{i:040x}", f"commit {i}")
                    for i in range(start, start + (size - len(body)) // one + 1)]


def sign(body: bytes, secret: bytes = SECRET) -> str:
    """The X-Hub-Signature-256 value GitHub would send."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signed(payload: dict[str, Any] | bytes, event: str = "push", delivery: str = "bench-1",
           secret: bytes = SECRET) -> tuple[bytes, dict[str, str]]:
    """Compact body bytes and the headers GitHub would send with them."""
    raw = payload if isinstance(payload, bytes) else json.dumps(
        payload, separators=(",", ":")).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(raw, secret),
    }
    return raw, headers


def make_clones(root: Path, n: int) -> tuple[Path, list[Path]]:
    """A small bare origin (one commit, no submodule) and ``n`` clones of it under
    ``root/clones``; returns (origin, clones).  Local clones share objects by hard links."""
    origin = root / "small-origin.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    seed = root / "small-seed"
    git(root, "clone", "-q", origin.as_uri(), str(seed))
    (seed / "index.html").write_text("<p>a small site</p>\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "a small site")
    git(seed, "push", "-q", "origin", "HEAD:main")
    (root / "clones").mkdir()
    clones = []
    for i in range(n):
        clone = root / "clones" / f"t{i:03d}"
        git(root, "clone", "-q", str(origin), str(clone))
        clones.append(clone)
    return origin, clones
