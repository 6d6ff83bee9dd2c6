"""``deployhook send``: sign and POST a realistic delivery of any forge to the daemon.

The payload comes from :mod:`deployhook.forges.payloads` and the headers from
:func:`deployhook.forges.sign_headers`, with the target's secret (its secret file,
or ``$DEPLOYHOOK_SECRET``, as the daemon reads them), so a user can test a setup without
the forge.  The default URL is the target's own, ``/hooks/<target>``.  The secret
is never printed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployhook.cli.common import (
    CommandFailed,
    RemoteHeads,
    add_command,
    base_url,
    choose_target,
    remote_heads,
    short,
    user,
)
from deployhook.errors import ConfigError, DeliveryError
from deployhook.forges import FORGES, sign_headers
from deployhook.git.checkout import Checkout, github_repository, resolve_target
from deployhook.redact import redact
from deployhook.secret import SecretSource
from deployhook.settings import Config, TargetConfig

if TYPE_CHECKING:
    import git

ZERO = "0" * 40
USER_AGENT = "GitHub-Hookshot/deployhook-send"  # GitHub's, marked as sent by this command
MAX_COMMITS = 20


def add_parser(commands: Any) -> None:
    """Add ``send`` to the ``deployhook`` subparsers."""
    sub = add_command(commands, "send", "sign and send a test delivery of a forge to the "
                      "running daemon", send)
    sub.add_argument("--event", choices=("push", "ping"), required=True)
    sub.add_argument("--forge", choices=FORGES,
                     help="the forge whose delivery to send (default: the target's forge "
                          "setting, else github)")
    sub.add_argument("--url", help="where to POST (default: http://<address>:<port>"
                                   "/hooks/<target>)")
    pushed = sub.add_mutually_exclusive_group()
    pushed.add_argument("--branch", help="the pushed branch (default: the deployed branch)")
    pushed.add_argument("--tag", help="push this tag (as the remote has it) instead of a "
                                      "branch, for a target that deploys tags")


def send(config: Config, args: argparse.Namespace) -> int:
    """``deployhook send``: sign and POST a push or ping of ``--forge``; 0 on a 2xx answer,
    1 when nothing could be sent or the answer is not 2xx, 2 for a missing or unknown
    ``--target`` or a ping of a forge that has none."""
    try:
        target = choose_target(config, args.target, required=True)
        assert target is not None  # required=True
        forge = args.forge or target.forge or "github"
        url = args.url or f"{base_url(config)}/hooks/{target.name}"
        secret = _secret(target)
        if args.event == "push":
            payload, event, summary_line = _push(target, forge, args.branch, args.tag)
        else:
            payload, event, summary_line = _ping(target, forge, url), "ping", "ping"
    except DeliveryError as exc:
        print(f"deployhook: {exc.reason}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"deployhook: {exc}", file=sys.stderr)
        return 1
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    import uuid  # this command's modules load when it runs: ``serve`` never imports them

    delivery = str(uuid.uuid4())
    headers = sign_headers(forge, secret, body, event, delivery_id=delivery)
    if forge == "github":
        headers.update(_github_extras(url, payload))
    shown = redact(url)
    if target.forge not in (None, forge) and not args.url:
        print(f"deployhook: note: target {target.name} sets forge = {target.forge!r}, so the "
              f"daemon checks this {forge} delivery as {target.forge}'s and refuses it",
              file=sys.stderr)
    print(f"deployhook: sending {forge} {args.event} delivery {delivery} to {shown}: "
          f"{summary_line}", flush=True)
    return _deliver(config, args, url, body, headers)


def _deliver(config: Config, args: argparse.Namespace, url: str, body: bytes,
             headers: dict[str, str]) -> int:
    """POST the delivery and print the daemon's answer; the exit status."""
    shown = redact(url)
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
              f"('deployhook serve --config {args.config}')? Does --url or address/port "
              "match it?", file=sys.stderr)
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


def _secret(target: TargetConfig) -> bytes:
    """The target's secret, read as the daemon reads it: its secret file (surrounding
    whitespace removed), or ``$DEPLOYHOOK_SECRET``.

    Raises:
        SecretMissing: no file, an unreadable or empty one.
    """
    return SecretSource(target.secret_file, target.secret).get()


