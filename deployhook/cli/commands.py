"""The record and operator commands: ``history``, ``show``, ``deploy`` and ``send``.

``history`` and ``show`` read the deployment record (``state_db``) directly, so
they work whether or not the daemon runs; they never create or migrate it.
``deploy`` runs one deploy now, recorded like the daemon's (trigger ``cli``);
the checkout's flock keeps it from ever overlapping a deploy of the daemon.
``send`` signs and POSTs a delivery shaped like GitHub's to the running daemon.
None of them ever prints the secret.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import getpass
import http.client
import json
import os
import random
import socket
import sqlite3
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from deployhook.errors import ConfigError, DeliveryError
from deployhook.forges.signature import sign
from deployhook.git.checkout import Checkout, github_repository, resolve_target
from deployhook.git.steps import Step, redact, summary, tail
from deployhook.record.store import Store
from deployhook.secret import SecretSource
from deployhook.service.reload import effective_mode
from deployhook.service.worker import crash_reason
from deployhook.settings import Config

ZERO = "0" * 40
USER_AGENT = "GitHub-Hookshot/deployhook-send"
REASON_WIDTH = 60
ZEN = ("Design for failure.", "Keep it logically awesome.", "Speak like a human.",
       "Non-blocking is better than blocking.", "Anything added dilutes everything else.",
       "Approachable is better than simple.", "Mind your words, they are important.",
       "Practicality beats purity.", "Avoid administrative distraction.")


class CommandFailed(Exception):
    """A command cannot go on; ``reason`` is safe to print (no secret, no credentials)."""

    def __init__(self, reason: str, step: Step | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


# -- argparse wiring ------------------------------------------------------------------------
def add_parsers(commands: Any) -> None:
    """Add ``history``, ``show``, ``deploy`` and ``send`` to the ``deployhook`` subparsers;
    each sets ``run``, called as ``run(config, args)``."""
    def add(name: str, text: str, run: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default="config.py",
                         help="the configuration file (default: ./config.py)")
        sub.set_defaults(run=run)
        return sub

    sub = add("history", "list recent deploy runs from the deployment record", history)
    sub.add_argument("--limit", type=_positive, default=20, metavar="N",
                     help="how many runs, newest first (default: 20)")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = add("show", "one run: its steps, their output, and the deliveries it covered", show)
    sub.add_argument("id", type=int, help="the run's id (see 'deployhook history')")
    sub.add_argument("--json", action="store_true", help="print JSON")
    add("deploy", "deploy now (clone first when repo_path does not exist), recorded", deploy)
    sub = add("send", "sign and send a test delivery to the running daemon", send)
    sub.add_argument("--event", choices=("push", "ping"), required=True)
    sub.add_argument("--url", help="where to POST (default: the configured address, port "
                                   "and webhook_path)")
    sub.add_argument("--branch", help="the pushed branch (default: the deployed branch)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return int(text)


# -- reading the record -----------------------------------------------------------------------
def _open_record(config: Config) -> Store | None:
    """The record for reading, or None when there is none yet (nothing is created).

    Raises:
        CommandFailed: the file exists but is not a deployhook record we can read.
    """
    path = config.state_db
    if not Path(path).is_file():
        return None
    try:
        reader = Store(path, readonly=True)
    except (sqlite3.Error, RuntimeError) as exc:
        raise CommandFailed(f"cannot read the deployment record {path}: {exc}") from None
    if reader.version == 0:  # created, but the daemon has not set it up yet
        reader.close()
        return None
    return reader


def history(config: Config, args: argparse.Namespace) -> int:
    """``deployhook history``: recent runs, newest first, as a table or JSON."""
    try:
        store = _open_record(config)
        if store is None:
            if args.json:
                print(json.dumps({"runs": [], "total": 0}))
            print(f"deployhook: no deployment record at {config.state_db} yet",
                  file=sys.stderr if args.json else sys.stdout)
            return 0
        try:
            runs, total = store.runs(args.limit), store.count_runs()
        finally:
            store.close()
    except (CommandFailed, sqlite3.Error) as exc:
        print(f"deployhook: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"runs": runs, "total": total}, indent=2))
        return 0
    if not runs:
        print(f"no deploy runs in {config.state_db} yet")
        return 0
    header = ["id", "started", "trigger", "outcome", "duration", "head", "pushers", "reason"]
    rows = [[str(run["id"]), _local(run["started"]), run["trigger"], run["outcome"],
             _seconds(run["duration"]),
             f"{_short(run['head_before'], 8)} -> {_short(run['head_after'], 8)}",
             run["pushers"] or "-", _truncate(run["reason"] or "", REASON_WIDTH)]
            for run in runs]
    print(_table(header, rows))
    if total > len(runs):
        print(f"({len(runs)} of {total} runs; --limit N for more)")
    return 0


def show(config: Config, args: argparse.Namespace) -> int:
    """``deployhook show ID``: one run with its steps, their output and its deliveries."""
    try:
        store = _open_record(config)
        if store is None:
            print(f"deployhook: no deployment record at {config.state_db} yet",
                  file=sys.stderr)
            return 1
        try:
            run = store.run(args.id) if 0 < args.id < 2**63 else None
        finally:
            store.close()
    except (CommandFailed, sqlite3.Error) as exc:
        print(f"deployhook: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if run is None:
        print(f"deployhook: no run {args.id} in {config.state_db} "
              "(see 'deployhook history')", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(run, indent=2))
        return 0
    print(f"run {run['id']}: {run['outcome']}  (trigger {run['trigger']}, "
          f"branch {run['branch'] or '-'})")
    finished = _local(run["finished"]) if run["finished"] else "-"
    print(f"  started   {_local(run['started'])}   finished {finished}   "
          f"duration {_seconds(run['duration'])}")
    print(f"  head      {run['head_before'] or 'none'} -> {run['head_after'] or 'none'}")
    print(f"  pushers   {run['pushers'] or '-'}")
    if run["reason"]:
        print(f"  reason    {run['reason']}")
    print(f"steps ({len(run['steps'])}):")
    for step in run["steps"]:
        state = "ok" if step["status"] == 0 else f"FAILED (exit status {step['status']})"
        print(f"  {step['seq'] + 1}. {step['name']}: {state}, {_seconds(step['duration'])}")
        print(f"     $ {step['command']}")
        for line in (step["output"] or "").splitlines():
            print(f"     | {line}".rstrip())
    print(f"deliveries ({len(run['deliveries'])}):")
    for d in run["deliveries"]:
        shas = f" {_short(d['before'], 8)}..{_short(d['after'], 8)}" if d["after"] else ""
        answer = f"{d['status']} {d['result']}" if d["status"] is not None else "pending"
        print(f"  {d['delivery_id']}  {d['event']} {d['ref'] or ''}{shas} by "
              f"{d['pusher'] or '-'} from {d['remote_addr']} at {_local(d['received'])}"
              f" -> {answer}")
    return 0


# -- deploy -------------------------------------------------------------------------------------
def deploy(config: Config, args: argparse.Namespace) -> int:
    """``deployhook deploy``: one deploy now (trigger ``cli``), recorded; 0 when it worked."""
    checkout = Checkout(config)
    try:
        branch, repository, head = resolve_target(checkout, config)
    except ConfigError as exc:
        print(f"deployhook: {exc}", file=sys.stderr)
        return 1
    failure: CommandFailed | None = None
    if branch is None:  # not cloned yet and no branch configured: the remote's default
        try:
            branch = remote_heads(config, checkout).default_branch
        except CommandFailed as exc:
            failure = exc
        if branch is None and failure is None:
            failure = CommandFailed("the remote names no default branch; set branch")
    store = _writable_record(config)
    try:
        run_id = _record(store, lambda s: s.start_run("cli", branch or "", head, [], [_user()]))
        source = repository or redact((checkout.remote_url() if head else config.repo_url)
                                      or config.remote)
        print(f"deployhook: {'deploying' if checkout.exists() else 'cloning'} "
              f"{branch or 'the default branch'} of {source} into {config.repo_path} "
              f"(run {run_id if run_id is not None else 'not recorded'})", flush=True)
        if failure is not None or branch is None:
            reason = failure.reason if failure else "no branch to deploy"
            steps = [failure.step] if failure and failure.step else []
            _finish(store, run_id, False, head, head, reason, steps)
            print(f"deploy FAILED: {reason}")
            return 1
        checkout.progress = sys.stderr.isatty()  # a first clone can take minutes
        _warn_if_not_owner(checkout)
        _say_if_waiting(checkout)
        try:
            result = checkout.deploy(branch, [])
        except KeyboardInterrupt:
            reason = "interrupted by the user (Ctrl-C)"
            _finish(store, run_id, False, head, checkout.head(), reason, [])
            print(f"\ndeploy FAILED: {reason}")
            return 130
        except Exception as exc:  # a bug: the run must not stay 'running'
            _finish(store, run_id, False, head, checkout.head(), crash_reason(exc), [])
            raise
        _finish(store, run_id, result.ok, result.head_before, result.head_after,
                result.reason, result.steps)
    finally:
        checkout.close()
        if store is not None:
            store.close()
    for step in result.steps:
        state = "ok" if step.ok else f"FAILED ({step.status})"
        print(f"  {step.name:<18} {state:<11} {step.duration:6.2f}s  {step.command}")
    moved = f"{_short(result.head_before, 12)} -> {_short(result.head_after, 12)}"
    if not result.ok:
        print(f"deploy FAILED after {result.duration:.2f}s: {result.reason}")
        print(f"HEAD {moved}" if result.head_before != result.head_after
              else f"HEAD stays at {_short(result.head_after, 12)}")
        if run_id is not None:
            print(f"details: deployhook show {run_id} --config {args.config}")
        return 1
    if result.deployed:
        done = "finished the unfinished deploy of" if result.resumed else (
            "deployed" if head else "cloned")
        print(f"{done} {branch}: {moved} in {result.duration:.2f}s")
        note = _daemon_note(config)
        if note:
            print(note)
    else:
        print(f"already up to date: {branch} at {_short(result.head_after, 12)} "
              f"(checked in {result.duration:.2f}s)")
    return 0


def _warn_if_not_owner(checkout: Checkout) -> None:
    """Warn when the checkout belongs to someone else (say, the daemon's user): the files
    git writes now would belong to us, and the daemon might not update them later."""
    try:
        owner = (Path(checkout.path) / ".git").stat().st_uid
    except OSError:
        return
    if owner != os.geteuid():
        print(f"deployhook: warning: {checkout.path} belongs to uid {owner}, not to you "
              f"(uid {os.geteuid()}); run this as its owner (sudo -u <user> deployhook "
              "deploy) so the daemon can keep updating it", file=sys.stderr)


def _say_if_waiting(checkout: Checkout) -> None:
    """Tell the user when the daemon's deploy holds the checkout (``deploy`` then waits)."""
    path = Path(checkout.path) / ".git" / "deployhook.lock"
    if not path.parent.is_dir():
        return
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("deployhook: another deploy (the daemon's) is running; waiting for it",
                  flush=True)
        else:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _daemon_note(config: Config) -> str:
    """What a running daemon makes of a checkout that moved under it ("" when the
    checkout is another site's and ``reload = "auto"`` leaves the daemon alone)."""
    mode = effective_mode(config.reload, config.repo_path)
    if mode == "none":
        if config.reload == "auto":
            return ""  # another site's checkout: the daemon's code is not concerned
        return "note: reload = none: post_deploy (if any) did the restarting"
    health = _health(config)
    if health is None:
        return (f"note: no daemon answers at {_base_url(config)}; "
                "the next 'deployhook serve' runs the new code")
    then = ("re-executes itself" if mode == "autoreload"
            else "exits for its supervisor to restart it")
    return (f"note: the daemon at {_base_url(config)} (pid {health.get('pid', '?')}) was not "
            f"reloaded and still runs the code it started with; it {then} only after its "
            "next deploy that moves HEAD. Restart it to run the new code now, or deploy with "
            "'deployhook send --event push' so the daemon deploys and reloads itself.")


def _health(config: Config) -> dict[str, Any] | None:
    """The daemon's ``/health`` answer, or None when nothing answers quickly."""
    try:
        with urllib.request.urlopen(_base_url(config) + "/health", timeout=2) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _writable_record(config: Config) -> Store | None:
    """The record for a deploy (created like the daemon does); None, with a warning, when
    it cannot be used: the deploy still runs."""
    try:
        return Store(config.state_db)
    except (sqlite3.Error, RuntimeError, OSError) as exc:
        print(f"deployhook: warning: cannot use the deployment record {config.state_db}: "
              f"{exc}; this run is not recorded", file=sys.stderr)
        return None


def _finish(store: Store | None, run_id: int | None, ok: bool, before: str | None,
            after: str | None, reason: str, steps: list[Step]) -> None:
    """Record how run ``run_id`` ended (when it was recorded at all)."""
    if run_id is not None:
        _record(store, lambda s: s.finish_run(run_id, ok, before, after, reason, steps))


def _record(store: Store | None, fn: Any) -> Any:
    """``fn(store)``; a failing record is a warning, never a failed deploy."""
    if store is None:
        return None
    try:
        return fn(store)
    except (sqlite3.Error, RuntimeError) as exc:
        print(f"deployhook: warning: cannot write the deployment record: {exc}",
              file=sys.stderr)
        return None


# -- the remote -------------------------------------------------------------------------------
@dataclass
class RemoteHeads:
    """What ``git ls-remote --symref`` says: branch tips and the default branch."""

    branches: dict[str, str] = field(default_factory=dict)
    default_branch: str | None = None


def remote_heads(config: Config, checkout: Checkout, *branches: str) -> RemoteHeads:
    """Ask the remote (the checkout's ``remote``, or ``repo_url`` before a first clone)
    for its default branch and the tips of ``branches``; blocking, within ``git_timeout``.

    Raises:
        CommandFailed: git failed (the reason is git's, credentials removed).
    """
    where = config.remote if checkout.exists() else (config.repo_url or "")
    args = ["--symref", where, "HEAD", *(f"refs/heads/{b}" for b in branches)]
    start = time.monotonic()
    code, out, err = checkout.ls_remote(*args)
    step = Step("ls-remote", redact("git ls-remote " + " ".join(args)), code,
                time.monotonic() - start, tail(redact(f"{out}\n{err}".strip())))
    if step.status != 0:
        raise CommandFailed(summary(step), step)
    heads = RemoteHeads()
    for line in str(out).splitlines():
        name, _, ref = line.partition("\t")
        if name.startswith("ref: refs/heads/") and ref == "HEAD":
            heads.default_branch = name[len("ref: refs/heads/"):]
        elif ref.startswith("refs/heads/"):
            heads.branches[ref[len("refs/heads/"):]] = name
    return heads


# -- send -----------------------------------------------------------------------------------------
def send(config: Config, args: argparse.Namespace) -> int:
    """``deployhook send``: sign and POST a push or ping like GitHub's; 0 on a 2xx answer."""
    url = args.url or _base_url(config) + config.webhook_path
    try:
        secret = SecretSource(config.secret_file, config.secret).get()
        if args.event == "push":
            payload, summary_line = _push_payload(config, args.branch)
        else:
            payload, summary_line = _ping_payload(config, url), "ping"
    except (DeliveryError, CommandFailed) as exc:
        print(f"deployhook: {exc.reason}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"deployhook: {exc}", file=sys.stderr)
        return 1
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    delivery = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "X-GitHub-Event": args.event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": str(_hook_id(config)),
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": str(payload["repository"]["id"]),
        "X-Hub-Signature": sign(secret, body, "sha1"),
        "X-Hub-Signature-256": sign(secret, body, "sha256"),
    }
    shown = redact(url)
    print(f"deployhook: sending {args.event} delivery {delivery} to {shown}: {summary_line}",
          flush=True)
    timeout = config.response_timeout + 30  # the daemon answers 202 after response_timeout
    try:
        status, reason, raw = post(url, body, headers, timeout)
    except CommandFailed as exc:
        print(f"deployhook: {exc.reason}", file=sys.stderr)
        return 1
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:g}s"
        else:
            why = str(exc) or type(exc).__name__
        print(f"deployhook: cannot reach the daemon at {shown}: {why}. Is it running "
              f"('deployhook serve --config {args.config}')? Does --url or address/port/"
              "webhook_path match it?", file=sys.stderr)
        return 1
    print(f"HTTP {status} {reason}")
    try:
        print(json.dumps(json.loads(raw), indent=2))
    except ValueError:
        print(raw.decode(errors="replace")[:2000])
    return 0 if 200 <= status < 300 else 1


