"""Who may read the deployment record: password by default, "loopback" only when asked.

Real daemons and real HTTP: HookTestCase (a real server on 127.0.0.1), daemon
subprocesses (one socket-activated on every address and asked from this machine's
public address), and a real nginx (Debian's ``nginx-light``) with a bare
``proxy_pass`` in front of a daemon with the default settings.  nginx runs in the
foreground with its own prefix, config, pid and logs; where it is not installed
the nginx tests skip saying so, except under CI (``CI=true``), where they fail
(``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tornado.web
from tornado.httpclient import HTTPResponse
from tornado.testing import gen_test

from deployhook import Config, DeployHook, settings
from deployhook.record.store import DeliveryRecord, Store
from deployhook.web.access import (
    MAX_CLIENTS,
    MAX_FAILURES,
    WINDOW,
    Throttle,
    credentials_match,
    local_host,
)
from tests.apptest import HookTestCase
from tests.helpers import (
    REPOSITORY,
    STATUS_PASSWORD,
    Repos,
    basic_auth,
    deliver_push,
    free_port,
    http,
    push_payload,
    start_daemon,
    write_config,
)
from tests.tools import require_tool

RECORD_PATHS = ("/", "/runs/1", "/deployments", "/deployments/1")
PUBLIC = "203.0.113.9"
NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
    None)


# -- the pieces -------------------------------------------------------------------------

@pytest.mark.parametrize(("host", "local"), [
    ("localhost", True), ("localhost:8000", True), ("LOCALHOST.", True),
    ("app.localhost:8000", True), ("127.0.0.1:8000", True), ("127.9.9.9", True),
    ("[::1]:8000", True), ("[::1]", True), ("::1", True), ("[::ffff:127.0.0.1]:80", True),
    ("rebind.attacker.example", False), ("rebind.attacker.example:8000", False),
    ("localhost.attacker.example", False), ("127.0.0.1.nip.io", False),
    ("203.0.113.9:8000", False), ("[2001:db8::1]:80", False), ("", False), ("[::1", False),
    ("deploy.test:8000", False),
])
def test_local_host(host: str, local: bool) -> None:
    """Host names of this machine: localhost, *.localhost and loopback IPs, any port."""
    assert local_host(host) is local


def test_allowed_hosts_extend_local_names() -> None:
    assert local_host("deploy.test:8000", ["Deploy.Test"])
    assert not local_host("other.test", ["deploy.test"])


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(("header", "ok"), [
    (_basic(b"deployhook:pw"), True), ("basic " + base64.b64encode(b"deployhook:pw").decode(),
                                       True),
    (_basic(b"deployhook:pw "), False), (_basic(b"deployhook:p"), False),
    (_basic(b"deployhook:pwx"), False), (_basic(b"other:pw"), False),
    (_basic(b"deployhook"), False), (_basic(b":pw"), False), (_basic(b"deployhook:"), False),
    ("Basic not-base64!", False), ("Bearer pw", False), ("", False),
    (_basic("deployhook:pw\u00e9".encode()), False),
])
def test_credentials_match(header: str, ok: bool) -> None:
    assert credentials_match(header, "deployhook", b"pw") is ok


def test_throttle_window_and_bound() -> None:
    """MAX_FAILURES within WINDOW blocks a client until the oldest is WINDOW old; a good
    login forgets; the table never holds more than MAX_CLIENTS clients."""
    now = [1000.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("a")
        now[0] += 1
    assert throttle.wait("a") == 0
    throttle.failed("a")
    assert throttle.wait("a") == pytest.approx(WINDOW - (MAX_FAILURES - 1))
    assert throttle.wait("b") == 0
    now[0] += WINDOW
    assert throttle.wait("a") == 0
    throttle.succeeded("a")
    assert "a" not in throttle.failures
    for n in range(MAX_CLIENTS + 500):
        throttle.failed(f"client-{n}")
    assert len(throttle.failures) == MAX_CLIENTS
    assert "client-0" not in throttle.failures
    assert f"client-{MAX_CLIENTS + 499}" in throttle.failures


# -- in-process: a real server on 127.0.0.1 ----------------------------------------------

class AccessTestCase(HookTestCase):
    """HookTestCase configured as a user's daemon is: ``config.py`` read by
    ``settings.load`` with ``status_password_file`` left at its default, the file
    next to config.py holding the password (as after ``deployhook init``); and a
    request helper that sends exactly the given headers."""

    def make_config(self, **overrides: Any) -> Config:
        values = {"repo_path": str(self.repos.deployed), "secret_file": str(self.secret_path),
                  "repository": REPOSITORY, "reload": "none", "git_timeout": 30.0,
                  "state_db": str(self.tmp / "state.sqlite3"), **self.settings, **overrides}
        config = settings.load(write_config(self.tmp / "config.py", **values), environ={})
        assert overrides or config.status_password_file in (None, str(self.password_path))
        return config

    async def get(self, path: str, headers: dict[str, str] | None = None,
                  login: bool = False) -> HTTPResponse:
        """GET ``path`` with ``headers`` only (plus the test login when ``login``)."""
        headers = {**(basic_auth() if login else {}), **(headers or {})}
        response = await self.anonymous().fetch(self.get_url(path), headers=headers,
                                                 raise_error=False, request_timeout=60)
        assert response.code != 599, response.error
        return response

    async def codes(self, headers: dict[str, str] | None = None,
                    login: bool = False) -> dict[str, int]:
        return {path: (await self.get(path, headers, login)).code for path in RECORD_PATHS}

    async def one_run(self) -> None:
        status, body = await self.deliver(push_payload(self.repos.commit()), delivery="d-1")
        assert status == 200, body


class BehindTrustedProxyTest(AccessTestCase):
    """Finding 1: nginx on this machine forwarding with X-Forwarded-For, trusted_proxies
    set.  21d5e9e answered 200 to every internet client ("address" is 127.0.0.1)."""

    settings: ClassVar[dict[str, Any]] = {"trusted_proxies": ["127.0.0.1"]}

    @gen_test(timeout=60)
    async def test_internet_client_needs_the_password(self) -> None:
        await self.one_run()
        forwarded = {"X-Forwarded-For": PUBLIC}
        refused = await self.codes(forwarded)
        assert refused == dict.fromkeys(RECORD_PATHS, 401), refused
        response = await self.get("/deployments", forwarded)
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="deployhook"')
        assert REPOSITORY.encode() not in response.body
        assert await self.codes(forwarded, login=True) == dict.fromkeys(RECORD_PATHS, 200)


class NoProxyHeadersTest(AccessTestCase):
    """Default settings, a request from 127.0.0.1 with nothing proxy-like: still the
    password (a bare proxy_pass looks exactly like this)."""

    @gen_test(timeout=60)
    async def test_local_request_needs_the_password(self) -> None:
        await self.one_run()
        assert await self.codes({"Host": "localhost"}) == dict.fromkeys(RECORD_PATHS, 401)
        assert await self.codes(login=True) == dict.fromkeys(RECORD_PATHS, 200)
        wrong = await self.codes(basic_auth("guess"))
        assert wrong == dict.fromkeys(RECORD_PATHS, 401)

    @gen_test(timeout=60)
    async def test_rebinding_host_needs_the_password(self) -> None:
        """DNS rebinding in password mode: the browser does not send the operator's
        credentials to the attacker's name, and without them nothing is shown."""
        await self.one_run()
        response = await self.get("/deployments/1", {"Host": "rebind.attacker.example"})
        assert response.code == 401 and b"head_after" not in response.body


