"""The ``deployhook`` command: ``serve``, ``init``, ``check``; ``history`` and ``show``
live in :mod:`deployhook.cli.history`, ``deploy`` in :mod:`deployhook.cli.deploy`,
``send`` in :mod:`deployhook.cli.send`, ``releases`` and ``rollback`` in
:mod:`deployhook.cli.releases`."""

from __future__ import annotations

import argparse
import importlib
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from deployhook import settings
from deployhook.cli.common import CommandFailed
from deployhook.errors import ConfigError
from deployhook.secret import create_secret_file
from deployhook.version import __version__

EXAMPLE_CONFIG = Path(__file__).with_name("config_example.py")  # what init writes
PASSWORD_FILE = "status-password.txt"  # status_password_file's default, next to the config
# The modules (of deployhook.cli) that add subcommands, in the order --help lists them,
# each with its function adding them and the commands it adds.  A command runs with its
# own module imported only (``history`` needs neither GitPython nor Tornado); one not
# listed here gets every module.
SUBCOMMANDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("history", "add_parsers", ("history", "show")),
    ("deploy", "add_parser", ("deploy",)),
    ("send", "add_parser", ("send",)),
    ("releases", "add_parsers", ("releases", "rollback")),
    ("pause", "add_parsers", ("pause", "resume")),
    ("fleet", "add_parser", ("fleet",)),
)


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``deployhook`` command's parser, every subcommand with its options (also read
    by the documentation's CLI reference, docs/_ext/deployhook_docs.py); with
    ``command`` one of :data:`SUBCOMMANDS`', only its module's subcommands (and the
    built-in ``serve``, ``init`` and ``check``), so that only that module is imported."""
    parser = argparse.ArgumentParser(prog="deployhook", description=(
        "Keep a git checkout in step with GitHub pushes."))
    parser.add_argument("--version", action="version", version=f"deployhook {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the webhook daemon"),
                       ("init", "create what is missing: a commented config, the webhook secret "
                                "and the status page's password (random, mode 0600)"),
                       ("check", "check the config, and each target's secret, checkout and "
                                 "remote, and the address")):
        sub = subparsers.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default="config.py",
                         help="the configuration file (default: ./config.py)")
    own = [entry for entry in SUBCOMMANDS if command in entry[2]]
    for module, adds, _ in own or SUBCOMMANDS:
        getattr(importlib.import_module(f"deployhook.cli.{module}"), adds)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = make_parser(command).parse_args(argv)
    if args.command == "init" and not os.path.lexists(args.config):
        try:
            write_config(args.config)
        except OSError as exc:
            print(f"deployhook: cannot write {args.config}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        config = settings.load(args.config)
    except ConfigError as exc:
        if args.command == "check":
            from deployhook.cli.check import Result

            hint = "edit the config file (docs/configuration.rst)"
            print(Result("FAIL", "config", str(exc), hint).line())
            return 1
        print(f"deployhook: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "run", None) is not None:
        return _run(config, args)
    if args.command == "init":
        return init(config, args.config)
    if args.command == "check":
        from deployhook.cli.check import TerminalProgress, run_checks  # not for serve

        many = len(config.targets) > 1 and sys.stderr.isatty()
        results = run_checks(config, args.config, TerminalProgress(sys.stderr) if many else None)
        for result in results:
            print(result.line())
        return 1 if any(r.level == "FAIL" for r in results) else 0
    import asyncio  # the daemon's own: not for the other commands

    from deployhook.daemon import logs
    from deployhook.daemon.server import serve

    logs.setup(config.log_level)
    try:
        return asyncio.run(serve(config, args.config))
    except (ConfigError, OSError) as exc:
        print(f"deployhook: {exc}", file=sys.stderr)
        return 1


def _run(config: settings.Config, args: argparse.Namespace) -> int:
    """Run a record or target command (``args.run``); a :class:`CommandFailed` it raises
    is printed on stderr and its status returned, a record that cannot be read is 1."""
    try:
        return int(args.run(config, args))
    except CommandFailed as exc:
        print(f"deployhook: {exc.reason}", file=sys.stderr)
        return exc.status
    except sqlite3.Error as exc:
        print(f"deployhook: cannot read the deployment record {config.state_db}: {exc}",
              file=sys.stderr)
        return 1


def _init_secrets(config: settings.Config) -> None:
    """Create each target's secret file when missing (random, mode 0600); keep those that
    exist.  A target whose secret comes from $DEPLOYHOOK_SECRET needs none."""
    done: set[str] = set()
    for target in config.targets:
        which = f" (target {target.name})" if len(config.targets) > 1 else ""
        if target.secret is not None:
            print(f"deployhook: the secret{which} comes from $DEPLOYHOOK_SECRET; no file "
                  "written")
        elif target.secret_file in done:
            continue
        elif create_secret_file(target.secret_file):
            print(f"deployhook: wrote a new random secret{which} to {target.secret_file} "
                  "(mode 0600)")
        else:
            print(f"deployhook: keeping the existing secret{which} in {target.secret_file}")
        done.add(target.secret_file)


def _init_fleet_key(path: str) -> None:
    """Create the fleet key (fleet mode) when missing (random, mode 0600), saying that
    every node needs this same file."""
    if create_secret_file(path):
        print(f"deployhook: wrote a new random fleet key to {path} (mode 0600); copy this "
              "same file to every node of the fleet before starting them")
    else:
        print(f"deployhook: keeping the existing fleet key in {path} (every node needs the "
              "same one)")


def write_config(path: str) -> None:
    """Write the commented example configuration (every key at its default) to ``path``,
    which must not exist yet.

    Raises:
        OSError: the file exists or cannot be written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    print(f"deployhook: wrote {os.path.abspath(path)}, every setting commented; "
          "set repo_path to the checkout to keep in step")


def init(config: settings.Config, config_path: str) -> int:
    """Create what is missing: the secret, the status page's password and, in fleet mode
    (``redis_url``), the fleet key, random, mode 0600; keep what exists.  Says how to
    add the webhook and how to log in, and prints none of them (they are in files only
    their owner can read)."""
    from deployhook.cli.check import local_host

    _init_secrets(config)
    password = config.status_password_file or str(
        Path(config_path).resolve().parent / PASSWORD_FILE)
    if create_secret_file(password):
        print(f"deployhook: wrote a new random status page password to {password} (mode 0600)")
    else:
        print(f"deployhook: keeping the existing status page password in {password}")
    if config.redis_url is not None and config.fleet_key_file is not None:
        _init_fleet_key(config.fleet_key_file)
    if len(config.targets) == 1:
        print("On GitHub: Settings > Webhooks > Add webhook; Payload URL "
              f"http(s)://<this server>{config.webhook_path}, Content type application/json, "
              f"Secret: the contents of {config.targets[0].secret_file}.")
    else:
        for target in config.targets:
            print(f"Target {target.name}: webhook URL http(s)://<this server>/hooks/"
                  f"{target.name}, secret: the contents of {target.secret_file} (README.rst "
                  "and docs/forges/ say where each forge takes them).")
    print(f"Status page: http://{local_host(config.address)}:{config.port}/ (log in as "
          f"{config.status_user!r} with the password in {password}); "
          "'deployhook history' reads the record without it.")
    return 0

