"""What must never leak or crash (issue 9): credentials in post_deploy's arguments and
output, the secret from ``$DEPLOYHOOK_SECRET``, hostile git transports, and payload
fields that reach a child process's environment.  Real daemons, real git, real
subprocesses; the record is read every way a user can (JSON API, pages, CLI, the
SQLite file itself).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from deployhook.forges.delivery import Push
from deployhook.git.checkout import Checkout
from deployhook.git.postdeploy import ENV_VALUE_LIMIT
from deployhook.record.recorder import Recorder
from deployhook.service.worker import GitWorker
from deployhook.settings import Config
from tests.helpers import (
    REPOSITORY,
    SECRET,
    Daemon,
    Repos,
    git,
    push_payload,
    signed,
    start_daemon,
)

PASSWORD = "status-password-for-tests"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"deployhook:{PASSWORD}".encode())
        .decode()}


# -- helpers ----------------------------------------------------------------------------------
def fetch(url: str, body: bytes | None = None, headers: dict[str, str] | None = None
          ) -> tuple[int, str]:
    """(status, body text) of a request with the status password."""
    request = urllib.request.Request(url, data=body, headers={**AUTH, **(headers or {})},
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def push(daemon: Daemon, sha: str, secret: bytes = SECRET, **fields: Any) -> tuple[int, Any]:
    """Deliver a signed push of ``sha``; (status, JSON body)."""
    body, headers = signed(push_payload(sha, **fields), secret=secret,
                           delivery=str(uuid.uuid4()))
    status, text = fetch(daemon.url + "/github", body, headers)
    return status, json.loads(text)


def cli(config: Path, *args: str) -> str:
    """``python -m deployhook ARGS --config CONFIG``'s output (stdout and stderr)."""
    result = subprocess.run([sys.executable, "-m", "deployhook", *args, "--config",
                             str(config)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def start(repos: Repos, secret_file: Path, **extra: Any) -> Daemon:
    """A ready daemon whose record needs the status password."""
    password = repos.root / "status-password"
    password.write_text(PASSWORD + "\n")
    daemon = start_daemon(repos, secret_file, status_password_file=str(password), **extra)
    daemon.wait_ready()
    return daemon


def record_bytes(root: Path) -> bytes:
    """Every byte of the daemon's record files (database, WAL, shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(root.glob("deployhook.sqlite3*")))


def everything_shown(daemon: Daemon, run_id: int, config: Path) -> dict[str, str]:
    """The run as each reader sees it: JSON API, pages, and the CLI."""
    shown = {path: fetch(daemon.url + path)[1]
             for path in ("/deployments", f"/deployments/{run_id}", "/", f"/runs/{run_id}")}
    for command in (["show", str(run_id)], ["show", str(run_id), "--json"],
                    ["history"], ["history", "--json"]):
        shown[" ".join(command)] = cli(config, *command)
    return shown


def assert_nowhere(needles: list[str], places: dict[str, str | bytes]) -> None:
    for where, text in places.items():
        for needle in needles:
            found = needle.encode() in text if isinstance(text, bytes) else needle in text
            assert not found, f"{needle!r} shown by {where}:\n{text[:3000]!r}"


# -- finding 2: post_deploy's arguments and output --------------------------------------------
ARG_TOKEN = "SUPERSECRETARG"
URL_PASSWORD = "pa55word9"
OUTPUT_TOKEN = "tok3nXYZ"
LEAKY_SCRIPT = f"""
import sys
print("arguments:", *sys.argv[1:])
print("pushing to https://user:{OUTPUT_TOKEN}@example.com/x")
print("webhook secret:", open(sys.argv[3]).read().strip())
print("token", sys.argv[1].split("=")[1], "was refused")
sys.exit(3)
"""


def test_post_deploy_arguments_and_output_are_redacted_everywhere(
        repos: Repos, secret_file: Path) -> None:
    """A failing post_deploy whose arguments hold credentials and whose output prints
    them, a URL with a token and the webhook secret: the answer, the JSON API, the
    pages, ``show``/``history``, the log and the SQLite file show none of them."""
    args = [sys.executable, "-c", LEAKY_SCRIPT, f"--api-token={ARG_TOKEN}",
            f"https://bob:{URL_PASSWORD}@host/hook", str(secret_file)]
    daemon = start(repos, secret_file, post_deploy=args)
    try:
        status, answer = push(daemon, repos.commit("post.rst", "leaky post_deploy\n"))
        assert status == 500, answer
        assert "post_deploy failed" in answer["reason"] and "***" in answer["reason"]
        run_id = answer["run"]
        shown = everything_shown(daemon, run_id, repos.root / "config.py")
    finally:
        daemon.stop()
    secrets = [ARG_TOKEN, URL_PASSWORD, OUTPUT_TOKEN, SECRET.decode()]
    assert_nowhere(secrets, {"the answer": json.dumps(answer), **shown,
                             "the log": daemon.log(), "the record": record_bytes(repos.root)})
    show = shown[f"show {run_id}"]
    assert f"$ {sys.executable} \u2026 (arguments not shown)" in show
    assert "https://***@example.com/x" in show and "token *** was refused" in show
    assert "webhook secret: ***" in show


def test_records_written_before_the_fix_are_redacted_when_read(
        repos: Repos, secret_file: Path) -> None:
    """A run stored with post_deploy's full command and raw output (as older versions
    stored it) is shown redacted by the JSON API, the pages and the CLI."""
    daemon = start(repos, secret_file)
    daemon.stop()
    import sqlite3

    db = sqlite3.connect(repos.root / "deployhook.sqlite3")
    command = f"/usr/bin/notify --api-token={ARG_TOKEN} https://bob:{URL_PASSWORD}@host/hook"
    output = (f"calling https://bob:{URL_PASSWORD}@host/hook with {ARG_TOKEN}\n"
              f"environ: {{'DEPLOYHOOK_SECRET': '{SECRET.decode()}', 'HOME': '/x'}}\n"
              f"DEPLOYHOOK_SECRET={SECRET.decode()}\n")
    with db:
        db.execute("INSERT INTO runs (id, trigger, branch, started, finished, outcome, reason)"
                   " VALUES (7, 'webhook', 'main', ?, ?, 'failed', ?)",
                   (time.time() - 2, time.time(),
                    f"updated to x but post_deploy failed: {ARG_TOKEN} refused"))
        db.execute("INSERT INTO steps VALUES (7, 0, 'post_deploy', ?, 1, 0.5, ?)",
                   (command, output))
    db.close()
    daemon = start(repos, secret_file)
    try:
        shown = everything_shown(daemon, 7, repos.root / "config.py")
    finally:
        daemon.stop()
    assert_nowhere([ARG_TOKEN, URL_PASSWORD, SECRET.decode()], shown)
    assert "/usr/bin/notify \u2026 (arguments not shown)" in shown["show 7"]
    assert "DEPLOYHOOK_SECRET=***" in shown["show 7"]


# -- finding 3: $DEPLOYHOOK_SECRET reaches no child process -----------------------------------
ENV_SCRIPT = """
import json, os, sys
print(json.dumps(dict(os.environ), indent=1))
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(dict(os.environ)) + "\\n")
"""


def wait_for(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def reexecuted(daemon: Daemon, started: float) -> float:
    """Wait until the autoreload after a deploy has re-executed ``daemon`` (its
    ``/health`` shows a new start time); return that time."""
    def new_start() -> float | None:
        try:
            value = json.loads(fetch(daemon.url + "/health")[1]).get("started")
        except OSError:  # between the old process's exec and the new one's listening
            return None
        return value if value not in (None, started) else None

    return wait_for(new_start, what="the autoreload")


def test_the_secret_from_the_environment_reaches_no_child_process(repos: Repos) -> None:
    """``DEPLOYHOOK_SECRET`` and a post_deploy printing its environment: neither
    post_deploy nor git gets the secret, so no page, API answer, ``show`` or byte of
    the record holds it; the daemon keeps it across an autoreload and a SIGHUP."""
    env_secret = "env-secret-" + uuid.uuid4().hex
    env_dump, git_dump = repos.root / "post_deploy-env.jsonl", repos.root / "git-env.txt"
    wrapper = repos.root / "upload-pack-env"
    wrapper.write_text(f"#!/bin/sh\necho '--- fetch' >> '{git_dump}'\nenv >> '{git_dump}'\n"
                       'exec git-upload-pack "$@"\n')
    wrapper.chmod(0o755)
    git(repos.deployed, "config", "remote.origin.uploadpack", str(wrapper))
    daemon = start(repos, repos.root / "no-secret-file",
                   env={"DEPLOYHOOK_SECRET": env_secret}, reload="autoreload",
                   post_deploy=[sys.executable, "-c", ENV_SCRIPT, str(env_dump)])
    try:
        started = json.loads(fetch(daemon.url + "/health")[1])["started"]
        status, answer = push(daemon, repos.commit("one.rst"), env_secret.encode())
        assert status == 200, answer
        run_id = answer["run"]
        started = reexecuted(daemon, started)
        status, answer = push(daemon, repos.commit("two.rst"), env_secret.encode())
        assert status == 200, answer  # the re-executed daemon still has the secret
        started = reexecuted(daemon, started)  # not a SIGHUP in the middle of the re-exec
        os.kill(daemon.proc.pid, signal.SIGHUP)
        wait_for(lambda: "SIGHUP: configuration re-read" in daemon.log(), "the SIGHUP")
        status, answer = push(daemon, repos.commit("three.rst"), env_secret.encode())
        assert status == 200, answer  # and after re-reading its configuration
        reexecuted(daemon, started)  # the pages are read from the daemon that stays
        shown = everything_shown(daemon, run_id, repos.root / "config.py")
        shown["the record (running)"] = record_bytes(repos.root).decode(errors="replace")
    finally:
        daemon.stop()
    environments = [json.loads(line) for line in env_dump.read_text().splitlines()]
    assert len(environments) == 3
    assert all("DEPLOYHOOK_SECRET" not in env for env in environments)
    assert environments[0]["DEPLOYHOOK_PUSHER"] == "octocat"
    assert git_dump.read_text().count("--- fetch") == 3  # git's child, for each fetch
    assert_nowhere([env_secret], {**shown, "post_deploy's environment": env_dump.read_text(),
                                  "git's environment": git_dump.read_text(),
                                  "the log": daemon.log(),
                                  "the record": record_bytes(repos.root)})


# -- second review, finding 5: the daemon's own /proc/<pid>/environ --------------------------
PARENT_ENV_SCRIPT = """
import os, sys
with open(sys.argv[1], "ab") as f:
    f.write(open(f"/proc/{os.getppid()}/environ", "rb").read() + b"\\n--- run\\n")