class NoPasswordFileTest(AccessTestCase):
    """The password file is missing (``deployhook init`` not run): closed, saying so."""

    def make_config(self, **overrides: Any) -> Config:
        return super().make_config(status_password_file=str(self.tmp / "missing.txt"),
                                   **overrides)

    @gen_test(timeout=60)
    async def test_closed_with_advice(self) -> None:
        await self.one_run()
        for path in RECORD_PATHS:
            for headers in ({}, basic_auth(), basic_auth("")):
                response = await self.get(path, headers)
                assert response.code == 403, (path, response.body)
                assert b"deployhook init" in response.body, path
                assert b"missing.txt" not in response.body  # no path for strangers
                assert "WWW-Authenticate" not in response.headers
        (self.tmp / "missing.txt").write_text("\n\n")
        assert (await self.get("/deployments", basic_auth(""))).code == 403  # empty file
        response = await self.get("/health")
        assert response.code == 200 and _json(response) == {"status": "ok"}


class LoopbackModeTest(AccessTestCase):
    """status_access = "loopback": open to this machine, through no proxy, by a Host
    naming this machine (Host checking against DNS rebinding)."""

    settings: ClassVar[dict[str, Any]] = {"status_access": "loopback",
                                          "allowed_hosts": ["deploy.test"]}

    @gen_test(timeout=60)
    async def test_open_locally_only(self) -> None:
        await self.one_run()
        port = self.get_http_port()
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "deploy.test", "[::1]"):
            assert await self.codes({"Host": host}) == dict.fromkeys(RECORD_PATHS, 200), host
        for headers in ({"Host": "rebind.attacker.example"},
                        {"Host": f"rebind.attacker.example:{port}"},
                        {"X-Forwarded-For": PUBLIC}, {"X-Real-IP": PUBLIC},
                        {"Forwarded": f"for={PUBLIC}"}, {"X-Forwarded-For": "127.0.0.1"},
                        {"Via": "1.1 proxy"}, {"X-Forwarded-Proto": "https"}):
            codes = await self.codes(headers)
            assert codes == dict.fromkeys(RECORD_PATHS, 401), (headers, codes)
        response = await self.get("/deployments/1", {"Host": "rebind.attacker.example"})
        assert b"Host header" in response.body and b"head_after" not in response.body
        # Not open, the password still works.
        assert await self.codes({"X-Forwarded-For": PUBLIC}, login=True) == dict.fromkeys(
            RECORD_PATHS, 200)
        health = _json(await self.get("/health"))
        assert health["head"] == self.repos.head(self.repos.deployed)
        assert _json(await self.get("/health", {"Host": "rebind.attacker.example"})) == {
            "status": "ok"}


