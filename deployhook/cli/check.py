"""``deployhook check``: is this setup right, before GitHub ever calls?

Each check prints ``OK``, ``WARN`` or ``FAIL`` with what it saw and, on a
failure, how to fix it.  The exit status is 0 only when nothing failed.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shlex
import shutil
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from deployhook.errors import ConfigError, DeliveryError
from deployhook.fleet.credentials import masked
from deployhook.git.checkout import Checkout, git_environment, resolve_target, run_bounded
from deployhook.git.ssh import SshRemote, ssh_failure, ssh_remote
from deployhook.record.store import Store
from deployhook.redact import redact
from deployhook.report.reporter import ReportError, read_token
from deployhook.secret import MIN_LENGTH, SecretSource, numbered_secrets
from deployhook.settings import Config, TargetConfig
from deployhook.text import printable


@dataclass(frozen=True)
class Result:
    level: str  # OK, WARN or FAIL
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The printed form; credentials in URLs are removed (a ``repo_url`` with a token)."""
        text = f"{self.level:<4} {self.name:<10} {self.detail}"
        return redact(text + (f"\n     {'':<10} fix: {self.fix}" if self.fix else ""))


class TerminalProgress:
    """``checked 120/1000 targets`` on ``stream`` (a terminal), rewritten in place at most
    every ``every`` seconds and once at the end, then a new line."""

    def __init__(self, stream: TextIO, every: float = 0.2) -> None:
        self.stream, self.every, self.shown = stream, every, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.shown < self.every:
            return
        self.shown = now
        self.stream.write(f"\rchecked {done}/{total} targets" + ("\n" if done == total else ""))
        self.stream.flush()


@dataclass(frozen=True)
class Heading(Result):
    """The line that starts one target's checks (with several targets)."""

    def line(self) -> str:
        return redact(f"== target {self.name}: {self.detail}")


Progress = Callable[[int, int], None]


def run_checks(config: Config, config_path: str,
               progress: Progress | None = None) -> list[Result]:
    """Run every check for ``config`` (each target's secret, checkout, remote and
    repo_path, then the record's folder and the address); blocking (git and a bind
    attempt).  ``progress(done, targets)`` is called after each target's checks."""
    return list(_checks(config, config_path, progress))


def _checks(config: Config, config_path: str,
            progress: Progress | None = None) -> Iterator[Result]:
    yield Result("OK", "config", f"{os.path.abspath(config_path)} is valid")
    uses = _recorded_secret_uses(config.state_db)
    daemon = daemon_status(config)
    for done, target in enumerate(config.targets, 1):
        if len(config.targets) > 1:
            yield Heading("", target.name, target.repo_path)
        yield from _target_checks(target)
        yield from _secret_uses(target, uses.get(target.name, {}))
        yield _polling(target, daemon, max(uses.get(target.name, {}).values(), default=None))
        if progress is not None:
            progress(done, len(config.targets))
    yield _writable_path("state_db", os.path.dirname(config.state_db) or ".")
    if config.redis_url is not None:
        yield _redis(config)
    yield _bind(config)


def _redis(config: Config) -> Result:
    """Fleet mode: Redis answers PING with the configured password (URL masked)."""
    from deployhook.cli.common import CommandFailed
    from deployhook.cli.fleet import ping

    where = masked(config.redis_url)
    try:
        ping(config)
    except CommandFailed as exc:
        return Result("FAIL", "redis", exc.reason, "start Redis (systemctl start "
                      "redis-server) and check redis_url and redis_password_file "
                      "(docs/fleet.rst)")
    return Result("OK", "redis", f"{where} answers; this server is node {config.node}")


def _target_checks(target: TargetConfig) -> Iterator[Result]:
    """The checks of one target: its secret, report token, checkout, remote and
    repo_path."""
    yield from _secret(target)
    yield from report_token(target)
    yield from notify_urls(target)
    yield from _checkout(target)
    yield _writable_path("repo_path", target.repo_path)


