"""Secret rotation: one secret per line of the secret file, every one accepted, the
record naming which (by position) verified each delivery."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from deployhook.cli.check import run_checks
from deployhook.errors import SecretMissing
from deployhook.secret import SecretSource, create_secret_file
from deployhook.settings import Config
from tests.helpers import http, make_repos, signed, start_daemon, start_targets

OLD, NEW = b"the old secret", b"the new secret"


def _write(path: Path, *secrets: bytes) -> None:
    """Replace the secret file atomically (as an operator's ``mv`` would)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(s + b"\n" for s in secrets))
    os.replace(tmp, path)


@pytest.mark.parametrize(("content", "expected"), [
    (b"one\ntwo\n", (b"one", b"two")),
    (b"\n  one \r\n\n\ttwo\t\n\n", (b"one", b"two")),
    (b"only", (b"only",)),
    (b"# rotated in May: the new one first\none\n  # old, remove in June\ntwo\n",
     (b"one", b"two")),
])
def test_every_line_is_a_secret(tmp_path: Path, content: bytes,
                                expected: tuple[bytes, ...]) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(content)
    source = SecretSource(str(path))
    assert source.all() == expected
    assert source.get() == expected[0]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"# the webhook secret\n\n  # goes here\n"])
def test_a_file_of_comments_and_blank_lines_is_empty(tmp_path: Path, content: bytes) -> None:
    """No line but ``#`` comments and blank ones: SecretMissing "is empty", never a
    comment taken for a secret."""
    path = tmp_path / "secret.txt"
    path.write_bytes(content)
    with pytest.raises(SecretMissing) as info:
        SecretSource(str(path)).all()
    assert info.value.reason == f"secret file {path} is empty on the server"


COMMENT = b"# the webhook secret, set in GitLab on 2024-05-01"


def test_a_comment_line_is_never_accepted_as_a_secret(tmp_path: Path) -> None:
    """A GitLab target whose secret file starts with a comment line: a delivery carrying
    the comment as its plain token is refused (401), one with the secret deploys."""
    from deployhook.forges import payloads, sign_headers

    repos = make_repos(tmp_path)
    secret = b"the GitLab target's secret 0123"
    (tmp_path / "site.secret").write_bytes(COMMENT + b"\n" + secret + b"\n")
    daemon = start_targets(tmp_path, {"site": {
        "repo_path": str(repos.deployed), "repository": "group/sub/blog", "forge": "gitlab",
        "secret_file": str(tmp_path / "site.secret")}})
    try:
        daemon.wait_ready()
        sha = repos.commit()
        body = payloads.push_payload("gitlab", repository="group/sub/blog",
                                     ref="refs/heads/main", before="0" * 40, after=sha,
                                     pusher="octocat", email="octocat@example.com",
                                     default_branch="main")
        raw = json.dumps(body).encode()
        answers = [http("POST", daemon.url + "/hooks/site", raw,
                        sign_headers("gitlab", token, raw, "Push Hook"), auth=False)
                   for token in (COMMENT, secret)]
    finally:
        daemon.stop()
    assert answers[0][0] == 401, answers[0]
    assert answers[1][0] == 200 and answers[1][1]["result"] == "deployed", answers[1]


@pytest.mark.parametrize(("content", "warned"), [
    (COMMENT + b"\nshort-secret\n\nlong enough secret 0123\n", ["line 2"]),
    (b"long enough secret 0123\n15-bytes-secret\n0123456789abcdef\n", ["line 2"]),
    (b"sixteen  bytes!!\n", []),
])
def test_check_warns_for_secrets_shorter_than_16_bytes(tmp_path: Path, content: bytes,
                                                      warned: list[str]) -> None:
    """``deployhook check`` warns once per secret shorter than 16 bytes, naming the file
    and the line (comment lines counted), never the value."""
    path = tmp_path / "secret.txt"
    path.write_bytes(content)
    path.chmod(0o600)
    repos = make_repos(tmp_path)
    config = Config(repo_path=str(repos.deployed), secret_file=str(path), port=0)
    results = [r for r in run_checks(config, str(tmp_path / "config.py"))
               if r.name == "secret"]
    warnings = [r.line() for r in results if r.level == "WARN"]
    assert len(warnings) == len(warned), warnings
    for line, where in zip(warnings, warned, strict=True):
        assert f"{path} {where} holds a secret shorter than 16 bytes" in line, line
    shown = "\n".join(r.line() for r in results)
    for value in (b"short-secret", b"15-bytes-secret", COMMENT):
        assert value.decode() not in shown


