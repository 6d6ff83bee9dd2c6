"""The status page: HTML views of the deployed checkout and the deployment record.

``GET <page_path>`` shows the repository, branch, deployed HEAD, whether a deploy
runs, and the last runs (with several targets: the targets :data:`TARGETS_PER_PAGE` at a
time, ``?page=N``, filtered by ``?q=`` on their name and repository, see
:func:`target_listing`); ``GET <page_path>runs/<id>`` shows one run with each
step's command and output and the deliveries it covered.  Same access rule as
the JSON API (:class:`~deployhook.web.api.RecordAccess`).  Every database call runs
on the record's thread.  Nothing shown can hold a credential: URLs lose their
userinfo (:func:`~deployhook.redact.redact`, applied again on display), and the
secret, the status password, ``post_deploy``'s arguments and the environment are
never shown.  Links are relative, so the pages also work behind a path prefix.
While a run is running, its page loads ``<page_path>live.js`` (the only script, and
only then: that page alone has ``script-src 'self'; connect-src 'self'``), which polls
``<page_path>runs/<id>/live?after=N`` for the command's output so far (the same
redacted text the record keeps) and reloads the page once the run has ended; without
JavaScript the page refreshes itself every 2 seconds instead.
Templates come from the package's own loader, which escapes every ``{{ }}``
whatever ``autoescape`` the application that mounts the pages sets.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.template
import tornado.web

from deployhook.git import releases
from deployhook.redact import redact
from deployhook.service.target import only_target
from deployhook.settings import TARGET_NAME
from deployhook.web.api import RecordAccess, fleet_view, page_number, whole
from deployhook.web.handlers import JSONHandler, set_allow

if TYPE_CHECKING:
    from deployhook.fleet.agent import Fleet
    from deployhook.record.recorder import Recorder
    from deployhook.service.actions import Actions
    from deployhook.service.target import Target
    from deployhook.web.access import Access

TEMPLATES = str(Path(__file__).parent / "templates")
# The package's own loader: its pages escape every {{ }} whatever the host
# application's autoescape, template_path or template_loader settings are.
LOADER = tornado.template.Loader(TEMPLATES, autoescape="xhtml_escape")
RUNS_SHOWN = 20
TARGETS_PER_PAGE = 50  # targets listed per page of the status page
MAX_QUERY = 100  # characters of a search on the status page
EVENTS_SHOWN = 10  # pauses and resumes shown on a target's page
OUTCOMES = {  # outcome -> (symbol, label); the label is always shown, not colour alone
    "ok": ("\u2713", "ok"),
    "failed": ("\u2717", "failed"),
    "interrupted": ("!", "interrupted"),
    "running": ("\u2026", "running"),
}
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# A running run's page: CSP plus its own same-origin script and that script's polling.
LIVE_CSP = CSP + "; script-src 'self'; connect-src 'self'"
LIVE_JS = (Path(__file__).parent / "static" / "live.js").read_bytes()  # read once


def page_routes(targets: Mapping[str, Target], record: Recorder, fleet: Fleet | None,
                access: Access, page_path: str = "/", actions: Actions | None = None,
                ) -> list[tuple[str, Any, dict[str, Any]]]:
    """URL specs for the status page at ``page_path``, its run pages and target pages,
    showing ``targets`` (by name; read, never changed), ``record`` and (in fleet mode)
    ``fleet``; with ``actions``, they show the buttons
    (:func:`deployhook.web.actions.action_routes` serves them)."""
    base = page_path if page_path.endswith("/") else page_path + "/"
    kwargs: dict[str, Any] = {"targets": targets, "record": record, "fleet": fleet,
                              "access": access, "actions": actions}
    specs: list[tuple[str, Any, dict[str, Any]]] = [
        (base, StatusPage, kwargs), (base + r"runs/([0-9]{1,18})", RunPage, kwargs),
        (base + r"runs/([0-9]{1,18})/live", LiveOutput, {"record": record, "access": access}),
        (base + "live.js", LiveScript, kwargs),
        (base + f"targets/({TARGET_NAME.pattern})", TargetPage, kwargs)]
    if base != "/":
        specs.append((base.rstrip("/"), tornado.web.RedirectHandler, {"url": base}))
    return specs


def short(sha: str | None) -> str:
    """The first 7 hex digits of a SHA, or an em dash for none."""
    return sha[:7] if sha else "\u2014"


def when(timestamp: float | None, zone: str = " UTC") -> str:
    """``2024-05-01 12:34:56 UTC`` (``zone=""`` leaves out the zone), or an em dash."""
    if timestamp is None:
        return "\u2014"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone


def iso(timestamp: float | None) -> str:
    """An ISO 8601 UTC timestamp for a ``<time datetime>`` attribute."""
    if timestamp is None:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``2 min 05 s``; an em dash while unknown."""
    if seconds is None:
        return "\u2014"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def outcome(name: str) -> tuple[str, str]:
    """(symbol, label) for a run's outcome."""
    return OUTCOMES.get(name, ("?", name))