def _secret(config: TargetConfig) -> Iterator[Result]:
    source = SecretSource(config.secret_file, config.secret)
    try:
        source.get()
    except DeliveryError as exc:
        yield Result("FAIL", "secret", exc.reason,
                     "run 'deployhook init' or write the webhook's secret into that file")
        return
    if config.secret is not None:
        yield Result("OK", "secret", "from $DEPLOYHOOK_SECRET")
        yield from _short_secrets("$DEPLOYHOOK_SECRET", ((0, config.secret),))
        return
    yield Result("OK", "secret", f"{config.secret_file} is readable and not empty")
    mode = os.stat(config.secret_file).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        yield Result("WARN", "secret", f"{config.secret_file} is readable by others "
                     f"(mode {stat.S_IMODE(mode):04o})", f"chmod 600 {config.secret_file}")
    try:
        with open(config.secret_file, "rb") as file:
            secrets = numbered_secrets(file.read())
    except OSError:
        return  # changed under us: the deliveries will say
    yield from _short_secrets(config.secret_file, secrets)


def _short_secrets(where: str, secrets: tuple[tuple[int, bytes], ...]) -> Iterator[Result]:
    """A warning for each secret shorter than MIN_LENGTH bytes, naming ``where`` and its
    line (0: no line), never the value."""
    for number, value in secrets:
        if len(value) < MIN_LENGTH:
            line = f" line {number}" if number else ""
            yield Result("WARN", "secret", f"{where}{line} holds a secret shorter than "
                         f"{MIN_LENGTH} bytes (easy to guess)",
                         "replace it with a random one (python3 -c 'import secrets; "
                         "print(secrets.token_hex(32))'), on the forge too")


def _secret_uses(target: TargetConfig, seen: dict[int, float]) -> Iterator[Result]:
    """When each of ``target``'s secrets (by position) last verified a delivery, from the
    record (``seen``: position -> when): after a rotation, the old secret's line can go
    once it is no longer used."""
    try:
        count = len(SecretSource(target.secret_file, target.secret).all())
    except DeliveryError:
        return  # reported by the secret check already
    for position in range(1, count + 1):
        when = seen.get(position)
        used = (f"last verified a delivery {_ago(when)}" if when is not None
                else "has verified no delivery the record keeps")
        yield Result("OK", "secret", f"secret {position} of {count} {used}")


def _recorded_secret_uses(path: str) -> dict[str, dict[int, float]]:
    """``Store.secret_uses`` of the record at ``path``; empty when there is none (yet) or
    it cannot be read (an older record has no positions)."""
    if not os.path.isfile(path):
        return {}
    try:
        store = Store(path, readonly=True)
    except (sqlite3.Error, RuntimeError):
        return {}
    try:
        return store.secret_uses()
    except sqlite3.Error:
        return {}
    finally:
        store.close()


@dataclass(frozen=True)
class DaemonStatus:
    """What the daemon at ``url`` said on ``/health``: ``targets`` (name -> status) when
    it showed its details, None when it answered without them (no or a wrong status
    password) or did not answer (``running`` False)."""

    url: str
    running: bool
    targets: dict[str, Any] | None = None


def daemon_status(config: Config) -> DaemonStatus:
    """Ask the daemon of ``config`` (at its ``address`` and ``port``, on this machine) for
    ``/health``, logging in as ``status_user`` with ``status_password_file``'s password
    when this user can read it; within 5 s.  Never raises."""
    import base64
    import urllib.error
    import urllib.request  # only for this command: ``serve`` imports no HTTP client

    from deployhook.cli.common import base_url
    from deployhook.web.access import read_password_file

    url = base_url(config)
    headers = {}
    try:
        password = read_password_file(config.status_password_file or "")
    except OSError:
        password = b""
    if password:
        login = base64.b64encode(config.status_user.encode() + b":" + password).decode()
        headers["Authorization"] = f"Basic {login}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # this machine
    try:
        with opener.open(urllib.request.Request(url + "/health", headers=headers),
                         timeout=5) as answer:
            body = json.loads(answer.read(1 << 20))
    except urllib.error.HTTPError as exc:  # a 401 from a throttle, another program
        return DaemonStatus(url, exc.code in (401, 403, 429))
    except (OSError, ValueError):
        return DaemonStatus(url, False)
    if not isinstance(body, dict) or "status" not in body:
        return DaemonStatus(url, False)
    targets = body.get("targets")
    return DaemonStatus(url, True, targets if isinstance(targets, dict) else None)


