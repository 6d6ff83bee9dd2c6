"""What the record and operator commands share: argparse wiring, :class:`CommandFailed`,
choosing the target, opening the record, asking the remote, and table/time helpers."""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployhook.git.steps import Step, summary, tail
from deployhook.record.store import Store
from deployhook.redact import redact
from deployhook.settings import Config, TargetConfig
from deployhook.text import printable

if TYPE_CHECKING:  # GitPython: not for the record's commands (history, show)
    from deployhook.git.checkout import Checkout

Run = Callable[[Config, argparse.Namespace], int]



class CommandFailed(Exception):
    """A command cannot go on; ``reason`` is safe to print (no secret, no credentials).

    ``status`` is the exit status: 1 for a failure, 2 for a usage error (say, a
    missing or unknown ``--target``)."""

    def __init__(self, reason: str, step: Step | None = None, status: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step
        self.status = status


# -- argparse wiring ------------------------------------------------------------------------
def add_command(commands: Any, name: str, text: str, run: Run) -> argparse.ArgumentParser:
    """Add command ``name`` (with ``--config`` and ``--target``) to the ``deployhook``
    subparsers; it sets ``run``, called as ``run(config, args)``."""
    sub = commands.add_parser(name, help=text, description=text)
    sub.add_argument("--config", default="config.py",
                     help="the configuration file (default: ./config.py)")
    sub.add_argument("--target", metavar="NAME",
                     help="the target (one entry of the config's targets) this concerns")
    sub.set_defaults(run=run)
    return sub


def positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return int(text)


# -- the target --------------------------------------------------------------------------------
def choose_target(config: Config, name: str | None, *, required: bool,
                  known: tuple[str, ...] = ()) -> TargetConfig | None:
    """The target ``--target name`` names; without ``--target``, the only target, or None
    (meaning every target) when there are several and ``required`` is False.

    ``known`` adds names that are acceptable without being configured (targets the
    record still holds runs of); for them a target with only the name is returned.

    Raises:
        CommandFailed: (status 2) ``name`` is not a target, or there are several
            targets, ``required`` is True and no ``name`` was given; the reason
            lists the targets.
    """
    names = ", ".join(config.target_names)
    if name is None:
        if len(config.targets) == 1:
            return config.targets[0]
        if not required:
            return None
        raise CommandFailed(f"this config has {len(config.targets)} targets ({names}); "
                            "choose one with --target NAME", status=2)
    try:
        return config.target(name)
    except KeyError:
        if name in known:
            return config.default_target(name)
        raise CommandFailed(f"no target {name!r} in this config; its targets: {names}",
                            status=2) from None


# -- reading the record -----------------------------------------------------------------------
def open_record(config: Config) -> Store | None:
    """The record for reading, or None when there is none yet (nothing is created).

    Raises:
        CommandFailed: the file exists but is not a deployhook record we can read.
    """
    path = config.state_db
    if not Path(path).is_file():
        return None
    try:
        reader = Store(path, readonly=True)
    except (sqlite3.Error, RuntimeError) as exc:
        raise CommandFailed(f"cannot read the deployment record {path}: {exc}") from None
    if reader.version == 0:  # created, but the daemon has not set it up yet
        reader.close()
        return None
    return reader


# -- the remote -------------------------------------------------------------------------------
@dataclass
class RemoteHeads:
    """What ``git ls-remote --symref`` says: branch and tag tips and the default branch."""

    branches: dict[str, str] = field(default_factory=dict)
    default_branch: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def remote_heads(target: TargetConfig, checkout: Checkout, *branches: str,
                 tags: tuple[str, ...] = ()) -> RemoteHeads:
    """Ask the remote (the checkout's ``remote``, or ``repo_url`` before a first clone)
    for its default branch and the tips of ``branches`` and ``tags``; blocking, within
    ``git_timeout``.

    Raises:
        CommandFailed: git failed (the reason is git's, credentials removed).
    """
    where = target.remote if checkout.exists() else (target.repo_url or "")
    args = ["--symref", where, "HEAD", *(f"refs/heads/{b}" for b in branches),
            *(f"refs/tags/{t}" for t in tags)]
    start = time.monotonic()
    code, out, err = checkout.ls_remote(*args)
    step = Step("ls-remote", redact("git ls-remote " + " ".join(args)), code,
                time.monotonic() - start, tail(redact(f"{out}\n{err}".strip())))
    if step.status != 0:
        raise CommandFailed(summary(step), step)
    heads = RemoteHeads()
    for line in str(out).splitlines():
        name, _, ref = line.partition("\t")
        if name.startswith("ref: refs/heads/") and ref == "HEAD":
            heads.default_branch = name[len("ref: refs/heads/"):]
        elif ref.startswith("refs/heads/"):
            heads.branches[ref[len("refs/heads/"):]] = name
        elif ref.startswith("refs/tags/") and not ref.endswith("^{}"):
            heads.tags[ref[len("refs/tags/"):]] = name
    return heads


# -- small helpers --------------------------------------------------------------------------------
def base_url(config: Config) -> str:
    """``http://host:port`` of the daemon from its ``address`` and ``port``."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.address,
                                                                      config.address)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}"


def user() -> str:
    """The name of the user running the command ("unknown" when it has none)."""
    import getpass  # only for the commands that name their user: not for ``serve``

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def local(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def short(sha: str | None, length: int) -> str:
    return sha[:length] if sha else "none"


def truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def table(header: list[str], rows: list[list[str]]) -> str:
    """``rows`` under ``header`` in aligned columns, every cell :func:`printable`."""
    header, rows = [printable(c) for c in header], [[printable(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in [header, *rows])