"""


def test_children_cannot_read_the_secret_from_the_daemons_proc_environ(repos: Repos) -> None:
    """``DEPLOYHOOK_SECRET`` is wiped from the daemon's initial environment block: a
    post_deploy copying ``/proc/$PPID/environ`` and the test reading
    ``/proc/<daemon>/environ`` find neither the secret nor its name, before and after
    an autoreload (the re-executed daemon gets it back and wipes it again) and a
    SIGHUP; every push is still verified with it."""
    env_secret = "env-secret-" + uuid.uuid4().hex
    copies = repos.root / "parent-environ.bin"
    daemon = start(repos, repos.root / "no-secret-file",
                   env={"DEPLOYHOOK_SECRET": env_secret}, reload="autoreload",
                   post_deploy=[sys.executable, "-c", PARENT_ENV_SCRIPT, str(copies)])
    environ = Path(f"/proc/{daemon.proc.pid}/environ")
    seen: list[bytes] = []
    try:
        seen.append(environ.read_bytes())
        started = json.loads(fetch(daemon.url + "/health")[1])["started"]
        status, answer = push(daemon, repos.commit("one.rst"), env_secret.encode())
        assert status == 200, answer
        wait_for(lambda: json.loads(fetch(daemon.url + "/health")[1]).get("started")
                 not in (None, started), "the autoreload")
        seen.append(environ.read_bytes())
        status, answer = push(daemon, repos.commit("two.rst"), env_secret.encode())
        assert status == 200, answer
        os.kill(daemon.proc.pid, signal.SIGHUP)
        wait_for(lambda: "SIGHUP: configuration re-read" in daemon.log(), "the SIGHUP")
        status, answer = push(daemon, repos.commit("three.rst"), env_secret.encode())
        assert status == 200, answer
        seen.append(environ.read_bytes())
    finally:
        daemon.stop()
    assert copies.read_bytes().count(b"--- run") == 3
    assert all(b"PATH=" in block for block in seen)  # the rest of the block is intact
    assert_nowhere([env_secret, "DEPLOYHOOK_SECRET="],
                   {"post_deploy's copies": copies.read_bytes(),
                    **{f"/proc/<daemon>/environ ({i})": b for i, b in enumerate(seen)}})


# -- git transports ---------------------------------------------------------------------------
def permissive_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's global git config plus ``protocol.allow = always``."""
    config = tmp_path / "gitconfig-allow-all"
    config.write_text(Path(os.environ["GIT_CONFIG_GLOBAL"]).read_text()
                      + "[protocol]\n\tallow = always\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))


def push_submodule_url(repos: Repos, url: str) -> str:
    """Push a commit adding submodule ``evil`` with ``url``; return its SHA."""
    gitlink = git(repos.pusher / "posts", "rev-parse", "HEAD")
    git(repos.pusher, "config", "-f", ".gitmodules", "submodule.evil.path", "evil")
    git(repos.pusher, "config", "-f", ".gitmodules", "submodule.evil.url", url)
    git(repos.pusher, "update-index", "--add", "--cacheinfo", f"160000,{gitlink},evil")
    git(repos.pusher, "add", ".gitmodules")
    git(repos.pusher, "commit", "-q", "-m", "add a submodule")
    git(repos.pusher, "push", "-q", "origin", "HEAD:main")
    return repos.head(repos.pusher)


def a_push(sha: str, before: str, pusher: str = "octocat", delivery_id: str = "d-1",
           repository: str = REPOSITORY) -> Push:
    return Push(ref="refs/heads/main", before=before, after=sha, deleted=False,
                repository=repository, default_branch="main", pusher=pusher,
                delivery_id=delivery_id)


@pytest.mark.parametrize("case", ["ext submodule", "fd submodule", "ext remote",
                                  "ext submodule with GIT_ALLOW_PROTOCOL"])
def test_ext_and_fd_transports_are_never_used(repos: Repos, tmp_path: Path, case: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``protocol.allow = always`` in the user's git config (or ``ext`` in
    ``$GIT_ALLOW_PROTOCOL``), an ``ext::`` or ``fd::`` URL in a pushed .gitmodules or as
    the remote runs nothing: the deploy fails naming the transport, HEAD stays."""
    transport = case.split()[0]
    if case.endswith("GIT_ALLOW_PROTOCOL"):
        monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file:ext")
    else:
        permissive_git_config(tmp_path, monkeypatch)
    pwned = tmp_path / "pwned"
    url = f"ext::sh -c touch% {pwned}" if transport == "ext" else "fd::0"
    before = repos.head(repos.deployed)
    if case == "ext remote":
        git(repos.deployed, "remote", "set-url", "origin", url)
        sha = repos.commit("post.rst")
    else:
        sha = push_submodule_url(repos, url)
    checkout = Checkout(Config(repo_path=str(repos.deployed), git_timeout=30.0))
    try:
        result = checkout.deploy("main", [a_push(sha, before)])
    finally:
        checkout.close()
    assert not pwned.exists(), "the ext:: command ran"
    assert not result.ok
    assert f"transport '{transport}' not allowed" in result.reason, result.reason
    assert repos.head(repos.deployed) == before
    assert not (repos.deployed / "evil" / ".git").exists()


# -- finding 8: payload fields that reach post_deploy's environment ---------------------------
DUMP_SCRIPT = """
import json, os, sys
names = [n for n in os.environ if n.startswith("DEPLOYHOOK_")]
with open(sys.argv[1], "w") as f:
    json.dump({n: os.environ[n] for n in names}, f)
"""


def test_nul_in_the_pushers_name_deploys(repos: Repos, secret_file: Path) -> None:
    """A push whose ``pusher.name`` holds a NUL byte and an escape sequence deploys:
    200, post_deploy runs with the name cleaned, the run is ok, /health has the new
    HEAD, and the next push deploys too."""
    dump = repos.root / "env.json"
    daemon = start(repos, secret_file, post_deploy=[sys.executable, "-c", DUMP_SCRIPT,
                                                    str(dump)])
    try:
        sha = repos.commit("post.rst", "pushed by a strange name\n")
        status, answer = push(daemon, sha, pusher="mal\u0000lory\u001b[31m")
        assert status == 200, answer
        assert json.loads(dump.read_text())["DEPLOYHOOK_PUSHER"] == "mallory[31m"
        health = json.loads(fetch(daemon.url + "/health")[1])
        assert health["head"] == sha and not health["deploying"]
        run = json.loads(fetch(daemon.url + f"/deployments/{answer['run']}")[1])
        assert run["outcome"] == "ok", run
        sha2 = repos.commit("post.rst", "the next push\n")
        status, answer = push(daemon, sha2, pusher="octocat")
        assert status == 200 and answer["head"] == sha2, answer
    finally:
        daemon.stop()


@pytest.mark.parametrize("value", ["nul\u0000byte", "lone \ud800 surrogate",
                                   "bell\u0007 and \u001b]0;title\u0007", "x" * 300_000])
def test_no_payload_value_keeps_post_deploy_from_running(repos: Repos, tmp_path: Path,
                                                        value: str) -> None:
    """Whatever a delivery's pusher, repository or delivery ID holds, post_deploy starts
    and gets it without control characters, as UTF-8, at most ENV_VALUE_LIMIT long."""
    dump = tmp_path / "env.json"
    config = Config(repo_path=str(repos.deployed), git_timeout=30.0,
                    post_deploy=(sys.executable, "-c", DUMP_SCRIPT, str(dump)))
    before = repos.head(repos.deployed)
    sha = repos.commit("post.rst")
    checkout = Checkout(config)
    try:
        result = checkout.deploy("main", [a_push(sha, before, pusher=value, delivery_id=value,
                                                 repository=value)])
    finally:
        checkout.close()
    assert result.ok, result.reason
    env = json.loads(dump.read_text())
    for name in ("DEPLOYHOOK_PUSHER", "DEPLOYHOOK_REPOSITORY", "DEPLOYHOOK_DELIVERY"):
        shown = env[name]
        assert 0 < len(shown) <= ENV_VALUE_LIMIT
        assert not any(ord(c) < 32 or ord(c) == 127 for c in shown), shown
        cleaned = "".join(c for c in value.replace("\ud800", "?") if c.isprintable())
        assert cleaned.startswith(shown)


class CrashingCheckout(Checkout):
    """A checkout with a bug that strikes after HEAD moved."""

    def _post_deploy(self, *args: Any) -> None:
        raise RuntimeError("a bug after HEAD moved")


def test_a_crash_inside_a_run_finishes_it_as_failed(repos: Repos, tmp_path: Path) -> None:
    """An unexpected exception in a deploy: the run is recorded failed with the reason
    and the HEAD it left, the deliveries get a failed result (500), and the worker
    runs the next deploy."""
    config = Config(repo_path=str(repos.deployed), git_timeout=30.0, post_deploy=("true",),
                    state_db=str(tmp_path / "record.sqlite3"))

    async def scenario() -> None:
        recorder = Recorder(config.state_db)
        executor = ThreadPoolExecutor(1)
        worker = GitWorker(CrashingCheckout(config), executor, recorder=recorder)
        try:
            before = repos.head(repos.deployed)
            sha = repos.commit("post.rst", "crash\n")
            result = await worker.submit(a_push(sha, before))
            assert not result.ok
            assert "RuntimeError: a bug after HEAD moved" in result.reason
            assert result.head_after == sha and result.run_id is not None
            run_id = result.run_id
            run = await recorder.run(lambda s: s.run(run_id))
            assert run is not None and run["outcome"] == "failed", run
            assert "a bug after HEAD moved" in run["reason"] and run["head_after"] == sha
            worker.checkout.close()
            worker.checkout = Checkout(config)
            sha2 = repos.commit("post.rst", "fixed\n")
            result = await worker.submit(a_push(sha2, sha))
            assert result.ok and result.head_after == sha2, result.reason
            runs = await recorder.run(lambda s: s.runs())
            assert [r["outcome"] for r in runs] == ["ok", "failed"]
        finally:
            worker.checkout.close()
            executor.shutdown()
            recorder.close()

    asyncio.run(scenario())
