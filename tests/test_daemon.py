"""The daemon as users run it: ``python -m deployhook`` as a real subprocess."""

from __future__ import annotations

import collections
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import (
    REPOSITORY,
    SECRET,
    Daemon,
    Repos,
    basic_auth,
    child_commands,
    deliver_push,
    free_port,
    http,
    push_payload,
    signed,
    start_daemon,
    write_config,
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployhook", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def deliver(daemon: Daemon, sha: str, delivery: str = "d-1") -> tuple[int, dict]:
    return deliver_push(daemon.url, sha, delivery)


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_init_writes_a_random_secret_once(tmp_path: Path) -> None:
    """`deployhook init` creates a 0600 random secret, keeps it on a rerun, never prints it."""
    write_config(tmp_path / "config.py")
    first = cli("init", "--config", "config.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    secret = (tmp_path / "secret.txt").read_text().strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE((tmp_path / "secret.txt").stat().st_mode) == 0o600
    assert secret not in first.stdout + first.stderr
    second = cli("init", "--config", "config.py", cwd=tmp_path)
    assert "keeping the existing secret" in second.stdout
    assert (tmp_path / "secret.txt").read_text().strip() == secret


def test_unknown_key_stops_serve_with_its_name(tmp_path: Path) -> None:
    """A typo in config.py is an error at start-up that names the key."""
    write_config(tmp_path / "config.py", pull_stratgy="reset")
    result = cli("serve", "--config", "config.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "pull_stratgy" in result.stderr and "pull_strategy" in result.stderr


def test_not_a_checkout_stops_serve(tmp_path: Path) -> None:
    write_config(tmp_path / "config.py", repo_path=str(tmp_path / "nowhere"))
    result = cli("serve", "--config", "config.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "not a git checkout" in result.stderr


def test_reload_none_keeps_the_process(repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, reload="none")
    try:
        started = daemon.wait_ready()["started"]
        status, body = deliver(daemon, repos.commit())
        assert status == 200, body
        time.sleep(0.5)
        assert daemon.proc.poll() is None
        assert daemon.wait_ready()["started"] == started
    finally:
        assert daemon.stop() == 0


def test_reload_exit_ends_cleanly_after_answering(repos: Repos, secret_file: Path) -> None:
    """`reload = "exit"`: the delivery is answered, then the process exits 0."""
    daemon = start_daemon(repos, secret_file, reload="exit")
    daemon.wait_ready()
    sha = repos.commit()
    status, body = deliver(daemon, sha)
    assert status == 200 and body["head"] == sha
    assert daemon.proc.wait(20) == 0
    assert "stopped" in daemon.log()


def test_autoreload_reexecutes_after_a_deploy(repos: Repos, secret_file: Path) -> None:
    """`reload = "autoreload"`: same PID, new process image serving the new commit."""
    daemon = start_daemon(repos, secret_file, reload="autoreload")
    try:
        before = daemon.wait_ready()
        sha = repos.commit()
        status, body = deliver(daemon, sha)
        assert status == 200, body

        def reloaded() -> bool:
            try:
                health = http("GET", daemon.url + "/health", timeout=2)[1]
            except OSError:
                return False
            return health["started"] != before["started"]

        assert wait_for(reloaded), daemon.log()
        after = daemon.wait_ready()
        assert after["pid"] == before["pid"] and after["head"] == sha
        assert after["runs"] == 1  # the record's count survives the re-exec
        assert "re-executing" in daemon.log()
        # A delivery for the same commit after the reload: already deployed, no reload loop.
        status, body = deliver(daemon, sha, delivery="d-2")
        assert status == 200 and body["reason"].startswith("already deployed")
    finally:
        assert daemon.stop() == 0


def test_sigterm_stops_cleanly(repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, reload="none")
    daemon.wait_ready()
    assert daemon.stop() == 0
    assert "stopped" in daemon.log()
    assert SECRET.decode() not in daemon.log()


# -- issue 10: stop signals at start-up, HEAD moved under the daemon, re-exec ---------------


def test_stop_signal_right_after_listening_is_clean(repos: Repos, secret_file: Path) -> None:
    """SIGINT and SIGTERM sent the moment "listening" is read from the daemon's stderr
    (10 of each): every run takes the clean shutdown, exits 0 and logs "stopped"."""
    outcomes = []
    for sig in [signal.SIGINT, signal.SIGTERM] * 10:
        config = write_config(repos.root / "config.py", port=free_port(), reload="none",
                              repo_path=str(repos.deployed), secret_file=str(secret_file),
                              repository=REPOSITORY)
        proc = subprocess.Popen([sys.executable, "-m", "deployhook", "serve", "--config",
                                 str(config)], cwd=repos.root, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        seen = b""
        for line in proc.stderr:
            seen += line
            if b"listening on" in line:
                proc.send_signal(sig)
                break
        seen += proc.stderr.read()
        code = proc.wait(30)
        outcomes.append((sig.name, code, b"stopped" in seen, b"Traceback" in seen))
    bad = [o for o in outcomes if o[1:] != (0, True, False)]
    assert not bad, f"{len(bad)} of {len(outcomes)} runs not clean: {bad}"


class StatusListener:
    """A datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.05)
        self.statuses: list[str] = []

    def status_with(self, text: str, timeout: float) -> bool:
        """Read datagrams until a STATUS= containing ``text`` came (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            if any(text in status for status in self.statuses):
                return True
            if time.monotonic() > deadline:
                return False
            try:
                fields = self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                continue
            self.statuses += [f[7:] for f in fields if f.startswith("STATUS=")]

    def close(self) -> None:
        self.sock.close()


def page(daemon: Daemon) -> str:
    request = urllib.request.Request(daemon.url + "/", headers=basic_auth())
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_status_after_a_webhook_deploy_names_the_new_head(repos: Repos, secret_file: Path,
                                                         tmp_path: Path) -> None:
    """systemd's STATUS= sent after a deploy names the HEAD the deploy moved to."""
    notify = StatusListener(tmp_path)
    daemon = start_daemon(repos, secret_file, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        daemon.wait_ready()
        sha = repos.commit()
        status, body = deliver(daemon, sha)
        assert status == 200, body
        assert notify.status_with("last deploy", 20), notify.statuses
        after = [s for s in notify.statuses if "last deploy" in s]
        assert f"HEAD {sha[:12]}" in after[0], after
    finally:
        assert daemon.stop() == 0
        notify.close()


def test_a_checkout_moved_by_deployhook_deploy_shows_without_a_restart(
        repos: Repos, secret_file: Path, tmp_path: Path) -> None:
    """`deployhook deploy` moves HEAD while the daemon runs: /health, the status page
    and STATUS= show the new HEAD without a restart or a delivery (within a second on an
    idle machine; waited up to 10 s here), and /health's last deploy and run count are
    the record's (the CLI's run)."""
    notify = StatusListener(tmp_path)
    daemon = start_daemon(repos, secret_file, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        old = daemon.wait_ready()
        sha = repos.commit()
        deployed = cli("deploy", "--config", "config.py", cwd=repos.root)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert wait_for(lambda: daemon.wait_ready()["head"] == sha, timeout=10.0), \
            (old, daemon.wait_ready())
        health = daemon.wait_ready()
        assert health["last_deploy"]["head_after"] == sha
        assert health["last_deploy"]["trigger"] == "cli" and health["runs"] == 1
        assert wait_for(lambda: sha in page(daemon), timeout=10.0)
        assert notify.status_with(f"HEAD {sha[:12]}", 10.0), notify.statuses
    finally:
        assert daemon.stop() == 0
        notify.close()


def test_reexec_drains_and_writes_the_records_pending_rows(repos: Repos,
                                                           secret_file: Path) -> None:
    """A re-executing reload closes the record first, as SIGTERM does: a delivery answered
    just before it, whose row waits for a locked database, is still recorded."""
    daemon = start_daemon(repos, secret_file, reload="autoreload")
    before = daemon.wait_ready()
    held = socket.create_connection(("127.0.0.1", daemon.port), timeout=20)
    try:
        body, headers = signed(push_payload("1" * 40, ref="refs/heads/elsewhere"),
                               delivery="held-1")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        held.sendall(f"POST /github HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                     f"Expect: 100-continue\r\n{head}\r\n".encode())
        assert b"100" in held.recv(100)  # prepare() ran: this answer is in flight
        status, answer = deliver(daemon, repos.commit())
        assert status == 200, answer  # the reload waits for the held delivery
        lock = sqlite3.connect(repos.root / "deployhook.sqlite3", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # the held delivery's row must wait for this
        held.sendall(body)
        assert b" 202 " in held.recv(4096).split(b"\r\n")[0] + b" "
        assert wait_for(lambda: "re-executing the process" in daemon.log()), daemon.log()
        lock.execute("ROLLBACK")
        lock.close()

        def reloaded() -> bool:
            try:
                return http("GET", daemon.url + "/health", timeout=2)[1]["started"] \
                    != before["started"]
            except OSError:
                return False

        assert wait_for(reloaded), daemon.log()
        with sqlite3.connect(repos.root / "deployhook.sqlite3") as db:
            ids = [r[0] for r in db.execute("SELECT delivery_id FROM deliveries")]
        assert "held-1" in ids, (ids, daemon.log())
        assert "closing the record" in daemon.log()
    finally:
        held.close()
        assert daemon.stop() == 0


# -- strangers against a reload and a stop: they hold it ANSWER_GRACE (5 s) at most ------


def headers_only(port: int) -> socket.socket:
    """A stranger's delivery: its headers (a bad signature) and never its body.  Returns
    the connection once the daemon counts its answer in flight (100 Continue)."""
    body, headers = signed(push_payload("2" * 40), secret=b"not the secret",
                           delivery="stranger-held")
    held = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    held.sendall(f"POST /github HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                 f"Expect: 100-continue\r\n{head}\r\n".encode())
    assert b"100" in held.recv(100)
    return held


def test_strangers_never_hold_off_the_reload_after_a_deploy(repos: Repos,
                                                            secret_file: Path) -> None:
    """``autoreload``, a stranger holding a delivery without its body and two more posting
    bad signatures back to back (before: the reload waited for a moment with no answer in
    flight, which never came): the deploy re-executes the process all the same, the held
    request is closed unanswered, and every bad signature is answered 401, none reset
    (those that came during the re-exec waited in the kept socket)."""
    daemon = start_daemon(repos, secret_file, reload="autoreload")
    before = daemon.wait_ready()["started"]
    stop, statuses = threading.Event(), collections.Counter()

    def bad_signatures() -> None:
        body, headers = signed(push_payload("3" * 40), secret=b"not the secret",
                               delivery="stranger-bad")
        while not stop.is_set():
            try:
                statuses[http("POST", daemon.url + "/github", body, headers)[0]] += 1
            except OSError as exc:
                statuses[repr(exc)] += 1

    held = headers_only(daemon.port)
    senders = [threading.Thread(target=bad_signatures) for _ in range(2)]
    try:
        for sender in senders:
            sender.start()
        status, answer = deliver(daemon, repos.commit())
        assert status == 200, answer

        def reloaded() -> bool:
            try:
                return http("GET", daemon.url + "/health", timeout=5)[1]["started"] != before
            except OSError:
                return False

        assert wait_for(reloaded, timeout=40), daemon.log()
        assert held.recv(100) == b""  # closed without an answer
        seen = sum(statuses.values())
        assert wait_for(lambda: sum(statuses.values()) > seen + 2)  # the new process answers
    finally:
        stop.set()
        for sender in senders:
            sender.join(30)
        held.close()
        assert daemon.stop() == 0
    assert set(statuses) == {401}, statuses
    assert "1 webhook answers still unsent after 5.0s with no deploy running: closing " \
        "their connections" in daemon.log()


def test_a_stop_lets_the_deploy_answer_and_closes_a_strangers_held_request(
        repos: Repos, secret_file: Path) -> None:
    """SIGTERM while a deploy runs (a 2 s fetch) and a stranger holds a delivery without
    its body, ``stop_timeout`` 60 s: the deploy finishes and is answered 200, the held
    request is closed unanswered after ANSWER_GRACE, and the daemon exits 0 ("stopped").
    Before, it waited the whole ``stop_timeout`` for that answer and exited 1, logging
    that a deploy was still running."""
    daemon = start_daemon(repos, secret_file, stop_timeout=60)
    daemon.wait_ready()
    held = headers_only(daemon.port)
    answers: list[tuple[int, dict]] = []
    repos.slow(2)
    sha = repos.commit()
    pusher = threading.Thread(target=lambda: answers.append(deliver(daemon, sha)))
    try:
        pusher.start()
        assert wait_for(lambda: repos.fetches() == 1), daemon.log()  # the deploy runs
        daemon.proc.terminate()
        code = daemon.proc.wait(40)  # far below stop_timeout, the old wait
        pusher.join(30)
        assert held.recv(100) == b""
    finally:
        held.close()
        daemon.stop()
    assert code == 0, daemon.log()
    assert answers and answers[0][0] == 200 and answers[0][1]["head"] == sha, answers
    log = daemon.log()
    assert "1 webhook answers still unsent after" in log and log.rstrip().endswith("stopped")
    assert "a deploy was still running" not in log


def test_a_stop_waits_for_a_verified_delivery_whose_sender_has_gone(
        repos: Repos, secret_file: Path) -> None:
    """A signed delivery over 256 KB (spooled, parsed in a child) whose sender closes its
    connection once the body is sent, then SIGTERM while the child parses it: the stop
    waits for that delivery's decision and deploy (before: nothing was in flight any
    more, the git workers closed, and the verified push was lost with a "cannot schedule
    new futures" crash); the push is deployed and recorded, exit 0."""
    daemon = start_daemon(repos, secret_file)
    daemon.wait_ready()
    sha = repos.commit()
    payload = push_payload(sha)
    payload["commits"] = [{"id": "0" * 40, "message": "x" * 1000}] * 2000
    body, headers = signed(payload, delivery="sender-gone")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sender:
            sender.sendall(f"POST /github HTTP/1.1\r\nHost: x\r\nContent-Length: "
                           f"{len(body)}\r\n{head}\r\n".encode() + body)
            deadline = time.monotonic() + 30
            while not any("bigparse" in c for c in child_commands(daemon.proc.pid)):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.001)
        daemon.proc.terminate()  # the sender has gone; the parse goes on
        code = daemon.proc.wait(40)
    finally:
        daemon.stop()
    log = daemon.log()
    assert code == 0 and "crashed" not in log, log
    assert repos.head(repos.deployed) == sha, log
    with sqlite3.connect(repos.root / "deployhook.sqlite3") as db:
        rows = list(db.execute("SELECT delivery_id FROM deliveries"))
    assert ("sender-gone",) in rows, (rows, log)


def test_a_delivery_sent_as_the_stop_begins_on_an_open_connection_is_answered(
        repos: Repos, secret_file: Path) -> None:
    """A connection the daemon has accepted, SIGTERM, and only then the delivery on it:
    the stop lets a just-accepted connection's request come (``ARRIVAL``) before it
    closes the connections, so the push is deployed and answered 200, exit 0 (before:
    the connection could be closed unanswered, or the push decided after the workers
    had closed)."""
    daemon = start_daemon(repos, secret_file)
    daemon.wait_ready()
    sha = repos.commit()
    body, headers = signed(push_payload(sha), delivery="as-the-stop-begins")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sender:
            daemon.proc.terminate()
            sender.sendall(f"POST /github HTTP/1.1\r\nHost: x\r\nContent-Length: "
                           f"{len(body)}\r\n{head}\r\n".encode() + body)
            answer = sender.makefile("rb").readline()
        code = daemon.proc.wait(40)
    finally:
        daemon.stop()
    assert answer.startswith(b"HTTP/1.1 200 "), (answer, daemon.log())
    assert code == 0 and repos.head(repos.deployed) == sha, daemon.log()


# -- signals during a re-exec: they reach the re-executed process ------------------------


def signal_when_logged(daemon: Daemon, text: str, sig: signal.Signals) -> None:
    """Send ``sig`` to the daemon as soon as its log shows ``text`` (read every
    millisecond: the exec is a moment)."""
    deadline = time.monotonic() + 40
    while text not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.001)
    os.kill(daemon.proc.pid, sig)


@pytest.mark.parametrize("moment", ["re-executing after a deploy",
                                    "deployhook: re-executing the process\n"])
def test_a_sighup_during_a_reexec_reaches_the_new_process(repos: Repos, secret_file: Path,
                                                          moment: str) -> None:
    """SIGHUP (``systemctl reload``) while the daemon drains for a re-exec (a stranger's
    held request keeps it draining), or the moment it execs: the daemon lives on (before,
    one during the exec killed it: the signal's default action) and the re-executed
    process re-reads the configuration."""
    daemon = start_daemon(repos, secret_file, reload="autoreload")
    before = daemon.wait_ready()["started"]
    held = headers_only(daemon.port) if moment.endswith("deploy") else None
    try:
        status, answer = deliver(daemon, repos.commit())
        assert status == 200, answer
        signal_when_logged(daemon, moment, signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: configuration re-read" in daemon.log(), 40), \
            daemon.log()
        log = daemon.log()
        assert log.index("re-executing the process") < log.index("SIGHUP: configuration")
        assert daemon.proc.poll() is None and daemon.wait_ready()["started"] != before
    finally:
        if held is not None:
            held.close()
        assert daemon.stop() == 0


@pytest.mark.parametrize("moment", ["deploy moved HEAD", "deployhook: re-executing the process\n"])
def test_a_sigterm_as_the_daemon_reexecutes_stops_it_cleanly(
        repos: Repos, secret_file: Path, moment: str) -> None:
    """SIGTERM as the reload begins, or the moment the daemon execs itself: the old
    process or the re-executed one takes it and stops cleanly, exit 0 and "stopped"
    (before: at the exec, the signal's default action ended the process)."""
    daemon = start_daemon(repos, secret_file, reload="autoreload")
    daemon.wait_ready()
    try:
        status, answer = deliver(daemon, repos.commit())
        assert status == 200, answer
        signal_when_logged(daemon, moment, signal.SIGTERM)
        code = daemon.proc.wait(40)
    finally:
        daemon.stop()
    assert code == 0, daemon.log()
    assert daemon.log().rstrip().endswith("stopped")


def test_default_reload_leaves_the_process_for_another_sites_checkout(
        repos: Repos, secret_file: Path) -> None:
    """`reload` unset (``auto``) and a checkout that holds none of the daemon's code: a
    deploy that moves HEAD leaves the process running, and `deployhook deploy` prints no
    note about the daemon's code."""
    daemon = start_daemon(repos, secret_file, reload="auto")
    try:
        before = daemon.wait_ready()
        status, body = deliver(daemon, repos.commit())
        assert status == 200, body
        assert wait_for(lambda: "keeps running" in daemon.log()), daemon.log()
        assert daemon.wait_ready()["started"] == before["started"]
        repos.commit()
        deployed = cli("deploy", "--config", "config.py", cwd=repos.root)
        assert deployed.returncode == 0 and "note:" not in deployed.stdout, deployed.stdout
    finally:
        assert daemon.stop() == 0


EMBEDDING_APP = """
import asyncio, sys, time
import tornado.web
import deployhook

class Started(tornado.web.RequestHandler):
    def get(self):
        self.write({"started": STARTED})

STARTED = time.time()

async def main(path):
    hook = deployhook.DeployHook(deployhook.load(path))
    await hook.start()
    tornado.web.Application([(r"/started", Started), *hook.routes()]).listen(
        hook.config.port, "127.0.0.1")
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


def test_default_reload_reexecutes_an_app_whose_checkout_holds_its_code(
        repos: Repos, secret_file: Path) -> None:
    """`reload` unset (``auto``), the application's script lives in the deployed checkout:
    a deploy that moves HEAD re-executes it, even while a stranger holds a delivery
    without its body (the application's own server keeps it: the reload waits for it
    ANSWER_GRACE, then says so)."""
    port = free_port()
    script = repos.deployed / "app.py"
    script.write_text(EMBEDDING_APP)
    config = write_config(repos.root / "site.py", port=port, repo_path=str(repos.deployed),
                          secret_file=str(secret_file), repository=REPOSITORY,
                          state_db=str(repos.root / "site.sqlite3"))
    log = (repos.root / "app.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(script), str(config)], cwd=repos.root,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def started() -> float | None:
        try:
            return http("GET", url + "/started", timeout=2)[1]["started"]
        except OSError:
            return None

    held: socket.socket | None = None
    try:
        assert wait_for(lambda: started() is not None), (repos.root / "app.log").read_text()
        first = started()
        held = headers_only(port)
        status, body = deliver_push(url, repos.commit())
        assert status == 200, body
        assert wait_for(lambda: started() not in (None, first)), \
            (repos.root / "app.log").read_text()
        assert proc.poll() is None
        assert held.recv(100) == b""  # closed unanswered by the re-exec
        assert "1 webhook answers still unsent after 5s with no deploy running: reloading " \
            "anyway" in (repos.root / "app.log").read_text()
    finally:
        if held is not None:
            held.close()
        proc.terminate()
        proc.wait(20)
        log.close()
