"""Read-only views of the deployment record: the JSON API and the access rule.

``GET /deployments`` lists runs, newest first, a page at a time;
``GET /deployments/<id>`` is one run with its steps, output and deliveries.
The status page (``pages.py``) uses the same access rule: open on a loopback
address, HTTP basic auth when ``status_password_file`` is set, and otherwise
closed (403) on a public address.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.web

from .handlers import JSONHandler

if TYPE_CHECKING:
    from .hook import DeployHook

MAX_PER_PAGE = 100


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class RecordAccess:
    """Mixin: ``check_access()`` enforces the status page and API's access rule."""

    hook: DeployHook

    def check_access(self: Any) -> None:
        """Raise HTTPError 401/403 unless this request may read the record."""
        config = self.hook.config
        if config.status_password_file:
            if not _authorized(self.request.headers.get("Authorization", ""),
                               config.status_user, config.status_password_file):
                self.set_header("WWW-Authenticate", 'Basic realm="deployhook", charset="UTF-8"')
                raise tornado.web.HTTPError(401, reason="login required")
        elif not is_loopback(config.address):
            raise tornado.web.HTTPError(403, reason=(
                "the status page and API are off on a public address; "
                "set status_password_file to turn them on"))


def _authorized(header: str, user: str, password_file: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded, validate=True)
        password = Path(password_file).read_bytes().strip()
    except (ValueError, OSError):
        return False
    expected = user.encode() + b":" + password
    return bool(password) and hmac.compare_digest(given, expected)


class DeploymentsHandler(RecordAccess, JSONHandler):
    """``GET /deployments?page=N&per_page=M``: runs, newest first."""

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook

    def prepare(self) -> None:
        self.check_access()

    async def get(self) -> None:
        page = _positive(self.get_argument("page", "1"), "page")
        per_page = min(_positive(self.get_argument("per_page", "20"), "per_page"), MAX_PER_PAGE)
        offset = (page - 1) * per_page
        runs, total = await self.hook.record.run(
            lambda s: (s.runs(per_page, offset), s.count_runs()))
        more = offset + per_page < total
        self.reply(200, {
            "runs": runs, "page": page, "per_page": per_page, "total": total,
            "next": f"/deployments?page={page + 1}&per_page={per_page}" if more else None,
        })


class DeploymentHandler(RecordAccess, JSONHandler):
    """``GET /deployments/<id>``: one run with its steps and deliveries."""

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook

    def prepare(self) -> None:
        self.check_access()

    async def get(self, run_id: str) -> None:
        run = await self.hook.record.run(lambda s: s.run(int(run_id)))
        if run is None:
            raise tornado.web.HTTPError(404, reason=f"no run {run_id}")
        self.reply(200, run)


def _positive(value: str, name: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise tornado.web.HTTPError(400, reason=f"{name} must be a positive whole number")
    return int(value)
