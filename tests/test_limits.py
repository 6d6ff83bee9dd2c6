"""What strangers (clients without a valid signature) can cost the daemon, and its timeouts.

Real daemons (tests.helpers.Daemon) on loopback, real sockets, real git.  Bounds are
the acceptance criteria's generous ones; exact figures come from ``bench/run.py
--only strangers``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployhook import forges
from deployhook.errors import SignatureError
from deployhook.forges import mac
from deployhook.forges.delivery import essentials
from deployhook.forges.github import sign
from deployhook.settings import Config
from deployhook.settings_help import DESCRIPTIONS
from deployhook.web import spool
from tests.helpers import (
    SECRET,
    Daemon,
    deliver_push,
    free_port,
    http,
    make_repos,
    push_payload,
    signed,
    start_daemon,
    write_config,
)

MIB = 1024 * 1024
# The page about what strangers may cost (the reference of every key is generated from
# deployhook/settings_help.py, which tests/test_docs.py checks).
LIMITS_PAGE = Path(__file__).parent.parent / "docs" / "http-answers.rst"


# --- pure pieces ---------------------------------------------------------------------------


def hashed(secrets: list[bytes], headers: dict[str, str], body: bytes) -> mac.Hashed:
    """``body`` hashed 64 KiB at a time, as the handler does while it arrives."""
    state = mac.Hashed(forges.hash_keys("github", secrets, headers))
    for start in range(0, len(body), 65536):
        state.update(memoryview(body)[start:start + 65536])
    return state


@pytest.mark.parametrize("secrets, ok", [
    ([SECRET], True), ([b"old", SECRET], True), ([SECRET, b"new"], True),
    ([b"wrong"], False), ([b"a", b"b"], False)])
def test_a_body_hashed_chunk_by_chunk_verifies_with_any_matching_secret(
        secrets: list[bytes], ok: bool) -> None:
    body = b"x" * 300_000
    headers = {"X-Hub-Signature-256": sign(SECRET, body)}
    state = hashed(secrets, headers, body)
    if ok:
        assert secrets[forges.verify("github", secrets, headers, state)] == SECRET
    else:
        with pytest.raises(SignatureError, match="does not match"):
            forges.verify("github", secrets, headers, state)


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing"), ({"X-Hub-Signature-256": "sha256=zz"}, "malformed"),
    ({"X-Hub-Signature-256": "md5=" + "0" * 64}, "malformed")])
def test_a_request_without_a_usable_header_is_refused_before_its_body(
        headers: dict[str, str], reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        forges.check_headers("github", headers)


def test_sha1_is_used_only_when_alone() -> None:
    body = b"{}"
    digest = hmac.new(SECRET, body, hashlib.sha1).hexdigest()
    headers = {"X-Hub-Signature": f"sha1={digest}"}
    assert forges.verify("github", [SECRET], headers, hashed([SECRET], headers, body)) == 0


@pytest.mark.parametrize("payload, expected", [
    (push_payload("a" * 40), {
        "ref": "refs/heads/main", "before": "0" * 40, "after": "a" * 40, "deleted": False,
        "repository": {"full_name": "octo/site", "default_branch": "main"},
        "pusher": {"name": "octocat"}, "sender": {"login": "octocat"}}),
    ({"zen": "Keep it simple.", "hook_id": 1}, {"zen": "Keep it simple."}),
    ({"repository": "not an object", "pusher": None}, {"repository": "not an object",
                                                       "pusher": None}),
    ({"commits": [1] * 1000}, {}),
])
def test_essentials_keeps_only_what_a_deploy_reads(payload: dict[str, Any],
                                                   expected: dict[str, Any]) -> None:
    if "repository" in expected and isinstance(expected["repository"], dict):
        expected["repository"]["full_name"] = payload["repository"]["full_name"]
    assert essentials(payload) == expected


def test_body_stays_in_memory_only_within_the_budget() -> None:
    memory, disk = spool.Budget(100_000), spool.Budget(10 * MIB)
    small, other, big = (spool.Body(memory, disk) for _ in range(3))
    assert small.add(b"a" * 60_000) is None and small.file is None
    assert other.add(b"b" * 60_000) is None and other.file is not None  # memory spent
    assert big.add(b"c" * (spool.IN_MEMORY_MAX + 1)) is None and big.file is not None
    assert memory.used == 60_000
    for body in (small, other, big):
        body.release()
    assert memory.used == 0 and disk.used == 0


def test_body_waits_for_room_when_every_budget_is_spent() -> None:
    async def scenario() -> None:
        memory, disk = spool.Budget(10), spool.Budget(1000)
        first, second = spool.Body(memory, disk), spool.Body(memory, disk)
        assert first.add(b"x" * 1000) is None
        room = second.add(b"y" * 500)
        assert room is not None and not room.done()
        first.release()
        await room
        assert second.add(b"y" * 500) is None
        second.release()

    import asyncio
    asyncio.run(scenario())


# --- real daemons ---------------------------------------------------------------------------


@contextlib.contextmanager
def open_files_limit(limit: int) -> Iterator[None]:
    """Children started inside inherit RLIMIT_NOFILE=``limit`` (this process's is restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100


def health_latency(url: str) -> float:
    started = time.monotonic()
    assert http("GET", url + "/health", timeout=10)[0] == 200
    return time.monotonic() - started


def send_unsigned(port: int, size: int, answers: list[bytes]) -> None:
    """POST ``size`` bytes with a wrong signature; keep the status line."""
    head = (f"POST /github HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\n"
            f"Content-Type: application/json\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    chunk = b" " * MIB
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        for start in range(0, size, MIB):
            sock.sendall(chunk[:min(MIB, size - start)])
        answers.append(sock.recv(200).split(b"\r\n")[0])


def test_twenty_unsigned_26mib_bodies_leave_rss_under_100mb(tmp_path: Path) -> None:
    """20 concurrent wrongly signed 26 MiB bodies: RSS < 100 MB, /health answered."""
    repos = make_repos(tmp_path)
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    daemon = start_daemon(repos, tmp_path / "secret.txt")
    try:
        daemon.wait_ready()
        size = 26 * MIB
        answers: list[bytes] = []
        senders = [threading.Thread(target=send_unsigned, args=(daemon.port, size, answers))
                   for _ in range(20)]
        for sender in senders:
            sender.start()
        peak, slowest = 0.0, 0.0
        while any(s.is_alive() for s in senders):
            peak = max(peak, rss_mib(daemon.proc.pid))
            slowest = max(slowest, health_latency(daemon.url))
            time.sleep(0.05)
        for sender in senders:
            sender.join(120)
        print(f"peak RSS {peak:.1f} MiB, slowest /health {slowest * 1000:.1f} ms")
        assert answers == [b"HTTP/1.1 401 Unauthorized"] * 20
        assert peak * MIB < 100_000_000, f"peak RSS {peak:.1f} MiB"
        assert slowest < 1.0  # generous; the figure is in the report
        assert deliver_push(daemon.url, repos.commit())[0] == 200
    finally:
        daemon.stop()


def idle_connections(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    return socks


def test_thousand_idle_connections_under_nofile_1024(tmp_path: Path) -> None:
    """1,000 idle connections, daemon at RLIMIT_NOFILE=1024: /health and a push answered,
    no busy accept loop, no log flood."""
    repos = make_repos(tmp_path)
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    with open_files_limit(1024):
        daemon = start_daemon(repos, tmp_path / "secret.txt")
    socks: list[socket.socket] = []
    try:
        daemon.wait_ready()
        socks = idle_connections(daemon.port, 1000)
        time.sleep(0.5)
        cpu_before = cpu_seconds(daemon.proc.pid)
        time.sleep(2)
        spun = cpu_seconds(daemon.proc.pid) - cpu_before
        assert http("GET", daemon.url + "/health", timeout=10)[0] == 200
        status, body = deliver_push(daemon.url, repos.commit())
        assert status == 200, body
        assert spun < 1.0, f"{spun:.2f} s of CPU in 2 s while idle"
        assert daemon.log().count("Traceback") == 0
        held = len(list(Path(f"/proc/{daemon.proc.pid}/fd").iterdir()))
        assert held < 500, f"{held} descriptors open: the cap evicted nothing"
    finally:
        for sock in socks:
            sock.close()
        daemon.stop()


def test_out_of_descriptors_neither_spins_nor_floods_the_log(tmp_path: Path) -> None:
    """At RLIMIT_NOFILE=64 and 200 connections: no busy loop, a few log lines, pushes served."""
    repos = make_repos(tmp_path)
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    with open_files_limit(64):
        daemon = start_daemon(repos, tmp_path / "secret.txt")  # max_connections 400
    socks: list[socket.socket] = []
    try:
        daemon.wait_ready()
        socks = idle_connections(daemon.port, 200)
        time.sleep(0.5)
        cpu_before = cpu_seconds(daemon.proc.pid)
        time.sleep(2)
        spun = cpu_seconds(daemon.proc.pid) - cpu_before
        assert http("GET", daemon.url + "/health", timeout=10)[0] == 200
        status, body = deliver_push(daemon.url, repos.commit())
        assert status == 200, body
        assert spun < 1.0, f"{spun:.2f} s of CPU in 2 s"
        assert len(daemon.log()) < 20_000, daemon.log()[-2000:]
    finally:
        for sock in socks:
            sock.close()
        daemon.stop()


def test_cap_evicts_idle_connections_before_unverified_ones(tmp_path: Path) -> None:
    """max_connections=8: new connections close the oldest idle ones, a body under way stays."""
    repos = make_repos(tmp_path)
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    daemon = start_daemon(repos, tmp_path / "secret.txt", max_connections=8)
    socks: list[socket.socket] = []
    try:
        daemon.wait_ready()
        body, headers = signed(push_payload(repos.commit()), delivery="slow-1")
        slow = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        slow.sendall((f"POST /github HTTP/1.1\r\nHost: x\r\n{head}"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10])
        time.sleep(0.3)
        socks = idle_connections(daemon.port, 20)
        assert http("GET", daemon.url + "/health", timeout=10)[0] == 200
        closed = 0
        for sock in socks[:10]:
            sock.settimeout(5)
            closed += sock.recv(1) == b""
        assert closed == 10  # the oldest idle ones made room
        slow.sendall(body[10:])
        answer = slow.recv(4096).split(b"\r\n")[0]
        assert answer == b"HTTP/1.1 200 OK", answer
        slow.close()
    finally:
        for sock in socks:
            sock.close()
        daemon.stop()


@pytest.mark.parametrize(("states", "closed"), [
    (("verified", "unverified", "idle"), (False, False, True)),
    (("complete", "unverified"), (False, True)),  # a body still coming yields first
    (("unverified", "unverified"), (True, False)),  # the older one
    (("complete", "verified"), (False, False)),  # all in or verified: kept over the cap
])
def test_at_the_cap_a_body_all_in_is_kept_like_a_verified_one(
        states: tuple[str, ...], closed: tuple[bool, ...]) -> None:
    """The cap's choice among real connections (socket pairs on the daemon's own server
    class): idle first, then the oldest whose body is coming or was refused; a body all
    in is being checked and is never evicted (under a storm of real deliveries at the
    cap, some lost their answer to that)."""
    from tornado.ioloop import IOLoop
    from tornado.iostream import IOStream
    from tornado.web import Application

    from deployhook.web.connections import LimitedHTTPServer

    async def evict_one() -> tuple[bool, ...]:
        server = LimitedHTTPServer(Application(), max_connections=len(states))
        pairs = [socket.socketpair() for _ in states]
        streams = [IOStream(ours) for ours, _ in pairs]
        try:
            for when, (stream, state) in enumerate(zip(streams, states, strict=True)):
                stream.deployhook_state = (state, float(when))  # type: ignore[attr-defined]
            server.streams.extend(streams)
            server.evict_one()
            return tuple(stream.closed() for stream in streams)
        finally:
            for stream, (_, theirs) in zip(streams, pairs, strict=True):
                stream.close()
                theirs.close()

    assert IOLoop(make_current=False).run_sync(evict_one) == closed


def test_large_signed_delivery_is_parsed_off_the_loop_and_deployed(tmp_path: Path) -> None:
    """A signed push padded to 25 MB (parsed in a child process) deploys; a malformed
    one of the same size gets 400 with a reason."""
    repos = make_repos(tmp_path)
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    daemon = start_daemon(repos, tmp_path / "secret.txt")
    try:
        daemon.wait_ready()
        sha = repos.commit()
        payload = push_payload(sha)
        payload["commits"] = [{"id": "0" * 40, "message": "x" * 1000}] * 24_000
        body, headers = signed(payload, delivery="big-1")
        assert len(body) > 24_000_000
        status, answer = http("POST", daemon.url + "/github", body, headers, timeout=60)
        assert (status, answer["result"], answer["after"]) == (200, "deployed", sha), answer
        bad, headers = signed(b"[" * 2_000_000, delivery="big-2")
        status, answer = http("POST", daemon.url + "/github", bad, headers, timeout=60)
        assert (status, answer["reason"]) == (400, "payload is not valid JSON"), answer
    finally:
        daemon.stop()


HOSTILE_MODULE = """
import os
fd = os.open({mark!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(fd, b"{name} imported\\n")
raise ImportError("the hostile {name} in the working directory")
"""


def test_modules_in_the_working_directory_never_reach_the_payload_parser(
        tmp_path: Path) -> None:
    """The daemon (the installed ``deployhook`` script) runs in a folder holding a
    hostile ``json.py`` and ``operator.py``: a signed delivery big enough to be spooled
    to a file (so parsed in a child process) deploys, and neither file is imported."""
    repos = make_repos(tmp_path)
    mark = tmp_path / "hijacked"
    for name in ("json", "operator"):
        (repos.root / f"{name}.py").write_text(HOSTILE_MODULE.format(mark=str(mark),
                                                                     name=name))
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    port = free_port()
    config = write_config(repos.root / "config.py", port=port, repo_path=str(repos.deployed),
                          secret_file=str(tmp_path / "secret.txt"), reload="none")
    daemon = Daemon(config, port, command=[str(Path(sys.executable).parent / "deployhook")])
    try:
        daemon.wait_ready()
        sha = repos.commit()
        payload = push_payload(sha)
        payload["commits"] = [{"id": "0" * 40, "message": "x" * 1000}] * 400
        body, headers = signed(payload, delivery="big-cwd")
        assert len(body) > spool.IN_MEMORY_MAX
        status, answer = http("POST", daemon.url + "/github", body, headers, timeout=60)
        assert (status, answer.get("result"), answer.get("after")) == (200, "deployed", sha), \
            answer
    finally:
        daemon.stop()
    assert not mark.exists(), mark.read_text()


# --- the daemon's own timeouts -----------------------------------------------------------


def test_timeouts_are_settings_with_documented_defaults() -> None:
    config = Config()
    assert (config.body_timeout, config.idle_timeout) == (60.0, 60.0)
    page = LIMITS_PAGE.read_text()
    for key in ("body_timeout", "idle_timeout", "max_connections",
                "unverified_memory", "unverified_disk"):
        assert f"``{key}``" in page, key
        assert DESCRIPTIONS[key].strip(), key


@pytest.mark.parametrize("what", ["body", "headers"])
def test_daemon_applies_its_configured_timeouts(tmp_path: Path, what: str) -> None:
    """The real daemon, configured with 1 s timeouts in config.py, closes a body that stops
    half-way and headers that never end, with no answer."""
    repos = make_repos(tmp_path)
    (tmp_path / "secret.txt").write_bytes(SECRET + b"\n")
    daemon = start_daemon(repos, tmp_path / "secret.txt", body_timeout=1.0,
                          idle_timeout=1.0)
    try:
        daemon.wait_ready()
        body, headers = signed(push_payload("a" * 40))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST /github HTTP/1.1\r\nHost: x\r\n{head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10]
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=15) as sock:
            started = time.monotonic()
            sock.sendall(request if what == "body" else b"POST /github HTTP/1.1\r\nHost: x\r\n")
            assert sock.recv(100) == b""
            waited = time.monotonic() - started
        assert 0.5 < waited < 10, waited
    finally:
        daemon.stop()


def test_timeouts_reach_the_http_server() -> None:
    """server.py builds its HTTPServer from the settings (not from constants)."""
    from tornado.web import Application

    from deployhook.web.connections import make_server

    async def build() -> Any:
        server = make_server(Application(), Config(body_timeout=7.0,
                                                   idle_timeout=9.0,
                                                   max_connections=33))
        params = server.conn_params
        return params.body_timeout, params.header_timeout, server.max_connections

    import asyncio
    assert asyncio.run(build()) == (7.0, 9.0, 33)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps({"ok": True}))
