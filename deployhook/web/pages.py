"""The status page: HTML views of the deployed checkout and the deployment record.

``GET <page_path>`` shows the repository, branch, deployed HEAD, whether a deploy
runs, and the last runs; ``GET <page_path>runs/<id>`` shows one run with each
step's command and output and the deliveries it covered.  Same access rule as
the JSON API (:class:`~deployhook.web.api.RecordAccess`).  Every database call runs
on the record's thread.  Nothing shown can hold a credential: URLs lose their
userinfo (:func:`~deployhook.git.steps.redact`, applied again on display), and the
secret, the status password, ``post_deploy``'s arguments and the environment are
never shown.  Links are relative, so the pages also work behind a path prefix.
Templates come from the package's own loader, which escapes every ``{{ }}``
whatever ``autoescape`` the application that mounts the pages sets.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.template
import tornado.web

from deployhook.git.steps import redact
from deployhook.web.api import RecordAccess

if TYPE_CHECKING:
    from deployhook.service.hook import DeployHook

TEMPLATES = str(Path(__file__).parent / "templates")
# The package's own loader: its pages escape every {{ }} whatever the host
# application's autoescape, template_path or template_loader settings are.
LOADER = tornado.template.Loader(TEMPLATES, autoescape="xhtml_escape")
RUNS_SHOWN = 20
OUTCOMES = {  # outcome -> (symbol, label); the label is always shown, not colour alone
    "ok": ("\u2713", "ok"),
    "failed": ("\u2717", "failed"),
    "interrupted": ("!", "interrupted"),
    "running": ("\u2026", "running"),
}
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def page_routes(hook: DeployHook, page_path: str = "/") -> list[tuple[str, Any, dict[str, Any]]]:
    """URL specs for the status page at ``page_path`` and its run pages below it."""
    base = page_path if page_path.endswith("/") else page_path + "/"
    kwargs: dict[str, Any] = {"hook": hook}
    specs: list[tuple[str, Any, dict[str, Any]]] = [
        (base, StatusPage, kwargs), (base + r"runs/([0-9]{1,18})", RunPage, kwargs)]
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
        self.render("error.html", status=status_code, reason=reason or self._reason,
                    denied=status_code in (401, 403, 429))


class PageHandler(RecordAccess, HTMLHandler):
    """Base of the status pages: the record's access check
    (:class:`~deployhook.web.api.RecordAccess`), templates, safe headers, HTML errors."""

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook

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
                         redact=redact, shown_command=shown_command, hook=self.hook,
                         home=self.home(), denied=False)
        return namespace

    def home(self) -> str:
        """The relative link back to the status page."""
        return "."


class StatusPage(PageHandler):
    """``GET /``: the deployed checkout and the last runs."""

    async def get(self) -> None:
        runs, total = await self.hook.record.run(
            lambda s: (s.runs(RUNS_SHOWN), s.count_runs()))
        config = self.hook.config
        deploying = self.hook.worker.busy or any(r["outcome"] == "running" for r in runs)
        self.render("status.html", runs=runs, total=total, deploying=deploying,
                    repository=self.hook.repository, branch=self.hook.branch,
                    head=self.hook.head, checkout=config.repo_path, remote=config.remote,
                    repo_url=redact(config.repo_url) if config.repo_url else None,
                    last=runs[0] if runs else None)


class RunPage(PageHandler):
    """``GET /runs/<id>``: one run, its steps with their output, and its deliveries."""

    def home(self) -> str:
        return "../"

    async def get(self, run_id: str) -> None:
        number = int(run_id)
        run = await self.hook.record.run(lambda s: s.run(number))
        if run is None:
            raise tornado.web.HTTPError(404, reason=f"no run {run_id} in the record")
        self.render("run.html", run=run)
