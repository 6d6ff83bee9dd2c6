"""Who may read the deployment record: the one access check behind every view of it.

The status page, ``/deployments`` and ``/health``'s details all ask :class:`Access`.
Two modes, chosen with ``status_access``:

- ``"password"`` (the default): HTTP basic auth as ``status_user`` with the password
  in ``status_password_file``.  No readable, non-empty file: closed (403), with a
  reason saying to run ``deployhook init``.
- ``"loopback"``: open without a password to a request that comes from this machine
  and through no proxy: the direct peer is a loopback address and not in
  ``trusted_proxies``, no header a proxy adds (``X-Forwarded-For``, ``Forwarded``,
  ``X-Real-IP``, ``Via``, ...) is present, and the ``Host`` header names this
  machine (``localhost``, a loopback IP, or a name in ``allowed_hosts``), so a
  DNS-rebinding page cannot read it through a browser.  Any other request needs
  the password as above.

Behind a bare ``proxy_pass http://127.0.0.1:PORT`` every internet client reaches
deployhook from 127.0.0.1 with ``Host: 127.0.0.1:PORT``; nothing in the request
tells it from a local one.  That is why the password is the default.

Failed logins are throttled per client (the address behind trusted proxies; an IPv6
client by its /64): after ``MAX_FAILURES`` within ``WINDOW`` seconds, 429 with
``Retry-After`` until the oldest of them is ``WINDOW`` old, whatever is sent.  The
table keeps at most ``MAX_CLIENTS`` clients (the least recently failed go first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import tornado.httputil
import tornado.web

from deployhook.network import Network, client_address, sender_key

if TYPE_CHECKING:
    from deployhook.service.current import Current

log = logging.getLogger("deployhook.access")

MAX_FAILURES = 10
WINDOW = 300.0
MAX_CLIENTS = 4096
MAX_PASSWORD_BYTES = 4096
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host",
                 "X-Forwarded-Proto", "Via")
CHALLENGE = 'Basic realm="deployhook", charset="UTF-8"'
NO_PASSWORD = ("no status password is set: run 'deployhook init' to write one to "
               "status_password_file (or set status_access = \"loopback\")")
LOGIN = "log in as status_user with the password in status_password_file"


class AccessError(tornado.web.HTTPError):
    """An HTTPError whose answer carries headers (``WWW-Authenticate``, ``Retry-After``);
    handlers set them in ``write_error`` (``send_error`` clears headers set before)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, reason=reason)
        self.headers = headers or {}


