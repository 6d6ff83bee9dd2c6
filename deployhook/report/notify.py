"""Tell people when a deploy breaks, and when it works again: notifications through
Apprise (``notify``), sent in the background, never delaying or changing a deploy or
its answer.

A target with ``notify`` (a list of Apprise URLs: Slack, Matrix, Discord, Telegram,
ntfy, e-mail, Teams, ...) sends one message to each URL after a run whose event is in
``notify_on``: ``failure`` (the run failed), ``recovery`` (it succeeded and the
target's previous finished run had failed; ``success`` covers it too) and
``success``.  The message names the target, the commit (short SHA and subject), who
pushed, the outcome, the reason and, with ``public_url``, the run's page.

Apprise is imported only when a target sets ``notify`` (the ``deployhook[notify]``
extra); a daemon without it, or with a URL Apprise cannot parse, does not start
(:func:`check_urls`).  Apprise's blocking ``notify`` runs in a thread of its own, one
message at a time: each try is bounded by :data:`TIMEOUT` seconds and the message is
tried :data:`TRIES` times with a doubling wait.  One that still fails is logged and
added to the run in the record as a step named ``notify``.  The URLs hold tokens: no
log line (Apprise's and urllib3's included: :func:`hide`), record, answer, page or
``check`` line shows them, only their service (the scheme) and their number.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from deployhook.errors import ConfigError
from deployhook.forges.delivery import ZERO_SHA, Push
from deployhook.git.checkout import RunResult, commit_subject
from deployhook.git.steps import Step
from deployhook.redact import mask, redact, url_secrets
from deployhook.settings import TargetConfig

if TYPE_CHECKING:
    from deployhook.record.recorder import Recorder

log = logging.getLogger("deployhook.notify")
TRIES = 3
BACKOFF = 1.0  # the first wait between tries; doubled after each
TIMEOUT = 30.0  # seconds one try may take
SETTLE = 10.0  # seconds a stopping or re-executing daemon waits for messages under way
INSTALL = "pip install 'deployhook[notify]'"
FAILURE, RECOVERY, SUCCESS = "failure", "recovery", "success"
# Where Apprise and the HTTP library under it log (URLs, tokens in error texts).
QUIET_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.connection",
                 "urllib3.util.retry", "requests")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")


# -- Apprise, its URLs, and keeping them out of every log -------------------------------
def load_apprise() -> ModuleType:
    """The ``apprise`` module.

    Raises:
        ConfigError: it is not installed (naming the command that installs it).
    """
    try:
        import apprise
    except ImportError:
        raise ConfigError(f"notify is set but Apprise is not installed: {INSTALL}") from None
    return apprise


def service(url: str) -> str:
    """The service an Apprise URL names (its scheme), or ``?``: never more of it."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "?"


def parses(apprise: ModuleType, url: str) -> bool:
    """True when Apprise can use ``url`` (its own URL parsing; what it logs about a bad
    URL is masked first: :func:`hide`)."""
    hide([url])
    try:
        return apprise.Apprise.instantiate(url) is not None
    except Exception:  # a plugin refusing its arguments: its text may quote the URL
        return False


def check_urls(targets: Iterable[TargetConfig]) -> None:
    """Every target's ``notify`` URLs can be used: Apprise is installed and parses each.

    Raises:
        ConfigError: Apprise is missing, or a URL does not parse (named by target,
            number and service, never shown).
    """
    targets = [t for t in targets if t.notify]
    if not targets:
        return
    apprise = load_apprise()
    for target in targets:
        for number, url in enumerate(target.notify, 1):
            if not parses(apprise, url):
                raise ConfigError(f"notify URL {number} of target {target.name!r} "
                                  f"({service(url)}) is not one Apprise can use")


