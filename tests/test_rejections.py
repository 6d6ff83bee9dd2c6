"""Refused unverified deliveries, kept in aggregate: per-minute counts per sender in the
record, one log line per sender a minute plus a summary, every answer in ``/metrics``,
and the wait of a sender refused often (against a real daemon where it can run)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from deployhook.record.recorder import Recorder
from deployhook.service.rejections import FREE_REFUSALS, Rejections
from tests.helpers import Repos, http, push_payload, signed, start_daemon
from tests.test_metrics import scrape, value

REFUSED = FREE_REFUSALS + 5


def bad_delivery(n: int) -> tuple[bytes, dict[str, str]]:
    return signed(push_payload("ab" * 20), delivery=f"bad-{n}", secret=b"not the secret")


def test_refused_deliveries_are_counted_per_minute_and_sender_not_each_recorded(
        repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, refused_delay=0.01,
                          state_db=str(repos.root / "state.sqlite3"))
    try:
        daemon.wait_ready()
        statuses = [http("POST", daemon.url + "/github", *bad_delivery(n))[0]
                    for n in range(REFUSED)]
        # a verified sender's malformed push is still recorded and logged on its own
        body, headers = signed(b'{"ref": 1}', delivery="malformed-1")
        malformed = http("POST", daemon.url + "/github", body, headers)[0]
        samples = scrape(daemon)
    finally:
        daemon.stop()
    assert statuses == [401] * REFUSED
    assert malformed == 400
    # nothing the stranger claimed is kept: its event and delivery id are "-"
    assert value(samples, "deployhook_deliveries_total", target="-", forge="github",
                 event="-", status="401") == REFUSED
    with sqlite3.connect(repos.root / "state.sqlite3") as db:
        ids = {row[0] for row in db.execute("SELECT delivery_id FROM deliveries")}
        counts = db.execute("SELECT remote_addr, target, status, reason, count"
                            " FROM rejections").fetchall()
    assert "malformed-1" in ids
    assert not any(i.startswith("bad-") for i in ids)
    assert len(counts) == 1
    addr, target, status, reason, count = counts[0]
    assert (addr, target, status, count) == ("127.0.0.1", "", 401, REFUSED)
    assert "does not match the body" in reason
    log = daemon.log()
    assert "delivery bad-" not in log  # an unverified delivery id is never logged
    assert log.count("delivery - from 127.0.0.1") == 1  # the first of this sender this minute
    assert "delivery malformed-1 from 127.0.0.1" in log


def test_the_summary_names_each_sender_and_how_many_more_were_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(str(tmp_path / "state.sqlite3"))

    async def scenario() -> tuple[list[int], list[int]]:
        rejections = Rejections(recorder, every=0.05)
        first = [rejections.count("203.0.113.7", "", 401, "wrong") for _ in range(3)]
        first.append(rejections.count("198.51.100.1", "", 401, "wrong"))
        await asyncio.sleep(0.2)  # the summary has been written; a new minute starts
        again = [rejections.count("203.0.113.7", "", 401, "wrong")]
        await asyncio.sleep(0.2)
        return first, again

    with caplog.at_level(logging.WARNING, logger="deployhook.http"):
        first, again = asyncio.run(scenario())
    recorder.close()
    assert first == [1, 2, 3, 1]
    assert again == [1]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["2 more deliveries from 203.0.113.7 refused in the last minute "
                     "(the last: 401 wrong)"]
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        total = db.execute("SELECT remote_addr, SUM(count) FROM rejections"
                           " GROUP BY remote_addr ORDER BY remote_addr").fetchall()
    assert total == [("198.51.100.1", 1), ("203.0.113.7", 4)]


def test_ipv6_senders_of_one_slash_64_are_counted_and_throttled_as_one(
        tmp_path: Path) -> None:
    """Second review, finding 10a: each address of one IPv6 /64 got a counter of its
    own (2^64 fresh senders, never throttled, the table growing); now a /64 is one
    sender, in the count that throttles and in the record, and another /64 is not."""
    recorder = Recorder(str(tmp_path / "state.sqlite3"))
    same = [f"2001:db8:1:2::{n:x}" for n in range(1, FREE_REFUSALS + 3)]

    async def scenario() -> tuple[list[int], int]:
        rejections = Rejections(recorder)
        counts = [rejections.count(address, "", 401, "wrong") for address in same]
        return counts, rejections.count("2001:db8:1:3::1", "", 401, "wrong")

    counts, other = asyncio.run(scenario())
    recorder.close()  # writes the counts
    assert counts == list(range(1, len(same) + 1))  # past FREE_REFUSALS: throttled
    assert other == 1
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        rows = db.execute("SELECT remote_addr, SUM(count) FROM rejections"
                          " GROUP BY remote_addr ORDER BY remote_addr").fetchall()
    assert rows == [("2001:db8:1:2::/64", len(same)), ("2001:db8:1:3::/64", 1)]


def test_a_sender_refused_often_waits_for_its_answers(repos: Repos, secret_file: Path) -> None:
    """Past FREE_REFUSALS, each wrong-signature answer waits refused_delay: a flood on
    one connection at a time gets fewer answers; a valid push is still answered."""
    daemon = start_daemon(repos, secret_file, refused_delay=4.0)
    try:
        daemon.wait_ready()
        for n in range(FREE_REFUSALS):
            assert http("POST", daemon.url + "/github", *bad_delivery(n))[0] == 401
        with pytest.raises(TimeoutError):  # the sender gives up while its answer waits
            http("POST", daemon.url + "/github", *bad_delivery(FREE_REFUSALS), timeout=1)
        body, headers = signed(push_payload(repos.commit()), delivery="good-1")
        status, answer = http("POST", daemon.url + "/github", body, headers)
        assert status == 200 and answer["result"] == "deployed", answer
        time.sleep(4.0)  # the answer to the closed connection is due by now
        assert http("GET", daemon.url + "/health")[0] == 200
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()
    assert "ERROR" not in daemon.log()