class Throttle:
    """Failed logins per client key, bounded to ``MAX_CLIENTS`` keys."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds ``key`` must wait before its credentials are checked again (0: none)."""
        times = self.failures.get(key)
        if times is None or len(times) < MAX_FAILURES:
            return 0.0
        return max(0.0, times[0] + WINDOW - self.clock())

    def failed(self, key: str) -> None:
        """Count a failed login of ``key``; drop the least recent client when full."""
        times = self.failures.pop(key, None) or deque(maxlen=MAX_FAILURES)
        times.append(self.clock())
        self.failures[key] = times
        while len(self.failures) > MAX_CLIENTS:
            self.failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures after a good login."""
        self.failures.pop(key, None)


class Access:
    """The access rule of one daemon (its settings in force are read at each request)."""

    def __init__(self, current: Current) -> None:
        self.current = current
        self.throttle = Throttle()
        self._warned = False

    def check(self, request: tornado.httputil.HTTPServerRequest) -> None:
        """Return if ``request`` may read the record.

        Raises:
            AccessError: 401 (login needed or wrong; asks for basic auth), 403 (no
                password is set and the request is not open by ``status_access``),
                429 (too many failed logins from this client; ``Retry-After``).
        """
        config = self.current.config
        why_not_local = None
        if config.status_access == "loopback":
            why_not_local = not_local(request, self.current.trusted, config.allowed_hosts)
            if why_not_local is None:
                return
        password = self.password()
        if password is None:
            raise AccessError(403, NO_PASSWORD if why_not_local is None else (
                f"open without a password only to this machine, and {why_not_local}; "
                "run 'deployhook init' to write a status password to status_password_file"))
        key = client_key(request, self.current.trusted)
        wait = self.throttle.wait(key)
        if wait > 0:
            raise AccessError(429, f"too many failed logins; try again in {math.ceil(wait)} s",
                              {"Retry-After": str(math.ceil(wait))})
        header = request.headers.get("Authorization")
        if header is None:
            hint = f" ({why_not_local})" if why_not_local else ""
            raise AccessError(401, f"login required{hint}: {LOGIN}",
                              {"WWW-Authenticate": CHALLENGE})
        if not credentials_match(header, config.status_user, password):
            self.throttle.failed(key)
            raise AccessError(401, f"wrong user name or password: {LOGIN}",
                              {"WWW-Authenticate": CHALLENGE})
        self.throttle.succeeded(key)

    def allows(self, request: tornado.httputil.HTTPServerRequest) -> bool:
        """True when :meth:`check` lets ``request`` in (failed logins still count);
        without an ``Authorization`` header the password file is not even read."""
        if "Authorization" not in request.headers:
            config = self.current.config
            return config.status_access == "loopback" and not_local(
                request, self.current.trusted, config.allowed_hosts) is None
        try:
            self.check(request)
        except AccessError:
            return False
        return True

    def who(self, request: tornado.httputil.HTTPServerRequest) -> str:
        """Who ``request`` (one :meth:`check` let in) comes from, for the record:
        ``status_user from ADDRESS``, or ``local user from ADDRESS`` when ``status_access
        = "loopback"`` let it in without a login; ADDRESS is the client behind
        ``trusted_proxies``."""
        config = self.current.config
        local = config.status_access == "loopback" and not_local(
            request, self.current.trusted, config.allowed_hosts) is None
        client = client_address(request.remote_ip or "", request.headers.get("X-Forwarded-For"),
                                self.current.trusted)
        return (f"{'local user' if local else config.status_user} from "
                f"{client if client is not None else 'an unknown address'}")

    def password(self) -> bytes | None:
        """The status password (stripped), or None when the file is unset, unreadable
        or empty; the first such miss is logged as a warning."""
        path = self.current.config.status_password_file
        password = b""
        if path:
            try:
                password = read_password_file(path)
            except OSError:
                pass
        if password:
            self._warned = False
            return password
        if not self._warned:
            self._warned = True
            log.warning("the status page and /deployments are closed: no password in %s "
                        "(run 'deployhook init' to write one)",
                        path or "status_password_file (not set)")
        return None


def credentials_match(header: str, user: str, password: bytes) -> bool:
    """True when ``header`` is ``Basic base64(user:password)``; constant time (both parts
    are compared as SHA-256 digests, so neither length nor a prefix leaks)."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return False
    given_user, colon, given_password = given.partition(b":")
    user_ok = hmac.compare_digest(_digest(given_user), _digest(user.encode()))
    password_ok = hmac.compare_digest(_digest(given_password), _digest(password))
    return bool(colon) & user_ok & password_ok


def not_local(request: tornado.httputil.HTTPServerRequest, trusted: Sequence[Network],
              allowed_hosts: Sequence[str]) -> str | None:
    """None when ``request`` comes from this machine through no proxy and names this
    machine in ``Host``; otherwise why not (short, safe to show)."""
    peer = _ip(request.remote_ip or "")
    if peer is None or not peer.is_loopback:
        return "the client is not on this machine"
    if any(peer in net for net in trusted if net.version == peer.version):
        return "the request came through a proxy in trusted_proxies"
    if any(name in request.headers for name in PROXY_HEADERS):
        return "the request came through a proxy"
    if not local_host(request.headers.get("Host", ""), allowed_hosts):
        return "the Host header does not name this machine"
    return None


def local_host(host: str, allowed_hosts: Sequence[str] = ()) -> bool:
    """True when a ``Host`` header value names this machine: ``localhost`` or
    ``*.localhost``, a loopback IP (``127.0.0.1``, ``[::1]``), or a name in
    ``allowed_hosts``; any port."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if name in (allowed.strip().lower().rstrip(".") for allowed in allowed_hosts):
        return True
    address = _ip(name)
    return address is not None and address.is_loopback


def client_key(request: tornado.httputil.HTTPServerRequest, trusted: Sequence[Network]) -> str:
    """The throttle's key for ``request``: the client behind trusted proxies, keyed as
    :func:`~deployhook.network.sender_key` does (an IPv6 client by its /64)."""
    return sender_key(client_address(request.remote_ip or "",
                                     request.headers.get("X-Forwarded-For"), trusted))


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def read_password_file(path: str | Path) -> bytes:
    """The password in ``path``, stripped (b"" when empty).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as file:
        return file.read(MAX_PASSWORD_BYTES).strip()