def test_the_secret_init_writes_is_long_enough_for_check(tmp_path: Path) -> None:
    """``deployhook init``'s secret file (:func:`create_secret_file`): no warning."""
    path = tmp_path / "secret.txt"
    assert create_secret_file(str(path))
    repos = make_repos(tmp_path)
    config = Config(repo_path=str(repos.deployed), secret_file=str(path), port=0)
    assert [r.line() for r in run_checks(config, str(tmp_path / "config.py"))
            if r.name == "secret" and r.level != "OK"] == []


def test_check_warns_for_a_short_secret_from_the_environment(tmp_path: Path) -> None:
    repos = make_repos(tmp_path)
    config = Config(repo_path=str(repos.deployed), secret=b"tiny", port=0)
    warnings = [r.line() for r in run_checks(config, str(tmp_path / "config.py"))
                if r.name == "secret" and r.level == "WARN"]
    assert len(warnings) == 1 and "$DEPLOYHOOK_SECRET holds a secret shorter than 16 bytes" \
        in warnings[0] and "tiny" not in warnings[0], warnings


def test_a_placeholder_line_is_refused_naming_its_position(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"a real one\nreplace-me-with-the-webhook-secret\n")
    with pytest.raises(SecretMissing) as info:
        SecretSource(str(path)).all()
    assert "secret 2" in info.value.reason and "replace-me" not in info.value.reason


def test_rotation_refuses_no_delivery_and_records_positions(tmp_path: Path) -> None:
    """Pings arrive all the time in a thread while the file goes old -> old+new -> new:
    none is refused; then one signed with the old secret is refused (401); the record
    says which position verified each delivery, and ``check`` says when."""
    repos = make_repos(tmp_path)
    secret_file = tmp_path / "secret.txt"
    _write(secret_file, OLD)
    daemon = start_daemon(repos, secret_file, state_db=str(tmp_path / "record.sqlite3"))
    signers = [OLD]  # what the forge signs with now; changed under `turn`
    turn = threading.Lock()
    answers: list[tuple[bytes, int]] = []
    stop = threading.Event()

    def deliver(secret: bytes, n: int) -> int:
        body, headers = signed({"zen": "Keep it logically awesome.", "hook_id": 1},
                               event="ping", secret=secret, delivery=f"rot-{n}")
        return http("POST", daemon.url + "/github", body, headers)[0]

    def forge() -> None:
        n = 0
        while not stop.is_set():
            with turn:
                for secret in list(signers):
                    n += 1
                    answers.append((secret, deliver(secret, n)))

    try:
        daemon.wait_ready()
        thread = threading.Thread(target=forge, daemon=True)
        thread.start()
        _wait_for(answers, 5)
        _write(secret_file, OLD, NEW)  # the operator adds the new secret on the server
        _wait_for(answers, 5)
        with turn:
            signers[:] = [OLD, NEW]  # while the forge changes over, both arrive
        _wait_for(answers, 10)
        with turn:
            signers[:] = [NEW]  # the forge signs with the new one only
        _wait_for(answers, 5)
        _write(secret_file, NEW)  # the old line is removed
        _wait_for(answers, 5)
        stop.set()
        thread.join(30)
        assert [a for a in answers if a[1] != 200] == []
        assert deliver(OLD, 10_000) == 401
        assert deliver(NEW, 10_001) == 200
    finally:
        stop.set()
        daemon.stop()
    db = sqlite3.connect(tmp_path / "record.sqlite3")
    rows = db.execute("SELECT delivery_id, secret_index, status FROM deliveries"
                      " ORDER BY id").fetchall()
    positions = {index for _, index, status in rows if status == 200}
    assert positions == {1, 2}  # old+new: the new secret verified as the second line
    assert "rot-10000" not in {delivery for delivery, _, _ in rows}  # refused: counted only
    refused = db.execute("SELECT SUM(count) FROM rejections WHERE status=401").fetchone()[0]
    assert refused >= 1
    check = subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                            str(repos.root / "config.py")], capture_output=True, text=True,
                           cwd=tmp_path)
    assert "secret 1 of 1 last verified a delivery at" in check.stdout, check.stdout
    assert NEW.decode() not in check.stdout + check.stderr


def _wait_for(answers: list[tuple[bytes, int]], more: int) -> None:
    """Block until ``more`` further deliveries have been answered."""
    goal = len(answers) + more
    event = threading.Event()
    while len(answers) < goal:
        event.wait(0.01)