class _Mask(logging.Filter):
    """Masks the notification URLs' secrets in each record of the loggers it is on
    (their message, arguments and exception text)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: tuple[str, ...] = ()  # replaced whole: read from Apprise's threads

    def filter(self, record: logging.LogRecord) -> bool:
        hidden = self.hidden
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: show its format only
            message = str(record.msg)
        record.msg, record.args = mask(message, hidden), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = mask(text, hidden), None
        return True


_mask = _Mask()


def hide(urls: Iterable[str]) -> None:
    """Mask these URLs' secrets (:func:`~deployhook.redact.url_secrets`) in whatever
    Apprise and the HTTP library under it log, from now on."""
    new = {value for url in urls for value in url_secrets(url)}
    if not new <= set(_mask.hidden):
        _mask.hidden = tuple(sorted(set(_mask.hidden) | new, key=len, reverse=True))
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _mask not in logger.filters:
            logger.addFilter(_mask)


class _Capture(logging.Handler):
    """Apprise's warnings and errors while one message is sent (why it failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def send(apprise: ModuleType, url: str, title: str, body: str, kind: str) -> str | None:
    """Send one message to one URL with Apprise's blocking ``notify``; None when it was
    accepted, else why not (Apprise's own words, masked).  Blocks: run it in
    :class:`Notifier`'s thread, which sends one message at a time, so that what Apprise
    logs meanwhile is about this message.  Never raises."""
    capture = _Capture()
    logger = logging.getLogger("apprise")
    logger.addHandler(capture)
    try:
        sender = apprise.Apprise()
        if not sender.add(url):
            return "Apprise cannot parse the URL"
        accepted = sender.notify(body=body, title=title, notify_type=kind)
    except Exception as exc:  # its text may quote the URL
        return f"Apprise raised {type(exc).__name__}"
    finally:
        logger.removeHandler(capture)
    if accepted:
        return None
    return mask(" ".join(capture.lines), _mask.hidden)[-300:] or "not accepted"


# -- what is said -------------------------------------------------------------------------
def event_of(ok: bool, before_ok: bool | None) -> str:
    """``failure``, ``recovery`` (ok after a failed run) or ``success``."""
    if not ok:
        return FAILURE
    return RECOVERY if before_ok is False else SUCCESS


def wanted(event: str, notify_on: tuple[str, ...]) -> bool:
    """Whether ``notify_on`` asks for ``event`` (``success`` includes recoveries)."""
    return event in notify_on or (event == RECOVERY and SUCCESS in notify_on)


@dataclass(frozen=True)
class Message:
    """One notification: Apprise's title, body and type (``failure`` / ``success``)."""

    title: str
    body: str
    kind: str


OUTCOMES = {FAILURE: "failed", RECOVERY: "deployed again after a failure",
            SUCCESS: "deployed"}
TITLES = {FAILURE: "{target}: deploy failed", RECOVERY: "{target}: deploys work again",
          SUCCESS: "{target}: deployed"}


def message(target: str, event: str, result: RunResult, pushes: list[Push],
            subject: str | None, link: str | None) -> Message:
    """The notification of ``result`` (a run of ``target``): one ``name: value`` line
    each for the target, the commit (short SHA and subject), who pushed, the outcome,
    the reason (when there is one) and the run's page (``link``, when known)."""
    sha = commit_of(result, pushes)
    pushers = ", ".join(sorted({p.pusher for p in pushes if p.pusher})) or "unknown"
    commit = sha[:12] if sha else "none"
    if subject:
        commit += f" {subject.strip()[:200]}"
    lines = [f"target: {target}", f"commit: {commit}", f"pushed by: {pushers}",
             f"outcome: {OUTCOMES[event]}"]
    if result.reason:
        lines.append(f"reason: {redact(result.reason)[:500]}")
    if link:
        lines.append(f"run: {link}")
    return Message(TITLES[event].format(target=target), "\n".join(lines),
                   "failure" if event == FAILURE else "success")


def commit_of(result: RunResult, pushes: list[Push]) -> str | None:
    """The commit a run is about: the one it deployed, or (a failure) the last pushed."""
    pushed = [p.after for p in pushes if p.after and p.after != ZERO_SHA]
    if result.ok and result.head_after:
        return result.head_after
    return pushed[-1] if pushed else result.head_after


