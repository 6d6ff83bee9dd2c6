"""One intake for everything a stranger sends (issue 21, findings 1-3), black-box.

Real daemons (``python -m deployhook serve``), real git, raw sockets for bodies far
larger than any client library would hold.  What is asserted is what the second
outside review found broken on 00bbfa7: memory (the daemon's peak RSS, ``VmHWM``),
the answers, the record and the log, never a time (bench/intake.py measures those).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deployhook.forges import payloads, sign_headers
from tests.helpers import ZERO, Daemon, http, make_repos, start_daemon, start_targets

MiB = 1024 * 1024
PEAK_LIMIT = 100 * MiB  # the bound on the daemon's RSS
PARALLEL = 10
FORGED = "\n2026-12-07 04:50:00,000 INFO deployhook.http: delivery FORGED from 10.0.0.1 " \
         "to a forge=github event=push ref=refs/heads/main -> 200 deployed: deployed"


def peak_rss(daemon: Daemon) -> int:
    """The daemon's peak resident set (``VmHWM``) in bytes."""
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def blast(port: int, path: str, size: int, headers: dict[str, str] | None = None,
          expect: bool = False) -> tuple[int | None, bytes]:
    """POST ``size`` bytes of body to ``path`` from a raw socket, 1 MiB at a time, until
    the server answers or closes; the status (None: no answer) and the answer's body.

    With ``expect``, send ``Expect: 100-continue`` and wait for the server's word before
    any byte of the body, as curl does for large bodies."""
    head = {"Host": "127.0.0.1", "Content-Type": "application/json",
            "Content-Length": str(size), **(headers or {})}
    if expect:
        head["Expect"] = "100-continue"
    request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
    chunk = b"x" * MiB
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request.encode() + b"\r\n")
        if expect:
            received = sock.recv(65536)
            if received.startswith(b"HTTP/1.1 100"):
                received = b""
        sent = 0
        try:
            while not received and sent < size:
                sock.sendall(chunk[:min(MiB, size - sent)])
                sent += MiB
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # answered and closed while the body was still going out
        try:
            while piece := sock.recv(65536):
                received += piece
        except OSError:
            pass  # reset: keep what arrived before
    if not received.startswith(b"HTTP/1.1 "):
        return None, received
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), body


def in_parallel(count: int, call: Callable[[], Any]) -> list[Any]:
    """``call()`` in ``count`` threads at once; their results."""
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def start_one(root: Path) -> Daemon:
    """A ready daemon with one target (its own origin, clone and secret) under ``root``."""
    repos = make_repos(root)
    secret = root / "secret.txt"
    secret.write_text("the one target's secret 0123456789\n")
    daemon = start_daemon(repos, secret)
    daemon.wait_ready()
    return daemon


def start_two(root: Path) -> Daemon:
    """A ready daemon with two targets (a, b) under ``root``, each its own origin, clone
    and secret; no forge pinned; the record at ``root/state.sqlite3``; a quick refusal
    (``refused_delay`` 0) so that 300 refusals take no time."""
    targets = {}
    for name in ("a", "b"):
        (root / name).mkdir()
        repos = make_repos(root / name)
        secret = root / f"{name}.secret"
        secret.write_text(f"secret of target {name} 0123456789abcdef\n")
        targets[name] = {"repo_path": str(repos.deployed), "repository": f"octo-org/{name}",
                         "secret_file": str(secret)}
    daemon = start_targets(root, targets, refused_delay=0,
                           state_db=str(root / "state.sqlite3"))
    daemon.wait_ready()
    return daemon


@pytest.fixture
def one(tmp_path: Path) -> Any:
    daemon = start_one(tmp_path)
    yield daemon
    daemon.stop()


@pytest.fixture
def two(tmp_path: Path) -> Any:
    daemon = start_two(tmp_path)
    yield daemon
    daemon.stop()


def unknown_repository_push(full_name: str, pad: int = 0) -> bytes:
    """A GitHub push naming ``full_name`` (no target deploys it), padded to ``pad`` bytes."""
    payload = payloads.push_payload("github", repository=full_name, ref="refs/heads/main",
                                    before=ZERO, after="1" * 40, pusher="octocat",
                                    email="octocat@example.com", default_branch="main")
    body = json.dumps(payload).encode()
    return body if len(body) >= pad else body[:-1] + b', "pad": "' + \
        b"p" * (pad - len(body) - 10) + b'"}'


def wrongly_signed(body: bytes) -> dict[str, str]:
    headers = sign_headers("github", b"not the secret of any target", body, "push",
                           delivery_id=str(uuid.uuid4()))
    headers.pop("X-Hub-Signature", None)
    return headers


@pytest.mark.parametrize("path", ["/health", "/no-such-path", "/deployments"])
def test_no_route_but_a_webhook_holds_a_large_body(one: Daemon, path: str) -> None:
    """Finding 1: ten 100 MiB bodies at once to a route that takes none: each answered
    413 before its body is read, and the daemon's peak RSS stays under 100 MB (on
    00bbfa7 every route buffered up to 104 MiB: 595-2,387 MB)."""
    answers = in_parallel(PARALLEL, lambda: blast(one.port, path, 100 * MiB))
    assert peak_rss(one) < PEAK_LIMIT, (peak_rss(one), answers)
    status, body = blast(one.port, path, 100 * MiB, expect=True)
    assert status == 413, (status, body)
    assert json.loads(body)["reason"] == f"body of {100 * MiB} bytes is over the limit " \
        "of 65536 bytes (only webhooks take large bodies)"
    assert http("GET", one.url + "/health")[0] == 200