def post(url: str, body: bytes, headers: dict[str, str], timeout: float
         ) -> tuple[int, str, bytes]:
    """POST ``body`` with ``headers`` spelt exactly as given (urllib would rewrite
    ``X-GitHub-Event`` as ``X-github-event``); return (status, reason, body).

    Raises:
        CommandFailed: the URL is not http(s).
        OSError, http.client.HTTPException: no connection or no valid answer.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise CommandFailed(f"--url must be an http:// or https:// URL, got {redact(url)!r}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, port, timeout=timeout)
    if parts.username is not None:  # a proxy with basic auth in front of the daemon
        userinfo = f"{urllib.parse.unquote(parts.username)}:" \
                   f"{urllib.parse.unquote(parts.password or '')}"
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(
            userinfo.encode()).decode()}
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.reason, response.read()
    finally:
        connection.close()


def _push_payload(config: Config, branch: str | None) -> tuple[dict[str, Any], str]:
    """A push of the remote's current tip of ``branch``, as GitHub would send it."""
    checkout = Checkout(config)
    try:
        target_branch, repository, head = resolve_target(checkout, config)
        branch = branch or target_branch
        heads = remote_heads(config, checkout, *([branch] if branch else []))
        branch = branch or heads.default_branch
        if not branch:
            raise CommandFailed("the remote names no default branch; use --branch")
        after = heads.branches.get(branch)
        if after is None:
            raise CommandFailed(f"the remote has no branch {branch!r}")
        before = head or ZERO
        full_name = _full_name(config, checkout, repository)
        repo = _repository(full_name, heads.default_branch or branch)
        commits = _commits(checkout, before, after, repo["html_url"]) if head else []
    finally:
        checkout.close()
    user, email = _user(), _email(config)
    html = repo["html_url"]
    payload = {
        "ref": f"refs/heads/{branch}", "before": before, "after": after,
        "created": before == ZERO, "deleted": False, "forced": False, "base_ref": None,
        "compare": (f"{html}/commit/{after[:12]}" if before == ZERO
                    else f"{html}/compare/{before[:12]}...{after[:12]}"),
        "commits": commits, "head_commit": commits[-1] if commits else None,
        "repository": repo,
        "pusher": {"name": user, "email": email},
        "sender": _user_json(user),
    }
    return payload, f"refs/heads/{branch} {_short(before, 12)} -> {_short(after, 12)} of " \
                    f"{full_name} by {user}"


