"""Fleet mode over TLS (``rediss://``) against a real ``redis-server`` built with TLS
(Debian's is), with certificates made here by ``openssl``: ``redis_ca_file`` names the
CA that must have signed Redis's certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet_helpers import Fleet, RedisServer, make_node, redis_server, wait_for
from tests.helpers import SECRET, deliver_push, http, isolate_git, make_origin
from tests.test_fleet import cli, commit
from tests.tools import require_tool


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (P-256) in ``folder``: (certificate, key)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", f"/CN={name}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path], host: str) -> tuple[Path, Path]:
    """A certificate for IP ``host`` signed by ``ca``: (certificate, key)."""
    cert, key, csr = folder / "server.crt", folder / "server.key", folder / "server.csr"
    extensions = folder / "san.cnf"
    extensions.write_text(f"subjectAltName=IP:{host}\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(csr), "-subj", f"/CN={host}"], check=True, capture_output=True,
                   timeout=60)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey",
                    str(ca[1]), "-CAcreateserial", "-out", str(cert), "-days", "2",
                    "-extfile", str(extensions)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_fleet(tmp_path: Path) -> Iterator[tuple[Fleet, Path, Path, Path, Path]]:
    """A Redis that speaks only TLS, its certificate signed by ``ca.crt``: (fleet, origin,
    pusher, secret file, the CA's certificate); another CA, ``other.crt``, is there too."""
    require_tool(redis_server(), "redis-server is not installed (Debian: redis-server)")
    require_tool(shutil.which("openssl"), "openssl is not installed (Debian: openssl)")
    isolate_git(tmp_path)
    origin, _, pusher = make_origin(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET.decode() + "\n")
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_ca(pki, "ca")
    make_ca(pki, "other")
    cert, key = make_server_cert(pki, ca, "127.0.0.1")
    fleet = Fleet(RedisServer(tmp_path / "redis", tls=(cert, key, ca[0])).start())
    try:
        yield fleet, origin, pusher, secret, ca[0]
    finally:
        fleet.stop()


def test_a_node_deploys_over_tls_with_the_ca_file(
        tls_fleet: tuple[Fleet, Path, Path, Path, Path]) -> None:
    """``rediss://`` with ``redis_ca_file``: the node joins the fleet over TLS and a
    delivery is deployed on every node; ``deployhook check`` says Redis answers."""
    fleet, origin, pusher, secret, ca = tls_fleet
    root = origin.parent
    assert fleet.redis.url.startswith("rediss://127.0.0.1:")
    for name in ("web1", "web2"):
        fleet.nodes.append(make_node(root, origin, name, fleet.redis, secret,
                                     redis_ca_file=str(ca)).start())
    fleet.wait_registered()
    sha = commit(pusher, "print('over tls')\n")
    status, body = deliver_push(fleet.nodes[0].url, sha, delivery="tls-1")
    assert (status, body["reason"]) == (200, "deployed on 2/2 nodes"), body
    assert [node.head() for node in fleet.nodes] == [sha, sha]
    checked = cli(fleet.nodes[1], "check")
    assert "OK   redis      rediss://127.0.0.1:" in checked.stdout, checked.stdout


def test_a_node_refuses_a_redis_whose_certificate_the_ca_did_not_sign(
        tls_fleet: tuple[Fleet, Path, Path, Path, Path]) -> None:
    """``redis_ca_file`` names another CA: the node never talks to that Redis (its
    certificate fails verification): /health says why, a delivery is deployed on this
    node only, and ``deployhook check`` fails."""
    fleet, origin, pusher, secret, ca = tls_fleet
    other = ca.parent / "other.crt"
    node = make_node(origin.parent, origin, "web1", fleet.redis, secret,
                     redis_ca_file=str(other))
    fleet.nodes.append(node.start())

    def refused() -> str:
        found = http("GET", node.url + "/health")[1]["fleet"]
        return found["reason"] if found["reachable"] is False else ""

    reason = wait_for(refused, what="the certificate refused")
    assert "certificate verify failed" in reason, reason
    sha = commit(pusher, "print('not over a stranger')\n")
    status, body = deliver_push(node.url, sha, delivery="tls-2")
    assert status == 202 and body["fleet"]["told"] is False, body
    assert not fleet.redis.client().keys("deployhook:*")
    checked = cli(node, "check")
    assert "FAIL redis" in checked.stdout and "certificate verify failed" in checked.stdout, \
        checked.stdout
