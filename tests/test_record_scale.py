"""The record at the scale of many targets (issue 26): its queries use indexes, and a big
prune goes in batches that let the rest of the daemon's record work through.

A real SQLite file written through the Store's own API; each query checked is the one
the Store runs (caught with SQLite's trace callback), asked for its plan with
``EXPLAIN QUERY PLAN``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deployhook.git.steps import Step
from deployhook.record.recorder import Recorder
from deployhook.record.store import INDEXES, DeliveryRecord, Store

TARGETS = [f"t{i:02d}" for i in range(40)]
RUNS_EACH = 5


def fill(store: Store, targets: list[str] = TARGETS, runs_each: int = RUNS_EACH,
         age_days: float = 0) -> None:
    """``runs_each`` finished runs per target (each covering an accepted delivery), made
    ``age_days`` old, round-robin as a storm of pushes would leave them."""
    for k in range(runs_each):
        for name in targets:
            delivery = DeliveryRecord(f"{name}-{k}", "push", "127.0.0.1", "valid",
                                      "refs/heads/main", "a" * 40, "b" * 40, "octocat",
                                      True, name, 1)
            row = store.add_delivery(delivery)
            run = store.start_run("webhook", "main", "a" * 40, [row], ["octocat"], name)
            store.answer_delivery(row, 200, "deployed", "", run)
            store.finish_run(run, True, "a" * 40, "b" * 40, "",
                             [Step("fetch", "git fetch origin", 0, 0.01, "")])
    if age_days:
        then = time.time() - age_days * 86400
        store.db.execute("UPDATE runs SET started = ?", (then,))
        store.db.execute("UPDATE deliveries SET received = ?", (then,))


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = Store(str(tmp_path / "state.sqlite3"))
    fill(store)
    store.add_event("t07", "pause", "alice@web1")
    yield store
    store.close()


def plans(store: Store, call: Callable[[Store], object]) -> list[tuple[str, list[str]]]:
    """Every statement ``call(store)`` runs, with the lines of its query plan."""
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    try:
        call(store)
    finally:
        store.db.set_trace_callback(None)
    reader = sqlite3.connect(store.path)  # a plain connection: its plans, not the trace's
    try:
        return [(sql, [row[3] for row in reader.execute("EXPLAIN QUERY PLAN " + sql)])
                for sql in statements if re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)", sql, re.I)]
    finally:
        reader.close()


FULL_SCAN = re.compile(r"^SCAN (runs|deliveries|steps|r|d|r2|d2|s)$")  # no index
NEWEST_FIRST = re.compile(r"FROM runs( r)? ORDER BY (r\.)?id DESC LIMIT")  # stops early
QUERIES: dict[str, tuple[Callable[[Store], object], tuple[str, ...]]] = {
    # what it runs -> (the call, a plan line each of these must appear in)
    "history/page/deployments of one target": (
        lambda s: s.runs(20, 0, "t07"), ("SEARCH r USING INDEX runs_by_target (target=?)",)),
    "how many runs one target has": (
        lambda s: s.count_runs("t07"), ("USING COVERING INDEX runs_by_target (target=?)",)),
    "one target's events": (
        lambda s: s.events(10, "t07"), ("USING INDEX events_by_target (target=?)",)),
    "each target's last run (the page, the refresh)": (
        lambda s: s.last_runs(), ("SEARCH r2 USING INDEX runs_by_target (target=?)",)),
    "the targets with a run going on (the refresh)": (
        lambda s: s.running_targets(), ("runs_running",)),
    "the runs a dead process left (start)": (
        lambda s: s.interrupt_unfinished(), ("runs_running",)),
    "a target's unfinished deliveries (start, resume)": (
        lambda s: s.unfinished_deliveries("t07"),
        ("SEARCH d USING INDEX deliveries_by_target (target=? AND id>?)",
         "SEARCH d2 USING INDEX deliveries_by_target (target=?)")),
    "a delivery seen before (every delivery)": (
        lambda s: s.earlier_deploy("t07-1", "b" * 40, "t07"), ("deliveries_by_id",)),
    "a commit deployed before (every delivery)": (
        lambda s: s.deployed_before("refs/heads/main", "b" * 40, "t07"),
        ("runs_by_target (target=?)",)),
    "one run (the run page, show)": (lambda s: s.run(7), ("INTEGER PRIMARY KEY",)),
    "pruning a target when nothing is due (after each of its runs)": (
        lambda s: s.prune_some(10_000, 90, targets=["t07"]),
        ("SEARCH runs USING INDEX runs_by_target (target=? AND id<?)",
         "SEARCH runs USING COVERING INDEX runs_by_target (target=?)",
         "runs_by_started (started<?)", "deliveries_by_run (run_id=?)")),
    "pruning a target's runs beyond keep_runs, their deliveries with them": (
        lambda s: s.prune_some(2, 90, targets=["t07"]),
        ("SEARCH runs USING INDEX runs_by_target (target=? AND id<?)",
         "SEARCH deliveries USING INDEX deliveries_by_run (run_id=?)",
         "SEARCH runs USING INTEGER PRIMARY KEY (rowid=?)")),
    "the targets of the record (pruning them all at start, history)": (
        lambda s: s.targets(), ("SEARCH runs USING COVERING INDEX runs_by_target (target>?)",)),
    "the newest runs of every target (history, the page)": (lambda s: s.runs(20), ()),
    "a later page of them (/deployments?page=N)": (lambda s: s.runs(20, 100), ()),
}


@pytest.mark.parametrize("what", list(QUERIES))
def test_the_queries_of_a_big_record_use_indexes(store: Store, what: str) -> None:
    """No statement reads all of runs, deliveries or steps; a plain scan of runs is
    only the newest first, which stops after the page (or keep_runs rows)."""
    call, wanted = QUERIES[what]
    statements = plans(store, call)
    lines = [line for _, plan in statements for line in plan]
    assert lines, what
    for needle in wanted:
        assert any(needle in line for line in lines), (needle, statements)
    for sql, plan in statements:
        scans = [line for line in plan if FULL_SCAN.match(line)]
        assert not scans or (NEWEST_FIRST.search(sql) and scans in (["SCAN r"], ["SCAN runs"])), \
            (sql, plan)


def test_a_record_without_the_indexes_gets_them_when_opened_for_writing(
        tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Store(str(path)).close()
    names = re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", INDEXES)
    with sqlite3.connect(path) as db:  # as an older deployhook left it
        for name in names:
            db.execute(f"DROP INDEX {name}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
    reader = Store(str(path), readonly=True)  # reads it as it is, adds nothing
    assert reader.runs(5, 0, "a") == [] and reader.count_runs("a") == 0
    reader.close()
    Store(str(path)).close()
    with sqlite3.connect(path) as db:
        present = {row[0] for row in db.execute("SELECT name FROM sqlite_master"
                                                " WHERE type = 'index'")}
        assert set(names) <= present
        assert db.execute("PRAGMA user_version").fetchone()[0] == version  # no new schema


@pytest.mark.parametrize(("keep_runs", "keep_days", "age_days", "left"), [
    (2, 90, 0, 80),  # beyond keep_runs: 2 runs kept of each of the 40 targets
    (10_000, 30, 40, 0),  # older than keep_days
])
def test_a_big_prune_goes_in_batches(tmp_path: Path, keep_runs: int, keep_days: float,
                                     age_days: float, left: int) -> None:
    store = Store(str(tmp_path / "state.sqlite3"))
    fill(store, age_days=age_days)  # 200 runs, 200 deliveries
    batches = []
    while True:
        gone, more = store.prune_some(keep_runs, keep_days, limit=60)
        assert not store.db.in_transaction  # each batch committed: the lock is free
        batches.append(gone)
        if not more:
            break
    assert max(batches) == 60 and sum(batches) == 200 - left and len(batches) >= 3
    assert store.count_runs() == left
    kept = store.db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    assert kept == left  # the deliveries of the runs that went, went too
    assert store.prune_some(keep_runs, keep_days, limit=60) == (0, False)
    assert set(store.run_counts().values()) <= {keep_runs}
    store.close()


def test_the_daemon_prunes_a_batch_at_a_time_and_the_record_answers_in_between(
        tmp_path: Path) -> None:
    """Recorder.prune on the IOLoop: other record calls get their turn between two
    batches (they see the count go down step by step), and the loop keeps running."""
    path = tmp_path / "state.sqlite3"
    writer = Store(str(path))
    fill(writer, runs_each=25)  # 1,000 runs
    writer.close()

    async def scenario() -> tuple[int, list[int]]:
        recorder = Recorder(str(path))
        recorder.PRUNE_BATCH = 100
        try:
            pruning = asyncio.ensure_future(recorder.prune(keep_runs=1, keep_days=90))
            seen = []
            while not pruning.done():
                seen.append(await recorder.run(lambda s: s.count_runs()))
            return await pruning, seen
        finally:
            recorder.close()

    gone, seen = asyncio.run(scenario())
    assert gone == 960
    between = sorted({n for n in seen if 40 < n < 1000})
    assert len(between) >= 5, seen  # the reads went between the batches
    assert Store(str(path), readonly=True).count_runs() == 40  # one of each target


def test_prune_later_runs_one_pruning_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    writer = Store(str(path))
    fill(writer, runs_each=10)  # 400 runs
    writer.close()

    async def scenario() -> int:
        recorder = Recorder(str(path))
        recorder.PRUNE_BATCH = 50
        try:
            recorder.prune_later(2, 90)
            first = recorder._pruning
            recorder.prune_later(2, 90)  # one is going on: nothing new
            assert recorder._pruning is first and first is not None
            assert await first == 320
            return await recorder.run(lambda s: s.count_runs())
        finally:
            recorder.close()

    assert asyncio.run(scenario()) == 80  # two of each of the 40 targets


def test_prune_later_prunes_the_target_that_ran_and_those_named_meanwhile(
        tmp_path: Path) -> None:
    """After a run the daemon prunes that target only; a target named while a pruning
    goes on is pruned after it; the others keep their runs until theirs."""
    path = tmp_path / "state.sqlite3"
    writer = Store(str(path))
    fill(writer, runs_each=10)  # 400 runs
    writer.close()

    async def scenario() -> tuple[int, dict[str, int]]:
        recorder = Recorder(str(path))
        recorder.PRUNE_BATCH = 5
        try:
            recorder.prune_later(2, 90, "t01")
            first = recorder._pruning
            recorder.prune_later(2, 90, "t02")  # while t01's goes on
            assert recorder._pruning is first and first is not None
            return await first, await recorder.run(lambda s: s.run_counts())
        finally:
            recorder.close()

    gone, counts = asyncio.run(scenario())
    assert gone == 16
    assert counts == {name: 2 if name in ("t01", "t02") else 10 for name in TARGETS}