def _polling(target: TargetConfig, daemon: DaemonStatus, recorded: float | None) -> Result:
    """When ``target`` last got a verified delivery (the daemon's, else ``recorded``: the
    record's) and, from the running daemon, when it last polled its remote and a failing
    poll's error (WARN).  A daemon that is not running or shows no details is said so."""
    status = (daemon.targets or {}).get(target.name)
    poll = status.get("poll") if isinstance(status, dict) else None
    poll = poll if isinstance(poll, dict) else {}
    delivered = poll.get("last_delivery") or recorded
    delivery = (f"last delivery {_ago(delivered)}" if delivered is not None
                else "no delivery yet")
    interval = poll.get("interval", target.poll_interval)
    if not interval:
        return Result("OK", "polling", f"{delivery}; polling is off (poll_interval = 0)")
    every = f"polls every {interval:g} s"
    if not daemon.running:
        return Result("OK", "polling", f"{delivery}; {every}, but no daemon answers at "
                      f"{daemon.url}: nothing polls until 'deployhook serve' runs")
    if daemon.targets is None:
        return Result("OK", "polling", f"{delivery}; {every}; the daemon at {daemon.url} "
                      "shows its last poll only to a login with the status password "
                      "(status_password_file: run check as the service's user)")
    if not poll:
        return Result("OK", "polling", f"{delivery}; the daemon at {daemon.url} has no "
                      f"target {target.name!r} (a target added since it started)")
    if poll.get("error"):
        since = poll.get("failing_since")
        return Result("WARN", "polling", f"{delivery}; {every}; the last poll failed "
                      f"({poll.get('failures') or 1} in a row, the first "
                      f"{_ago(since) if since else 'at start'}): "
                      f"{printable(' '.join(str(poll['error']).split()))}",
                      "check the remote's URL and the server's credentials (git never "
                      "prompts)")
    polled = poll.get("last_poll")
    return Result("OK", "polling", f"{delivery}; {every}; " + (
        f"last poll {_ago(polled)}" if polled is not None else "no poll yet"))


