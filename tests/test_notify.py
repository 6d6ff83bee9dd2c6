"""Notifications (issue 24, "Tell people when it breaks"): a real daemon deploys real
pushes and Apprise itself sends each message to a local HTTP endpoint
(``FakeForge("apprise")``, tests/fakeforge.py) that records what it receives."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployhook import DeployHook
from deployhook.errors import ConfigError
from deployhook.report import notify
from deployhook.settings import load
from tests.fakeforge import TOKEN, Answer, FakeForge
from tests.helpers import (
    REPOSITORY,
    Daemon,
    Repos,
    deliver_push,
    free_port,
    http,
    start_daemon,
    write_config,
)
from tests.test_report import assert_token_hidden, page

PUBLIC = "https://deploy.example.com"
# post_deploy fails while status.txt says "broken": failures and recoveries at will
BREAKS = ["sh", "-c", "! grep -q broken status.txt"]
NO_APPRISE = "import sys\nsys.modules['apprise'] = None  # as if not installed\n"


@pytest.fixture
def endpoint() -> Iterator[FakeForge]:
    fake = FakeForge("apprise").start()
    yield fake
    fake.stop()


def start(repos: Repos, secret_file: Path, urls: list[str], **settings: Any) -> Daemon:
    """A daemon deploying ``repos`` whose post_deploy fails on "broken", notifying
    ``urls``, logging at debug level (what Apprise and urllib3 log included)."""
    daemon = start_daemon(repos, secret_file, notify=urls, post_deploy=BREAKS,
                          public_url=PUBLIC, log_level="debug", **settings)
    daemon.wait_ready()
    return daemon


def lines(body: dict[str, Any]) -> dict[str, str]:
    """A message's ``name: value`` lines."""
    return dict(line.split(": ", 1) for line in body["message"].splitlines())