def _push(target: TargetConfig, forge: str, branch: str | None, tag: str | None = None
          ) -> tuple[dict[str, Any], str, str]:
    """(payload, event, summary) of a push of the remote's current tip of ``branch``
    (default: the deployed branch), or of the creation of its tag ``tag``, as ``forge``
    sends it.

    Raises:
        CommandFailed: the remote cannot be asked, or has no such branch or tag.
        ConfigError: no checkout and no repo_url, or a detached HEAD and no branch.
    """
    from deployhook.forges import payloads  # with uuid: loaded when ``send`` runs

    checkout = Checkout(target)
    try:
        target_branch, repository, head = resolve_target(checkout, target)
        branch = branch or target_branch
        heads = remote_heads(target, checkout, *([branch] if branch and not tag else []),
                             tags=(tag,) if tag else ())
        ref, before, after = _pushed_ref(heads, branch, tag, head)
        full_name = _full_name(target, checkout, repository)
        commits = _commits(checkout, before, after) if head and not tag else []
    finally:
        checkout.close()
    payload = payloads.push_payload(
        forge, repository=full_name, ref=ref, before=before, after=after, pusher=user(),
        email=_email(target), default_branch=heads.default_branch or branch or "main",
        commits=commits)
    event = payloads.event_name(forge, ref=ref, after=after)
    return payload, event, (f"{ref} {short(before, 12)} -> {short(after, 12)} of "
                            f"{full_name} by {user()}")


def _pushed_ref(heads: RemoteHeads, branch: str | None, tag: str | None, head: str | None
                ) -> tuple[str, str, str]:
    """(ref, before, after) of the push to send: a new tag, or the branch moving from
    the checkout's HEAD to the remote's tip.

    Raises:
        CommandFailed: the remote has no such branch or tag.
    """
    if tag:
        after = heads.tags.get(tag)
        if after is None:
            raise CommandFailed(f"the remote has no tag {tag!r}")
        return f"refs/tags/{tag}", ZERO, after
    branch = branch or heads.default_branch
    if not branch:
        raise CommandFailed("the remote names no default branch; use --branch")
    after = heads.branches.get(branch)
    if after is None:
        raise CommandFailed(f"the remote has no branch {branch!r}")
    return f"refs/heads/{branch}", head or ZERO, after


def _ping(target: TargetConfig, forge: str, url: str) -> dict[str, Any]:
    """The payload of ``forge``'s "test this hook" delivery.

    Raises:
        CommandFailed: (status 2) ``forge`` tests a hook with a push.
    """
    from deployhook.forges import payloads  # with uuid: loaded when ``send`` runs

    checkout = Checkout(target)
    try:
        branch, repository, _ = resolve_target(checkout, target)
        full_name = _full_name(target, checkout, repository)
    finally:
        checkout.close()
    payload = payloads.ping_payload(forge, repository=full_name, url=url,
                                    default_branch=branch or "main",
                                    hook_id=_hook_id(url), sender=user())
    if payload is None:
        raise CommandFailed(f"{forge} has no ping event: its test button sends a push; "
                            "use --event push", status=2)
    return payload


def _github_extras(url: str, payload: dict[str, Any]) -> dict[str, str]:
    """The headers GitHub sends besides the signed ones (and ``send``'s User-Agent)."""
    repository = payload.get("repository") or {}
    return {"User-Agent": USER_AGENT, "Accept": "*/*", "X-GitHub-Hook-ID": str(_hook_id(url)),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(repository.get("id", 0))}


def _hook_id(url: str) -> int:
    """The hook's id, the same for the same URL (what a ping's ``hook_id`` says)."""
    from deployhook.forges import payloads  # with uuid: loaded when ``send`` runs

    return payloads.stable_id(f"hook {redact(url)}")


def _full_name(target: TargetConfig, checkout: Checkout, repository: str | None) -> str:
    """``owner/name``: configured, from a GitHub remote, else ``local/<folder name>``."""
    url = checkout.remote_url() if checkout.exists() else target.repo_url
    return repository or github_repository(url) or f"local/{Path(target.repo_path).name}"


def _commits(checkout: Checkout, before: str, after: str) -> list[dict[str, Any]]:
    """The pushed commits (at most 20, oldest first) when the checkout already has them,
    in :mod:`~deployhook.forges.payloads`' neutral form; else [] (``send`` never
    fetches: that is the daemon's job)."""
    import git  # GitPython only for this command: the daemon never imports it

    try:
        commits = list(checkout.repo.iter_commits(f"{before}..{after}", max_count=MAX_COMMITS))
    except (git.GitCommandError, ValueError):
        return []
    return [_commit_json(commit) for commit in reversed(commits)]


def _commit_json(commit: git.Commit) -> dict[str, Any]:
    """One pushed commit read from git, as :func:`payloads.push_payload` takes it."""
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
        "author": {"name": commit.author.name, "email": commit.author.email},
        "committer": {"name": commit.committer.name, "email": commit.committer.email},
        "added": changes["A"], "removed": changes["D"], "modified": changes["M"],
    }


def _email(target: TargetConfig) -> str:
    """The local git identity's e-mail, else ``user@host``."""
    import git

    try:
        email = git.Git(target.repo_path if Path(target.repo_path).is_dir() else None).config(
            "user.email")
    except git.GitCommandError:
        email = ""
    return str(email).strip() or f"{user()}@{socket.gethostname()}"