def shown_command(step: dict[str, Any]) -> str:
    """A step's command as safe to show: redacted, and for ``post_deploy`` only the
    program (its arguments are configuration and may hold credentials)."""
    command = redact(step["command"] or "")
    if step["name"] == "post_deploy":
        program = command.split(" ", 1)[0]
        return f"{program} \u2026 (arguments not shown)" if " " in command else program
    return command


class HTMLHandler(tornado.web.RequestHandler):
    """Renders the package's templates with its own escaping loader; HTML errors."""

    def render_string(self, template_name: str, **kwargs: Any) -> bytes:
        """``template_name`` from the package's own :data:`LOADER` (always escaping)."""
        namespace = self.get_template_namespace()
        namespace.update(kwargs)
        return LOADER.load(template_name).generate(**namespace)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """An HTML error page with the short reason (never a traceback)."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.reason if isinstance(exc, tornado.web.HTTPError) and exc.reason else None
        set_allow(self, status_code)
        self.render("error.html", status=status_code, reason=reason or self._reason,
                    denied=status_code in (401, 403, 429))


class PageHandler(RecordAccess, HTMLHandler):
    """Base of the status pages: the record's access check
    (:class:`~deployhook.web.api.RecordAccess`), templates, safe headers, HTML errors."""

    def initialize(self, targets: Mapping[str, Target], record: Recorder, fleet: Fleet | None,
                   access: Access, actions: Actions | None = None) -> None:
        self.targets, self.record, self.fleet, self.access = targets, record, fleet, access
        self.actions = actions  # None: the pages show no buttons

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def get_template_path(self) -> str:
        return TEMPLATES

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(short=short, when=when, iso=iso, duration=duration, outcome=outcome,
                         redact=redact, shown_command=shown_command,
                         single=only_target(self.targets),
                         live_data=live_data, listing_link=listing_link,
                         home=self.home(), denied=False)
        return namespace

    def home(self) -> str:
        """The relative link back to the status page."""
        return "."


class StatusPage(PageHandler):
    """``GET /``: with one target, its checkout and last runs; with several, every target
    with its HEAD and last run, and the last runs of all of them."""

    async def get(self) -> None:
        single = only_target(self.targets)
        if single is not None:
            await render_target(self, single, None)
            return
        listing = target_listing(self.targets, self.get_argument("q", ""),
                                 self.get_argument("page", "1"))
        runs, total = await self.record.runs_page(RUNS_SHOWN)
        self.render("targets.html", listing=listing, runs=runs, total=total,
                    deploying=any(t.worker.busy for t in self.targets.values()),
                    fleet=await fleet_of(self.fleet))


def target_listing(targets: Mapping[str, Target], query: str, page: str,
                   per_page: int = TARGETS_PER_PAGE) -> dict[str, Any]:
    """Page ``page`` (1-based, as given in ``?page=``) of the targets, in the config's
    order, whose name or repository contains ``query`` (case-insensitive; blank: every
    target), ``per_page`` a page.

    Returns ``{"targets", "query", "page", "pages", "matched", "first", "count"}``:
    the targets shown, the search (stripped), this page's number, how many pages (at
    least 1), how many targets matched, the position of the first shown (1-based) and
    how many targets there are in all.

    Raises:
        tornado.web.HTTPError: 400 for a ``page`` that is no whole number from 1 or a
            search longer than :data:`MAX_QUERY`; 404 for a page past the last.
    """
    number = page_number(page)
    query = query.strip()
    if len(query) > MAX_QUERY:
        raise tornado.web.HTTPError(400, reason=f"a search has at most {MAX_QUERY} characters")
    folded = query.casefold()
    matched = [t for t in targets.values()
               if folded in t.name or folded in (t.repository or "").casefold()]
    pages = max(1, -(-len(matched) // per_page))
    if number > pages:
        raise tornado.web.HTTPError(404, reason=f"no page {number}: {pages} page"
                                    f"{'s' if pages > 1 else ''} of targets")
    first = (number - 1) * per_page
    return {"targets": matched[first:first + per_page], "query": query, "page": number,
            "pages": pages, "matched": len(matched), "first": first + 1,
            "count": len(targets)}


def listing_link(listing: dict[str, Any], page: int) -> str:
    """The relative link (a query string alone, so it works behind a path prefix) to
    page ``page`` of ``listing``'s search."""
    query = urllib.parse.urlencode({"q": listing["query"]}) + "&" if listing["query"] else ""
    return f"?{query}page={page}"


