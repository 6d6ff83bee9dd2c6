"""What a daemon does not import until a feature is configured or first used.

Optional features are imported inside the function that starts them (docs/development.rst,
"Layout"): the forge reporter and Tornado's HTTP client (a target with ``report``), Apprise
(``notify``), urllib's client
(``health_url``, the CLI's checks), ``prometheus_client`` (the first scrape of
``/metrics``), Redis (``redis_url``), the CLI commands' own helpers.  The real
``python -m deployhook serve`` runs with a ``sitecustomize`` on its PYTHONPATH, this
test's only hook, which writes the process's ``sys.modules`` to a file when it exits.
GitPython is no optional feature: the daemon's git work goes through it, so a daemon
that deployed has it loaded.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from pathlib import Path

from deployhook import DeployHook, settings
from tests.helpers import (
    REPOSITORY,
    Daemon,
    Repos,
    basic_auth,
    deliver_push,
    http,
    start_daemon,
    write_config,
)

# GitPython's repository, command and reference layers: what a deploy goes through.
GITPYTHON = ("git", "git.repo", "git.cmd", "git.refs.symbolic")
NEVER_IN_A_PLAIN_DAEMON = (
    "redis",  # fleet mode only (redis_url)
    "prometheus_client",  # the first scrape of /metrics
    "tornado.httpclient",  # the forge reporter's client (report)
    "tornado.simple_httpclient",
    "deployhook.report.reporter",
    "apprise",  # notifications (notify)
    "deployhook.report.notify",
    "urllib.request",  # health_url; deployhook check / deploy
    "deployhook.cli.check",
    "deployhook.forges.payloads",  # deployhook send
    "curses",  # Tornado's log colours, unused (deployhook.cli marks it unavailable)
    "deployhook.git.release_build",  # releases mode (deploy_mode = "releases")
    "deployhook.git.shared_paths",
)

SITECUSTOMIZE = """\
import atexit
import os
import sys


def _write_modules() -> None:
    with open(os.environ["MODULES_AT_EXIT_FILE"], "w") as f:
        loaded = sorted(name for name, module in sys.modules.items() if module is not None)
        f.write("\\n".join(loaded) + "\\n")


atexit.register(_write_modules)
"""


def _watched(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment that makes a daemon write its modules at exit, and that file."""
    hook = tmp_path / "module-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "modules.txt"
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "MODULES_AT_EXIT_FILE": str(out)}, out


def _modules_at_exit(daemon: Daemon, out: Path) -> set[str]:
    assert daemon.stop() == 0, daemon.log()
    assert out.exists(), f"the daemon wrote no module list:\n{daemon.log()}"
    return set(out.read_text().split())


def _wait_for_head(daemon: Daemon, sha: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http("GET", daemon.url + "/health")[1].get("head") == sha:
            return
        time.sleep(0.05)
    raise AssertionError(f"{sha} not deployed in {timeout}s:\n{daemon.log()}")


def test_a_plain_daemon_that_deployed_imports_no_optional_client(
        tmp_path: Path, repos: Repos, secret_file: Path) -> None:
    env, out = _watched(tmp_path)
    daemon = start_daemon(repos, secret_file, env=env)
    try:
        daemon.wait_ready()
        sha = repos.commit("lazy.rst")
        status, answer = deliver_push(daemon.url, sha)
        assert 200 <= status < 300, answer
        _wait_for_head(daemon, sha)
        assert http("GET", daemon.url + "/deployments")[0] == 200
        page = urllib.request.Request(daemon.url + "/", headers=basic_auth())
        with urllib.request.urlopen(page, timeout=30) as answer:  # the status page (HTML)
            assert answer.status == 200
    finally:
        modules = _modules_at_exit(daemon, out)
    assert "deployhook.daemon.server" in modules  # the list is the daemon's
    assert sorted(modules.intersection(NEVER_IN_A_PLAIN_DAEMON)) == []
    assert set(GITPYTHON) <= modules, sorted(set(GITPYTHON) - modules)


def test_a_daemon_that_reports_imports_the_reporter(
        tmp_path: Path, repos: Repos, secret_file: Path) -> None:
    env, out = _watched(tmp_path)
    token = tmp_path / "report-token"
    token.write_text("not-a-real-token\n")
    daemon = start_daemon(repos, secret_file, env=env, forge="github", report="status",
                          report_token_file=str(token), api_url="http://127.0.0.1:9")
    try:
        daemon.wait_ready()
    finally:
        modules = _modules_at_exit(daemon, out)
    assert {"deployhook.report.reporter", "tornado.httpclient"} <= modules


def test_the_first_reload_that_sets_report_starts_the_reporter(
        tmp_path: Path, repos: Repos, secret_file: Path) -> None:
    token = tmp_path / "report-token"
    token.write_text("not-a-real-token\n")
    plain = {"repo_path": str(repos.deployed), "secret_file": str(secret_file),
             "repository": REPOSITORY, "reload": "none", "forge": "github",
             "state_db": str(tmp_path / "state.sqlite3")}
    reporting = {**plain, "report": "status", "report_token_file": str(token),
                 "api_url": "http://127.0.0.1:9"}

    async def run() -> tuple[bool, bool]:
        hook = DeployHook(settings.load(str(write_config(tmp_path / "plain.py", **plain))))
        try:
            await hook.start()
            before = hook.reporter is not None
            await hook.reconfigure(settings.load(str(
                write_config(tmp_path / "reporting.py", **reporting))))
            return before, hook.reporter is not None
        finally:
            hook.close()

    assert asyncio.run(run()) == (False, True)


def test_a_daemon_that_notifies_imports_apprise(
        tmp_path: Path, repos: Repos, secret_file: Path) -> None:
    env, out = _watched(tmp_path)
    daemon = start_daemon(repos, secret_file, env=env, notify=["json://127.0.0.1:9/hook"])
    try:
        daemon.wait_ready()
    finally:
        modules = _modules_at_exit(daemon, out)
    assert {"deployhook.report.notify", "apprise"} <= modules
    assert "deployhook.report.reporter" not in modules
