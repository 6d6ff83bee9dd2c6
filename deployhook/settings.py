"""Load and validate the configuration: ``config.py`` plus ``DEPLOYHOOK_*`` overrides.

``config.py`` is a Python file of module-level settings.  Every key has a
documented default (:class:`Config`).  An unknown key or a value of the wrong
type is a :class:`ConfigError` that names the key and what is valid, so typos
are caught at start-up instead of silently ignored.
"""

from __future__ import annotations

import json
import math
import os
import runpy
import shlex
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .network import parse_networks

PULL_STRATEGIES = ("ff-only", "merge", "rebase", "reset")
CREDENTIAL_NAME = "webhook-secret"  # systemd: LoadCredential=webhook-secret:/path
PASSWORD_CREDENTIAL = "status-password"  # systemd: LoadCredential=status-password:/path
STATUS_ACCESS = ("password", "loopback")
RELOAD_MODES = ("autoreload", "exit", "none")
ENV_PREFIX = "DEPLOYHOOK_"
# DEPLOYHOOK_* variables that are not settings: the secret itself.
SECRET_ENV = ENV_PREFIX + "SECRET"
NOT_KEYS = (SECRET_ENV,)


@dataclass(frozen=True)
class Config:
    """Every setting, with its default.  Paths are resolved against the config file."""

    address: str = "127.0.0.1"
    port: int = 8000
    webhook_path: str = "/github"
    secret_file: str = "secret.txt"
    repo_path: str = "."
    remote: str = "origin"
    branch: str | None = None
    submodules: bool = True
    pull_strategy: str = "ff-only"
    repo_url: str | None = None
    repository: str | None = None
    post_deploy: tuple[str, ...] | None = None
    post_deploy_timeout: float = 300.0
    reload: str = "autoreload"
    response_timeout: float = 8.0
    git_timeout: float = 120.0
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
    # Not a key: the secret itself, from $DEPLOYHOOK_SECRET (never from config.py).
    secret: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_choice("pull_strategy", self.pull_strategy, PULL_STRATEGIES)
        _check_choice("reload", self.reload, RELOAD_MODES)
        _check_choice("status_access", self.status_access, STATUS_ACCESS)
        _check_choice("log_level", self.log_level, ("debug", "info", "warning", "error"))
        if not self.webhook_path.startswith("/"):
            raise ConfigError(f"webhook_path must start with '/', got {self.webhook_path!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        for key in ("response_timeout", "git_timeout", "post_deploy_timeout", "stop_timeout",
                    "idle_timeout", "body_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be a positive number of seconds")
        if min(self.workers, self.max_body_size, self.keep_runs) < 1 or self.keep_days <= 0:
            raise ConfigError("workers, max_body_size, keep_runs and keep_days must be positive")
        if min(self.max_connections, self.unverified_memory, self.unverified_disk) < 1:
            raise ConfigError("max_connections, unverified_memory and unverified_disk "
                              "must be positive")
        if self.post_deploy is not None and not self.post_deploy:
            raise ConfigError("post_deploy must be a non-empty list of arguments, or None")
        for key in ("allowed_networks", "trusted_proxies"):
            try:
                parse_networks(getattr(self, key), key)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None


_TYPES: dict[str, tuple[type, ...]] = {
    "address": (str,), "port": (int,), "webhook_path": (str,), "secret_file": (str,),
    "repo_path": (str,), "remote": (str,), "branch": (str, type(None)),
    "submodules": (bool,), "pull_strategy": (str,), "repo_url": (str, type(None)),
    "repository": (str, type(None)), "post_deploy": (list, tuple, type(None)),
    "post_deploy_timeout": (int, float), "reload": (str,), "response_timeout": (int, float),
    "git_timeout": (int, float), "max_body_size": (int,), "workers": (int,),
    "stop_timeout": (int, float), "log_level": (str,), "state_db": (str,),
    "keep_runs": (int,), "keep_days": (int, float), "status_user": (str,),
    "status_password_file": (str, type(None)), "allowed_networks": (list, tuple),
    "trusted_proxies": (list, tuple), "max_connections": (int,),
    "idle_timeout": (int, float), "body_timeout": (int, float),
    "unverified_memory": (int,), "unverified_disk": (int,),
    "status_access": (str,), "allowed_hosts": (list, tuple),
}
KEYS = tuple(_TYPES)
_PATH_KEYS = ("secret_file", "repo_path", "state_db", "status_password_file")


def load(path: str | os.PathLike[str] | None, environ: dict[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults only), apply ``DEPLOYHOOK_*`` overrides, validate.

    When ``secret_file`` is set nowhere and systemd passed credentials
    (``$CREDENTIALS_DIRECTORY``), the secret is ``$CREDENTIALS_DIRECTORY/webhook-secret``;
    likewise ``status_password_file`` becomes ``$CREDENTIALS_DIRECTORY/status-password``.

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
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if "secret_file" not in values and credentials:
        values["secret_file"] = str(Path(credentials) / CREDENTIAL_NAME)
    if "status_password_file" not in values and credentials:
        values["status_password_file"] = str(Path(credentials) / PASSWORD_CREDENTIAL)
    for key in _PATH_KEYS:
        raw = values.get(key, getattr(Config, key))
        if raw is not None:
            values[key] = str((base / Path(raw).expanduser()).resolve())
    secret = _take_secret() if own else environ.get(SECRET_ENV)
    return Config(**values, secret=secret.strip().encode() if secret else None)


_taken: list[str] = []  # $DEPLOYHOOK_SECRET once taken out of os.environ


def _take_secret() -> str | None:
    """``$DEPLOYHOOK_SECRET``, taken out of ``os.environ`` the first time so that no child
    process (git, post_deploy, ...) inherits it; later calls (SIGHUP) get the same value.
    It goes back into ``os.environ`` just before an autoreload re-executes the process."""
    value = os.environ.pop(SECRET_ENV, None)
    if value is not None:
        if not _taken:
            from tornado import autoreload

            autoreload.add_reload_hook(_give_back_secret)
        _taken[:] = [value]
    return _taken[0] if _taken else None


def _give_back_secret() -> None:
    if _taken:
        os.environ[SECRET_ENV] = _taken[0]


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
        raise ConfigError(f"{key} must be {names}, got {type(value).__name__} {value!r}")
    if key in ("post_deploy", "allowed_networks", "trusted_proxies",
               "allowed_hosts") and value is not None:
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