def wait_for_step(daemon: Daemon, run_id: int, name: str) -> dict[str, Any]:
    """Run ``run_id``'s step ``name``, once recorded (a generous bound, not a timing)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        steps = http("GET", daemon.url + f"/deployments/{run_id}")[1]["steps"]
        found = [s for s in steps if s["name"] == name]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {name} step in run {run_id}: {steps}")


def test_a_failing_deploy_notifies_naming_target_commit_pusher_reason_and_run(
        repos: Repos, secret_file: Path, endpoint: FakeForge) -> None:
    daemon = start(repos, secret_file, [endpoint.apprise_url()])
    try:
        sha = repos.commit("status.txt", "broken\n")
        status, answer = deliver_push(daemon.url, sha)
        assert status == 500, answer
        [seen] = endpoint.wait_for(1)
        run = http("GET", daemon.url + f"/deployments/{answer['run']}")[1]
        assert seen.authorized and seen.path == f"/notify/{TOKEN}"
        assert (seen.body["title"], seen.body["type"]) == ("default: deploy failed", "failure")
        assert lines(seen.body) == {
            "target": "default", "commit": f"{sha[:12]} update status.txt",
            "pushed by": "octocat", "outcome": "failed", "reason": run["reason"],
            "run": f"{PUBLIC}/runs/{answer['run']}"}
        assert "post_deploy" in run["reason"]
        assert_token_hidden(daemon, repos, answer["run"])
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()


def test_a_success_after_a_failure_notifies_a_recovery_and_a_plain_success_nothing(
        repos: Repos, secret_file: Path, endpoint: FakeForge) -> None:
    daemon = start(repos, secret_file, [endpoint.apprise_url()])
    try:
        outcomes = []
        for number, text in enumerate(["fine\n", "broken\n", "fixed\n", "fine again\n"]):
            _, answer = deliver_push(daemon.url, repos.commit("status.txt", text),
                                     delivery=f"d-{number}")
            outcomes.append(answer["result"])
        assert outcomes == ["deployed", "failed", "deployed", "deployed"]
        endpoint.wait_for(2)
    finally:
        assert daemon.stop() == 0  # waits for every notification under way (settle)
    seen = endpoint.requests
    assert [(r.body["type"], lines(r.body)["outcome"]) for r in seen] == [
        ("failure", "failed"), ("success", "deployed again after a failure")]
    assert seen[1].body["title"] == "default: deploys work again"
    assert lines(seen[1].body)["commit"].endswith(" update status.txt")


@pytest.mark.parametrize(("ok", "before_ok", "notify_on", "sent"), [
    (False, None, ("failure", "recovery"), "failure"),
    (False, False, ("failure", "recovery"), "failure"),  # every failure
    (True, False, ("failure", "recovery"), "recovery"),
    (True, True, ("failure", "recovery"), None),
    (True, None, ("failure", "recovery"), None),  # nothing known before: no recovery
    (True, True, ("failure", "recovery", "success"), "success"),
    (True, False, ("success",), "recovery"),  # a recovery is a success too
    (False, True, ("recovery",), None),
])
def test_which_runs_are_notified(ok: bool, before_ok: bool | None,
                                 notify_on: tuple[str, ...], sent: str | None) -> None:
    event = notify.event_of(ok, before_ok)
    assert (event if notify.wanted(event, notify_on) else None) == sent


@pytest.mark.parametrize("down", ["answers 500", "nothing listens"])
def test_a_notification_that_cannot_be_sent_is_tried_again_then_recorded_as_a_step(
        repos: Repos, secret_file: Path, endpoint: FakeForge, down: str) -> None:
    endpoint.answer("/notify", *[Answer(500, {"message": "down"})] * notify.TRIES)
    url = endpoint.apprise_url()
    if down == "nothing listens":
        url = url.replace(str(endpoint.port), str(free_port()))
    daemon = start(repos, secret_file, [url])
    try:
        status, answer = deliver_push(daemon.url, repos.commit("status.txt", "broken\n"))
        assert status == 500 and answer["result"] == "failed", answer
        step = wait_for_step(daemon, answer["run"], "notify")
        assert step["command"] == "apprise json:// (notify URL 1 of 1)"
        assert step["output"].startswith(f"not delivered after {notify.TRIES} tries: ")
        words = "error=500" if down == "answers 500" else "Connection error"
        assert words in step["output"], step
        sent = [r for r in endpoint.requests if r.path.startswith("/notify/")]
        assert len(sent) == (notify.TRIES if down == "answers 500" else 0)
        assert words in page(daemon.url + f"/runs/{answer['run']}")
        assert_token_hidden(daemon, repos, answer["run"])
    finally:
        daemon.stop()


def test_a_slow_notification_server_never_delays_the_answer(
        repos: Repos, secret_file: Path, endpoint: FakeForge) -> None:
    """The endpoint holds each message until released: the deploy's answer arrives
    meanwhile, so it waited for no notification (no timing measured)."""
    release = threading.Event()
    endpoint.answer("/notify", *[Answer(201, hold=release)] * notify.TRIES)
    daemon = start(repos, secret_file, [endpoint.apprise_url()])
    try:
        status, answer = deliver_push(daemon.url, repos.commit("status.txt", "broken\n"))
        assert status == 500 and answer["result"] == "failed", answer
        assert not release.is_set() and all(r.status == 0 for r in endpoint.requests)
        release.set()
        assert endpoint.wait_for(1)[0].body["type"] == "failure"
    finally:
        release.set()
        daemon.stop()


def test_check_names_each_url_by_number_and_service_never_showing_it(
        repos: Repos, secret_file: Path, endpoint: FakeForge) -> None:
    write_config(repos.root / "config.py", repo_path=str(repos.deployed),
                 secret_file=str(secret_file), repository=REPOSITORY, port=free_port(),
                 notify=[endpoint.apprise_url(), f"nosuch://{TOKEN}"])  # no nosuch://
    check = subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                            str(repos.root / "config.py")], capture_output=True, text=True,
                           cwd=repos.root, timeout=120)
    out = check.stdout + check.stderr
    assert "OK   notify     URL 1 of 2: json, parses" in out, out
    assert "FAIL notify     URL 2 of 2: nosuch: Apprise cannot parse it" in out, out
    assert TOKEN not in out and check.returncode == 1


@pytest.mark.parametrize(("urls", "env", "words"), [
    (["json://deployhook:{token}@127.0.0.1:9/notify"], {"NO_APPRISE": "1"},
     "notify is set but Apprise is not installed: pip install 'deployhook[notify]'"),
    (["json://127.0.0.1:9/notify", "nosuch://{token}"], {},
     "notify URL 2 of target 'default' (nosuch) is not one Apprise can use"),
])
def test_a_daemon_that_cannot_notify_does_not_start(
        repos: Repos, secret_file: Path, tmp_path: Path, urls: list[str],
        env: dict[str, str], words: str) -> None:
    if env:
        hook = tmp_path / "no-apprise"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(NO_APPRISE)
        env = {"PYTHONPATH": str(hook)}
    daemon = start_daemon(repos, secret_file, env=env,
                          notify=[u.format(token=TOKEN) for u in urls])
    try:
        assert daemon.proc.wait(60) == 1
    finally:
        daemon.stop()
    assert words in daemon.log() and TOKEN not in daemon.log()
    if env:  # deployhook check says the same
        check = subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                                str(repos.root / "config.py")], capture_output=True,
                               text=True, cwd=repos.root, env={**os.environ, **env},
                               timeout=120)
        assert f"FAIL notify     {words}" in check.stdout, check.stdout + check.stderr


# -- settings -----------------------------------------------------------------------------
def test_notify_at_the_top_level_is_every_targets_default(tmp_path: Path) -> None:
    url = f"ntfy://{TOKEN}"
    config = tmp_path / "config.py"
    config.write_text(f"notify = [{url!r}]\ntargets = {{'blog': {{'repo_path': 'blog'}}, "
                      "'docs': {'repo_path': 'docs', 'notify': [], "
                      "'notify_on': ['failure', 'success']}}\n")
    loaded = load(config, {})
    assert loaded.target("blog").notify == (url,)
    assert loaded.target("blog").notify_on == ("failure", "recovery")
    assert (loaded.target("docs").notify, loaded.target("docs").notify_on) == (
        (), ("failure", "success"))
    assert TOKEN not in repr(loaded)


@pytest.mark.parametrize(("values", "environ", "words"), [
    ({"notify": f"json://{TOKEN}@example.com"}, {},
     "notify must be list or tuple, got str (not shown: it holds tokens)"),
    ({"notify": [f"{TOKEN}.example.com"]}, {}, "notify entry 1 is not an Apprise URL"),
    ({"notify_on": ["failures"]}, {}, "notify_on must be one of failure, recovery, success"),
    ({}, {"DEPLOYHOOK_NOTIFY": f"json://{TOKEN}@example.com"},
     "DEPLOYHOOK_NOTIFY: notify holds tokens: set it in the config file"),
])
def test_bad_notify_settings_are_config_errors_that_never_show_the_urls(
        tmp_path: Path, values: dict[str, Any], environ: dict[str, str], words: str) -> None:
    config = tmp_path / "config.py"
    config.write_text("".join(f"{key} = {value!r}\n" for key, value in values.items()))
    with pytest.raises(ConfigError) as caught:
        load(config, environ)
    assert words in str(caught.value) and TOKEN not in str(caught.value)


def test_the_url_secrets_are_masked_in_what_apprise_logs() -> None:
    url = f"tgram://123456789:{TOKEN}/987654321"
    notify.hide([url])
    record = logging.LogRecord("apprise", 40, __file__, 1,
                                      "An invalid Telegram Bot Token (%s) was specified.",
                                      (f"123456789:{TOKEN}",), None)
    notify._mask.filter(record)
    assert record.getMessage() == "An invalid Telegram Bot Token (***:***) was specified."



def test_a_reload_that_sets_a_url_apprise_cannot_use_is_rejected(
        repos: Repos, secret_file: Path, tmp_path: Path) -> None:
    """SIGHUP's path: the old config stays, no notifier is made, the URL is not shown."""
    plain = {"repo_path": str(repos.deployed), "secret_file": str(secret_file),
             "repository": REPOSITORY, "reload": "none",
             "state_db": str(tmp_path / "state.sqlite3")}
    bad = write_config(tmp_path / "bad.py", **plain, notify=[f"nosuch://{TOKEN}"])

    async def run() -> tuple[str, bool, bool]:
        hook = DeployHook(load(write_config(tmp_path / "plain.py", **plain), {}))
        try:
            await hook.start()
            with pytest.raises(ConfigError) as caught:
                await hook.reconfigure(load(bad, {}))
            return str(caught.value), hook.config.targets[0].notify == (), hook.notifier is None
        finally:
            hook.close()

    words, kept, none = asyncio.run(run())
    assert words == "notify URL 1 of target 'default' (nosuch) is not one Apprise can use"
    assert kept and none
