"""Load and validate the configuration: ``config.py`` plus ``DEPLOYHOOK_*`` overrides.

``config.py`` is a Python file of module-level settings.  Every key has a
documented default (:class:`Config`).  An unknown key or a value of the wrong
type is a :class:`ConfigError` that names the key and what is valid, so typos
are caught at start-up instead of silently ignored.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import runpy
import shlex
import socket
import types
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deployhook.errors import ConfigError
from deployhook.network import parse_networks

PULL_STRATEGIES = ("ff-only", "merge", "rebase", "reset")
CREDENTIAL_NAME = "webhook-secret"  # systemd: LoadCredential=webhook-secret:/path
PASSWORD_CREDENTIAL = "status-password"  # systemd: LoadCredential=status-password:/path
STATUS_ACCESS = ("password", "loopback")
RELOAD_MODES = ("auto", "autoreload", "exit", "none")
ENV_PREFIX = "DEPLOYHOOK_"
REPORTS = ("status", "deployment")  # what ``report`` tells the forge (None: nothing)
REPORT_CREDENTIAL = "report-token"  # systemd: LoadCredential=report-token-<target>:/path
REDIS_CREDENTIAL = "redis-password"  # systemd: LoadCredential=redis-password:/path
FLEET_KEY_CREDENTIAL = "fleet-key"  # systemd: LoadCredential=fleet-key:/path
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORGES = ("github", "gitlab", "gitea", "forgejo", "gogs", "bitbucket", "bitbucket-server")
DEFAULT_TARGET = "default"  # the one target of a config without ``targets`` (and older history)
TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # whole names: fullmatch; URLs: .pattern
COMMAND_KEYS = ("pre_deploy", "post_deploy", "on_failure")  # argument lists, no shell
DEPLOY_MODES = ("in-place", "releases")
NOTIFY_EVENTS = ("failure", "recovery", "success")  # what ``notify_on`` may name
FLEET_SWITCHES = ("together", "each")  # releases mode in a fleet: switch ``current`` ...
# DEPLOYHOOK_* variables that are not settings: the secret itself.
SECRET_ENV = ENV_PREFIX + "SECRET"
NOT_KEYS = (SECRET_ENV,)
HIDDEN_VALUES = ("notify",)  # keys whose values no message shows (Apprise URLs hold tokens)


@dataclass(frozen=True, kw_only=True)
class TargetSettings:
    """Every key about one checkout, with its default: the one place each is defined.

    A target (:class:`TargetConfig`) sets them for itself; at the top level of the
    config (:class:`Config`) they are the defaults of every target."""

    repo_path: str = "."
    remote: str = "origin"
    branch: str | None = None
    submodules: bool = True
    pull_strategy: str = "ff-only"
    repo_url: str | None = None
    repository: str | None = None
    post_deploy: tuple[str, ...] | None = None
    post_deploy_timeout: float = 300.0
    reload: str = "auto"
    secret_file: str = "secret.txt"
    git_timeout: float = 120.0
    lock_timeout: float = 900.0
    ssh_key: str | None = None
    forge: str | None = None
    tags: str | None = None
    pre_deploy: tuple[str, ...] | None = None
    pre_deploy_timeout: float = 300.0
    on_failure: tuple[str, ...] | None = None
    on_failure_timeout: float = 60.0
    report: str | None = None
    report_token_file: str | None = None
    api_url: str | None = None
    # atomic releases (git/releases.py)
    deploy_mode: str = "in-place"
    releases_path: str | None = None
    health_url: str | None = None
    health_timeout: float = 10.0
    activate: tuple[str, ...] | None = None
    shared_paths: tuple[str, ...] = ()
    keep_releases: int = 5
    fleet_switch: str = "together"  # in a fleet: every node switches once all are built
    # notifications (report/notify.py): Apprise URLs, which hold tokens (never shown)
    notify: tuple[str, ...] = field(default=(), repr=False)
    notify_on: tuple[str, ...] = ("failure", "recovery")
    # seconds between asks of the remote for the deployed tip (service/poller.py); 0: never
    poll_interval: float = 180.0
    # Not a key: the secret itself, from $DEPLOYHOOK_SECRET (never from config.py).
    secret: bytes | None = field(default=None, repr=False)


# Keys about one checkout: allowed inside a target; at the top level they are the defaults.
TARGET_KEYS = tuple(f.name for f in fields(TargetSettings) if f.name != "secret")


@dataclass(frozen=True, kw_only=True)
class TargetConfig(TargetSettings):
    """The settings of one deployed checkout (a *target*): built by
    :meth:`Config.default_target`, whose top-level keys are the defaults."""

    name: str = DEFAULT_TARGET

    def __post_init__(self) -> None:
        where = "" if self.name == DEFAULT_TARGET else f" (target {self.name!r})"
        if not TARGET_NAME.fullmatch(self.name):
            raise ConfigError(f"target name {self.name!r} must match ^{TARGET_NAME.pattern}$")
        try:
            _check_choice("pull_strategy", self.pull_strategy, PULL_STRATEGIES)
            _check_choice("reload", self.reload, RELOAD_MODES)
            if self.forge is not None:
                _check_choice("forge", self.forge, FORGES)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None
        for key in ("git_timeout", "lock_timeout", "post_deploy_timeout", "pre_deploy_timeout",
                    "on_failure_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be a positive number of seconds{where}")
        if self.poll_interval < 0:
            raise ConfigError(f"poll_interval must be 0 (off) or a positive number of "
                              f"seconds{where}")
        for key in COMMAND_KEYS:
            if getattr(self, key) is not None and not getattr(self, key):
                raise ConfigError(f"{key} must be a non-empty list of arguments, or None{where}")
        if self.tags is not None and not self.tags.strip():
            raise ConfigError(f"tags must be a non-empty pattern such as 'v*', or None{where}")
        _check_report(self, where)
        _check_releases(self, where)
        _check_notify(self, where)


def _check_notify(target: TargetConfig, where: str) -> None:
    """``notify``: each entry looks like a URL (``scheme://...``; whether Apprise can use
    it is checked where it is imported: :func:`deployhook.report.notify.check_urls`);
    ``notify_on``: known events.

    Raises:
        ConfigError: naming the entry by its number, never showing it (it holds tokens).
    """
    for number, url in enumerate(target.notify, 1):
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
            raise ConfigError(f"notify entry {number} is not an Apprise URL "
                              f"(service://...){where}")
    for event in target.notify_on:
        _check_choice("notify_on", event, NOTIFY_EVENTS)


def _check_report(target: TargetConfig, where: str) -> None:
    """``report`` needs a forge that has a status API; ``api_url`` must be http(s).

    Raises:
        ConfigError: naming the key and what is valid.
    """
    if target.api_url is not None and not re.match(r"^https?://[^/\s]+", target.api_url):
        raise ConfigError(f"api_url must be an http:// or https:// URL, or None{where}")
    if target.report is None:
        return
    _check_choice("report", target.report, REPORTS)
    if target.forge is None:
        raise ConfigError(f"report needs forge set (github, gitlab, gitea, forgejo, bitbucket "
                          f"or bitbucket-server){where}")
    if target.forge == "gogs":
        raise ConfigError(f"report is not available for forge 'gogs': Gogs has no commit "
                          f"status API{where}")
    if target.forge == "bitbucket-server" and target.api_url is None:
        raise ConfigError(f"report for forge 'bitbucket-server' needs api_url (your server's "
                          f"address, e.g. 'https://bitbucket.example.com'){where}")
    if target.report == "deployment" and target.forge != "github":
        raise ConfigError(f"report = 'deployment' needs forge 'github' (use 'status' for "
                          f"{target.forge}){where}")


@dataclass(frozen=True, kw_only=True)
class Config(TargetSettings):
    """Every setting, with its default: the daemon-wide ones here, and (inherited from
    :class:`TargetSettings`) the keys about one checkout, which at the top level are the
    defaults of every target.  Paths are resolved against the config file."""

    address: str = "127.0.0.1"
    port: int = 8000
    webhook_path: str = "/github"
    response_timeout: float = 8.0
    max_body_size: int = 26 * 1024 * 1024
    workers: int = 4
    stop_timeout: float = 60.0
    state_db: str = "deployhook.sqlite3"
    keep_runs: int = 1000
    keep_days: float = 90.0
    status_user: str = "deployhook"
    status_password_file: str | None = "status-password.txt"
    status_access: str = "password"
    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    log_level: str = "info"
    # What strangers can cost (see connections.py and spool.py).
    max_connections: int = 400
    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    unverified_memory: int = 16 * 1024 * 1024
    unverified_disk: int = 1024 * 1024 * 1024
    refused_delay: float = 0.5
    # Where the status pages are reachable from outside (links to runs); None: no links.
    public_url: str | None = None
    # fleet mode (fleet/): None keeps the single-server daemon, with no Redis
    redis_url: str | None = None
    redis_password_file: str | None = None
    redis_ca_file: str | None = None  # rediss://: the CA that signed Redis's certificate
    fleet_key_file: str | None = "fleet-key.txt"  # signs what nodes write to Redis
    node: str | None = None  # this server's name in the fleet; None: the host name
    reconcile_interval: float = 60.0
    # name -> that target's settings; empty: one target, ``default``, from the keys above.
    targets: tuple[TargetConfig, ...] = ()

    def __post_init__(self) -> None:
        _check_choice("status_access", self.status_access, STATUS_ACCESS)
        _check_choice("log_level", self.log_level, ("debug", "info", "warning", "error"))
        if not self.webhook_path.startswith("/"):
            raise ConfigError(f"webhook_path must start with '/', got {self.webhook_path!r}")
        if self.public_url is not None and not re.match(r"^https?://[^/\s]+",
                                                         self.public_url):
            raise ConfigError(f"public_url must be an http:// or https:// URL, got "
                              f"{self.public_url!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        _check_fleet(self)
        if not self.targets:  # the one target ``default``, from the top-level keys
            object.__setattr__(self, "targets", (self.default_target(),))
        _check_targets(self.targets)
        for key in ("response_timeout", "stop_timeout", "idle_timeout", "body_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be a positive number of seconds")
        if min(self.workers, self.max_body_size, self.keep_runs) < 1 or self.keep_days <= 0:
            raise ConfigError("workers, max_body_size, keep_runs and keep_days must be positive")
        if self.refused_delay < 0 or self.refused_delay > 60:
            raise ConfigError("refused_delay must be between 0 and 60 seconds")
        if min(self.max_connections, self.unverified_memory, self.unverified_disk) < 1:
            raise ConfigError("max_connections, unverified_memory and unverified_disk "
                              "must be positive")
        for key in ("allowed_networks", "trusted_proxies"):
            try:
                parse_networks(getattr(self, key), key)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None


    def default_target(self, name: str = DEFAULT_TARGET, **values: Any) -> TargetConfig:
        """A target named ``name`` with the top-level keys as defaults, ``values`` set."""
        return TargetConfig(name=name, **{**self._inherited, **values})

    @functools.cached_property
    def _inherited(self) -> dict[str, Any]:
        """What every target inherits from the top level (read once: a config may name
        a thousand targets)."""
        return {**{key: getattr(self, key) for key in TARGET_KEYS}, "secret": self.secret}

    def target(self, name: str) -> TargetConfig:
        """The target called ``name``.

        Raises:
            KeyError: there is no such target.
        """
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.targets)


def _check_fleet(config: Config) -> None:
    """The fleet keys: ``redis_url``'s scheme, ``node`` (the host name when unset, its
    first label), ``reconcile_interval``.

    Raises:
        ConfigError: naming the key and what is valid (never showing the URL's password).
    """
    if config.redis_url is not None and not config.redis_url.startswith(REDIS_SCHEMES):
        raise ConfigError("redis_url must start with redis://, rediss:// or unix:// "
                          "(e.g. 'redis://127.0.0.1:6379/0'), or be None")
    if config.node is None:
        object.__setattr__(config, "node", socket.gethostname().split(".")[0] or "localhost")
    if not NODE_NAME.fullmatch(config.node or ""):
        raise ConfigError(f"node must match {NODE_NAME.pattern}, got {config.node!r}")
    if config.reconcile_interval <= 0:
        raise ConfigError("reconcile_interval must be a positive number of seconds")
    if config.redis_ca_file is not None and not (config.redis_url or "").startswith(
            "rediss://"):
        raise ConfigError("redis_ca_file needs a rediss:// redis_url (Redis over TLS)")
    if config.redis_url is not None and config.fleet_key_file is None:
        raise ConfigError("redis_url needs fleet_key_file (the key every node signs the "
                          "fleet's state with: 'deployhook init' writes one; "
                          "docs/fleet.rst)")


def _check_releases(target: TargetConfig, where: str) -> None:
    """The atomic-release keys of ``target`` (see git/releases.py).

    Raises:
        ConfigError: a bad ``deploy_mode``, ``releases`` without ``releases_path``, a bad
            timeout, an empty ``activate``, a ``shared_paths`` entry that is absolute or
            climbs out of the release, or ``keep_releases`` below 2.
    """
    try:
        _check_choice("deploy_mode", target.deploy_mode, DEPLOY_MODES)
        _check_choice("fleet_switch", target.fleet_switch, FLEET_SWITCHES)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{where}") from None
    if target.deploy_mode == "releases" and not target.releases_path:
        raise ConfigError(f"deploy_mode 'releases' needs releases_path{where}")
    if target.health_timeout <= 0:
        raise ConfigError(f"health_timeout must be a positive number of seconds{where}")
    if target.activate is not None and not target.activate:
        raise ConfigError(f"activate must be a non-empty list of arguments, or None{where}")
    for path in target.shared_paths:
        parts = Path(path).parts
        if not path or Path(path).is_absolute() or ".." in parts or ".git" in parts:
            raise ConfigError(f"shared_paths entries must be relative paths inside a release, "
                              f"got {path!r}{where}")
    if target.keep_releases < 2:
        raise ConfigError(f"keep_releases must be at least 2 (the live release and the one "
                          f"before it){where}")


def _check_targets(targets: tuple[TargetConfig, ...]) -> None:
    names: set[str] = set()
    paths: dict[str, str] = {}
    for target in targets:
        if not isinstance(target, TargetConfig):
            raise ConfigError("targets must be a dict from a name to a dict of settings")
        if target.name in names:
            raise ConfigError(f"two targets are named {target.name!r}")
        names.add(target.name)
        other = paths.setdefault(os.path.normpath(target.repo_path), target.name)
        if other != target.name:
            raise ConfigError(f"targets {other!r} and {target.name!r} share repo_path "
                              f"{target.repo_path}; each target needs its own checkout")


_TYPES: dict[str, tuple[type, ...]] = {
    "address": (str,), "port": (int,), "webhook_path": (str,), "secret_file": (str,),
    "repo_path": (str,), "remote": (str,), "branch": (str, type(None)),
    "submodules": (bool,), "pull_strategy": (str,), "repo_url": (str, type(None)),
    "repository": (str, type(None)), "post_deploy": (list, tuple, type(None)),
    "post_deploy_timeout": (int, float), "reload": (str,), "response_timeout": (int, float),
    "git_timeout": (int, float), "lock_timeout": (int, float), "max_body_size": (int,),
    "workers": (int,),
    "stop_timeout": (int, float), "log_level": (str,), "state_db": (str,),
    "keep_runs": (int,), "keep_days": (int, float), "status_user": (str,),
    "status_password_file": (str, type(None)), "allowed_networks": (list, tuple),
    "trusted_proxies": (list, tuple), "max_connections": (int,),
    "idle_timeout": (int, float), "body_timeout": (int, float),
    "unverified_memory": (int,), "unverified_disk": (int,), "refused_delay": (int, float),
    "ssh_key": (str, type(None)), "forge": (str, type(None)), "tags": (str, type(None)),
    "pre_deploy": (list, tuple, type(None)), "pre_deploy_timeout": (int, float),
    "on_failure": (list, tuple, type(None)), "on_failure_timeout": (int, float),
    "report": (str, type(None)), "report_token_file": (str, type(None)),
    "api_url": (str, type(None)), "public_url": (str, type(None)),
    "targets": (dict,),
    "status_access": (str,), "allowed_hosts": (list, tuple),
    # atomic releases (git/releases.py)
    "deploy_mode": (str,), "releases_path": (str, type(None)), "health_url": (str, type(None)),
    "health_timeout": (int, float), "activate": (list, tuple, type(None)),
    "shared_paths": (list, tuple), "keep_releases": (int,), "fleet_switch": (str,),
    # notifications (report/notify.py)
    "notify": (list, tuple), "notify_on": (list, tuple),
    # fleet mode (fleet/)
    "redis_url": (str, type(None)), "redis_password_file": (str, type(None)),
    "redis_ca_file": (str, type(None)), "fleet_key_file": (str, type(None)),
    "node": (str, type(None)),
    "reconcile_interval": (int, float),
    "poll_interval": (int, float),
}
KEYS = tuple(_TYPES)
_PATH_KEYS = ("secret_file", "repo_path", "state_db", "status_password_file", "ssh_key",
              "report_token_file", "releases_path", "redis_password_file", "redis_ca_file",
              "fleet_key_file")


def load(path: str | os.PathLike[str] | None, environ: dict[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply ``DEPLOYHOOK_*`` overrides, validate.

    When ``secret_file`` is set nowhere and systemd passed credentials
    (``$CREDENTIALS_DIRECTORY``), the secret is ``$CREDENTIALS_DIRECTORY/webhook-secret``;
    likewise ``status_password_file`` becomes ``$CREDENTIALS_DIRECTORY/status-password``,
    and, when systemd passed them, ``redis_password_file`` and ``fleet_key_file`` its
    ``redis-password`` and ``fleet-key``.

    Relative ``secret_file`` and ``repo_path`` are taken relative to the config
    file's folder (the current folder when ``path`` is None).

    With ``environ`` None (the process's own), ``$DEPLOYHOOK_SECRET`` is taken out of
    ``os.environ`` so that no child process inherits it (see :func:`_take_secret`).

    Raises:
        ConfigError: the file is missing or fails to run, a key is unknown, or a
            value has the wrong type or is out of range.
    """
    own = environ is None
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        config_path = Path(path).resolve()
        values = _read_file(config_path)
        base = config_path.parent
    values.update(_from_environ(environ))
    values = {key: _coerce(key, value) for key, value in values.items()}
    raw_targets = values.pop("targets", None)
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if "secret_file" not in values and credentials:
        values["secret_file"] = str(Path(credentials) / CREDENTIAL_NAME)
    if "status_password_file" not in values and credentials:
        values["status_password_file"] = str(Path(credentials) / PASSWORD_CREDENTIAL)
    redis_password = Path(credentials or ".") / REDIS_CREDENTIAL
    if "redis_password_file" not in values and credentials and _present(redis_password):
        values["redis_password_file"] = str(redis_password)
    fleet_key = Path(credentials or ".") / FLEET_KEY_CREDENTIAL
    if "fleet_key_file" not in values and credentials and _present(fleet_key):
        values["fleet_key_file"] = str(fleet_key)
    if "report_token_file" not in values and credentials:
        token = Path(credentials) / REPORT_CREDENTIAL
        if _present(token):
            values["report_token_file"] = str(token)
    for key in _PATH_KEYS:
        raw = values.get(key, getattr(Config, key))
        if raw is not None:
            values[key] = _resolve(base, raw)
    secret = _take_secret() if own else environ.get(SECRET_ENV)
    # With targets, a top-level ``report`` is only their default: each target's forge decides.
    report = values.pop("report", None) if raw_targets is not None else None
    config = Config(**values, secret=secret.strip().encode() if secret else None)
    if raw_targets is None:
        return config
    targets = tuple(_target(config, name, settings, base, credentials, report)
                    for name, settings in raw_targets.items())
    return replace(config, report=report, targets=targets)


def _target(config: Config, name: Any, raw: Any, base: Path,
            credentials: str | None, report: str | None = None) -> TargetConfig:
    """One entry of ``targets``: its keys checked and coerced, paths resolved, and the
    top-level keys as defaults for the rest.

    Raises:
        ConfigError: a bad name, a value that is not a dict, an unknown or daemon-wide key,
            or a bad value; the message names the target and the key.
    """
    if not isinstance(name, str) or not TARGET_NAME.fullmatch(name):
        raise ConfigError(f"target name {name!r} must match ^{TARGET_NAME.pattern}$ "
                          "(lower-case letters, digits, '-' and '_')")
    if not isinstance(raw, dict):
        raise ConfigError(f"target {name!r} must be a dict of settings, got "
                          f"{type(raw).__name__}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in KEYS and key not in TARGET_KEYS:
            raise ConfigError(f"{key!r} in target {name!r} is a daemon-wide setting; "
                              "set it at the top level of the config")
        if key not in TARGET_KEYS:
            raise ConfigError(f"unknown setting {key!r} in target {name!r}; a target may set: "
                              f"{', '.join(sorted(TARGET_KEYS))}")
        try:
            values[key] = _coerce(key, value)
        except ConfigError as exc:
            raise ConfigError(f"target {name!r}: {exc}") from None
    for key in set(_PATH_KEYS) & set(values):
        if values[key] is not None:
            values[key] = _resolve(base, values[key])
    if "secret_file" not in values and credentials:  # systemd: a credential per target
        own = Path(credentials) / f"{CREDENTIAL_NAME}-{name}"
        if _present(own):
            values["secret_file"] = str(own)
    if "report_token_file" not in values and credentials:
        own_token = Path(credentials) / f"{REPORT_CREDENTIAL}-{name}"
        if _present(own_token):
            values["report_token_file"] = str(own_token)
    values.setdefault("report", report)
    if "secret_file" in values:
        values["secret"] = None  # its own file, not $DEPLOYHOOK_SECRET
    return config.default_target(name, **values)


def _present(credential: Path) -> bool:
    """True when systemd passed this credential; a directory we may not look into (a
    credential for another user, or a container that cannot deliver them) counts as
    absent."""
    try:
        return credential.exists()
    except OSError:
        return False


def _resolve(base: Path, raw: str) -> str:
    """``raw`` (``~`` expanded) as an absolute path, relative to ``base``, symbolic links
    resolved (``Path.resolve``'s result, in os.path's cheaper calls: a config may name a
    thousand targets)."""
    return os.path.realpath(os.path.join(base, os.path.expanduser(raw)))


_taken: list[str] = []  # $DEPLOYHOOK_SECRET once taken out of os.environ


def _take_secret() -> str | None:
    """``$DEPLOYHOOK_SECRET``, taken out of ``os.environ`` the first time so that no child
    process (git, post_deploy, ...) inherits it; later calls (SIGHUP) get the same value.
    A re-executed process gets it back through :func:`reexec_environment`.  It is also
    wiped from the process's initial environment block (:func:`wipe_initial_environment`),
    so that ``/proc/<pid>/environ`` does not show it to children either."""
    value = os.environ.pop(SECRET_ENV, None)
    if value is not None:
        _taken[:] = [value]
        wipe_initial_environment(SECRET_ENV)
    return _taken[0] if _taken else None


def wipe_initial_environment(name: str) -> int:
    """Overwrite with NUL bytes every ``name=value`` entry of this process's initial
    environment block (the memory ``/proc/self/stat`` fields env_start..env_end point to,
    which ``/proc/<pid>/environ`` shows), as setproctitle does; return how many.

    Call it only once ``name`` is out of ``os.environ`` (``unsetenv``: the C library no
    longer points into the entry).  Without Linux's ``/proc`` it does nothing (returns 0).
    """
    import ctypes

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # fields 50 and 51 of proc(5)
    except (OSError, IndexError, ValueError):
        return 0
    if not 0 < start < end:
        return 0
    block = ctypes.string_at(start, end - start)
    prefix, wiped, offset = name.encode() + b"=", 0, 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix):
            ctypes.memset(start + offset, 0, len(entry))
            wiped += 1
        offset += len(entry) + 1
    return wiped


def reexec_environment() -> dict[str, str]:
    """The environment for re-executing this process: ``os.environ`` with
    ``$DEPLOYHOOK_SECRET`` given back when it was taken out of it."""
    environ = dict(os.environ)
    if _taken:
        environ[SECRET_ENV] = _taken[0]
    return environ


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (run 'deployhook init' to create one)")
    try:
        namespace = runpy.run_path(str(path))
    except (Exception, SystemExit) as exc:  # the user's file: report any failure plainly
        raise ConfigError(f"{path}: {type(exc).__name__}: {exc}") from exc
    values = {}
    for key, value in namespace.items():
        if key.startswith("_") or isinstance(value, types.ModuleType) or callable(value):
            continue
        if key not in KEYS:
            raise ConfigError(_unknown(key, f"{path}"))
        values[key] = value
    return values


def _from_environ(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_KEYS:
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in KEYS:
            raise ConfigError(_unknown(key, f"environment variable {name}"))
        if key in HIDDEN_VALUES:  # every child process would inherit it
            raise ConfigError(f"{name}: {key} holds tokens: set it in the config file")
        values[key] = _parse_env(key, raw)
    return values


def _parse_env(key: str, raw: str) -> Any:
    kinds = _TYPES[key]
    if type(None) in kinds and raw.strip() in ("", "none", "None"):
        return None
    if bool in kinds:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be true or false, got {raw!r}")
    name = f"{ENV_PREFIX}{key.upper()}"
    if dict in kinds:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a JSON object: {exc}") from None
        return value
    if list in kinds:
        try:
            value = json.loads(raw) if raw.lstrip().startswith("[") else shlex.split(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be a JSON list or shell-style words: {exc}") from None
        return value
    kind = float if float in kinds else int if int in kinds else None
    if kind is not None:
        try:
            number = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        return number
    return raw


def _coerce(key: str, value: Any) -> Any:
    kinds = _TYPES[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
        shown = "(not shown: it holds tokens)" if key in HIDDEN_VALUES else repr(value)
        raise ConfigError(f"{key} must be {names}, got {type(value).__name__} {shown}")
    if key in (*COMMAND_KEYS, "allowed_networks", "trusted_proxies", "allowed_hosts",
               "activate", "shared_paths", "notify", "notify_on") and value is not None:
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{key} must be a list of strings")
        return tuple(value)
    if isinstance(value, int) and float in kinds:
        return float(value)
    return value


def _unknown(key: str, where: str) -> str:
    return f"unknown setting {key!r} in {where}; valid settings: {', '.join(sorted(KEYS))}"


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
