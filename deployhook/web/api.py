"""Read-only views of the deployment record: the JSON API, ``/health``, and the one
access check.

``GET /deployments`` lists runs, newest first, a page at a time;
``GET /deployments/<id>`` is one run with its steps, output and deliveries;
``GET /health`` says the daemon is up, and with access each target's state.
Every handler that shows the record (these, the status pages in ``pages.py``,
any later document of the API) mixes in :class:`RecordAccess`, which asks the
hook's :class:`~deployhook.web.access.Access`: the password by default, or open to
this machine only with ``status_access = "loopback"``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import tornado.httputil
import tornado.web

from deployhook.web.access import AccessError
from deployhook.web.handlers import JSONHandler

if TYPE_CHECKING:
    from deployhook.fleet.agent import Fleet
    from deployhook.record.recorder import Recorder
    from deployhook.service.target import Target
    from deployhook.web.access import Access

MAX_PER_PAGE = 100
HEALTH_PER_PAGE = 50  # targets /health details unless per_page says (the status page's 50)
STATES = ("attention", "deploying", "failing", "paused")  # /health's ?state=
MAX_PAGE = 1_000_000
MAX_DIGITS = 18
SHOWN_NAME = 40  # characters of an unknown parameter's name shown in the reason


class RecordAccess:
    """Mixin for handlers that show the record: ``prepare()`` runs the access check,
    and error answers keep the headers it asks for."""

    access: Access

    def prepare(self: Any) -> None:
        self.check_access()

    def check_access(self: Any) -> None:
        """Raise :class:`~deployhook.web.access.AccessError` (401/403/429) unless this
        request may read the record."""
        self.access.check(self.request)

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AccessError):
            for name, value in exc.headers.items():
                self.set_header(name, value)
        super().write_error(status_code, **kwargs)  # type: ignore[misc]


class DeploymentsHandler(RecordAccess, JSONHandler):
    """``GET /deployments?page=N&per_page=M[&target=NAME]``: runs (of one target, or of
    every target), newest first, and the newest ``M`` events (pauses and resumes)."""

    def initialize(self, targets: Mapping[str, Target], record: Recorder, fleet: Fleet | None,
                   access: Access) -> None:
        self.targets, self.record, self.fleet, self.access = targets, record, fleet, access

    async def get(self) -> None:
        only_known(self.request, ("page", "per_page", "target"))
        page = page_number(self.get_argument("page", "1"))
        per_page = min(whole(self.get_argument("per_page", "20"), "per_page"), MAX_PER_PAGE)
        offset = (page - 1) * per_page
        target = known_target(self.targets, self.get_argument("target", None))
        runs, total = await self.record.runs_page(per_page, offset, target)
        more = offset + per_page < total
        also = f"&target={target}" if target is not None else ""
        body: dict[str, Any] = {
            "runs": runs, "page": page, "per_page": per_page, "total": total,
            "next": f"/deployments?page={page + 1}&per_page={per_page}{also}" if more else None,
            "events": await self.record.events(per_page, target),
        }
        if self.fleet is not None:
            body["fleet"] = await fleet_view(self.fleet)
        self.reply(200, body)


class HealthHandler(JSONHandler):
    """``GET /health[?target=NAME|state=STATE][&page=N&per_page=M]``: 200 and whether
    the daemon is healthy; never touches git.

    Anyone gets ``{"status": ...}`` alone (what a monitor needs; the query is not
    read); a request the record's access check lets in (the status password, or
    ``status_access = "loopback"`` from this machine) gets the daemon's status
    (``status(names)``) with ``counts`` of every target and the details of a page of
    them, in the config's order: ``HEALTH_PER_PAGE`` unless ``per_page`` says (at most
    ``MAX_PER_PAGE``), those a ``state`` names only (``attention``: deploying, failing
    or paused), or the one ``target``; ``page``, ``per_page``, ``total`` (how many
    matched) and ``next`` (the next page's link, or None) say where it is.  A wrong
    password counts as a failed login, and while its client is throttled no password
    is checked: /health is no way around the throttle.
    """

    def initialize(self, status: Callable[[Iterable[str]], dict[str, Any]],
                   targets: Mapping[str, Target], access: Access) -> None:
        self.status, self.targets, self.access = status, targets, access

    def get(self) -> None:
        # Without the password nothing more than "ok" is said, so no target's status
        # is built.
        if not self.access.allows(self.request):
            self.reply(200, {"status": "ok"})
            return
        only_known(self.request, ("target", "state", "page", "per_page"))
        page = page_number(self.get_argument("page", "1"))
        per_page = min(whole(self.get_argument("per_page", str(HEALTH_PER_PAGE)), "per_page"),
                       MAX_PER_PAGE)
        matched = self.matching(self.get_argument("target", None),
                                self.get_argument("state", None))
        first = (page - 1) * per_page
        body = self.status(matched[first:first + per_page])
        more = first + per_page < len(matched)
        body.update({"page": page, "per_page": per_page, "total": len(matched),
                     "next": self.link(page + 1, per_page) if more else None})
        self.reply(200, body)

    def matching(self, target: str | None, state: str | None) -> list[str]:
        """The names of the targets ``target`` (one name) and ``state`` select, in the
        config's order.

        Raises:
            tornado.web.HTTPError: 400 for a name of no target or a state not in
                :data:`STATES`.
        """
        known_target(self.targets, target)
        if state is not None and state not in STATES:
            raise tornado.web.HTTPError(400, reason=f"state must be one of {', '.join(STATES)}")
        chosen = [self.targets[target]] if target is not None else self.targets.values()
        if state is None:
            return [t.name for t in chosen]
        return [t.name for t in chosen
                if (flags := t.attention()) and (state == "attention" or state in flags)]

    def link(self, page: int, per_page: int) -> str:
        """This request's path and query with ``page`` and ``per_page`` set."""
        query = {name: self.get_argument(name) for name in ("target", "state")
                 if self.get_argument(name, None) is not None}
        query.update({"page": str(page), "per_page": str(per_page)})
        return f"{self.request.path}?{urllib.parse.urlencode(query)}"


class DeploymentHandler(RecordAccess, JSONHandler):
    """``GET /deployments/<id>``: one run with its steps and deliveries."""

    def initialize(self, record: Recorder, access: Access) -> None:
        self.record, self.access = record, access

    async def get(self, run_id: str) -> None:
        only_known(self.request, ())
        run = await self.record.find_run(int(run_id))
        if run is None:
            raise tornado.web.HTTPError(404, reason=f"no run {run_id}")
        self.reply(200, run)


async def fleet_view(fleet: Fleet) -> dict[str, Any]:
    """Every target's desired commit and each node's state, read from Redis now (when
    Redis is unreachable: ``{"reachable": false, "reason": ...}``)."""
    try:
        return await fleet.snapshot()
    except Exception as exc:  # RedisError, OSError: redis is not imported here
        fleet.note_unreachable(exc)
        return {"reachable": False, "reason": fleet.error}


def only_known(request: tornado.httputil.HTTPServerRequest, known: tuple[str, ...]) -> None:
    """Check that ``request``'s query names only parameters in ``known`` (a typo such
    as ``per-page`` is not silently ignored).

    Raises:
        tornado.web.HTTPError: 400 naming the first unknown parameter (at most
            ``SHOWN_NAME`` characters of it, as an ASCII literal) and the known ones.
    """
    unknown = [name for name in request.query_arguments if name not in known]
    if unknown:
        name = unknown[0].encode("latin-1").decode("utf-8", "replace")  # Tornado's latin-1
        raise tornado.web.HTTPError(
            400, reason=f"unknown query parameter {name[:SHOWN_NAME]!a}; "
            f"known: {', '.join(known) or 'none'}")


def page_number(value: str) -> int:
    """``value`` as a page number: a whole number from 1 to :data:`MAX_PAGE`.

    Raises:
        tornado.web.HTTPError: 400 for anything else (see :func:`whole`).
    """
    page = whole(value, "page")
    if page > MAX_PAGE:
        raise tornado.web.HTTPError(400, reason=f"page must be at most {MAX_PAGE}")
    return page


def known_target(targets: Mapping[str, Target], name: str | None) -> str | None:
    """``name`` (None: no target asked for), when ``targets`` has it.

    Raises:
        tornado.web.HTTPError: 400 for a name of no target.
    """
    if name is not None and name not in targets:
        raise tornado.web.HTTPError(400, reason="target must be the name of a target")
    return name


def whole(value: str, name: str, least: int = 1) -> int:
    """``value`` as a whole number of at least ``least`` (1 unless given) written with
    ASCII digits (at most 18).

    Raises:
        tornado.web.HTTPError: 400 naming ``name`` for anything else (``²``, ``-1``,
            ``0`` when ``least`` is 1, ``1e3``, twenty digits).
    """
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS) \
            or int(value) < least:
        raise tornado.web.HTTPError(400, reason=f"{name} must be a whole number from "
                                    f"{least} (ASCII digits, at most {MAX_DIGITS})")
    return int(value)
