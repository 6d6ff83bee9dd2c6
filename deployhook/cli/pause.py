"""``deployhook pause`` and ``deployhook resume``: stop and restart a target's deploys.

While a target is paused the daemon still verifies, records and answers deliveries
(``202 paused``); on resume it deploys the newest push accepted meanwhile, once.  The
pause is a file in the checkout's ``.git`` (see :mod:`deployhook.git.paused`), so this
command and the daemon share it without talking to each other.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deployhook.cli.common import CommandFailed, add_command, choose_target
from deployhook.git import paused
from deployhook.settings import Config, TargetConfig


def add_parsers(commands: Any) -> None:
    """Add ``pause`` and ``resume`` to the ``deployhook`` subparsers (each sets ``run``;
    without ``--target`` they concern every target)."""
    add_command(commands, "pause", "pause deploys: deliveries are verified, recorded and "
                "answered 202 paused", pause)
    add_command(commands, "resume", "resume deploys: the newest push accepted while paused "
                "is deployed", resume)


def pause(config: Config, args: argparse.Namespace) -> int:
    """Pause the chosen targets; exit status 0, 1 when one could not be paused, 2 for an
    unknown target."""
    chosen = _targets(config, args.target)
    if chosen is None:
        return 2
    failed = 0
    by = paused.who()
    for target in chosen:
        try:
            state = paused.pause(target.repo_path, by)
        except OSError as exc:
            print(f"deployhook: cannot pause {target.name}: {_why(exc)}", file=sys.stderr)
            failed = 1
            continue
        print(f"{target.name}: paused {state.describe()}; deliveries are answered "
              "202 paused until 'deployhook resume'")
    return failed


def resume(config: Config, args: argparse.Namespace) -> int:
    """Resume the chosen targets; exit status 0, 1 when one could not be resumed, 2 for
    an unknown target."""
    chosen = _targets(config, args.target)
    if chosen is None:
        return 2
    failed = 0
    for target in chosen:
        try:
            state = paused.resume(target.repo_path)
        except OSError as exc:
            print(f"deployhook: cannot resume {target.name}: {_why(exc)}", file=sys.stderr)
            failed = 1
            continue
        if state is None:
            print(f"{target.name}: was not paused")
        else:
            print(f"{target.name}: resumed (was paused {state.describe()}); a running daemon "
                  "deploys the newest push accepted meanwhile")
    return failed


def _targets(config: Config, name: str | None) -> list[TargetConfig] | None:
    """The target ``--target`` names (every target without it); None, said on stderr,
    when there is no such target."""
    try:
        target = choose_target(config, name, required=False)
    except CommandFailed as exc:
        print(f"deployhook: {exc.reason}", file=sys.stderr)
        return None
    return list(config.targets) if target is None else [target]


def _why(exc: OSError) -> str:
    """What went wrong, with the file it concerns when the OS named one."""
    return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