class TargetPage(PageHandler):
    """``GET /targets/<name>``: one target's checkout and last runs."""

    def home(self) -> str:
        return "../"

    async def get(self, name: str) -> None:
        target = self.targets.get(name)
        if target is None:
            raise tornado.web.HTTPError(404, reason=f"no target {name}")
        await render_target(self, target, name)


async def render_target(page: PageHandler, target: Target, only: str | None) -> None:
    """Render ``status.html`` for ``target`` (its runs only when ``only`` names it)."""
    runs, total = await page.record.runs_page(RUNS_SHOWN, 0, only)
    config = target.config
    actions = page.actions
    deploying = target.worker.busy or any(r["outcome"] == "running" for r in runs) or (
        actions is not None and actions.busy(target.name))
    found = (await asyncio.get_running_loop().run_in_executor(None, releases.releases, config)
             if releases.enabled(config) else None)
    page.render("status.html", releases=found, runs=runs, total=total, deploying=deploying,
                repository=target.repository, branch=target.branch, head=target.head,
                checkout=config.repo_path, remote=config.remote, name=target.name,
                repo_url=redact(config.repo_url) if config.repo_url else None,
                last=runs[0] if runs else None, paused=target.paused,
                poll=target.polling, poll_interval=config.poll_interval,
                fleet=await fleet_of(page.fleet, target.name),
                actions=None if actions is None else (
                    f"{target.name}/" if only else f"targets/{target.name}/"),
                can_redeploy=config.tags is not None or target.branch is not None,
                events=await page.record.events(EVENTS_SHOWN, target.name))


async def fleet_of(fleet: Fleet | None, name: str | None = None) -> dict[str, Any] | None:
    """In fleet mode, the fleet's state of target ``name`` (None: every target) for
    ``fleet.html``; None outside fleet mode."""
    if fleet is None:
        return None
    view = await fleet_view(fleet)
    return {name: view[name]} if name is not None and name in view else view


class RunPage(PageHandler):
    """``GET /runs/<id>``: one run, its steps with their output, and its deliveries."""

    def home(self) -> str:
        return "../"

    async def get(self, run_id: str) -> None:
        run = await self.record.find_run(int(run_id))
        if run is None:
            raise tornado.web.HTTPError(404, reason=f"no run {run_id} in the record")
        if run["outcome"] == "running":
            self.set_header("Content-Security-Policy", LIVE_CSP)
        self.render("run.html", run=run)


def live_answer(run: dict[str, Any], after: int) -> dict[str, Any]:
    """What a watching page needs of ``run`` (a redacted :meth:`Store.run` row): the
    live step's name, its output beyond the first ``after`` characters (all of it, with
    ``reset`` true, when the kept output is shorter than that), the output's length,
    and whether the run has ended."""
    live = run.get("live") if run["outcome"] == "running" else None
    output = live["output"] if live else ""
    reset = after > len(output)
    return {"result": "ok", "ended": run["outcome"] != "running",
            "step": live["step"] if live else None, "reset": reset,
            "output": output if reset else output[after:], "length": len(output)}


class LiveOutput(RecordAccess, JSONHandler):
    """``GET /runs/<id>/live?after=N``: the running command's output beyond character
    ``N`` and whether the run ended, as JSON (see :func:`live_answer`); 400 for a bad
    ``after``, 404 for no such run."""

    def initialize(self, record: Recorder, access: Access) -> None:
        self.record, self.access = record, access

    async def get(self, run_id: str) -> None:
        after = whole(self.get_argument("after", "0"), "after", least=0)
        run = await self.record.find_run(int(run_id))
        if run is None:
            raise tornado.web.HTTPError(404, reason=f"no run {run_id} in the record")
        self.set_header("Content-Security-Policy", "default-src 'none'")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.reply(200, live_answer(run, after))


class LiveScript(PageHandler):
    """``GET /live.js``: the running run page's script (same access check as the pages)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(LIVE_JS)


def live_data(run: dict[str, Any]) -> str:
    """The JSON a running run's page hands its script in ``data-live``."""
    live = run.get("live") or {}
    return json.dumps({"url": f"{run['id']}/live", "step": live.get("step"),
                       "after": len(live.get("output", ""))})