# -- the notifier -------------------------------------------------------------------------
class Notifier:
    """Follows runs: :meth:`started` and :meth:`finished` are to be subscribed to runs
    starting and ending; failed messages are added to the run in ``record``;
    ``public_url()`` gives the status pages' address in force (links; None: none).

    Raises:
        ConfigError: (on creation) Apprise is not installed.
    """

    def __init__(self, record: Recorder, public_url: Callable[[], str | None]) -> None:
        self.apprise = load_apprise()
        self.record, self.public_url = record, public_url
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="deployhook-notify")
        self.pushes: dict[str, list[Push]] = {}
        self.last_ok: dict[str, bool] = {}  # when the record cannot say
        self.tasks: set[asyncio.Future[None]] = set()

    async def settle(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the messages under way (before the process
        exits or re-executes); return how many are still unsent."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        if self.tasks:
            log.warning("%d notifications were not sent before exiting", len(self.tasks))
        return len(self.tasks)

    def close(self) -> None:
        """Let the thread end once the message it sends is done (nothing new starts)."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- the subscribers (on the IOLoop; they only start tasks) --------------------------
    def started(self, target: Any, pushes: list[Push]) -> None:
        self.pushes[target.name] = pushes

    def finished(self, target: Any, result: RunResult) -> None:
        pushes = self.pushes.pop(target.name, [])
        before = self.last_ok.get(target.name)
        self.last_ok[target.name] = result.ok
        if target.config.notify:
            hide(target.config.notify)
            task = asyncio.ensure_future(
                self._notify(target.name, target.config, result, pushes, before))
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            from deployhook.report.reporter import crash_site

            log.error("notifying crashed: %s", crash_site(task.exception()))

    # -- the messages --------------------------------------------------------------------
    async def _notify(self, name: str, config: TargetConfig, result: RunResult,
                      pushes: list[Push], before: bool | None) -> None:
        event = event_of(result.ok, await self._before_ok(name, result, before))
        if not wanted(event, config.notify_on):
            return
        loop = asyncio.get_running_loop()
        sha = commit_of(result, pushes)
        subject = sha and await loop.run_in_executor(self.executor, commit_subject,
                                                     config.repo_path, sha)
        base = (self.public_url() or "").rstrip("/")
        link = f"{base}/runs/{result.run_id}" if base and result.run_id else None
        note = message(name, event, result, pushes, subject, link)
        for number, url in enumerate(config.notify, 1):
            reason = await self._deliver(url, note)
            if reason is not None:
                self._failed(name, result.run_id, url, number, len(config.notify), reason)

    async def _before_ok(self, name: str, result: RunResult, before: bool | None
                         ) -> bool | None:
        """Whether the target's finished run before ``result``'s succeeded (the record's
        word, whoever ran it; else this process's memory ``before``)."""
        if result.run_id is None:
            return before
        runs = await self.record.try_run(lambda s: s.runs(20, 0, name))
        for run in runs or []:
            if run["id"] < result.run_id and run["outcome"] in ("ok", "failed"):
                return bool(run["outcome"] == "ok")
        return before if runs is None else None

    async def _deliver(self, url: str, note: Message) -> str | None:
        """Send ``note`` to ``url``, trying again as documented; None once accepted,
        else the last try's reason."""
        reason = ""
        for attempt in range(TRIES):
            future = asyncio.wrap_future(self.executor.submit(
                send, self.apprise, url, note.title, note.body, note.kind))
            try:
                failure = await asyncio.wait_for(future, TIMEOUT)
            except TimeoutError:
                failure = f"no answer within {TIMEOUT:g}s"
            if failure is None:
                return None
            reason = failure
            if attempt < TRIES - 1:
                wait = BACKOFF * 2 ** attempt
                log.info("notifying through %s failed: %s; trying again in %gs",
                         service(url), reason, wait)
                await asyncio.sleep(wait)
        return f"not delivered after {TRIES} tries: {reason}"

    def _failed(self, target: str, run_id: int | None, url: str, number: int, count: int,
                reason: str) -> None:
        reason = mask(reason, url_secrets(url))
        where = f"{service(url)}:// (notify URL {number} of {count})"
        log.warning("%s: notifying through %s failed: %s", target, where, reason)
        if run_id is not None:
            self.record.add_step(run_id, Step("notify", f"apprise {where}", 1, 0.0, reason))
