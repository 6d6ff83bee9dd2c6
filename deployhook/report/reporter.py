"""Send each run's state to the forge in the background: never delaying or failing a
deploy or its answer.

A run of a target with ``report`` set posts ``pending`` (GitHub Deployments:
``in_progress``) for each pushed commit when it starts and the outcome when it ends,
one status per target and commit (context ``deployhook/<target>``).  Each call is
retried (:data:`TRIES` tries, at most :data:`MAX_WAIT` seconds of waiting) on a
connection failure, a 5xx, a 429 and a rate-limited 403, honouring ``Retry-After``
and GitHub's ``X-RateLimit-Reset``.  A call that still fails is logged and added to
the run in the record as a step named ``report`` with the forge's reason.  The token
is read from ``report_token_file`` for each run and is never logged or recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from deployhook.forges.delivery import ZERO_SHA, Push
from deployhook.forges.events import valid_sha
from deployhook.git.checkout import RunResult
from deployhook.git.steps import Step
from deployhook.redact import redact
from deployhook.report import bitbucket, gitea, github, gitlab
from deployhook.report.call import FAILURE, PENDING, SUCCESS, Call, Status
from deployhook.secret import parse_secrets
from deployhook.settings import TargetConfig

if TYPE_CHECKING:
    from deployhook.record.recorder import Recorder

log = logging.getLogger("deployhook.report")
TRIES = 5
MAX_WAIT = 180.0  # seconds of waiting between the tries of one call, at most
BACKOFF = 1.0  # the first wait; doubled after each try
REQUEST_TIMEOUT = 20.0
SETTLE = 10.0  # seconds a stopping or re-executing daemon waits for calls under way


class ReportError(Exception):
    """A call the forge refused or never answered; ``status`` is its HTTP status (or 599)."""

    def __init__(self, call: Call, status: int, reason: str) -> None:
        super().__init__(f"{call.what}: {status} {reason}")
        self.call, self.status, self.reason = call, status, reason


@dataclass
class Job:
    """What is reported for one commit of one run."""

    target: str
    config: TargetConfig
    repository: str | None
    sha: str
    token: str | None = field(default=None, repr=False)
    deployment: int | None = None  # GitHub's Deployment id
    run_id: int | None = None
    failures: list[ReportError] = field(default_factory=list)
    started: asyncio.Future[None] | None = None


class Reporter:
    """Follows runs: :meth:`started` and :meth:`finished` are to be subscribed to runs
    starting and ending; failed calls are added to the run in ``record``;
    ``public_url()`` gives the status pages' address in force (links; None: none)."""

    def __init__(self, record: Recorder, public_url: Callable[[], str | None],
                 client: AsyncHTTPClient | None = None) -> None:
        self.record, self.public_url = record, public_url
        self.client = client
        self.running: dict[str, list[Job]] = {}
        self.tasks: set[asyncio.Future[None]] = set()

    async def settle(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the calls under way (before the process
        exits or re-executes); return how many are still unsent."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        if self.tasks:
            log.warning("%d reports to the forge were not sent before exiting",
                        len(self.tasks))
        return len(self.tasks)

    # -- the subscribers (on the IOLoop; they only start tasks) --------------------------
    def started(self, target: Any, pushes: list[Push]) -> None:
        if target.config.report is None:
            return
        shas = dict.fromkeys(p.after for p in pushes if p.after != ZERO_SHA)
        for sha in [sha for sha in shas if not valid_sha(sha)]:  # never in a forge's URL
            log.warning("%s: not reporting %r to the forge: not a commit SHA", target.name,
                        sha[:80])
            del shas[sha]
        jobs = [Job(target.name, target.config, target.repository, sha) for sha in shas]
        self.running[target.name] = jobs
        for job in jobs:
            job.started = self._spawn(self._start(job))

    def finished(self, target: Any, result: RunResult) -> None:
        for job in self.running.pop(target.name, []):
            job.run_id = result.run_id
            ok = result.ok and result.contains.get(job.sha, True)
            self._spawn(self._finish(job, ok, result.reason))

    def _spawn(self, coro: Any) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reporting to the forge crashed: %s", crash_site(task.exception()))

    # -- the calls ---------------------------------------------------------------------
    async def _start(self, job: Job) -> None:
        try:
            job.token = await asyncio.get_running_loop().run_in_executor(
                None, read_token, job.config.report_token_file)
            status = self._status(job, PENDING, f"deploying to {job.target}")
            await self._report(job, status)
        except ReportError as exc:
            self._failed(job, exc)

    async def _finish(self, job: Job, ok: bool, reason: str) -> None:
        if job.started is not None:
            await asyncio.wait([job.started])
        text = f"deployed to {job.target}" if ok else f"deploy to {job.target} failed: {reason}"
        if job.token is not None:  # else: no token, already a failure
            try:
                await self._report(job, self._status(job, SUCCESS if ok else FAILURE, text))
            except ReportError as exc:
                self._failed(job, exc)
        for failure in job.failures:
            self._record(job, failure)
        job.failures.clear()

    def _status(self, job: Job, state: str, description: str) -> Status:
        base = (self.public_url() or "").rstrip("/")
        link = None
        if base:
            link = f"{base}/runs/{job.run_id}" if job.run_id else f"{base}/targets/{job.target}"
        return Status(job.repository or "", job.sha, state, f"deployhook/{job.target}",
                      description, link)

    async def _report(self, job: Job, status: Status) -> None:
        config, token = job.config, job.token or ""
        if not job.repository:
            raise ReportError(Call("POST", config.api_url or config.forge, {}, {}), 0,
                              "the target's repository is unknown: set repository")
        if config.report == "deployment":
            if job.deployment is None:
                call = github.deployment(config.api_url, token, status, job.target)
                answer = await self.send(call, token)
                if not isinstance(answer.get("id"), int):
                    raise ReportError(call, 0, f"no deployment id in GitHub's answer: "
                                      f"{_hide(str(answer), token)[:200]}")
                job.deployment = answer["id"]
            await self.send(github.deployment_status(config.api_url, token, status,
                                                     job.deployment), token)
            return
        await self.send(status_call(config.forge, config.api_url, token, status), token)

    async def send(self, call: Call, token: str) -> dict[str, Any]:
        """Send ``call``, retrying as documented above; return its JSON answer.

        Raises:
            ReportError: refused (4xx other than a rate limit), or still failing after
                the last try; the reason is the forge's, without the token.
        """
        client = self.client or AsyncHTTPClient()
        waited = 0.0
        for attempt in range(TRIES):
            response = await _fetch(client, call)
            if 200 <= response.code < 300:
                return _json(response)
            reason = _hide(forge_reason(response), token)
            wait = retry_after(response, BACKOFF * 2 ** attempt)
            if wait is None or attempt == TRIES - 1 or waited + wait > MAX_WAIT:
                raise ReportError(call, response.code, reason)
            log.info("%s: %d %s; trying again in %.1fs", call.what, response.code, reason, wait)
            waited += wait
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    # -- failures ----------------------------------------------------------------------
    def _failed(self, job: Job, exc: ReportError) -> None:
        log.warning("%s: reporting commit %s to the forge failed: %s", job.target,
                    job.sha[:12], exc)
        if job.run_id is None:
            job.failures.append(exc)  # recorded once the run has its id
        else:
            self._record(job, exc)

    def _record(self, job: Job, exc: ReportError) -> None:
        if job.run_id is None:
            return
        self.record.add_step(job.run_id, Step("report", exc.call.what, exc.status or 1, 0.0,
                                              f"{job.sha[:12]}: {exc.status} {exc.reason}"))


def status_call(forge: str | None, api: str | None, token: str, status: Status) -> Call:
    """The commit status call of ``forge``."""
    if forge == "github":
        return github.status(api, token, status)
    if forge == "gitlab":
        return gitlab.status(api, token, status)
    if forge in ("gitea", "forgejo"):
        return gitea.status(api, token, status, forge)
    if forge == "bitbucket":
        return bitbucket.status(api, token, status)
    if forge == "bitbucket-server":
        return bitbucket.server_status(api, token, status)
    raise ValueError(f"no status API for forge {forge!r}")


async def _fetch(client: AsyncHTTPClient, call: Call) -> HTTPResponse:
    """``call``'s response; a connection failure or timeout is a 599 response (tried
    again like a 5xx) whose error is the connection's reason.

    Raises:
        ReportError: the request could not be sent for another reason (say, a header
            value the HTTP client refuses); the reason names the exception's type only,
            since its text can hold the headers and so the token.
    """
    request = HTTPRequest(call.url, call.method, call.headers, call.encoded(),
                          request_timeout=REQUEST_TIMEOUT, connect_timeout=REQUEST_TIMEOUT,
                          follow_redirects=False)  # the token goes to api_url's host only
    try:
        return await client.fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as exc:  # Tornado 6 raises these even so
        return HTTPResponse(request, 599, error=exc)
    except Exception as exc:  # its text is never shown: it can hold the headers
        raise ReportError(call, 0, f"the request could not be sent "
                          f"({type(exc).__name__})") from None


def crash_site(exc: BaseException) -> str:
    """``exc``'s type and where it was raised (file:line in function), for a log line
    about an unexpected failure: never its text nor a traceback's, which can hold a
    request's headers and so the token."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    code = tb.tb_frame.f_code
    return f"{type(exc).__name__} at {Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}"


def read_token(path: str | None) -> str:
    """The token in ``path``: its one line that is neither blank nor a ``#`` comment
    (surrounding whitespace removed; the same lines as a secret file's,
    :func:`~deployhook.secret.parse_secrets`).

    Raises:
        ReportError: (status 0) unset, unreadable, no token line, more than one, or a
            token holding whitespace, control or non-ASCII characters; the reason names
            the file, never its content.
    """
    nowhere = Call("READ", path or "report_token_file", {}, {})
    if path is None:
        raise ReportError(nowhere, 0, "report_token_file is not set (and no systemd "
                          "credential report-token-<target>)")
    try:
        lines = parse_secrets(Path(path).read_bytes())
    except OSError as exc:
        raise ReportError(nowhere, 0, f"cannot read the token: {exc.strerror}") from None
    if not lines:
        raise ReportError(nowhere, 0, f"{path} holds no token (only blank lines and "
                          "# comments)")
    if len(lines) > 1:
        raise ReportError(nowhere, 0, f"{path} holds more than one token line (one token "
                          "per file; # starts a comment line)")
    token = lines[0]
    if not (token.isascii() and token.decode().isprintable() and len(token.split()) == 1):
        raise ReportError(nowhere, 0, f"{path} holds a token with whitespace, control or "
                          "non-ASCII characters")
    return token.decode()


def retry_after(response: HTTPResponse, backoff: float) -> float | None:
    """Seconds to wait before trying again, or None when trying again cannot help."""
    headers = response.headers if response.headers is not None else {}
    rate_limited = headers.get("X-RateLimit-Remaining") == "0"
    if response.code not in (403, 429) and response.code < 500:
        return None
    if response.code == 403 and not rate_limited and "Retry-After" not in headers:
        return None  # a token without the permission
    if "Retry-After" in headers:
        try:
            return max(0.0, float(headers["Retry-After"]))
        except ValueError:
            return backoff
    if rate_limited and "X-RateLimit-Reset" in headers:
        try:
            return max(0.0, float(headers["X-RateLimit-Reset"]) - time.time()) + 1
        except ValueError:
            return backoff
    return backoff


def forge_reason(response: HTTPResponse) -> str:
    """The forge's own words for a failed call, short (``message``, Bitbucket's
    ``error.message``, or the connection error)."""
    if response.code == 599 or response.body is None:
        return str(response.error or "no answer")[:300]
    try:
        body = json.loads(response.body)
    except ValueError:
        return response.body[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        details = body.get("errors")
        text = str(message or body)
        return (f"{text} {json.dumps(details)}" if details else text)[:300]
    return str(body)[:300]


def _json(response: HTTPResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _hide(text: str, token: str) -> str:
    return redact(text.replace(token, "***") if token else text)
