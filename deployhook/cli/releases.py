"""``deployhook releases`` and ``deployhook rollback``: the releases of a target in
``deploy_mode = "releases"``, and switching ``current`` back.

A rollback takes the releases lock (a deploy of the daemon waits for it, and it for
the deploy), switches ``current``, runs ``activate`` if set, and is recorded as a run
with trigger ``rollback`` (heads: the live release's commit before and after).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from deployhook.cli import fleet
from deployhook.cli.common import (
    CommandFailed,
    add_command,
    choose_target,
    short,
    table,
    user,
)
from deployhook.cli.deploy import CliRecord, _writable_record
from deployhook.git import releases
from deployhook.service.runs import run_rollback
from deployhook.settings import Config, TargetConfig
from deployhook.text import printable


def add_parsers(commands: Any) -> None:
    """Add ``releases`` and ``rollback`` to the ``deployhook`` subparsers."""
    add_command(commands, "releases", "list the releases of a target in releases mode, "
                "the live one marked", list_releases)
    sub = add_command(commands, "rollback", "switch a target's 'current' back to the "
                      "release before the live one (or --to), recorded", rollback)
    sub.add_argument("--to", metavar="RELEASE|SHA",
                     help="the release to switch to: its name, or a commit SHA (prefix)")


def _target(config: Config, args: argparse.Namespace) -> TargetConfig:
    """The chosen target, which must be in releases mode.

    Raises:
        CommandFailed: no such target (2), or it is not in releases mode (2).
    """
    target = choose_target(config, args.target, required=True)
    assert target is not None
    if not releases.enabled(target):
        raise CommandFailed(f"target {target.name} has deploy_mode {target.deploy_mode!r}; "
                            "releases need deploy_mode = \"releases\"", status=2)
    return target


def list_releases(config: Config, args: argparse.Namespace) -> int:
    """``deployhook releases``: one line per release, oldest first, ``*`` on the live one;
    0, or 2 for a bad ``--target``."""
    target = _target(config, args)
    found = releases.releases(target)
    if not found:
        print(f"no releases yet in {releases.root(target)}")
        return 0
    rows = [["*" if r.live else "", r.name, short(r.sha, 12)] for r in found]
    print(table(["live", "release", "commit"], rows))
    return 0


def rollback(config: Config, args: argparse.Namespace) -> int:
    """``deployhook rollback``: switch ``current`` to the release before the live one, or
    to ``--to``; recorded with trigger ``rollback``.  0 when it worked, 1 when it failed
    (no such release, the lock stayed held, ``activate`` failed), 2 for a bad
    ``--target``."""
    target = _target(config, args)
    store = _writable_record(config)
    start = time.monotonic()
    try:
        ok, reason, before, after = run_rollback(
            target, CliRecord(store), trigger="rollback",
            which=args.to, pushers=[user()])
    finally:
        if store is not None:
            store.close()
    elapsed = time.monotonic() - start
    if not ok:
        print(printable(f"rollback FAILED after {elapsed:.2f}s: {reason}"))
        return 1
    print(printable(f"{reason} ({short(before, 12)} -> {short(after, 12)})"))
    told = fleet.tell(config, target.name, after, f"refs/heads/{target.branch}"
                      if target.branch else "", "rollback")
    if told:
        print(told)
    return 0
