"""The deployment record's pieces where a fault matters: the Recorder's queue when the
database is slow (locked by another process) or failing, and Store.prune."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from deployhook.record.recorder import Recorder
from deployhook.record.store import DeliveryRecord, Store


def record(n: int) -> DeliveryRecord:
    return DeliveryRecord(delivery_id=f"d-{n}", event="ping", remote_addr="127.0.0.1",
                          signature="valid")


def delivery_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT delivery_id FROM deliveries ORDER BY id")]


async def settle(recorder: Recorder) -> None:
    """Wait until the queue has been flushed and its write has finished."""
    for _ in range(200):
        await asyncio.sleep(recorder.FLUSH_EVERY)
        flushing = recorder._flushing
        if not recorder._queue and (flushing is None or flushing.done()):
            return
    raise AssertionError("the record never caught up")


async def taken(recorder: Recorder) -> None:
    """Wait until a write has taken the whole queue."""
    for _ in range(200):
        if not recorder._queue and recorder._flushing is not None:
            return
        await asyncio.sleep(recorder.FLUSH_EVERY)
    raise AssertionError("no write took the queue")


def test_a_locked_database_bounds_the_queue_and_counts_what_it_drops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """While another process holds the database, the IOLoop keeps going, the queue stays
    at MAX_QUEUED, the excess is counted and reported; the rest is written afterwards."""
    path = tmp_path / "state.sqlite3"

    async def scenario() -> tuple[int, int, int]:
        recorder = Recorder(str(path))
        recorder.MAX_QUEUED = 20
        await recorder.run(lambda s: s.count_runs())  # create the file
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        for n in range(5):
            recorder.log(record(n), 200, "pong", "")
        await taken(recorder)  # its write now waits for the lock
        ticks = 0
        for n in range(5, 40):
            recorder.log(record(n), 200, "pong", "")
            await asyncio.sleep(0)
            ticks += 1  # the loop runs while the database is locked
        queued, dropped = len(recorder._queue), recorder.dropped
        lock.execute("ROLLBACK")
        lock.close()
        await settle(recorder)
        recorder.close()
        return ticks, queued, dropped

    with caplog.at_level(logging.WARNING, "deployhook.record"):
        ticks, queued, dropped = asyncio.run(scenario())
    assert (ticks, queued, dropped) == (35, 20, 15)
    assert delivery_ids(path) == [f"d-{n}" for n in range(25)]
    assert "fell behind: 15 deliveries not recorded" in caplog.text


def test_a_failing_database_is_logged_and_never_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A state_db that cannot be opened: queued writes and reads fail with a log line;
    log(), try_run() and close() never raise into the caller."""
    (tmp_path / "file").write_text("not a folder")
    recorder_path = tmp_path / "file" / "state.sqlite3"

    async def scenario() -> object:
        recorder = Recorder(str(recorder_path))
        for n in range(3):
            recorder.log(record(n), 200, "pong", "")
        await settle(recorder)
        recorder.log(record(3), 200, "pong", "")  # still accepted after a failure
        await settle(recorder)
        result = await recorder.try_run(lambda s: s.count_runs())
        recorder.close()
        return result

    with caplog.at_level(logging.ERROR, "deployhook.record"):
        assert asyncio.run(scenario()) is None
    assert caplog.text.count("cannot write the deployment record") == 2
    assert "cannot use the deployment record" in caplog.text


def test_close_writes_what_is_still_queued(tmp_path: Path) -> None:
    """close() (the daemon's shutdown and re-exec) writes the queue before closing."""
    path = tmp_path / "state.sqlite3"

    async def scenario() -> None:
        recorder = Recorder(str(path))
        recorder.log(record(1), 200, "pong", "")
        recorder.close()  # before FLUSH_EVERY has passed

    asyncio.run(scenario())
    assert delivery_ids(path) == ["d-1"]


def finished_run(store: Store, age_days: float = 0.0, ok: bool = True,
                 target: str = "default") -> int:
    run_id = store.start_run("webhook", "main", "a" * 40, [], target=target)
    store.finish_run(run_id, ok, "a" * 40, "b" * 40, "", [])
    if age_days:
        store.db.execute("UPDATE runs SET started=? WHERE id=?",
                         (time.time() - age_days * 86400, run_id))
    return run_id


def run_ids(store: Store) -> list[int]:
    return sorted(r["id"] for r in store.runs(100))


def test_prune_keeps_the_newest_runs_and_never_a_running_one(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state.sqlite3"))
    running = store.start_run("webhook", "main", None, [])  # oldest, still running
    finished = [finished_run(store) for _ in range(5)]
    assert store.prune(keep_runs=3, keep_days=30) == 2
    assert run_ids(store) == sorted([running, *finished[2:]])
    assert store.prune(keep_runs=3, keep_days=30) == 0  # idempotent
    store.close()


def test_prune_drops_runs_older_than_keep_days_and_their_answered_deliveries(
        tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state.sqlite3"))
    old = finished_run(store, age_days=40)
    new = finished_run(store)
    long_ago = time.time() - 40 * 86400
    store.log_deliveries([(record(1), long_ago, 200, "pong", "")])  # answered, old
    unanswered = store.add_delivery(record(2), received=long_ago)  # accepted, never answered
    store.log_deliveries([(record(3), time.time(), 200, "pong", "")])  # answered, recent
    assert store.prune(keep_runs=100, keep_days=30) == 1
    assert run_ids(store) == [new] and old not in run_ids(store)
    left = [r[0] for r in store.db.execute("SELECT id FROM deliveries ORDER BY id")]
    ids = [r[0] for r in store.db.execute("SELECT delivery_id FROM deliveries ORDER BY id")]
    assert unanswered in left and ids == ["d-2", "d-3"]
    store.close()


@pytest.mark.parametrize(("quiet_age", "keep_days", "quiet_left"), [
    (10, 30, 3),  # the quiet target keeps its runs, whatever its busy neighbour does
    (40, 30, 0),  # but none older than keep_days
])
def test_keep_runs_counts_the_runs_of_each_target(tmp_path: Path, quiet_age: float,
                                                   keep_days: float, quiet_left: int) -> None:
    store = Store(str(tmp_path / "state.sqlite3"))
    quiet = [finished_run(store, age_days=quiet_age, target="quiet") for _ in range(3)]
    busy = [finished_run(store, target="busy") for _ in range(20)]
    assert store.prune(keep_runs=5, keep_days=keep_days) == 15 + 3 - quiet_left
    assert sorted(r["id"] for r in store.runs(100, target="busy")) == busy[-5:]
    assert sorted(r["id"] for r in store.runs(100, target="quiet")) == quiet[3 - quiet_left:]
    assert store.prune(keep_runs=5, keep_days=keep_days) == 0
    store.close()


def test_prune_with_keep_runs_zero_keeps_only_running_runs(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state.sqlite3"))
    finished_run(store)
    running = store.start_run("cli", "main", None, [])
    assert store.prune(keep_runs=0, keep_days=30) == 1
    assert run_ids(store) == [running]
    store.close()
