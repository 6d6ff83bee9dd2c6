"""``deployhook history``, ``show``, ``deploy`` and ``send`` as users run them: real git
repositories, ``python -m deployhook`` subprocesses and, for ``send``, a real daemon."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import pytest

from deployhook.git.steps import Step
from deployhook.record.store import DeliveryRecord, Store
from deployhook.settings import load
from tests.helpers import (
    SECRET,
    Daemon,
    Repos,
    free_port,
    git,
    http,
    push_payload,
    signed,
    start_daemon,
    wait_for,
    write_config,
)

WRONG_SECRET = "not-the-secret-0123456789"
PUSH_KEYS = ("ref", "before", "after", "created", "deleted", "forced", "base_ref", "compare",
             "commits", "head_commit", "repository", "pusher", "sender")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m deployhook ARGS``; every command's output is checked for secrets."""
    result = subprocess.run([sys.executable, "-m", "deployhook", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    output = result.stdout + result.stderr
    assert SECRET.decode() not in output, output
    assert WRONG_SECRET not in output, output
    return result


def config_for(repos: Repos, secret_file: Path, **extra: Any) -> Path:
    """A config.py deploying ``repos.deployed`` (the record next to it)."""
    values: dict[str, Any] = {"repo_path": str(repos.deployed),
                              "secret_file": str(secret_file), "reload": "none"}
    return write_config(repos.root / "config.py", **{**values, **extra})


@pytest.fixture
def daemon(repos: Repos, secret_file: Path) -> Iterator[Daemon]:
    """The daemon serving ``repos.deployed`` (repository octo-org/blog) on a free port."""
    proc = start_daemon(repos, secret_file)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
    assert SECRET.decode() not in proc.log()


def test_history_without_a_record_creates_nothing(tmp_path: Path) -> None:
    """No state_db yet: say so, exit 0, and leave no database behind."""
    write_config(tmp_path / "config.py", state_db="state/record.sqlite3")
    result = cli("history", "--config", "config.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"no deployment record at {tmp_path / 'state' / 'record.sqlite3'} yet" \
        in result.stdout
    as_json = cli("history", "--json", "--config", "config.py", cwd=tmp_path)
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {"runs": [], "total": 0}
    assert cli("show", "1", "--config", "config.py", cwd=tmp_path).returncode == 1
    assert not (tmp_path / "state").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.py"]


def test_history_on_a_file_that_is_no_record(tmp_path: Path) -> None:
    """A state_db that is not SQLite: a clear message, exit 1, the file left alone."""
    write_config(tmp_path / "config.py", state_db="record.sqlite3")
    (tmp_path / "record.sqlite3").write_bytes(b"not a database\n" * 100)
    for command in (["history"], ["show", "1"]):
        result = cli(*command, "--config", "config.py", cwd=tmp_path)
        assert result.returncode == 1
        assert "cannot read the deployment record" in result.stderr
        assert "Traceback" not in result.stderr
    assert (tmp_path / "record.sqlite3").read_bytes() == b"not a database\n" * 100


def test_deploy_records_a_cli_run_then_history_and_show(repos: Repos,
                                                       secret_file: Path) -> None:
    """`deploy` brings the checkout to origin's HEAD, recorded as a run with trigger cli."""
    config_for(repos, secret_file)
    before = repos.head(repos.deployed)
    sha = repos.commit("pages/new.rst")
    result = cli("deploy", "--config", "config.py", cwd=repos.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert repos.head(repos.deployed) == sha
    assert f"{before[:12]} -> {sha[:12]}" in result.stdout
    assert "not reloaded" in result.stdout or "reload = none" in result.stdout

    history = cli("history", "--config", "config.py", cwd=repos.root)
    assert history.returncode == 0, history.stderr
    header, row = history.stdout.splitlines()[:2]
    assert header.split()[:5] == ["id", "started", "trigger", "outcome", "duration"]
    assert row.split()[0] == "1" and " cli " in row and " ok " in row
    assert f"{before[:8]} -> {sha[:8]}" in row and getpass.getuser() in row

    shown = cli("show", "1", "--config", "config.py", cwd=repos.root)
    assert shown.returncode == 0, shown.stderr
    assert "run 1: ok" in shown.stdout and "trigger cli" in shown.stdout
    assert "$ git fetch" in shown.stdout and "$ git merge --ff-only" in shown.stdout
    assert "Fast-forward" in shown.stdout  # each step's output
    assert "deliveries (0)" in shown.stdout

    runs = json.loads(cli("history", "--json", "--config", "config.py",
                          cwd=repos.root).stdout)
    assert runs["total"] == 1
    assert runs["runs"][0]["trigger"] == "cli" and runs["runs"][0]["head_after"] == sha
    run = json.loads(cli("show", "1", "--json", "--config", "config.py", cwd=repos.root).stdout)
    assert run["outcome"] == "ok" and run["head_before"] == before
    assert [s["name"] for s in run["steps"]][:2] == ["fetch", "merge"]
    assert all(s["status"] == 0 for s in run["steps"])

    for unknown in ("42", "0", str(2**70)):
        missing = cli("show", unknown, "--config", "config.py", cwd=repos.root)
        assert missing.returncode == 1 and f"no run {unknown} " in missing.stderr
    again = cli("deploy", "--config", "config.py", cwd=repos.root)
    assert again.returncode == 0 and "already up to date" in again.stdout


# Free text a forge lets anyone put in a display name, a ref or a command's output.
FORGED = "mallory\x00\n2  2024-01-01 00:00:00  cli  ok  0.10s  forged"
ESCAPES = "\x1b[2J\x1b]0;pwned\x07eve\x7f\x9b31m\x85\r"
# What a terminal must never get from the record: C0 but newline, DEL, C1.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def test_history_and_show_print_control_characters_from_the_record_visibly(
        tmp_path: Path) -> None:
    """Second review, finding 8: a pusher name with NUL + newline forged a row of
    ``deployhook history``, and ESC reached the terminal from ``history``, ``show`` and
    ``show --follow``.  Every value from the record is printed with its control
    characters escaped (``\\x1b``); a step's output keeps its lines and tabs."""
    write_config(tmp_path / "config.py", state_db="record.sqlite3")
    store = Store(str(tmp_path / "record.sqlite3"))
    row = store.add_delivery(DeliveryRecord(
        f"d-{ESCAPES}", "push", "203.0.113.9", "valid", f"refs/heads/{ESCAPES}", "a" * 40,
        "b" * 40, FORGED, accepted=True))
    run_id = store.start_run("webhook", f"main{ESCAPES}", "a" * 40, [row],
                             [FORGED, ESCAPES])
    store.answer_delivery(row, 500, "failed", ESCAPES, run_id)
    store.finish_run(run_id, False, "a" * 40, "a" * 40, f"failed\n{FORGED}{ESCAPES}", [
        Step(f"post{ESCAPES}", f"notify {ESCAPES}", 1, 0.1,
             f"one\ttabbed\n{ESCAPES}two\nthree")])
    store.close()

    history = cli("history", "--config", "config.py", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert len(history.stdout.splitlines()) == 2, history.stdout  # the header and one row
    shown = cli("show", str(run_id), "--config", "config.py", cwd=tmp_path)
    followed = cli("show", str(run_id), "--follow", "--config", "config.py", cwd=tmp_path)
    assert shown.returncode == 0 and followed.returncode == 1, shown.stderr + followed.stderr
    for out in (history.stdout, shown.stdout, followed.stdout):
        lines = out.splitlines()
        assert not RAW_CONTROL.search(out.replace("\ttabbed", "")), out
        assert "\\x1b[2J\\x1b]0;pwned\\x07eve\\x7f\\x9b31m" in out, out
        assert not any(line.lstrip().startswith("2 ") for line in lines), out
    for out in (shown.stdout, followed.stdout):
        assert "| one\ttabbed" in out and "| three" in out, out
    assert "by mallory\\x00\\x0a2  2024" in shown.stdout, shown.stdout


def test_deploy_from_scratch_clones_with_submodules(repos: Repos, secret_file: Path) -> None:
    """With repo_url and no checkout, `deploy` clones the default branch and the submodule."""
    fresh = repos.root / "fresh"
    config_for(repos, secret_file, repo_path=str(fresh), repo_url=repos.origin.as_uri())
    result = cli("deploy", "--config", "config.py", cwd=repos.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cloning main" in result.stdout and "cloned main" in result.stdout
    assert repos.head(fresh) == repos.head(repos.pusher)
    assert (fresh / "posts" / "index.rst").read_text() == "Hello\n=====\n"
    assert not list(repos.root.glob(".deployhook-clone-*"))
    run = json.loads(cli("show", "1", "--json", "--config", "config.py", cwd=repos.root).stdout)
    assert run["outcome"] == "ok" and run["trigger"] == "cli" and run["branch"] == "main"
    assert run["head_before"] is None and run["head_after"] == repos.head(fresh)
    assert run["steps"][0]["name"] == "clone"


def test_deploy_failure_exits_1_with_gits_reason(repos: Repos, secret_file: Path) -> None:
    """Origin unreachable: exit 1, git's reason shown, the run recorded as failed."""
    config_for(repos, secret_file)
    head = repos.head(repos.deployed)
    shutil.move(repos.origin, repos.root / "gone.git")
    result = cli("deploy", "--config", "config.py", cwd=repos.root)
    assert result.returncode == 1
    assert "deploy FAILED" in result.stdout
    assert "fetch failed: fatal:" in result.stdout
    assert "does not appear to be a git repository" in result.stdout
    assert repos.head(repos.deployed) == head
    runs = json.loads(cli("history", "--json", "--config", "config.py",
                          cwd=repos.root).stdout)["runs"]
    assert [(r["trigger"], r["outcome"]) for r in runs] == [("cli", "failed")]
    assert "does not appear to be a git repository" in runs[0]["reason"]
    history = cli("history", "--config", "config.py", cwd=repos.root).stdout
    assert " failed " in history and "fetch failed: fatal:" in history


def test_send_push_deploys_the_remotes_head(repos: Repos, daemon: Daemon) -> None:
    """`send --event push` after a push to origin: the daemon deploys that very commit."""
    before = repos.head(repos.deployed)
    sha = repos.commit("pages/sent.rst")
    result = cli("send", "--event", "push", "--config", "config.py", cwd=repos.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200" in result.stdout
    answer = json.loads(result.stdout[result.stdout.index("{"):])
    assert answer["result"] == "deployed" and answer["after"] == sha
    assert answer["before"] == before
    assert repos.head(repos.deployed) == sha

    history = cli("history", "--config", "config.py", cwd=repos.root)
    row = history.stdout.splitlines()[1]
    assert " webhook " in row and " ok " in row and f"-> {sha[:8]}" in row
    run = json.loads(cli("show", str(answer["run"]), "--json", "--config", "config.py",
                         cwd=repos.root).stdout)
    [delivery] = run["deliveries"]
    assert delivery["event"] == "push" and delivery["after"] == sha
    assert delivery["before"] == before and delivery["pusher"] == getpass.getuser()
    assert delivery["status"] == 200 and delivery["result"] == "deployed"
    uuid.UUID(delivery["delivery_id"], version=4)


def test_deploy_waits_for_the_daemons_deploy(repos: Repos, daemon: Daemon) -> None:
    """While the daemon deploys (a slow fetch), `deploy` says it waits, then runs after it."""
    sha = repos.commit()
    repos.slow(2)
    answers: list[tuple[int, dict[str, Any]]] = []
    body, headers = signed(push_payload(sha), delivery="slow-1")
    thread = threading.Thread(target=lambda: answers.append(
        http("POST", daemon.url + "/github", body, headers)))
    thread.start()
    deadline = time.monotonic() + 20
    while repos.fetches() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    result = cli("deploy", "--config", "config.py", cwd=repos.root)
    thread.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "another deploy (the daemon's) is running; waiting for it" in result.stdout
    assert "already up to date" in result.stdout  # the daemon's run got there first
    assert answers[0][0] == 200 and answers[0][1]["result"] == "deployed"
    runs = json.loads(cli("history", "--json", "--config", "config.py",
                          cwd=repos.root).stdout)["runs"]
    webhook, by_cli = sorted(runs, key=lambda r: r["id"])
    assert (webhook["trigger"], by_cli["trigger"]) == ("webhook", "cli")
    assert webhook["outcome"] == by_cli["outcome"] == "ok"
    steps = json.loads(cli("show", str(by_cli["id"]), "--json", "--config", "config.py",
                           cwd=repos.root).stdout)["steps"]
    fetch = next(step for step in steps if step["name"] == "fetch")
    assert fetch["duration"] >= 2  # the slow remote, so the runs could have overlapped
    assert webhook["finished"] <= by_cli["finished"] - fetch["duration"] + 0.05  # did not
    assert repos.head(repos.deployed) == sha


def test_send_ping_answers_pong(repos: Repos, daemon: Daemon) -> None:
    result = cli("send", "--event", "ping", "--config", "config.py", cwd=repos.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200" in result.stdout
    answer = json.loads(result.stdout[result.stdout.index("{"):])
    assert answer["result"] == "pong" and answer["zen"]


def test_send_with_the_wrong_secret_shows_the_401(repos: Repos, daemon: Daemon) -> None:
    """A secret the daemon does not have: exit 1 with the daemon's reason."""
    result = cli("send", "--event", "ping", "--config", "config.py", cwd=repos.root,
                 env={"DEPLOYHOOK_SECRET": WRONG_SECRET})
    assert result.returncode == 1
    assert "HTTP 401" in result.stdout
    assert "does not match the body: check the webhook's secret" in result.stdout


def test_send_without_a_daemon_says_so(repos: Repos, secret_file: Path) -> None:
    config_for(repos, secret_file, port=free_port())
    result = cli("send", "--event", "push", "--config", "config.py", cwd=repos.root)
    assert result.returncode == 1
    assert "cannot reach the daemon at http://127.0.0.1:" in result.stderr
    assert "connection refused" in result.stderr and "Is it running" in result.stderr
    assert "Traceback" not in result.stderr


class Capture(BaseHTTPRequestHandler):
    """Records one request and answers like the daemon would."""

    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Capture.seen.append((dict(self.headers), body))
        answer = b'{"result": "ignored", "reason": "captured"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def test_send_builds_a_delivery_like_githubs(repos: Repos, secret_file: Path) -> None:
    """Headers, signatures and payload fields of a sent push and ping (repository unset,
    non-GitHub remote: full_name is local/<folder>)."""
    config_for(repos, secret_file)
    server = HTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    Capture.seen.clear()
    try:
        sha = repos.commit()
        push = cli("send", "--event", "push", "--url", url, "--config", "config.py",
                   cwd=repos.root)
        ping = cli("send", "--event", "ping", "--url", url, "--config", "config.py",
                   cwd=repos.root)
    finally:
        server.shutdown()
        server.server_close()
    assert push.returncode == 0 and ping.returncode == 0, push.stderr + ping.stderr
    assert "HTTP 202" in push.stdout and '"captured"' in push.stdout
    (push_headers, push_body), (ping_headers, ping_body) = Capture.seen
    for headers, body, event in ((push_headers, push_body, "push"),
                                 (ping_headers, ping_body, "ping")):
        assert headers["X-GitHub-Event"] == event
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == "GitHub-Hookshot/deployhook-send"
        assert uuid.UUID(headers["X-GitHub-Delivery"]).version == 4
        assert headers["X-Hub-Signature-256"] == "sha256=" + hmac.new(
            SECRET, body, hashlib.sha256).hexdigest()
        assert headers["X-Hub-Signature"] == "sha1=" + hmac.new(
            SECRET, body, hashlib.sha1).hexdigest()
        assert json.dumps(json.loads(body), separators=(",", ":"),
                          ensure_ascii=False).encode() == body  # compact, as GitHub sends
    payload = json.loads(push_body)
    assert set(PUSH_KEYS) <= set(payload)
    assert payload["ref"] == "refs/heads/main" and payload["after"] == sha
    assert payload["before"] == repos.head(repos.deployed) != sha
    assert payload["created"] is False and payload["deleted"] is False
    assert payload["repository"]["full_name"] == "local/deployed"
    assert payload["repository"]["default_branch"] == "main"
    assert payload["pusher"]["name"] == getpass.getuser()
    assert payload["sender"]["login"] == getpass.getuser()
    assert payload["commits"] == [] and payload["head_commit"] is None  # not fetched locally
    ping_payload = json.loads(ping_body)
    assert {"zen", "hook_id", "hook", "repository"} <= set(ping_payload)
    hook = ping_payload["hook"]
    assert hook["type"] == "Repository" and hook["id"] == ping_payload["hook_id"]
    assert hook["events"] == ["push"]
    assert hook["config"] == {"content_type": "json", "insecure_ssl": "0", "url": url}
    assert ping_payload["repository"]["full_name"] == "local/deployed"


def test_send_lists_local_commits_and_takes_a_branch(repos: Repos, secret_file: Path) -> None:
    """When the checkout already has the pushed commits they are listed (head_commit too);
    --branch picks another branch; a branch the remote lacks is a clear error."""
    config_for(repos, secret_file)
    git(repos.pusher, "checkout", "-q", "-b", "feature")
    sha = repos.commit("feature.rst", push=False)
    git(repos.pusher, "push", "-q", "origin", "feature")
    git(repos.deployed, "fetch", "-q", "origin", "feature")  # now the objects are local
    server = HTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    Capture.seen.clear()
    try:
        result = cli("send", "--event", "push", "--branch", "feature", "--url", url,
                     "--config", "config.py", cwd=repos.root)
        missing = cli("send", "--event", "push", "--branch", "nope", "--url", url,
                      "--config", "config.py", cwd=repos.root)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    payload = json.loads(Capture.seen[0][1])
    assert payload["ref"] == "refs/heads/feature" and payload["after"] == sha
    assert [c["id"] for c in payload["commits"]] == [sha]
    assert payload["head_commit"]["id"] == sha
    assert payload["head_commit"]["added"] == ["feature.rst"]
    assert missing.returncode == 1 and "the remote has no branch 'nope'" in missing.stderr
    assert len(Capture.seen) == 1  # nothing was sent for the missing branch


# -- init and check: first use (issue 10 items 8 and 10; issue 9 finding 6) -----------

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ghp_TOPSECRETTOKEN"
UNIT = ROOT / "contrib" / "systemd" / "deployhook.service"


def test_init_in_an_empty_folder_writes_a_commented_config(tmp_path: Path) -> None:
    """No config.py: `init` writes the commented example (not "run 'deployhook init'"),
    then the secret; a rerun keeps the edited config."""
    first = cli("init", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    config = tmp_path / "config.py"
    text = config.read_text()
    assert text == (ROOT / "config.py").read_text()  # the example the repository ships
    assert "# " in text and "repo_path" in first.stdout
    assert "not found" not in first.stdout + first.stderr
    assert (tmp_path / "secret.txt").is_file()
    config.write_text(text.replace("port = 8000", "port = 8123"))
    second = cli("init", cwd=tmp_path)
    assert second.returncode == 0 and "wrote" not in second.stdout, second.stdout
    assert "port = 8123" in config.read_text()


def test_init_writes_a_status_password_and_says_how_to_log_in(tmp_path: Path) -> None:
    """A random 0600 password in status-password.txt next to the config; the output
    names the user and the file, never the password; a rerun keeps it."""
    write_config(tmp_path / "config.py", port=8123)
    first = cli("init", "--config", "config.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "status-password.txt"
    password = path.read_text().strip()
    assert len(password) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert password not in first.stdout + first.stderr
    assert password != (tmp_path / "secret.txt").read_text().strip()
    assert "'deployhook'" in first.stdout and str(path) in first.stdout
    assert "http://127.0.0.1:8123/" in first.stdout
    second = cli("init", "--config", "config.py", cwd=tmp_path)
    assert path.read_text().strip() == password and password not in second.stdout


def test_init_in_fleet_mode_writes_a_fleet_key_to_copy_to_every_node(tmp_path: Path) -> None:
    """With redis_url: a random 0600 fleet key in fleet-key.txt next to the config (the
    secret's folder); the output says to copy it to every node, never shows it; a rerun
    keeps it.  Without redis_url, none is written."""
    write_config(tmp_path / "config.py", redis_url="redis://127.0.0.1:6379/0")
    first = cli("init", "--config", "config.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "fleet-key.txt"
    key = path.read_text().strip()
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in first.stdout + first.stderr
    assert f"{path} (mode 0600); copy this same file to every node" in first.stdout
    assert cli("init", "--config", "config.py", cwd=tmp_path).returncode == 0
    assert path.read_text().strip() == key
    (tmp_path / "single").mkdir()
    write_config(tmp_path / "single" / "config.py", port=8123)
    assert cli("init", "--config", "config.py", cwd=tmp_path / "single").returncode == 0
    assert not (tmp_path / "single" / "fleet-key.txt").exists()


def test_init_uses_the_configured_password_file_and_user(tmp_path: Path) -> None:
    write_config(tmp_path / "config.py", status_user="ops",
                 status_password_file=str(tmp_path / "pw" / "page.txt"))
    (tmp_path / "pw").mkdir()
    result = cli("init", "--config", "config.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pw" / "page.txt").is_file()
    assert not (tmp_path / "status-password.txt").exists()
    assert "'ops'" in result.stdout


def test_init_config_leaves_the_units_credentials_in_charge(tmp_path: Path) -> None:
    """``deployhook init --config /etc/deployhook/config.py`` as the Debian package's
    README says: the secret and the password land where the shipped unit's
    LoadCredential= reads them (next to the config), and the config sets neither
    ``secret_file`` nor ``status_password_file``, so under the unit
    ($CREDENTIALS_DIRECTORY) the credentials are used, not the root-only files."""
    etc, creds = tmp_path / "etc", tmp_path / "credentials"
    etc.mkdir()
    first = cli("init", "--config", str(etc / "config.py"), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    unit = UNIT.read_text()
    for name, file in (("webhook-secret", "secret.txt"),
                       ("status-password", "status-password.txt")):
        assert f"LoadCredential={name}:/etc/deployhook/{file}\n" in unit
        assert stat.S_IMODE((etc / file).stat().st_mode) == 0o600
        creds.mkdir(exist_ok=True)
        (etc / file).rename(creds / name)  # what systemd hands the service; gone from etc
    result = cli("check", "--config", str(etc / "config.py"), cwd=tmp_path,
                 env={"CREDENTIALS_DIRECTORY": str(creds)})
    out = result.stdout + result.stderr
    assert f"OK   secret     {creds / 'webhook-secret'} is readable" in out, out
    assert "secret.txt" not in out, out
    config = load(etc / "config.py", {"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.status_password_file == str(creds / "status-password")


def check(config: Path) -> tuple[int, str]:
    result = cli("check", "--config", str(config), cwd=config.parent)
    return result.returncode, result.stdout + result.stderr


def test_check_never_shows_repo_urls_credentials(repos: Repos, secret_file: Path) -> None:
    """A repo_url with a token: neither the "will be cloned" line nor the remote's
    failure shows it (issue 9, finding 6)."""
    url = f"https://alice:{TOKEN}@127.0.0.1:9/octo-org/blog.git"
    status, out = check(config_for(repos, secret_file, repo_path=str(repos.root / "new"),
                                   repo_url=url, port=free_port()))
    assert "will be cloned from https://***@127.0.0.1:9/" in out, out
    assert TOKEN not in out and "alice" not in out, out
    assert status == 1  # the remote does not answer


def fixes(out: str) -> list[str]:
    """The fixes printed under FAIL lines."""
    lines = out.splitlines()
    return [line.split("fix: ", 1)[1] for previous, line in pairwise(lines)
            if previous.startswith("FAIL") and "fix: " in line]


def test_check_suggests_no_checkout_of_a_branch_nobody_has(repos: Repos,
                                                           secret_file: Path) -> None:
    """branch = "mastr" (a typo): no `git checkout mastr` (it would fail); the fix names
    the branches the remote has instead."""
    status, out = check(config_for(repos, secret_file, branch="mastr", port=free_port()))
    assert status == 1, out
    assert "checkout mastr" not in out and "push" not in out, out
    assert fixes(out) and all("one the remote has: main" in fix for fix in fixes(out)), out
    mistaken = subprocess.run(["git", "-C", str(repos.deployed), "checkout", "mastr"],
                              capture_output=True)
    assert mistaken.returncode != 0  # what the old advice said to run


def test_check_suggests_a_checkout_that_works(repos: Repos, secret_file: Path) -> None:
    """branch = one the remote has: the suggested `git checkout` works as printed, and
    check passes after it."""
    git(repos.pusher, "push", "-q", "origin", "HEAD:refs/heads/production")
    config = config_for(repos, secret_file, branch="production", port=free_port(),
                        repository="octo-org/blog")
    status, out = check(config)
    where = f"git -C {repos.deployed}"
    assert status == 1 and fixes(out) == [
        f"{where} fetch origin production:production && {where} checkout production"], out
    subprocess.run(fixes(out)[0], shell=True, check=True, capture_output=True)
    assert check(config)[0] == 0


def test_check_suggests_pushing_a_local_branch(repos: Repos, secret_file: Path) -> None:
    """On a local branch the remote lacks: push it (which works), or choose another."""
    git(repos.deployed, "checkout", "-q", "-b", "staging")
    status, out = check(config_for(repos, secret_file, port=free_port()))
    assert status == 1, out
    (fix,) = fixes(out)
    assert fix.startswith(f"git -C {repos.deployed} push origin staging, or ") and "main" in fix
    git(repos.deployed, "push", "-q", "origin", "staging")
    assert "OK   remote" in check(config_for(repos, secret_file, port=free_port()))[1]


def test_check_while_the_daemon_runs(repos: Repos, daemon: Daemon) -> None:
    """The port is taken by this config's own running deployhook: OK, not a FAIL that
    tells a newcomer to stop it."""
    status, out = check(repos.root / "config.py")
    assert status == 0, out
    assert "OK   listen     deployhook is already running" in out, out
    assert "FAIL" not in out, out


def polling_line(out: str) -> str:
    """check's ``polling`` line (with its fix's line, if any)."""
    lines = out.splitlines()
    (at,) = [n for n, line in enumerate(lines) if line[5:].startswith("polling ")]
    fix = lines[at + 1:at + 2]
    return "\n".join(lines[at:at + 1] + [f for f in fix if "fix: " in f])


def test_check_shows_when_the_target_last_got_a_delivery_and_polled(
        repos: Repos, secret_file: Path) -> None:
    """Issue 24: with the daemon running, check's polling line shows its last delivery
    and last poll; a config that cannot log in is told the daemon shows them only with
    the status password; once the daemon is stopped, the last delivery comes from the
    record and the line says no daemon answers (no failure)."""
    daemon = start_daemon(repos, secret_file, poll_interval=0.2)
    config = repos.root / "config.py"
    when = r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+s ago\)"
    try:
        daemon.wait_ready()
        sha = repos.commit()
        status, body = http("POST", daemon.url + "/github", *signed(push_payload(sha)))
        assert (status, body["result"]) == (200, "deployed"), body
        wait_for(lambda: http("GET", daemon.url + "/health")[1]["poll"]["last_poll"],
                 what="a poll")
        status, out = check(config)
        assert status == 0, out
        assert re.fullmatch(rf"OK   polling    last delivery {when}; polls every 0\.2 s; "
                            rf"last poll {when}", polling_line(out)), out
        stranger = config_for(repos, secret_file, port=daemon.port, poll_interval=0.2,
                              status_password_file=str(repos.root / "no-such-file"))
        line = polling_line(check(stranger)[1])
        assert "shows its last poll only to a login with the status password" in line, line
        assert re.search(rf"last delivery {when}", line), line  # from the record
    finally:
        daemon.stop()
    status, out = check(config)
    assert status == 0, out
    assert re.fullmatch(rf"OK   polling    last delivery {when}; polls every 0\.2 s, but no "
                        rf"daemon answers at http://127\.0\.0\.1:{daemon.port}: nothing "
                        r"polls until 'deployhook serve' runs", polling_line(out)), out


def test_check_shows_a_failing_poll_and_polling_off(repos: Repos, secret_file: Path) -> None:
    """A failing poll is a WARN with the daemon's error and a fix; poll_interval = 0 says
    polling is off; no delivery yet is said so."""
    daemon = start_daemon(repos, secret_file, poll_interval=0.2)
    config = repos.root / "config.py"
    try:
        daemon.wait_ready()
        git(repos.deployed, "remote", "set-url", "origin", str(repos.root / "gone.git"))
        wait_for(lambda: http("GET", daemon.url + "/health")[1]["poll"]["failures"] >= 2,
                 what="two failed polls")
        line = polling_line(check(config)[1])
        assert line.startswith("WARN polling    no delivery yet; polls every 0.2 s; the "
                               "last poll failed ("), line
        assert "gone.git" in line and "fix: check the remote's URL" in line, line
    finally:
        daemon.stop()
    off = config_for(repos, secret_file, port=free_port(), poll_interval=0)
    assert polling_line(check(off)[1]) == (
        "OK   polling    no delivery yet; polling is off (poll_interval = 0)")