class LoopbackBehindTrustedProxyTest(AccessTestCase):
    """"loopback" never opens for a direct peer in trusted_proxies, with or without
    X-Forwarded-For; with no password file that is a 403 saying why."""

    settings: ClassVar[dict[str, Any]] = {"status_access": "loopback",
                                          "trusted_proxies": ["127.0.0.0/8"]}

    def make_config(self, **overrides: Any) -> Config:
        return super().make_config(status_password_file=str(self.tmp / "none.txt"),
                                   **overrides)

    @gen_test(timeout=60)
    async def test_refused(self) -> None:
        await self.one_run()
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Forwarded-For": PUBLIC}):
            for path in RECORD_PATHS:
                response = await self.get(path, headers)
                assert response.code == 403, (headers, path)
                assert b"trusted_proxies" in response.body, response.body


class HealthTest(AccessTestCase):
    """/health: anyone learns only whether the daemon is healthy; the password shows
    the repository, HEAD, pid and last deploy."""

    @gen_test(timeout=60)
    async def test_health_details_need_the_password(self) -> None:
        await self.one_run()
        for headers in ({}, basic_auth("wrong"), {"Authorization": "Bearer x"}):
            response = await self.get("/health", headers)
            assert response.code == 200
            assert _json(response) == {"status": "ok"}, headers
        full = _json(await self.get("/health", login=True))
        assert full["status"] == "ok" and full["repository"] == REPOSITORY
        assert full["head"] == self.repos.head(self.repos.deployed) and "pid" in full