def _ago(when: float) -> str:
    """``when`` (Unix seconds) as UTC time and how long ago."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    seconds = max(0, int(time.time() - when))
    if seconds < 120:
        return f"at {stamp} ({seconds}s ago)"
    if seconds < 7200:
        return f"at {stamp} ({seconds // 60} min ago)"
    return f"at {stamp} ({seconds // 3600} h ago)" if seconds < 172800 else (
        f"at {stamp} ({seconds // 86400} days ago)")


def report_token(target: TargetConfig) -> Iterator[Result]:
    """With ``report`` set: the token file is readable, not empty and private (never
    showing the token)."""
    if target.report is None:
        return
    try:
        read_token(target.report_token_file)
    except ReportError as exc:
        yield Result("FAIL", "report", exc.reason, "write a forge API token into "
                     "report_token_file (docs/reporting.rst)")
        return
    path = str(target.report_token_file)
    yield Result("OK", "report", f"{target.report} to {target.forge}, token in {path}")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        yield Result("WARN", "report", f"{path} is readable by others "
                     f"(mode {stat.S_IMODE(mode):04o})", f"chmod 600 {path}")


def notify_urls(target: TargetConfig) -> Iterator[Result]:
    """With ``notify`` set: Apprise is installed and parses each URL; each line names the
    URL by its number and service (its scheme), never showing it (it holds tokens)."""
    if not target.notify:
        return
    from deployhook.report.notify import INSTALL, load_apprise, parses, service

    try:
        apprise = load_apprise()
    except ConfigError as exc:
        yield Result("FAIL", "notify", str(exc), INSTALL)
        return
    count = len(target.notify)
    for number, url in enumerate(target.notify, 1):
        if parses(apprise, url):
            yield Result("OK", "notify", f"URL {number} of {count}: {service(url)}, parses")
        else:
            yield Result("FAIL", "notify", f"URL {number} of {count}: {service(url)}: "
                         "Apprise cannot parse it",
                         "fix the URL (docs/reporting.rst, Notifications)")


def _checkout(config: TargetConfig) -> Iterator[Result]:
    checkout = Checkout(config)
    try:
        branch, repository, head = resolve_target(checkout, config)
    except ConfigError as exc:
        yield Result("FAIL", "checkout", str(exc), "git clone the repository there, "
                     "set repo_url, or fix repo_path")
        return
    if head is None:
        yield Result("OK", "checkout", f"{config.repo_path} will be cloned from {config.repo_url}")
        yield from _ssh(config, config.repo_url)
        yield _remote(checkout, config, branch, config.repo_url or "")
        return
    try:
        yield from _checked_out(checkout, config, branch, repository, head)
    finally:
        checkout.close()


def _checked_out(checkout: Checkout, config: TargetConfig, branch: str | None,
                 repository: str | None, head: str) -> Iterator[Result]:
    remote = _remote(checkout, config, branch, config.remote)
    current = checkout.current_branch()
    if config.tags is not None:
        yield Result("OK", "checkout", f"{config.repo_path} at {head[:12]} "
                     f"({'detached' if current is None else 'on ' + current}); deploys the "
                     f"newest tag matching {config.tags!r}")
    elif current != branch:
        yield Result("FAIL", "branch", f"{config.repo_path} is on {current}, config says {branch}",
                     _branch_fix(checkout, config, branch, remote.level == "OK"))
    else:
        yield Result("OK", "checkout", f"{config.repo_path} on {branch} at {head[:12]}")
    yield Result("OK" if repository else "WARN", "repository", repository or
                 "not set and the remote is not on GitHub: any repository is accepted",
                 "" if repository else "set repository = 'owner/name'")
    yield from _ssh(config, checkout.remote_url())
    yield remote


def _branch_fix(checkout: Checkout, config: TargetConfig, branch: str | None,
                on_remote: bool) -> str:
    """A fix for a checkout on another branch than ``branch`` that works as given:
    ``git checkout`` of a branch that exists here, or is fetched first from the remote;
    otherwise the branches the remote has."""
    where = f"git -C {config.repo_path}"
    if branch and (checkout.ref(f"refs/heads/{branch}")
                   or checkout.ref(f"refs/remotes/{config.remote}/{branch}")):
        return f"{where} checkout {branch}"
    if on_remote:
        return f"{where} fetch {config.remote} {branch}:{branch} && {where} checkout {branch}"
    return _set_branch(checkout, config.remote)


def _set_branch(checkout: Checkout, remote: str) -> str:
    """'set branch to one the remote has', naming them when the remote answers."""
    status, out, _ = checkout.ls_remote("--heads", remote)
    names = [line.split("refs/heads/", 1)[1] for line in out.splitlines()
             if status == 0 and "refs/heads/" in line]
    if not names:
        return "set branch in the config to a branch the remote has"
    return f"set branch in the config to one the remote has: {', '.join(sorted(names)[:10])}"


def _remote(checkout: Checkout, config: TargetConfig, branch: str | None, remote: str) -> Result:
    status, err = checkout.probe_remote(remote, branch)
    if status == 0:
        return Result("OK", "remote", f"{remote} is reachable and has {branch or 'a HEAD'}")
    if status == 2:
        fix = _set_branch(checkout, remote)
        if checkout.exists() and branch and checkout.ref(f"refs/heads/{branch}"):
            fix = f"git -C {config.repo_path} push {remote} {branch}, or {fix}"
        return Result("FAIL", "remote", f"{remote} has no branch {branch}", fix)
    lines = err.strip().splitlines()
    reason = ssh_failure(err) or (lines[-1:] or [f"exit status {status}"])[0]  # not git's coda
    return Result("FAIL", "remote", f"{remote}: {reason}",
                  "check the remote's URL and the server's credentials (git never prompts)")


def _ssh(config: TargetConfig, url: str | None) -> Iterator[Result]:
    """For an ssh remote: the ``ssh_key`` file is usable, and the host key is known
    (ssh in batch mode refuses an unknown host).  Never raises."""
    remote = ssh_remote(url)
    if remote is None:
        if config.ssh_key:
            yield Result("WARN", "ssh", f"ssh_key is set but {url or 'the remote'} is not an "
                         "ssh remote: the key is not used",
                         "use the repository's ssh URL (git@host:owner/name.git), or unset "
                         "ssh_key")
        return
    if config.ssh_key:
        yield _ssh_key(config.ssh_key)
    yield _host_key(config, remote)


def _ssh_key(key: str) -> Result:
    """FAIL for a deploy key that is missing, unreadable, or (owned by this user)
    open to others, which ssh refuses to use; WARN when open to others otherwise."""
    user = _user_name()
    try:
        info = os.stat(key)
    except OSError as exc:
        return Result("FAIL", "ssh_key", f"{key}: {exc.strerror}",
                      f"write the deploy key's private key there (ssh-keygen -t ed25519 -N '' "
                      f"-f {shlex.quote(key)}, then add {key}.pub to the repository's deploy "
                      "keys)")
    if not stat.S_ISREG(info.st_mode):
        return Result("FAIL", "ssh_key", f"{key} is not a file", "set ssh_key to the private "
                      "key's file")
    if not os.access(key, os.R_OK):
        return Result("FAIL", "ssh_key", f"{key} cannot be read by {user}",
                      f"chown {user} {shlex.quote(key)} && chmod 600 {shlex.quote(key)}")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        refused = info.st_uid == os.geteuid()
        return Result("FAIL" if refused else "WARN", "ssh_key",
                      f"{key} is open to others (mode {mode:04o})"
                      + (": ssh refuses to use it" if refused else ""),
                      f"chmod 600 {shlex.quote(key)}")
    return Result("OK", "ssh_key", f"{key} is readable by {user} only")


def _host_key(config: TargetConfig, remote: SshRemote) -> Result:
    """Whether the remote's host key is in a known_hosts file ssh reads, as ssh's own
    configuration (``ssh -G``, with the options of the ``GIT_SSH_COMMAND`` git uses)
    says: which host name, port, key alias and files."""
    if not shutil.which("ssh-keygen"):
        return Result("WARN", "host key", "ssh-keygen is not installed: cannot check that "
                      f"the host key of {remote.host} is known", "install openssh-client")
    settings = _ssh_settings(config, remote)
    if not settings:
        return Result("WARN", "host key", f"cannot read ssh's configuration for {remote.host} "
                      "(ssh -G failed)", "check that ssh is installed and runs")
    host = settings.get("hostname", remote.host)
    port = int(settings.get("port", "22") or 22)
    name = SshRemote(None, settings.get("hostkeyalias") or host, None).known_hosts_name(port)
    files = (settings.get("userknownhostsfile", "").split()
             + settings.get("globalknownhostsfile", "").split())
    for path in files:
        if os.path.isfile(path) and run_bounded(["ssh-keygen", "-F", name, "-f", path], "/",
                                                dict(os.environ), 10.0)[0] == 0:
            return Result("OK", "host key", f"the host key of {name} is known ({path})")
    mine = files[0] if files else "~/.ssh/known_hosts"
    scan = f"ssh-keyscan {f'-p {port} ' if port != 22 else ''}{shlex.quote(host)}"
    fix = (f"{scan} >> {shlex.quote(mine)}  (first compare the fingerprints that "
           f"'{scan} | ssh-keygen -lf -' prints with the ones the server publishes)")
    checking = settings.get("stricthostkeychecking", "ask")
    if checking in ("no", "off", "false"):
        return Result("WARN", "host key", f"the host key of {name} is not known and ssh is "
                      "told not to check it (StrictHostKeyChecking no)", fix)
    if checking == "accept-new":
        return Result("WARN", "host key", f"the host key of {name} is not known: the first "
                      "connection will trust whatever key answers (accept-new)", fix)
    return Result("FAIL", "host key", f"the host key of {name} is not known (in "
                  f"{', '.join(files) or 'no known_hosts file'}): ssh refuses to connect", fix)


def _ssh_settings(config: TargetConfig, remote: SshRemote) -> dict[str, str]:
    """``ssh -G``'s effective settings for ``remote`` (lower-case key -> value), from
    the ssh command git runs (an operator's ``GIT_SSH_COMMAND`` included), else plain
    ``ssh``; empty when neither answers."""
    ssh = git_environment(config.git_timeout, config.ssh_key)["GIT_SSH_COMMAND"]
    where = ["-p", str(remote.port)] if remote.port else []
    target = " ".join(shlex.quote(arg) for arg in ["-G", *where, remote.destination])
    for command in (["sh", "-c", f"{ssh} {target}"], ["ssh", "-G", *where, remote.destination]):
        try:
            status, out, _ = run_bounded(command, "/", dict(os.environ), 10.0)
        except OSError:
            continue
        if status == 0:
            pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
            return {key.lower(): value for key, value in pairs}
    return {}


def _writable_path(name: str, path: str) -> Result:
    """FAIL for a repo_path or state_db folder this process cannot write.

    Uses access(2) as the user running ``check``, inside whatever mount namespace
    it runs in: run as the service's user with the unit's ``ProtectSystem=`` and
    ``ReadWritePaths=`` (docs/systemd.rst), a folder the unit
    leaves read-only answers EROFS even for root.  Never raises.
    """
    user = _user_name()
    problem = _unwritable(path)
    if problem:
        return Result("FAIL", "writable", f"{name} {path}: {problem} (as user {user})",
                      f"chown -R {user}: {path} (create it first if missing), and name it "
                      "in the unit's ReadWritePaths=")
    return Result("OK", "writable", f"{name} {path} is writable by {user}")


def _unwritable(path: str) -> str:
    """Why ``path`` (or, while missing, the folder it would be created in) is not
    writable by this process; "" when it is."""
    target = os.path.abspath(path)
    while not os.path.exists(target):
        parent = os.path.dirname(target)
        if parent == target:
            break
        target = parent
    if not os.path.isdir(target):
        return f"{target} is not a folder"
    if os.access(target, os.W_OK | os.X_OK):
        return ""
    try:
        readonly = os.statvfs(target).f_flag & os.ST_RDONLY
    except OSError:
        readonly = 0
    where = "" if target == os.path.abspath(path) else f"missing, and {target} "
    return where + ("is on a read-only file system" if readonly else "is not writable")


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _bind(config: Config) -> Result:
    if os.environ.get("LISTEN_FDS"):
        return Result("OK", "listen", "socket passed by systemd (LISTEN_FDS)")
    family = socket.AF_INET6 if ":" in config.address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.address, config.port))
    except OSError as exc:
        url = _webhook_url(config)
        if exc.errno == errno.EADDRINUSE and _deployhook_answers(url):
            return Result("OK", "listen", f"deployhook is already running: {url} answers")
        return Result("FAIL", "listen", f"cannot bind {config.address}:{config.port}: "
                      f"{exc.strerror}", "choose a free port, or stop what uses it")
    return Result("OK", "listen", f"{config.address}:{config.port} can be bound")


def local_host(address: str) -> str:
    """``address`` as a URL's host part on this machine (a wildcard becomes loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
    return f"[{host}]" if ":" in host else host


def _webhook_url(config: Config) -> str:
    return f"http://{local_host(config.address)}:{config.port}{config.webhook_path}"


def _deployhook_answers(url: str) -> bool:
    """True when ``GET url`` gets deployhook's reachability answer (within 5 s)."""
    import urllib.request  # only for this command: ``serve`` imports no HTTP client

    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # this machine
        with opener.open(url, timeout=5) as answer:
            body = json.loads(answer.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and "deployhook is listening" in str(body.get("reason"))