def _ping_payload(config: Config, url: str) -> dict[str, Any]:
    """A ping, as GitHub sends when a hook is created."""
    checkout = Checkout(config)
    try:
        branch, repository, _ = resolve_target(checkout, config)
        full_name = _full_name(config, checkout, repository)
    finally:
        checkout.close()
    hook_id = _hook_id(config)
    api = f"https://api.github.com/repos/{full_name}/hooks/{hook_id}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "zen": random.choice(ZEN), "hook_id": hook_id,
        "hook": {
            "type": "Repository", "id": hook_id, "name": "web", "active": True,
            "events": ["push"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": redact(url)},
            "updated_at": now, "created_at": now, "url": api, "test_url": api + "/test",
            "ping_url": api + "/pings", "deliveries_url": api + "/deliveries",
            "last_response": {"code": None, "status": "unused", "message": None},
        },
        "repository": _repository(full_name, branch or "main"),
        "sender": _user_json(_user()),
    }


def _full_name(config: Config, checkout: Checkout, repository: str | None) -> str:
    """``owner/name``: configured, from a GitHub remote, else ``local/<folder name>``."""
    url = checkout.remote_url() if checkout.exists() else config.repo_url
    return repository or github_repository(url) or f"local/{Path(config.repo_path).name}"


def _repository(full_name: str, default_branch: str) -> dict[str, Any]:
    """The ``repository`` object of a delivery (the fields deployhook and most tools read)."""
    owner, _, name = full_name.partition("/")
    html = f"https://github.com/{full_name}"
    return {
        "id": _stable_id(full_name), "node_id": "", "name": name, "full_name": full_name,
        "private": True, "owner": {**_user_json(owner), "name": owner},
        "html_url": html, "description": None, "fork": False,
        "url": f"https://api.github.com/repos/{full_name}",
        "git_url": f"git://github.com/{full_name}.git",
        "ssh_url": f"git@github.com:{full_name}.git",
        "clone_url": f"{html}.git", "default_branch": default_branch,
        "master_branch": default_branch, "pushed_at": int(time.time()),
    }