class ThrottleTest(AccessTestCase):
    """Failed logins are throttled per client: after MAX_FAILURES, 429 with Retry-After
    even for the right password, on every view (and /health shows nothing more);
    another client is not affected.  Clients are told apart behind trusted proxies,
    and an IPv6 client by its /64."""

    settings: ClassVar[dict[str, Any]] = {"trusted_proxies": ["127.0.0.1"]}

    @gen_test(timeout=120)
    async def test_failed_logins_are_throttled(self) -> None:
        attacker, other = {"X-Forwarded-For": PUBLIC}, {"X-Forwarded-For": "198.51.100.7"}
        for n in range(MAX_FAILURES):
            path = RECORD_PATHS[n % len(RECORD_PATHS)]
            response = await self.get(path, {**attacker, **basic_auth(f"guess-{n}")})
            assert response.code == 401, (n, path)
        for path in RECORD_PATHS:
            response = await self.get(path, {**attacker, **basic_auth()})
            assert response.code == 429, (path, response.body)
            retry = int(response.headers["Retry-After"])
            assert 0 < retry <= WINDOW
            assert b"too many failed logins" in response.body
        health = await self.get("/health", {**attacker, **basic_auth()})
        assert _json(health) == {"status": "ok"}
        assert (await self.get("/deployments", {**other, **basic_auth()})).code == 200

    @gen_test(timeout=120)
    async def test_health_counts_failures(self) -> None:
        """A wrong password on /health counts too: it is no way around the throttle."""
        attacker = {"X-Forwarded-For": "2001:db8:1:2::10"}
        for n in range(MAX_FAILURES):
            response = await self.get("/health", {**attacker, **basic_auth(f"guess-{n}")})
            assert _json(response) == {"status": "ok"}
        neighbour = {"X-Forwarded-For": "2001:db8:1:2::99"}  # same /64
        assert (await self.get("/deployments", {**neighbour, **basic_auth()})).code == 429
        elsewhere = {"X-Forwarded-For": "2001:db8:1:3::10"}
        assert (await self.get("/deployments", {**elsewhere, **basic_auth()})).code == 200


class RawTemplatesApp(HookTestCase):
    """Templates: the pages mounted in an application created with autoescape=None
    (and its own template_path) still escape what the record holds."""

    def get_app(self) -> tornado.web.Application:
        # As in a fresh process: Tornado caches one template loader per folder for all
        # applications, so a page rendered earlier in this process would hide the bug.
        with tornado.web.RequestHandler._template_loader_lock:
            tornado.web.RequestHandler._template_loaders.clear()
        self.hook = DeployHook(self.make_config())
        self.io_loop.run_sync(self.hook.start)
        return tornado.web.Application(self.hook.routes(), autoescape=None,
                                       template_path=str(self.tmp))

    @gen_test(timeout=60)
    async def test_pages_escape_anyway(self) -> None:
        def insert(store: Store) -> int:
            row = store.add_delivery(DeliveryRecord(
                "d-<b>", "push", PUBLIC, "valid", "refs/heads/main", "a" * 40, "b" * 40,
                "<script>alert(1)</script>", accepted=True))
            run_id = store.start_run("webhook", "main", "a" * 40, [row],
                                     ["<script>alert(1)</script>"])
            store.finish_run(run_id, False, "a" * 40, "a" * 40, "<img src=x onerror=1>", [])
            return run_id

        run_id = await self.hook.record.run(insert)
        for path, code in (("/", 200), (f"/runs/{run_id}", 200), ("/runs/999", 404)):
            response = await self.http_client.fetch(self.get_url(path), raise_error=False)
            html = response.body.decode()
            assert response.code == code, (path, html)
            assert "<script>" not in html and "<img src=x" not in html, path
            if code == 200:
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
                assert "&lt;img src=x onerror=1&gt;" in html, path


class FaviconTest(HookTestCase):
    """issue 10 #11: browsers ask for /favicon.ico; answer it quietly (no warning)."""

    @gen_test(timeout=60)
    async def test_favicon_is_quiet(self) -> None:
        records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = records.append  # type: ignore[method-assign]
        access = logging.getLogger("tornado.access")
        access.addHandler(handler)
        try:
            response = await self.anonymous().fetch(self.get_url("/favicon.ico"),
                                                    raise_error=False)
        finally:
            access.removeHandler(handler)
        assert response.code == 204, response.code
        assert not [r for r in records if r.levelno >= logging.WARNING], records
        page = await self.http_client.fetch(self.get_url("/"))
        assert b'<link rel="icon" href="data:,">' in page.body


def _json(response: HTTPResponse) -> dict[str, Any]:
    import json

    return json.loads(response.body)


# -- subprocesses: socket activation on every address ------------------------------------

