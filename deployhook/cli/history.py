"""``deployhook history`` and ``deployhook show``: the deployment record, read directly.

Both work whether or not the daemon runs; they never create or migrate the record.
``history`` lists every target's runs (a ``target`` column once there is more than
one), or one target's with ``--target``; ``show`` takes a run id.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from typing import Any

from deployhook.cli.common import (
    add_command,
    choose_target,
    local,
    open_record,
    positive,
    seconds,
    short,
    table,
    truncate,
)
from deployhook.cli.follow import follow
from deployhook.record.store import Store
from deployhook.settings import Config
from deployhook.text import printable

REASON_WIDTH = 60


def add_parsers(commands: Any) -> None:
    """Add ``history`` and ``show`` to the ``deployhook`` subparsers."""
    sub = add_command(commands, "history", "list recent deploy runs from the deployment "
                      "record (every target's unless --target)", history)
    sub.add_argument("--limit", type=positive, default=20, metavar="N",
                     help="how many runs, newest first (default: 20)")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = add_command(commands, "show", "one run: its steps, their output, and the "
                      "deliveries it covered", show)
    sub.add_argument("id", type=int, help="the run's id (see 'deployhook history')")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--follow", action="store_true", help="print a running run's output "
                     "as it arrives; exit with its outcome (0: it worked)")


def history(config: Config, args: argparse.Namespace) -> int:
    """``deployhook history``: recent runs, newest first, as a table or JSON.

    Raises:
        CommandFailed: (status 2) an unknown ``--target`` (one the config does not name
            and the record has no runs of); (1) a record that cannot be read.
        sqlite3.Error: the record could not be read.
    """
    store = open_record(config)
    if store is None:
        choose_target(config, args.target, required=False)
        if args.json:
            print(json.dumps({"runs": [], "total": 0}))
        print(f"deployhook: no deployment record at {config.state_db} yet",
              file=sys.stderr if args.json else sys.stdout)
        return 0
    try:
        runs, total, several = _read(store, config, args)
        events = _events(store, args.limit, args.target)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"runs": runs, "total": total, "events": events}, indent=2))
        return 0
    if not runs:
        which = f" of target {args.target}" if args.target else ""
        print(f"no deploy runs{which} in {config.state_db} yet")
    else:
        print(_table(runs, several))
        if total > len(runs):
            print(f"({len(runs)} of {total} runs; --limit N for more)")
    if events:
        print("pauses and resumes, newest first:")
        for event in events:
            print(printable(f"  {local(event['time'])}  {event['target']}: {event['kind']} "
                            f"by {event['by']}  {event['reason']}"))
    return 0


def _events(store: Store, limit: int, target: str | None) -> list[dict[str, Any]]:
    """The newest ``limit`` events (of ``target``); [] in a record older than them (a
    read-only record is never migrated)."""
    try:
        return store.events(limit, target)
    except sqlite3.OperationalError:  # no such table: the daemon has not migrated it yet
        return []


def _read(store: Store, config: Config, args: argparse.Namespace
          ) -> tuple[list[dict[str, Any]], int, bool]:
    """(runs, how many there are, whether to show the target column) for ``args``.

    Raises:
        CommandFailed: (status 2) an unknown ``--target``.
    """
    configured = config.target_names
    needed = args.target not in configured if args.target is not None else len(configured) < 2
    recorded = tuple(store.targets()) if needed else ()  # only when the config cannot say
    target = choose_target(config, args.target, required=False, known=recorded)
    name = target.name if args.target is not None and target else None  # None: every one
    several = name is None and len({*configured, *recorded}) > 1
    return store.runs(args.limit, target=name), store.count_runs(name), several


def _table(runs: list[dict[str, Any]], several: bool) -> str:
    """The runs as a table (with a ``target`` column when ``several``)."""
    header = ["id", "started", "trigger", "outcome", "duration", "head", "pushers", "reason"]
    rows = [[str(run["id"]), local(run["started"]), run["trigger"], run["outcome"],
             seconds(run["duration"]),
             f"{short(run['head_before'], 8)} -> {short(run['head_after'], 8)}",
             run["pushers"] or "-", truncate(run["reason"] or "", REASON_WIDTH)]
            for run in runs]
    if several:
        header.insert(1, "target")
        for row, run in zip(rows, runs, strict=True):
            row.insert(1, run.get("target") or "-")
    return table(header, rows)


def show(config: Config, args: argparse.Namespace) -> int:
    """``deployhook show ID``: one run with its target, steps, their output and its
    deliveries; with ``--target``, the run must be that target's (else exit 1); with
    ``--follow``, see :mod:`deployhook.cli.follow`."""
    if args.follow:
        return follow(config, args)
    if args.target is not None:
        choose_target(config, args.target, required=False)
    store = open_record(config)
    if store is None:
        print(f"deployhook: no deployment record at {config.state_db} yet", file=sys.stderr)
        return 1
    try:
        run = store.run(args.id) if 0 < args.id < 2**63 else None
    finally:
        store.close()
    if run is None:
        print(f"deployhook: no run {args.id} in {config.state_db} "
              "(see 'deployhook history')", file=sys.stderr)
        return 1
    if args.target is not None and run.get("target") != args.target:
        print(f"deployhook: run {args.id} is a run of target {run.get('target')}, "
              f"not of {args.target}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        _print_run(run)
    return 0


def _print_run(run: dict[str, Any]) -> None:
    """Print ``run`` for a terminal: each line :func:`printable` (the values in it come
    from the record), its steps' output line by line."""
    finished = local(run["finished"]) if run["finished"] else "-"
    print(printable(f"run {run['id']}: {run['outcome']}  (target {run.get('target') or '-'}, "
                    f"trigger {run['trigger']}, branch {run['branch'] or '-'})"))
    print(f"  started   {local(run['started'])}   finished {finished}   "
          f"duration {seconds(run['duration'])}")
    print(printable(f"  head      {run['head_before'] or 'none'} -> "
                    f"{run['head_after'] or 'none'}"))
    print(printable(f"  pushers   {run['pushers'] or '-'}"))
    if run["reason"]:
        print(printable(f"  reason    {run['reason']}"))
    print(f"steps ({len(run['steps'])}):")
    for step in run["steps"]:
        state = "ok" if step["status"] == 0 else f"FAILED (exit status {step['status']})"
        print(printable(f"  {step['seq'] + 1}. {step['name']}: {state}, "
                        f"{seconds(step['duration'])}"))
        print(printable(f"     $ {step['command']}"))
        for line in (step["output"] or "").splitlines():
            print(f"     | {printable(line, tab=True)}".rstrip())
    print(f"deliveries ({len(run['deliveries'])}):")
    for d in run["deliveries"]:
        shas = f" {short(d['before'], 8)}..{short(d['after'], 8)}" if d["after"] else ""
        answer = f"{d['status']} {d['result']}" if d["status"] is not None else "pending"
        print(printable(f"  {d['delivery_id']}  {d['event']} {d['ref'] or ''}{shas} by "
                        f"{d['pusher'] or '-'} from {d['remote_addr']} at "
                        f"{local(d['received'])} -> {answer}"))