def test_a_chunked_body_to_another_route_is_refused_past_the_cap(one: Daemon) -> None:
    """Finding 1, chunked: no Content-Length to refuse at the headers; past 64 KiB the
    answer is 413 and nothing more is kept."""
    with socket.create_connection(("127.0.0.1", one.port), timeout=30) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            sock.sendall(b"%x\r\n%s\r\n" % (40_000, b"y" * 40_000))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"is over the limit of 65536 bytes" in answer


def test_a_small_body_to_another_route_gets_that_routes_answer(one: Daemon) -> None:
    """Under the cap nothing changes: /health has no POST (405), an unknown path 404."""
    assert http("POST", one.url + "/health", b"{}", auth=False)[0] == 405
    assert http("POST", one.url + "/no-such-path", b"{}", auth=False)[0] == 404


def test_strangers_at_the_shared_path_are_refused_before_any_parse(two: Daemon,
                                                                    tmp_path: Path) -> None:
    """Findings 2 and 3: with two targets, 300 wrongly signed deliveries naming a
    repository no target deploys are all 401 (on 00bbfa7: 202, each recorded and logged,
    a 5 MB name stored whole, a forged log line planted); the record gets no row but
    the aggregate count; the log a handful of lines; the forged line appears nowhere."""
    db = tmp_path / "state.sqlite3"
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    log_before = len(two.log().splitlines())
    names = ["octo-org/elsewhere" + FORGED, "x" * 100_000, "octo-org/nobody"]
    statuses = []
    for n in range(300):
        body = unknown_repository_push(names[n % len(names)])
        statuses.append(http("POST", two.url + "/github", body, wrongly_signed(body),
                             auth=False)[0])
    assert statuses == [401] * 300
    http("GET", two.url + "/health")
    two.stop()  # the record's queue is written
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        counted = conn.execute("SELECT sum(count) FROM rejections").fetchone()[0]
        reasons = {r for (r,) in conn.execute("SELECT reason FROM rejections")}
    log = two.log()
    assert after == before, "a refused stranger got a row of its own"
    assert counted == 300
    assert all(len(reason) < 200 and "x" * 50 not in reason for reason in reasons)
    assert len(log.splitlines()) - log_before < 50, log[-3000:]
    assert "FORGED" not in log and "octo-org/elsewhere" not in log and "x" * 50 not in log


def test_large_bad_bodies_at_the_shared_path_are_never_parsed(two: Daemon) -> None:
    """Finding 3: ten 26 MiB wrongly signed bodies at once at the shared path (two
    targets): each 401 (on 00bbfa7 each was parsed first, in a child of up to 731 MB)
    and the daemon's peak RSS stays under 100 MB."""
    body = unknown_repository_push("octo-org/elsewhere", pad=26 * MiB - 1024)
    headers = wrongly_signed(body)

    def send() -> tuple[int, dict[str, Any]]:
        return http("POST", two.url + "/github", body, headers, auth=False, timeout=120)

    answers = in_parallel(PARALLEL, send)
    assert [status for status, _ in answers] == [401] * PARALLEL, answers
    assert all("does not match the body" in answer["reason"] for _, answer in answers)
    assert peak_rss(two) < PEAK_LIMIT, peak_rss(two)
    assert "payload" not in two.log()


def test_the_shared_path_bounds_the_secrets_it_tries(two: Daemon, tmp_path: Path) -> None:
    """More than MAX_SHARED_SECRETS distinct secrets among the targets: webhook_path
    refuses at the headers (404, naming /hooks/<target name>); each target's own path
    still deploys."""
    with (tmp_path / "a.secret").open("a") as f:
        f.writelines(f"rotated secret number {n:04d} of a\n" for n in range(40))
    body = unknown_repository_push("octo-org/b")
    headers = sign_headers("github", b"secret of target b 0123456789abcdef", body, "push",
                           delivery_id=str(uuid.uuid4()))
    status, answer = http("POST", two.url + "/github", body, headers, auth=False)
    assert status == 404, answer
    assert "at most 32 distinct secrets" in answer["reason"], answer
    assert "/hooks/<target name>" in answer["reason"], answer
    status, answer = http("POST", two.url + "/hooks/b", body, headers, auth=False)
    assert status != 404 and answer["result"] != "rejected", answer


def test_a_signed_name_cannot_forge_a_line_of_the_log(two: Daemon) -> None:
    """Even a verified sender (it holds a secret) writes one log line per delivery: a
    repository name holding a newline and a log line is shown escaped, on its line."""
    body = unknown_repository_push("octo-org/elsewhere" + FORGED)
    headers = sign_headers("github", b"secret of target a 0123456789abcdef", body, "push",
                           delivery_id=str(uuid.uuid4()))
    status, answer = http("POST", two.url + "/github", body, headers, auth=False)
    assert status == 202 and answer["result"] == "ignored", answer
    lines = two.log().splitlines()
    assert not any(line.startswith("2026-12-07 04:50:00,000") for line in lines), lines
    assert any("octo-org/elsewhere\\x0a2026-12-07 04:50:00,000" in line for line in lines)
