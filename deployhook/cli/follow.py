"""``deployhook show ID --follow``: a run's steps and its commands' output as they
happen, read from the record (the daemon writes a running command's output there as
it arrives, masked as the stored output is), until the run ends."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from deployhook.cli.common import open_record, seconds
from deployhook.record.store import Store
from deployhook.settings import Config
from deployhook.text import printable

POLL = 0.2  # seconds between reads of the record


def follow(config: Config, args: argparse.Namespace) -> int:
    """Print run ``args.id`` as it goes; exit status 0 when it ends well, 1 when it fails
    or there is no such run, 130 on Ctrl-C.

    Raises:
        CommandFailed: the record cannot be read.
    """
    store = open_record(config)
    if store is None:
        print(f"deployhook: no deployment record at {config.state_db} yet", file=sys.stderr)
        return 1
    try:
        return _follow(store, args.id, config.state_db)
    except KeyboardInterrupt:
        return 130
    finally:
        store.close()


def _follow(store: Store, run_id: int, path: str) -> int:
    watcher = _Watcher()
    while True:
        run = store.run(run_id) if 0 < run_id < 2**63 else None
        if run is None:
            print(f"deployhook: no run {run_id} in {path} (see 'deployhook history')",
                  file=sys.stderr)
            return 1
        watcher.show(run)
        if run["outcome"] != "running":
            reason = f": {run['reason']}" if run["reason"] else ""
            print(printable(f"run {run_id} {run['outcome']}{reason}"), flush=True)
            return 0 if run["outcome"] == "ok" else 1
        time.sleep(POLL)


class _Watcher:
    """What has been printed of one run so far."""

    def __init__(self) -> None:
        self.started = False
        self.steps: set[int] = set()  # seqs of finished steps printed
        self.shown: dict[str, str] = {}  # a live step's name -> its output printed

    def show(self, run: dict[str, Any]) -> None:
        if not self.started:
            self.started = True
            print(printable(f"run {run['id']} of {run.get('target') or '-'} "
                            f"({run['trigger']}, branch {run['branch'] or '-'}): "
                            f"{run['outcome']}"), flush=True)
        for step in run["steps"]:
            if step["seq"] not in self.steps:
                self.steps.add(step["seq"])
                self._finished(step)
        live = run.get("live")
        if live and run["outcome"] == "running":
            name = live["step"]
            if name not in self.shown:
                print(printable(f"{name}: running"), flush=True)
                self.shown[name] = ""
            self.shown[name] += _new_lines(self.shown[name], live["output"], whole=False)

    def _finished(self, step: dict[str, Any]) -> None:
        name = step["name"]
        if name not in self.shown:
            print(printable(f"{name}: $ {step['command']}"))
        _new_lines(self.shown.pop(name, ""), step["output"] or "", whole=True)
        state = "ok" if step["status"] == 0 else f"FAILED (exit status {step['status']})"
        print(printable(f"{name}: {state}, {seconds(step['duration'])}"), flush=True)


def _new_lines(printed: str, output: str, whole: bool) -> str:
    """Print what ``output`` has beyond ``printed`` (all of it when its kept tail moved
    on); only complete lines unless ``whole``.  Returns what was printed."""
    new = output[len(printed):] if output.startswith(printed) else output
    if not whole:
        new = new[:new.rfind("\n") + 1]
    for line in new.splitlines():
        print(f"  | {printable(line, tab=True)}".rstrip())
    sys.stdout.flush()
    return new
