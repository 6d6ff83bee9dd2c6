"""The deployment record: every delivery and every deploy run, in SQLite.

Blocking: use it from one thread only (the daemon's single database thread,
or the CLI).  WAL mode, so ``deployhook history`` can read while the daemon
writes.  The schema is versioned; :data:`MIGRATIONS` brings any older file up
to date when it is opened.

The record is private: its file is created mode 0600 (SQLite gives ``-wal`` and
``-shm`` the database file's mode), and an older file readable by others is made
0600 when opened for writing.  Text from deliveries is stored as valid UTF-8 (a
lone surrogate from JSON becomes ``?``).  What is read back for showing (runs and
their steps) goes through :func:`~deployhook.redact.redact_recorded`, so rows an
older deployhook wrote unredacted do not leak either.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployhook.git.steps import Step
from deployhook.redact import redact, redact_recorded
from deployhook.settings import DEFAULT_TARGET

SCHEMA_VERSION = 5
REJECTED_KEPT = 10_000  # unaccepted deliveries kept, newest first
PRUNE_BATCH = 500  # rows of each table one pruning transaction deletes at most
PRUNE_TARGETS = 100  # targets whose runs beyond keep_runs one pruning transaction looks up
CACHE_KIB = 512  # SQLite page cache per connection (its default: 2 MiB); pages beyond it are
# read again from the file, which the OS caches
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        trigger TEXT NOT NULL,            -- webhook, cli, recovery
        branch TEXT,
        started REAL NOT NULL,
        finished REAL,
        outcome TEXT NOT NULL,            -- running, ok, failed, interrupted
        head_before TEXT,
        head_after TEXT,
        reason TEXT NOT NULL DEFAULT '',
        pushers TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE steps (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        command TEXT NOT NULL,
        status INTEGER NOT NULL,
        duration REAL NOT NULL,
        output TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        delivery_id TEXT NOT NULL,
        event TEXT NOT NULL,
        ref TEXT,
        before TEXT,
        after TEXT,
        pusher TEXT,
        remote_addr TEXT NOT NULL,
        signature TEXT NOT NULL,          -- valid, invalid, unchecked
        received REAL NOT NULL,
        status INTEGER,                   -- NULL while its deploy is pending
        result TEXT,
        reason TEXT,
        accepted INTEGER NOT NULL DEFAULT 0,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL
    );
    CREATE INDEX deliveries_by_id ON deliveries(delivery_id);
    CREATE INDEX deliveries_by_run ON deliveries(run_id);
    """,
    2: """
    ALTER TABLE runs ADD COLUMN target TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE deliveries ADD COLUMN target TEXT NOT NULL DEFAULT 'default';
    CREATE INDEX runs_by_target ON runs(target, id);
    """,
    3: """
    ALTER TABLE deliveries ADD COLUMN secret_index INTEGER;  -- 1-based line that verified it
    CREATE TABLE live (                   -- the output so far of a running run's command
        run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        output TEXT NOT NULL,
        updated REAL NOT NULL
    );
    """,
    4: """
    CREATE TABLE rejections (             -- unverified deliveries refused, counted per minute
        minute INTEGER NOT NULL,          -- Unix time of the minute's start
        remote_addr TEXT NOT NULL,
        target TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (minute, remote_addr, target, status, reason)
    ) WITHOUT ROWID;
    """,
    5: """
    CREATE TABLE events (                 -- what changed a target without a run: pause, resume
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,               -- pause, resume
        time REAL NOT NULL,
        by TEXT NOT NULL,                 -- who: "alice@web1", "deployhook from 203.0.113.7"
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_by_target ON events(target, id);
    """,
}
# Indexes for the queries of a big record (1,000 targets, 10,000 runs and more): what
# the daemon's start (unfinished deliveries of each target), its refresh (the targets
# with a run going on), and pruning look up.  Created when a writer opens the file, if
# missing; no schema change (an older deployhook reads and writes the file as before).
INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_by_target ON deliveries(target, id);
CREATE INDEX IF NOT EXISTS runs_running ON runs(target) WHERE outcome = 'running';
CREATE INDEX IF NOT EXISTS runs_by_started ON runs(started);
"""


@dataclass(frozen=True)
class DeliveryRecord:
    """What is known of a delivery when it arrives."""

    delivery_id: str
    event: str
    remote_addr: str
    signature: str
    ref: str | None = None
    before: str | None = None
    after: str | None = None
    pusher: str | None = None
    accepted: bool = False
    target: str = DEFAULT_TARGET
    secret_index: int | None = None  # which secret (1-based position) verified it


class Store:
    """One SQLite database file.  Not thread-safe: one thread uses it.

    ``readonly=True`` opens an existing file for its queries without creating,
    migrating or writing anything (``mode=rw`` so SQLite still tidies its WAL files
    on close; ``mode=ro`` when the file is not writable for us); ``version`` then
    says whether the daemon has set it up yet (0: not yet).
    """

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            uri = Path(path).resolve().as_uri()
            try:
                self.db = sqlite3.connect(uri + "?mode=rw", uri=True, isolation_level=None)
            except sqlite3.OperationalError:
                self.db = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None)
        else:
            _make_private(path)
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe against process crashes
            self.db.execute("PRAGMA foreign_keys=ON")
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # the OS caches the file too
        self.version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if self.version > SCHEMA_VERSION:
            self.db.close()
            raise RuntimeError(f"{path} has schema {self.version}, newer than this deployhook "
                               f"({SCHEMA_VERSION}); upgrade deployhook")
        if not readonly:
            self.migrate()

    def close(self) -> None:
        self.db.close()

    def migrate(self) -> None:
        """Apply every migration newer than the file's ``user_version``, each atomically,
        then create the :data:`INDEXES` that are missing."""
        for target in range(self.version + 1, SCHEMA_VERSION + 1):
            self.db.executescript(f"BEGIN; {MIGRATIONS[target]}; "
                                  f"PRAGMA user_version={target}; COMMIT;")
        self.version = SCHEMA_VERSION
        self.db.executescript(f"BEGIN; {INDEXES}; COMMIT;")

    # -- deliveries ------------------------------------------------------------------
    def add_delivery(self, record: DeliveryRecord, received: float | None = None) -> int:
        """Record an arriving delivery; return its row id."""
        cur = self.db.execute(
            "INSERT INTO deliveries (delivery_id, event, ref, before, after, pusher, remote_addr,"
            " signature, received, accepted, target, secret_index)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (*_texts(record), time.time() if received is None else received,
             int(record.accepted), record.target, record.secret_index))
        return int(cur.lastrowid or 0)

    def log_deliveries(self, answered: Sequence[tuple[DeliveryRecord, float, int, str, str]]
                       ) -> None:
        """Record deliveries that were answered at once (no deploy), in one transaction:
        (record, received, status, result, reason) each."""
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.executemany(
                "INSERT INTO deliveries (delivery_id, event, ref, before, after, pusher,"
                " remote_addr, signature, received, accepted, status, result, reason, target,"
                " secret_index) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(*_texts(r), received, int(r.accepted), status, _text(result), _text(reason),
                  r.target, r.secret_index)
                 for r, received, status, result, reason in answered])
            last = self.db.execute("SELECT MAX(id) FROM deliveries").fetchone()[0] or 0
            if cur.rowcount and last // 1000 != (last - len(answered)) // 1000:
                # keep a flood of rejected deliveries from growing the file
                self.db.execute("DELETE FROM deliveries WHERE accepted=0 AND run_id IS NULL"
                                " AND id <= ?", (last - REJECTED_KEPT,))

    def count_rejections(self, counts: Mapping[tuple[int, str, str, int, str], int]) -> None:
        """Add ``counts`` of refused unverified deliveries, keyed (minute, sender's address,
        target, status, reason), to the per-minute totals, in one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO rejections (minute, remote_addr, target, status, reason, count)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (minute, remote_addr, target, status, reason)"
                " DO UPDATE SET count = count + excluded.count",
                [(minute, _text(addr), target, status, _text(reason), count)
                 for (minute, addr, target, status, reason), count in counts.items()])

    def rejections(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The per-minute counts of refused unverified deliveries from ``since`` (Unix
        time) on, newest minute first."""
        rows = self.db.execute("SELECT * FROM rejections WHERE minute >= ?"
                               " ORDER BY minute DESC, count DESC", (int(since),)).fetchall()
        return [dict(row) for row in rows]

    def answer_delivery(self, row: int, status: int, result: str, reason: str,
                        run_id: int | None = None) -> None:
        """Store the HTTP answer a delivery got (and the run that covered it)."""
        self.db.execute("UPDATE deliveries SET status=?, result=?, reason=?,"
                        " run_id=COALESCE(?, run_id) WHERE id=?",
                        (status, _text(result), _text(reason), run_id, row))

    def earlier_deploy(self, delivery_id: str, after: str,
                       target: str = DEFAULT_TARGET) -> dict[str, Any] | None:
        """The newest accepted delivery to ``target`` with this ID and commit, and its
        run's outcome."""
        row = self.db.execute(
            "SELECT d.*, r.outcome AS run_outcome, r.head_after AS run_head, r.id AS run"
            " FROM deliveries d LEFT JOIN runs r ON r.id = d.run_id"
            " WHERE d.delivery_id=? AND d.after=? AND d.accepted=1 AND +d.target=?"
            " ORDER BY d.id DESC LIMIT 1", (delivery_id, after, target)).fetchone()
        # (+d.target: looked up by its ID in deliveries_by_id, not through all of the
        # target's deliveries, which is every delivery with one target)
        return dict(row) if row else None

    def deployed_before(self, ref: str, after: str,
                        target: str = DEFAULT_TARGET) -> dict[str, Any] | None:
        """Whether ``target`` already ran a deploy of ``ref`` at ``after``, and what is
        deployed now.

        None when no finished run (ok or failed) of ``target`` covered an accepted
        delivery of that ref and commit, nor deployed that ref to that commit (a run
        with no delivery here: a fleet node's, the CLI's).  Else the newest such run as
        ``{"run", "outcome", "branch", "head"}`` (``branch``: the ref it deployed;
        ``head``: HEAD after it), with under ``"live"`` the same of the target's newest
        successful run (None when there is none).
        """
        row = self.db.execute(
            "SELECT r.id AS run, r.outcome, r.branch, r.head_after AS head FROM runs r"
            " WHERE r.target=? AND r.outcome IN ('ok', 'failed') AND (EXISTS (SELECT 1"
            " FROM deliveries d WHERE d.run_id = r.id AND d.accepted=1 AND d.ref=?"
            " AND d.after=?) OR (r.branch=? AND r.head_after=?)) ORDER BY r.id DESC LIMIT 1",
            (target, ref, after, ref, after)).fetchone()
        if row is None:
            return None
        live = self.db.execute(
            "SELECT id AS run, outcome, branch, head_after AS head FROM runs"
            " WHERE target=? AND outcome='ok' ORDER BY id DESC LIMIT 1", (target,)).fetchone()
        return {**dict(row), "live": dict(live) if live else None}

    def unfinished_deliveries(self, target: str = DEFAULT_TARGET) -> list[dict[str, Any]]:
        """Accepted deliveries to ``target`` whose deploy never ended well (crash,
        failure, pending)."""
        rows = self.db.execute(
            "SELECT d.* FROM deliveries d LEFT JOIN runs r ON r.id = d.run_id"
            " WHERE d.accepted=1 AND d.target=?"
            " AND (r.id IS NULL OR r.outcome IN ('running', 'interrupted'))"
            " AND d.id > COALESCE((SELECT MAX(d2.id) FROM deliveries d2 JOIN runs r2"
            "   ON r2.id = d2.run_id WHERE r2.outcome = 'ok' AND d2.target=?), 0)"
            " ORDER BY d.id", (target, target)).fetchall()
        return [dict(row) for row in rows]

    def secret_uses(self) -> dict[str, dict[int, float]]:
        """When each secret position last verified a delivery the record keeps:
        ``{target: {position: received}}``."""
        uses: dict[str, dict[int, float]] = {}
        for row in self.db.execute(
                "SELECT target, secret_index, MAX(received) FROM deliveries"
                " WHERE secret_index IS NOT NULL GROUP BY target, secret_index"):
            uses.setdefault(row[0], {})[int(row[1])] = float(row[2])
        return uses

    # -- events ------------------------------------------------------------------------
    def add_event(self, target: str, kind: str, by: str, reason: str = "") -> int:
        """Record that ``by`` changed ``target`` without a run (``kind``: ``pause``,
        ``resume``); return its id."""
        cur = self.db.execute("INSERT INTO events (target, kind, time, by, reason)"
                              " VALUES (?,?,?,?,?)",
                              (target, _text(kind), time.time(), _text(by), _text(reason)))
        return int(cur.lastrowid or 0)

    def events(self, limit: int = 20, target: str | None = None) -> list[dict[str, Any]]:
        """Events (of ``target``, or of every target), newest first."""
        columns = "SELECT id, target, kind, time, by, reason FROM events"
        rows = (self.db.execute(f"{columns} ORDER BY id DESC LIMIT ?", (limit,))
                if target is None else
                self.db.execute(f"{columns} WHERE target = ? ORDER BY id DESC LIMIT ?",
                                (target, limit)))
        return [dict(row) for row in rows]

    # -- runs --------------------------------------------------------------------------
    def start_run(self, trigger: str, branch: str, head_before: str | None,
                  delivery_rows: Iterable[int], pushers: Sequence[str] = (),
                  target: str = DEFAULT_TARGET) -> int:
        """Record a run of ``target`` that is starting, covering ``delivery_rows``; return
        its id."""
        cur = self.db.execute(
            "INSERT INTO runs (trigger, branch, started, outcome, head_before, pushers, target)"
            " VALUES (?,?,?,?,?,?,?)",
            (trigger, _text(branch), time.time(), "running", head_before,
             _text(", ".join(sorted(set(pushers)))), target))
        run_id = int(cur.lastrowid or 0)
        self.db.executemany("UPDATE deliveries SET run_id=? WHERE id=?",
                            [(run_id, row) for row in delivery_rows])
        return run_id

    def live_output(self, run_id: int, step: str, output: str) -> None:
        """Keep the output so far (already masked) of step ``step`` of running run
        ``run_id``, for watching it; :meth:`finish_run` drops it."""
        self.db.execute("INSERT OR REPLACE INTO live VALUES (?,?,?,?)",
                        (run_id, _text(step), _text(output), time.time()))

    def finish_run(self, run_id: int, ok: bool, head_before: str | None,
                   head_after: str | None, reason: str, steps: Sequence[Step]) -> None:
        """Record a run's outcome and its steps, atomically."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM live WHERE run_id=?", (run_id,))
            self.db.execute(
                "UPDATE runs SET finished=?, outcome=?, head_before=COALESCE(?, head_before),"
                " head_after=?, reason=? WHERE id=?",
                (time.time(), "ok" if ok else "failed", head_before, head_after, _text(reason),
                 run_id))
            self.db.executemany(
                "INSERT INTO steps VALUES (?,?,?,?,?,?,?)",
                [(run_id, seq, s.name, _text(s.command), s.status, s.duration, _text(s.output))
                 for seq, s in enumerate(steps)])

    def add_step(self, run_id: int, step: Step) -> bool:
        """Append ``step`` to run ``run_id`` (finished or not), after its other steps: what
        happened after the deploy itself, such as reporting to the forge.  False when the
        run is no longer in the record."""
        if self.db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None:
            return False
        with self.db:
            self.db.execute("BEGIN")
            seq = self.db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM steps WHERE run_id=?",
                                  (run_id,)).fetchone()[0]
            self.db.execute("INSERT INTO steps VALUES (?,?,?,?,?,?,?)",
                            (run_id, seq, step.name, _text(step.command), step.status,
                             step.duration, _text(step.output)))
        return True

    def interrupt_unfinished(self) -> list[int]:
        """Mark runs left 'running' by a process that died as 'interrupted'; return their ids."""
        ids = [row[0] for row in self.db.execute("SELECT id FROM runs WHERE outcome='running'")]
        self.db.execute("UPDATE runs SET outcome='interrupted', finished=?, reason="
                        "'the process ended before this run finished' WHERE outcome='running'",
                        (time.time(),))
        return ids

    def runs(self, limit: int = 20, offset: int = 0,
             target: str | None = None) -> list[dict[str, Any]]:
        """Runs (of ``target``, or of every target), newest first, with their delivery
        count."""
        select = (
            "SELECT r.*, (SELECT COUNT(*) FROM deliveries d WHERE d.run_id = r.id) AS deliveries,"
            " (SELECT s.command FROM steps s WHERE s.run_id = r.id AND s.name = 'post_deploy'"
            " LIMIT 1) AS post_deploy_command FROM runs r")
        # one statement per case, so that a target's runs are searched in runs_by_target
        rows = (self.db.execute(f"{select} ORDER BY r.id DESC LIMIT ? OFFSET ?",
                                (limit, offset))
                if target is None else
                self.db.execute(f"{select} WHERE r.target = ? ORDER BY r.id DESC"
                                " LIMIT ? OFFSET ?", (target, limit, offset))).fetchall()
        runs = [_run(row) for row in rows]
        for run in runs:
            redact_recorded(run, run.pop("post_deploy_command"))
        return runs

    def count_runs(self, target: str | None = None) -> int:
        """How many runs the record keeps (of ``target``, or of every target)."""
        if target is None:
            return int(self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM runs WHERE target = ?",
                                   (target,)).fetchone()[0])

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """Each target's newest finished run, by target name."""
        rows = self.db.execute(  # per target, its runs newest first until a finished one
            "SELECT r.*, 0 AS deliveries FROM runs r WHERE r.id IN (SELECT (SELECT r2.id"
            " FROM runs r2 WHERE r2.target = t.target AND r2.outcome != 'running'"
            " ORDER BY r2.id DESC LIMIT 1) FROM (SELECT DISTINCT target FROM runs) t)"
        ).fetchall()
        return {row["target"]: _run(row) for row in rows}

    def targets(self) -> list[str]:
        """The targets the record keeps runs of, by name: one step in ``runs_by_target``
        for each (not a read of the whole index)."""
        return [row[0] for row in self.db.execute(
            "WITH RECURSIVE t(name) AS (SELECT MIN(target) FROM runs UNION ALL"
            " SELECT (SELECT MIN(target) FROM runs WHERE target > t.name) FROM t"
            " WHERE t.name IS NOT NULL) SELECT name FROM t WHERE name IS NOT NULL")]

    def data_version(self) -> int:
        """A number that changes whenever another connection (``deployhook deploy``, a
        second process) committed to the file since this one last looked."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def running_targets(self) -> set[str]:
        """The targets with a run that has not finished."""
        return {row[0] for row in
                self.db.execute("SELECT DISTINCT target FROM runs WHERE outcome='running'")}

    def run_counts(self) -> dict[str, int]:
        """How many runs the record keeps of each target."""
        return {row[0]: int(row[1]) for row in
                self.db.execute("SELECT target, COUNT(*) FROM runs GROUP BY target")}

    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run with its steps and the deliveries it covered, or None."""
        row = self.db.execute("SELECT r.*, 0 AS deliveries FROM runs r WHERE id=?",
                              (run_id,)).fetchone()
        if row is None:
            return None
        run = _run(row)
        run["steps"] = [dict(s) for s in self.db.execute(
            "SELECT seq, name, command, status, duration, output FROM steps WHERE run_id=?"
            " ORDER BY seq", (run_id,))]
        run["deliveries"] = [dict(d) for d in self.db.execute(
            "SELECT delivery_id, event, ref, before, after, pusher, remote_addr, received,"
            " status, result FROM deliveries WHERE run_id=? ORDER BY id", (run_id,))]
        live = self.db.execute("SELECT step, output FROM live WHERE run_id=?",
                               (run_id,)).fetchone() if run["outcome"] == "running" else None
        run["live"] = {"step": live[0], "output": redact(live[1])} if live else None
        return redact_recorded(run)

    def prune(self, keep_runs: int, keep_days: float,
              targets: Sequence[str] | None = None) -> int:
        """Delete the runs of each of ``targets`` (None: of every target the record
        keeps) beyond its newest ``keep_runs``, and every run older than ``keep_days``,
        with the deliveries they covered (answered deliveries no run covered go once
        older than the oldest kept run, but those accepted while paused, which wait for a
        resume, only after ``keep_days``; events after ``keep_days``); return how many
        runs went.  In transactions of at most :data:`PRUNE_BATCH` rows a table and
        :data:`PRUNE_TARGETS` targets (:meth:`prune_some` until it is done), so that no
        write waits long for the lock."""
        gone = 0
        for group in target_groups(self.targets() if targets is None else targets):
            while True:
                runs, more = self.prune_some(keep_runs, keep_days, PRUNE_BATCH, group)
                gone += runs
                if not more:
                    break
        return gone

    def prune_some(self, keep_runs: int, keep_days: float, limit: int = PRUNE_BATCH,
                   targets: Sequence[str] | None = None) -> tuple[int, bool]:
        """One transaction of :meth:`prune`: at most ``limit`` rows of each table, the
        oldest first; the runs beyond ``keep_runs`` of ``targets`` (None: of every target,
        all in this transaction), each looked up in ``runs_by_target``.  Returns (how
        many runs went, whether there may be more to prune)."""
        cutoff = time.time() - keep_days * 86400
        with self.db:
            self.db.execute("BEGIN")
            runs = 0
            for target in self.targets() if targets is None else targets:
                runs += self._delete_runs(self._beyond(target, keep_runs, limit - runs))
            runs += self._delete_runs([row[0] for row in self.db.execute(  # too old
                "SELECT id FROM runs WHERE started < ? AND outcome != 'running'"
                " ORDER BY started LIMIT ?", (cutoff, limit - runs))])
            deleted = [runs, self._delete_some(
                "deliveries", "id IN (SELECT id FROM deliveries WHERE run_id IS NULL"
                " AND received < ? AND status IS NOT NULL AND (result IS NOT 'paused'"
                " OR received < ?) LIMIT ?)", (max(cutoff, self._oldest_run()), cutoff, limit))]
            deleted.append(self._delete_some(
                "rejections", "(minute, remote_addr, target, status, reason) IN (SELECT"
                " minute, remote_addr, target, status, reason FROM rejections"
                " WHERE minute < ? LIMIT ?)", (cutoff, limit)))
            deleted.append(self._delete_some(
                "events", "id IN (SELECT id FROM events WHERE time < ? LIMIT ?)",
                (cutoff, limit)))
        return runs, any(n >= limit for n in deleted)

    def _beyond(self, target: str, keep_runs: int, limit: int) -> list[int]:
        """The ids of at most ``limit`` finished runs of ``target`` beyond its newest
        ``keep_runs``, oldest first (two steps in ``runs_by_target``: the newest run not
        kept, then the finished runs up to it)."""
        if limit <= 0:
            return []
        return [row[0] for row in self.db.execute(
            "SELECT id FROM runs WHERE target = :t AND id <= (SELECT id FROM runs"
            " WHERE target = :t ORDER BY id DESC LIMIT 1 OFFSET :keep)"
            " AND outcome != 'running' ORDER BY id LIMIT :limit",
            {"t": target, "keep": max(keep_runs, 0), "limit": limit})]

    def _delete_runs(self, ids: Sequence[int]) -> int:
        """Delete the runs ``ids`` and the deliveries they covered (their steps and live
        output go by cascade); how many runs went."""
        self.db.executemany("DELETE FROM deliveries WHERE run_id = ?", [(i,) for i in ids])
        return sum(self.db.execute("DELETE FROM runs WHERE id = ?", (i,)).rowcount
                   for i in ids)

    def _delete_some(self, table: str, where: str, params: tuple[Any, ...]) -> int:
        """``DELETE FROM table WHERE where``; how many rows went."""
        return int(self.db.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount)

    def _oldest_run(self) -> float:
        row = self.db.execute("SELECT MIN(started) FROM runs").fetchone()
        return float(row[0]) if row and row[0] is not None else time.time()


def target_groups(names: Sequence[str]) -> list[Sequence[str]]:
    """``names`` in groups of at most :data:`PRUNE_TARGETS`, one pruning transaction's
    each (one empty group when there is none: the ``keep_days`` pruning still runs)."""
    return [names[i:i + PRUNE_TARGETS] for i in range(0, len(names), PRUNE_TARGETS)] or [()]


def _make_private(path: str) -> None:
    """Create the record file mode 0600 if missing; make an existing one (and its
    ``-wal``/``-shm``) that others may read 0600 when it is ours."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    except OSError:
        return  # SQLite's own open says what is wrong
    for name in (path, path + "-wal", path + "-shm"):
        try:
            st = os.stat(name)
            if st.st_uid == os.geteuid() and st.st_mode & 0o077:
                os.chmod(name, stat.S_IMODE(st.st_mode) & 0o600)
        except OSError:
            continue


def _text(value: str | None) -> str | None:
    """``value`` as valid UTF-8 (SQLite refuses a lone surrogate): those become ``?``."""
    return value.encode("utf-8", "replace").decode("utf-8") if value is not None else None


def _texts(r: DeliveryRecord) -> tuple[str | None, ...]:
    return tuple(_text(v) for v in (r.delivery_id, r.event, r.ref, r.before, r.after,
                                    r.pusher, r.remote_addr, r.signature))


def _run(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    if run["finished"] is not None:
        run["duration"] = round(run["finished"] - run["started"], 3)
    else:
        run["duration"] = None
    return run