def _user_json(login: str) -> dict[str, Any]:
    return {"login": login, "id": _stable_id(login), "node_id": "", "avatar_url": "",
            "gravatar_id": "", "url": f"https://api.github.com/users/{login}",
            "html_url": f"https://github.com/{login}", "type": "User", "site_admin": False}


def _commits(checkout: Checkout, before: str, after: str, html: str) -> list[dict[str, Any]]:
    """The pushed commits (at most 20, oldest first) when the checkout already has them;
    else [] (``send`` never fetches: that is the daemon's job)."""
    repo = checkout.repo
    try:
        commits = list(repo.iter_commits(f"{before}..{after}", max_count=20))
    except (git.GitCommandError, ValueError):
        return []
    return [_commit_json(commit, html) for commit in reversed(commits)]


def _commit_json(commit: git.Commit, html: str) -> dict[str, Any]:
    """One entry of a push's ``commits``."""
    changes: dict[str, list[str]] = {"A": [], "D": [], "M": []}
    if commit.parents:
        for diff in commit.parents[0].diff(commit):
            kind = diff.change_type if diff.change_type in ("A", "D") else "M"
            changes[kind].append(str(diff.b_path if kind != "D" else diff.a_path))
    else:
        changes["A"] = [str(item.path) for item in commit.tree.traverse()
                        if getattr(item, "type", "") == "blob"]
    return {
        "id": commit.hexsha, "tree_id": commit.tree.hexsha, "distinct": True,
        "message": str(commit.message).strip(),
        "timestamp": commit.committed_datetime.isoformat(),
        "url": f"{html}/commit/{commit.hexsha}",
        "author": {"name": commit.author.name, "email": commit.author.email},
        "committer": {"name": commit.committer.name, "email": commit.committer.email},
        "added": changes["A"], "removed": changes["D"], "modified": changes["M"],
    }


# -- small helpers --------------------------------------------------------------------------------
def _base_url(config: Config) -> str:
    """``http://host:port`` of the daemon from its ``address`` and ``port``."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.address,
                                                                      config.address)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.port}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _email(config: Config) -> str:
    """The local git identity's e-mail, else ``user@host``."""
    try:
        email = git.Git(config.repo_path if Path(config.repo_path).is_dir() else None).config(
            "user.email")
    except git.GitCommandError:
        email = ""
    return str(email).strip() or f"{_user()}@{socket.gethostname()}"


def _hook_id(config: Config) -> int:
    return _stable_id(f"hook {config.webhook_path} {config.port}")


def _stable_id(text: str) -> int:
    """A positive id that stays the same for the same text (across runs)."""
    return int.from_bytes(uuid.uuid5(uuid.NAMESPACE_URL, text).bytes[:4], "big") % 10**9 + 1


def _local(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _short(sha: str | None, length: int) -> str:
    return sha[:length] if sha else "none"


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in [header, *rows])
