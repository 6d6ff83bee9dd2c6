"""A real Redis (Debian's redis-server) and a fleet of real daemons, for the fleet tests
and bench/fleet.py.

Redis runs on a free port in its own folder with the persistence docs/fleet.rst
recommends (``appendonly yes``) and a password (``requirepass``), which each node
reads from its ``redis_password_file``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import (
    REPOSITORY,
    Daemon,
    free_port,
    git,
    http,
    wait_for,
    write_config,
)

REDIS_PASSWORD = "fleet test password"
FLEET_KEY = "fleet test key, the same on every node, 0123456789abcdef"


def redis_server() -> str | None:
    """The redis-server program, or None when it is not installed."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


class RedisServer:
    """``redis-server`` as a subprocess on ``host``:``port`` keeping its data in ``folder``;
    ``tls``: (certificate, key, CA) files: TLS only (``rediss://``); ``prefix``: what
    runs it (``ip netns exec <ns>``)."""

    def __init__(self, folder: Path, port: int | None = None, host: str = "127.0.0.1",
                 tls: tuple[Path, Path, Path] | None = None, prefix: tuple[str, ...] = ()
                 ) -> None:
        self.folder, self.host, self.tls, self.prefix = folder, host, tls, prefix
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    def listen(self) -> list[str]:
        """redis-server's arguments for where it listens."""
        if self.tls is None:
            return ["--port", str(self.port), "--bind", self.host]
        cert, key, ca = self.tls
        return ["--port", "0", "--tls-port", str(self.port), "--bind", self.host,
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING (with the password)."""
        program = redis_server()
        assert program is not None
        self.proc = subprocess.Popen(
            [*self.prefix, program, *self.listen(), "--dir",
             str(self.folder), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--requirepass", REDIS_PASSWORD, "--logfile",
             str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ping():
                return self
            assert self.proc.poll() is None, (self.folder / "redis.log").read_text()
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer in 20 s")

    def ping(self) -> bool:
        try:
            with self._connect() as conn:
                conn.sendall(f'AUTH "{REDIS_PASSWORD}"\r\nPING\r\n'.encode())
                data = b""
                while data.count(b"\r\n") < 2:
                    chunk = conn.recv(100)
                    if not chunk:
                        return False
                    data += chunk
                return data.endswith(b"+PONG\r\n")
        except OSError:
            return False

    def _connect(self) -> socket.socket:
        conn = socket.create_connection((self.host, self.port), timeout=1)
        if self.tls is None:
            return conn
        import ssl

        context = ssl.create_default_context(cafile=str(self.tls[2]))
        return context.wrap_socket(conn, server_hostname=self.host)

    def client(self) -> Any:
        """A blocking client of this Redis, as a stranger who can write it (``redis-cli``)
        has: replies decoded to str."""
        import redis

        tls = {} if self.tls is None else {"ssl": True, "ssl_ca_certs": str(self.tls[2])}
        return redis.Redis(host=self.host, port=self.port, password=REDIS_PASSWORD,
                           decode_responses=True, socket_timeout=10, **tls)

    def beats(self, node: str, count: int, timeout: float = 30) -> None:
        """Wait until ``node`` has written ``count`` more heartbeats: as many rounds of its
        beat loop, each of which also reconciles (every ``reconcile_interval``)."""
        from deployhook.fleet.keys import heartbeat_key

        client = self.client()
        first, seen = client.get(heartbeat_key(node)), set()

        def counted() -> bool:
            beat = client.get(heartbeat_key(node))  # each carries the time it was written
            if beat is not None and beat != first:
                seen.add(beat)
            return len(seen) >= count

        try:
            wait_for(counted, timeout, f"{count} heartbeats of {node}")
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM (a clean stop: Redis writes its append-only file) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@dataclass
class Node:
    """One server of the fleet: its checkout and its daemon."""

    name: str
    root: Path
    checkout: Path
    config: Path
    port: int
    daemon: Daemon | None = None

    def start(self) -> Node:
        self.daemon = Daemon(self.config, self.port)
        self.daemon.wait_ready()
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def head(self) -> str:
        return git(self.checkout, "rev-parse", "HEAD")

    def runs(self) -> int:
        """How many runs this node's record holds."""
        return int(http("GET", self.url + "/deployments")[1]["total"])


@dataclass
class Fleet:
    """Nodes sharing one origin and one Redis."""

    redis: RedisServer
    nodes: list[Node] = field(default_factory=list)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()

    def wait_registered(self, target: str = "default") -> None:
        """Wait until the first node sees every node (each one's first heartbeat)."""
        names = {node.name for node in self.nodes}

        def known() -> bool:
            fleet = http("GET", self.nodes[0].url + "/deployments")[1].get("fleet", {})
            return set(fleet.get(target, {}).get("nodes", {})) == names

        wait_for(known, what="every node's first heartbeat")


def make_node(root: Path, origin: Path, name: str, redis: RedisServer, secret: Path,
              **extra: Any) -> Node:
    """A clone of ``origin`` (with submodules) and a config for node ``name``, with the
    fleet key every node of ``root`` shares (unless ``extra`` names another)."""
    folder = root / name
    folder.mkdir()
    checkout = folder / "site"
    git(root, "clone", "-q", "--recurse-submodules", origin.as_uri(), str(checkout))
    password = folder / "redis-password.txt"
    password.write_text(REDIS_PASSWORD + "\n")
    key = root / "fleet-key.txt"
    if not key.exists():
        key.write_text(FLEET_KEY + "\n")
    port = free_port()
    values = {"port": port, "repo_path": str(checkout), "secret_file": str(secret),
              "repository": REPOSITORY, "reload": "none", "redis_url": redis.url,
              "redis_password_file": str(password), "fleet_key_file": str(key), "node": name,
              "reconcile_interval": 1.0,  # heartbeats each second: absent after 3 s
              "response_timeout": 30.0,  # every node's deploy, on a loaded machine too
              "poll_interval": 0, **extra}
    return Node(name, folder, checkout, write_config(folder / "config.py", **values), port)
