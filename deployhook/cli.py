"""The ``deployhook`` command: ``serve``, ``init``, ``check``; ``history``, ``show``,
``deploy`` and ``send`` live in :mod:`deployhook.commands`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from . import __version__, commands, logs, settings
from .check import Result, run_checks
from .errors import ConfigError
from .secret import create_secret_file
from .server import serve


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="deployhook", description=(
        "Keep a git checkout in step with GitHub pushes."))
    parser.add_argument("--version", action="version", version=f"deployhook {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the webhook daemon"),
                       ("init", "create the secret file (a fresh random secret) if missing"),
                       ("check", "check the config, secret, checkout, remote and address")):
        sub = subparsers.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default="config.py",
                         help="the configuration file (default: ./config.py)")
    commands.add_parsers(subparsers)
    args = parser.parse_args(argv)
    try:
        config = settings.load(args.config)
    except ConfigError as exc:
        if args.command == "check":
            hint = "edit the config file (README.rst, Configuration)"
            print(Result("FAIL", "config", str(exc), hint).line())
            return 1
        print(f"deployhook: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "run", None) is not None:
        return int(args.run(config, args))
    if args.command == "init":
        return init(config)
    if args.command == "check":
        results = run_checks(config, args.config)
        for result in results:
            print(result.line())
        return 1 if any(r.level == "FAIL" for r in results) else 0
    logs.setup(config.log_level)
    try:
        return asyncio.run(serve(config, args.config))
    except (ConfigError, OSError) as exc:
        print(f"deployhook: {exc}", file=sys.stderr)
        return 1


def init(config: settings.Config) -> int:
    """Write a fresh random secret to ``secret_file`` unless it exists; say what to do next."""
    if config.secret is not None:
        print("deployhook: the secret comes from $DEPLOYHOOK_SECRET; no file written")
    elif create_secret_file(config.secret_file):
        print(f"deployhook: wrote a new random secret to {config.secret_file} (mode 0600)")
    else:
        print(f"deployhook: keeping the existing secret in {config.secret_file}")
    print("On GitHub: Settings > Webhooks > Add webhook; Payload URL "
          f"http(s)://<this server>{config.webhook_path}, Content type application/json, "
          f"Secret: the contents of {config.secret_file}.")
    return 0