def public_address() -> str | None:
    """A non-loopback IPv4 address of this machine (the one on the route to a
    documentation address, or one its host name resolves to), or None."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # no packet is sent
            candidates.append(probe.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += [info[4][0] for info in socket.getaddrinfo(
            socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    return next((a for a in candidates if not a.startswith(("127.", "0."))), None)


def socket_activated(repos: Repos, secret_file: Path, port: int,
                     **extra: Any) -> subprocess.Popen[bytes]:
    """The daemon started by systemd-socket-activate listening on 0.0.0.0:``port``; its
    config keeps the default ``address`` (127.0.0.1) and has ``extra``."""
    activate = shutil.which("systemd-socket-activate")
    require_tool(activate, "systemd-socket-activate is not installed (Debian package systemd)")
    assert activate is not None
    config = write_config(repos.root / "config.py", port=free_port(),
                          repo_path=str(repos.deployed), secret_file=str(secret_file),
                          repository=REPOSITORY, reload="none", **extra)
    (repos.root / "status-password.txt").write_text(STATUS_PASSWORD + "\n")
    names = ["PATH", "HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "PYTHONPATH"]
    log = repos.root / "activated.log"
    proc = subprocess.Popen(
        [activate, "--listen", f"0.0.0.0:{port}",
         *[f"--setenv={name}" for name in names if name in os.environ],
         sys.executable, "-m", "deployhook", "serve", "--config", str(config)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=repos.root)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    assert proc.wait(20) == 0


@pytest.fixture
def public() -> str:
    address = public_address()
    require_tool(address, "this machine has no non-loopback IPv4 address")
    assert address is not None
    return address


def test_socket_activated_on_all_addresses_refuses_a_public_client(
        repos: Repos, secret_file: Path, public: str) -> None:
    """Finding 1: systemd's socket on 0.0.0.0 while the config keeps the default
    ``address = "127.0.0.1"``.  21d5e9e decided from ``address`` and answered 200 to a
    client on a public address; now the record needs the password from anywhere."""
    port = free_port()
    proc = socket_activated(repos, secret_file, port)
    try:
        local, remote = f"http://127.0.0.1:{port}", f"http://{public}:{port}"
        assert deliver_push(local, repos.commit())[0] == 200
        for path in RECORD_PATHS:
            assert _get(remote + path)[0] == 401, path
            assert _get(local + path)[0] == 401, path
            assert _get(remote + path, basic_auth())[0] == 200, path
        assert http("GET", remote + "/health", auth=False)[1] == {"status": "ok"}
    finally:
        _stop(proc)


def test_loopback_mode_decides_per_request(
        repos: Repos, secret_file: Path, public: str) -> None:
    """status_access = "loopback" on a socket bound to 0.0.0.0: open to 127.0.0.1, and
    to this machine's own public address only with the password (the client address
    decides, never ``address``)."""
    port = free_port()
    proc = socket_activated(repos, secret_file, port, status_access="loopback")
    try:
        local, remote = f"http://127.0.0.1:{port}", f"http://{public}:{port}"
        assert deliver_push(local, repos.commit())[0] == 200
        for path in RECORD_PATHS:
            assert _get(remote + path)[0] == 401, path
            assert _get(remote + path, basic_auth())[0] == 200, path
            assert _get(local + path)[0] == 200, path
        assert http("GET", remote + "/health", auth=False)[1] == {"status": "ok"}
        assert http("GET", local + "/health", auth=False)[1]["repository"] == REPOSITORY
    finally:
        _stop(proc)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``url`` with exactly ``headers``; (status, body)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_http(url: str, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            http("GET", url, timeout=5)
            return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


# -- a real nginx in front ---------------------------------------------------------------

def nginx_or_skip() -> str:
    """The nginx binary; skip where it is missing, fail under CI (``.ci/run`` installs
    Debian's nginx-light)."""
    require_tool(NGINX, "nginx is not installed (Debian package nginx-light)")
    assert NGINX is not None
    return NGINX


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Any]:
    """``start(upstream_port, directives="")`` runs nginx in the foreground on a free
    port with ``location / { <directives> proxy_pass http://127.0.0.1:UPSTREAM; }`` and
    returns its URL; every nginx started is stopped by its pid afterwards."""
    binary = nginx_or_skip()
    procs: list[subprocess.Popen[bytes]] = []

    def start(upstream: int, directives: str = "") -> str:
        prefix = tmp_path / f"nginx-{len(procs)}"
        (prefix / "logs").mkdir(parents=True)
        port = free_port()
        temp = "".join(f"{kind}_temp_path {prefix}/{kind};\n    "
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (prefix / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
    {temp}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {directives}
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
""")
        proc = subprocess.Popen([binary, "-p", str(prefix), "-e", str(prefix / "logs/error.log"),
                                 "-c", str(prefix / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(proc)
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (prefix / "logs/error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                assert time.monotonic() < deadline, (prefix / "logs/error.log").read_text()
                time.sleep(0.05)

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bare_nginx_proxy_pass_with_default_settings(
        repos: Repos, secret_file: Path, nginx: Any) -> None:
    """Acceptance (issue 9): a real nginx with a bare ``proxy_pass http://127.0.0.1:PORT;``
    in front of a daemon with the default settings.  Every internet client arrives from
    127.0.0.1 with ``Host: 127.0.0.1:PORT``; the status page, a run page and
    /deployments refuse a request without the password and accept it with it."""
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        assert deliver_push(daemon.url, repos.commit())[0] == 200
        proxied = nginx(daemon.port)
        for path in RECORD_PATHS:
            status, body = _get(proxied + path)
            assert status == 401, (path, body)
            assert REPOSITORY.encode() not in body and b"head_after" not in body, path
            assert _get(proxied + path, basic_auth("guess"))[0] == 401, path
            assert _get(proxied + path, basic_auth())[0] == 200, path
        assert http("GET", proxied + "/health", auth=False)[1] == {"status": "ok"}
        assert http("GET", proxied + "/health")[1]["repository"] == REPOSITORY
    finally:
        daemon.stop()


def test_loopback_mode_refuses_nginx_forwarding_for(
        repos: Repos, secret_file: Path, nginx: Any) -> None:
    """status_access = "loopback" behind nginx that says who it forwards for: refused,
    whether or not the proxy is in trusted_proxies (the bare proxy_pass is the trap
    docs/security.rst spells out: nothing tells it from this machine)."""
    for trusted in ([], ["127.0.0.1"]):
        daemon = start_daemon(repos, secret_file, status_access="loopback",
                              trusted_proxies=trusted)
        try:
            daemon.wait_ready()
            proxied = nginx(daemon.port, "proxy_set_header X-Forwarded-For "
                                         "$proxy_add_x_forwarded_for;")
            for path in ("/", "/deployments"):
                assert _get(proxied + path)[0] == 401, (trusted, path)
                assert _get(proxied + path, basic_auth())[0] == 200, (trusted, path)
                expected = 401 if trusted else 200  # direct, from this machine
                assert _get(daemon.url + path)[0] == expected, (trusted, path)
        finally:
            daemon.stop()


# -- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "environ", "expected"), [
    ("", {}, "{folder}/status-password.txt"),
    ("", {"CREDENTIALS_DIRECTORY": "/run/credentials/deployhook.service"},
     "/run/credentials/deployhook.service/status-password"),
    ('status_password_file = "pw.txt"\n', {"CREDENTIALS_DIRECTORY": "/run/credentials/x"},
     "{folder}/pw.txt"),
    ("", {"CREDENTIALS_DIRECTORY": "/run/credentials/x",
          "DEPLOYHOOK_STATUS_PASSWORD_FILE": "/p"}, "/p"),
], ids=["next to config.py", "credential", "file wins", "environment wins"])
def test_status_password_file(tmp_path: Path, text: str, environ: dict[str, str],
                              expected: str) -> None:
    """status_password_file is a path next to config.py by default; under systemd,
    when set nowhere, the credential ``status-password``."""
    config = settings.load(_write(tmp_path / "config.py", text), environ=environ)
    assert config.status_password_file == expected.format(folder=tmp_path.resolve())
    assert config.status_access == "password" and config.allowed_hosts == ()


def test_status_access_is_checked(tmp_path: Path) -> None:
    from deployhook.errors import ConfigError

    with pytest.raises(ConfigError, match="status_access must be one of password, loopback"):
        settings.load(_write(tmp_path / "config.py", 'status_access = "open"\n'), environ={})
    with pytest.raises(ConfigError, match="allowed_hosts must be a list of strings"):
        settings.load(_write(tmp_path / "config.py", "allowed_hosts = [1]\n"), environ={})
    config = settings.load(_write(tmp_path / "config.py", ""), environ={
        "DEPLOYHOOK_STATUS_ACCESS": "loopback", "DEPLOYHOOK_ALLOWED_HOSTS": "a.test b.test"})
    assert config.status_access == "loopback" and config.allowed_hosts == ("a.test", "b.test")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
