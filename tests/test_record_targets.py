"""The record keeps the target of every delivery and run; older files migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from deployhook.record.store import MIGRATIONS, SCHEMA_VERSION, DeliveryRecord, Store


def test_a_version_1_record_migrates_and_keeps_its_history_under_default(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1] + "; PRAGMA user_version=1;")
    db.execute("INSERT INTO runs (trigger, branch, started, outcome) VALUES"
               " ('webhook', 'main', 1.0, 'ok')")
    db.execute("INSERT INTO deliveries (delivery_id, event, remote_addr, signature, received,"
               " accepted, run_id, after) VALUES ('d1', 'push', '127.0.0.1', 'valid', 1.0, 1, 1,"
               " 'a')")
    db.commit()
    db.close()
    store = Store(str(path))
    assert store.version == SCHEMA_VERSION == 5
    assert store.events() == []  # version 5: the events table
    (run,) = store.runs()
    assert run["target"] == "default"
    assert store.earlier_deploy("d1", "a")["run"] == 1
    assert store.earlier_deploy("d1", "a", target="blog") is None
    store.close()


def test_runs_and_replays_are_per_target(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "r.sqlite3"))
    for target in ("blog", "docs", "blog"):
        row = store.add_delivery(DeliveryRecord("same-id", "push", "::1", "valid", after="b" * 40,
                                                accepted=True, target=target))
        run = store.start_run("webhook", "main", None, [row], ["alice"], target=target)
        store.finish_run(run, True, None, "b" * 40, "", [])
    assert store.count_runs() == 3
    assert store.count_runs("blog") == 2
    assert [r["target"] for r in store.runs(target="docs")] == ["docs"]
    assert {name: r["id"] for name, r in store.last_runs().items()} == {"blog": 3, "docs": 2}
    assert store.earlier_deploy("same-id", "b" * 40, target="docs")["run"] == 2
    assert store.unfinished_deliveries("docs") == []
    store.close()
