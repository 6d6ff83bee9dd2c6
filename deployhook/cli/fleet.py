"""``deployhook fleet``: each server's state per target, read from the fleet's Redis; and
what ``deployhook deploy`` and ``deployhook rollback`` tell the fleet.

Blocking (the ``redis`` client), imported only when a command needs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from deployhook.cli.common import (
    CommandFailed,
    add_command,
    choose_target,
    local,
    short,
    table,
    truncate,
    user,
)
from deployhook.errors import ConfigError
from deployhook.fleet.checks import Refusals
from deployhook.fleet.credentials import fleet_key, masked, password, tls
from deployhook.fleet.decide import states, view
from deployhook.fleet.entries import Desired, Outcome
from deployhook.fleet.keys import PUBLISH_TRIES, desired_key, heartbeat_key, heartbeat_ttl
from deployhook.fleet.pipeline import (
    next_desired,
    parse_beats,
    parse_read,
    queue_publish,
    queue_read,
    queue_report,
)
from deployhook.settings import Config
from deployhook.text import printable


def add_parser(commands: Any) -> None:
    """Add ``fleet`` to the ``deployhook`` subparsers."""
    sub = add_command(commands, "fleet", "show each server's state per target (fleet mode: "
                      "redis_url)", show)
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _client(config: Config) -> Any:
    """A blocking client of the fleet's Redis.

    Raises:
        CommandFailed: ``redis_url`` is not set (2), or the password file is unreadable.
    """
    if config.redis_url is None:
        raise CommandFailed("redis_url is not set: this server is in no fleet "
                            "(docs/fleet.rst)", status=2)
    import redis  # only for a fleet

    try:
        secret = password(config.redis_password_file)
        options = tls(config.redis_url, config.redis_ca_file)
    except ConfigError as exc:
        raise CommandFailed(str(exc)) from None
    return redis.Redis.from_url(config.redis_url, password=secret, socket_timeout=3.0,
                                socket_connect_timeout=3.0, **options)


def _key(config: Config) -> bytes:
    """The fleet key (``fleet_key_file``).

    Raises:
        CommandFailed: it cannot be read (naming the file).
    """
    try:
        return fleet_key(config.fleet_key_file)
    except ConfigError as exc:
        raise CommandFailed(str(exc)) from None


def read(config: Config, names: list[str]) -> dict[str, Any]:
    """Every target in ``names`` with its desired state and each node's state.

    Raises:
        CommandFailed: no ``redis_url``, or Redis is unreachable (the URL masked).
    """
    import redis

    client = _client(config)
    key, refusals = _key(config), Refusals(logging.getLogger("deployhook.fleet"))
    try:
        pipe = client.pipeline(transaction=False)
        queue_read(pipe, names)
        desired, outcomes, nodes = parse_read(names, pipe.execute(raise_on_error=False),
                                              key, refusals)
        beats = parse_beats(nodes, client.mget([heartbeat_key(n) for n in nodes]),
                            refusals) if nodes else {}
    except (redis.RedisError, OSError) as exc:
        raise CommandFailed(f"Redis at {masked(config.redis_url)} is unreachable "
                            f"({type(exc).__name__}: {exc})") from None
    finally:
        client.close()
    ttl = heartbeat_ttl(config.reconcile_interval)
    return {n: view(n, desired[n], states(n, desired[n], outcomes[n], beats, ttl))
            for n in names}


def ping(config: Config) -> None:
    """PING the fleet's Redis with the configured password (the fleet key read first).

    Raises:
        CommandFailed: no ``redis_url``, an unreadable password or key file, or no answer.
    """
    import redis

    client = _client(config)
    _key(config)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise CommandFailed(f"Redis at {masked(config.redis_url)} does not answer "
                            f"({type(exc).__name__}: {exc})") from None
    finally:
        client.close()


def show(config: Config, args: argparse.Namespace) -> int:
    """``deployhook fleet``: per target, the desired commit and one line per node; 0, 1
    when Redis is unreachable, 2 without ``redis_url`` or for a bad ``--target``.

    Raises:
        CommandFailed: as :func:`read`, or a bad ``--target`` (main prints it).
    """
    chosen = choose_target(config, args.target, required=False)
    names = [chosen.name] if chosen is not None else list(config.target_names)
    fleet = read(config, names)
    if args.json:
        print(json.dumps(fleet, indent=2))
        return 0
    for name, state in fleet.items():
        desired = state["desired"]
        if desired is None:
            print(f"target {name}: no desired commit yet")
        else:
            print(printable(f"target {name}: desired {short(desired['sha'], 12)} on "
                            f"{desired['ref']} (generation {desired['generation']}, "
                            f"{desired['kind']} by {desired['by']}, "
                            f"{local(desired['time'])})"))
        rows = [[node, s["state"], short(s["head"], 12), local(s["time"]),
                 truncate(s["reason"], 60)] for node, s in state["nodes"].items()]
        print(table(["node", "state", "head", "reported", "reason"], rows) if rows
              else "  no node has reported yet")
    print(f"(a node is absent after {heartbeat_ttl(config.reconcile_interval)} s without "
          "a heartbeat)")
    return 0


def tell(config: Config, target: str, sha: str | None, ref: str, kind: str) -> str:
    """After ``deployhook deploy`` or ``rollback`` reached ``sha`` here: make it the
    fleet's desired commit of ``target`` (a new generation; this node's outcome: done),
    so the reconcile never undoes it and the other nodes follow.  Returns the line to
    print ("" outside fleet mode); never raises."""
    if config.redis_url is None or not sha:
        return ""
    import redis

    node = config.node or "?"
    desired = Desired(target, sha, ref, f"{kind}-{time.time_ns()}",
                      f"{node} (deployhook {kind} by {user()})", kind)
    try:
        client, key = _client(config), _key(config)
        try:
            done = _publish(client, desired, key)
            pipe = client.pipeline(transaction=False)
            queue_report(pipe, target, Outcome(node, done.generation, sha, sha, True, kind),
                         key)
            pipe.execute()
        finally:
            client.close()
    except (redis.RedisError, OSError, CommandFailed) as exc:
        why = exc.reason if isinstance(exc, CommandFailed) else f"{type(exc).__name__}: {exc}"
        return (f"deployhook: warning: the fleet was not told ({why}); its reconcile may "
                f"bring this node back to the fleet's desired commit")
    return (f"fleet: {short(sha, 12)} is the desired commit of {target} on every node "
            f"(generation {done.generation}); 'deployhook fleet' shows them")


def _publish(client: Any, desired: Desired, key: bytes) -> Desired:
    """Make ``desired`` the next generation of its target, signed with ``key`` (a
    transaction under ``WATCH``, tried again when another writer came between).

    Raises:
        redis.RedisError, OSError: Redis is unreachable, refused, or the key kept changing.
    """
    import redis

    where = desired_key(desired.target)
    with client.pipeline(transaction=True) as pipe:
        for _ in range(PUBLISH_TRIES):
            try:
                pipe.watch(where)
                done = next_desired(desired, pipe.hget(where, "generation"))
                pipe.multi()
                queue_publish(pipe, done, key)
                pipe.execute()
                return done
            except redis.WatchError:
                continue
    raise redis.WatchError(f"{where} kept changing during {PUBLISH_TRIES} tries")
