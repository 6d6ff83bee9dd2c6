"""Reporting to the forge: commit statuses and GitHub Deployments, sent by a real daemon
to a fake forge API (tests/fakeforge.py) after real deploys."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders

from deployhook import forges
from deployhook.errors import ConfigError
from deployhook.forges import payloads
from deployhook.record.recorder import Recorder
from deployhook.report import reporter
from deployhook.report.call import DESCRIPTION_MAX, SUCCESS, Status, short
from deployhook.settings import Config, load
from tests.fakeforge import TOKEN, Answer, FakeForge
from tests.helpers import (
    REPOSITORY,
    SECRET,
    Daemon,
    Repos,
    basic_auth,
    free_port,
    http,
    write_config,
)

PUBLIC = "https://deploy.example.com"
CONTEXT = "deployhook/site"


def start(repos: Repos, secret_file: Path, fake: FakeForge, **settings: Any) -> Daemon:
    """A daemon with one target ``site`` of ``fake.forge`` reporting to ``fake``."""
    token = repos.root / "report-token.txt"
    token.write_text(TOKEN + "\n")
    port = free_port()
    target = {"repo_path": str(repos.deployed), "repository": REPOSITORY, "reload": "none",
              "forge": fake.forge, "report": "status", "report_token_file": str(token),
              "api_url": fake.url, **settings}
    daemon = Daemon(write_config(repos.root / "config.py", port=port, public_url=PUBLIC,
                                 secret_file=str(secret_file), targets={"site": target}),
                    port)
    daemon.wait_ready()
    return daemon


def deliver(daemon: Daemon, forge: str, sha: str, number: int = 1) -> tuple[int, Any]:
    """A signed push of ``sha`` to main, as ``forge`` sends it, to ``/hooks/site``."""
    payload = payloads.push_payload(forge, repository=REPOSITORY, ref="refs/heads/main",
                                    before="1" * 40, after=sha, pusher="octocat",
                                    email="octocat@example.com", default_branch="main")
    body = json.dumps(payload).encode()
    headers = {**forges.sign_headers(forge, SECRET, body, "push", delivery_id=f"d-{number}"),
               "Content-Type": "application/json"}
    return http("POST", daemon.url + "/hooks/site", body, headers)


def page(url: str) -> str:
    request = urllib.request.Request(url, headers=basic_auth())
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def assert_token_hidden(daemon: Daemon, repos: Repos, run_id: int) -> None:
    """The token is in no log line, no byte of the record, no API answer, no page."""
    assert TOKEN not in daemon.log()
    for name in ("deployhook.sqlite3", "deployhook.sqlite3-wal"):
        path = repos.root / name
        if path.exists():
            assert TOKEN.encode() not in path.read_bytes()
    assert TOKEN not in json.dumps(http("GET", daemon.url + "/deployments")[1])
    assert TOKEN not in json.dumps(http("GET", daemon.url + f"/deployments/{run_id}")[1])
    assert TOKEN not in json.dumps(http("GET", daemon.url + "/health")[1])
    assert TOKEN not in page(daemon.url + f"/runs/{run_id}")
    assert TOKEN not in page(daemon.url + "/")


@pytest.fixture
def github() -> Iterator[FakeForge]:
    fake = FakeForge("github").start()
    yield fake
    fake.stop()


def expected(forge: str, sha: str, state: str, run_id: int | None) -> tuple[str, dict[str, Any]]:
    """The documented path and body fields of ``forge``'s status call."""
    link = f"{PUBLIC}/runs/{run_id}" if run_id else f"{PUBLIC}/targets/site"
    if forge == "github" or forge in ("gitea", "forgejo"):
        return (f"/repos/{REPOSITORY}/statuses/{sha}",
                {"state": state, "context": CONTEXT, "target_url": link})
    if forge == "gitlab":
        states = {"pending": "running", "success": "success", "failure": "failed"}
        return (f"/projects/octo-org%2Fblog/statuses/{sha}",
                {"state": states[state], "name": CONTEXT, "target_url": link})
    states = {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED"}
    fields = {"state": states[state], "key": CONTEXT, "url": link}
    if forge == "bitbucket":
        return f"/repositories/{REPOSITORY}/commit/{sha}/statuses/build", fields
    return f"/rest/build-status/1.0/commits/{sha}", fields


@pytest.mark.parametrize("forge", ["github", "gitlab", "gitea", "forgejo", "bitbucket",
                                   "bitbucket-server"])
def test_a_deploy_sets_pending_then_success_on_the_pushed_commit(
        repos: Repos, secret_file: Path, forge: str) -> None:
    fake = FakeForge(forge).start()
    daemon = start(repos, secret_file, fake)
    try:
        sha = repos.commit("site.txt", "reported\n")
        status, answer = deliver(daemon, forge, sha)
        assert status == 200, answer
        run_id = answer["run"]
        seen = fake.wait_for(2)
        assert len(seen) == 2 and all(r.authorized and r.status == 201 for r in seen)
        for request, state, run in zip(seen, ["pending", "success"], [None, run_id],
                                       strict=True):
            path, fields = expected(forge, sha, state, run)
            assert request.path == path
            assert {k: request.body.get(k) for k in fields} == fields, request.body
            assert 0 < len(request.body["description"]) <= DESCRIPTION_MAX
        assert_token_hidden(daemon, repos, run_id)
    finally:
        daemon.stop()
        fake.stop()
    assert "Traceback" not in daemon.log()


def test_a_failed_deploy_reports_failure(repos: Repos, secret_file: Path,
                                         github: FakeForge) -> None:
    daemon = start(repos, secret_file, github, post_deploy=["false"])
    try:
        sha = repos.commit("site.txt", "breaks\n")
        status, answer = deliver(daemon, "github", sha)
        assert status == 500, answer
        seen = github.wait_for(2)
        assert [r.body["state"] for r in seen] == ["pending", "failure"]
        assert seen[1].body["description"].startswith("deploy to site failed: ")
        assert seen[1].path == f"/repos/{REPOSITORY}/statuses/{sha}"
    finally:
        daemon.stop()


def test_github_deployments_create_one_then_set_in_progress_and_success(
        repos: Repos, secret_file: Path, github: FakeForge) -> None:
    daemon = start(repos, secret_file, github, report="deployment")
    try:
        sha = repos.commit("site.txt", "deployment\n")
        status, answer = deliver(daemon, "github", sha)
        assert status == 200, answer
        seen = github.wait_for(3)
        assert [r.path for r in seen] == [f"/repos/{REPOSITORY}/deployments",
                                          f"/repos/{REPOSITORY}/deployments/41/statuses",
                                          f"/repos/{REPOSITORY}/deployments/41/statuses"]
        created = seen[0].body
        assert (created["ref"], created["environment"]) == (sha, "site")
        assert created["required_contexts"] == [] and created["auto_merge"] is False
        assert [r.body["state"] for r in seen[1:]] == ["in_progress", "success"]
        assert seen[2].body["log_url"] == f"{PUBLIC}/runs/{answer['run']}"
        assert_token_hidden(daemon, repos, answer["run"])
    finally:
        daemon.stop()


def test_rate_limits_are_waited_out_and_server_errors_retried(
        repos: Repos, secret_file: Path, github: FakeForge) -> None:
    github.answer("/statuses/", Answer(403, {"message": "API rate limit exceeded"},
                                       {"Retry-After": "1"}),
                  Answer(500, {"message": "boom"}), Answer(500, {"message": "boom"}))
    daemon = start(repos, secret_file, github)
    try:
        sha = repos.commit("site.txt", "limited\n")
        status, answer = deliver(daemon, "github", sha)
        assert status == 200 and answer["result"] == "deployed", answer
        seen = github.wait_for(5)
        assert [(r.status, r.body["state"]) for r in seen] == [
            (403, "pending"), (500, "pending"), (500, "pending"), (201, "pending"),
            (201, "success")]
        run = http("GET", daemon.url + f"/deployments/{answer['run']}")[1]
        assert not [s for s in run["steps"] if s["name"] == "report"], run["steps"]
        assert "rate limit exceeded; trying again in 1.0s" in daemon.log()
    finally:
        daemon.stop()


def test_a_refused_report_is_recorded_in_the_run_and_changes_no_answer(
        repos: Repos, secret_file: Path, github: FakeForge) -> None:
    refusal = {"message": "Validation Failed",
               "errors": [{"field": "description", "code": "custom",
                           "message": "description is too long (maximum is 140 characters)"}]}
    github.answer("/statuses/", Answer(201), Answer(422, refusal))
    daemon = start(repos, secret_file, github)
    try:
        sha = repos.commit("site.txt", "refused\n")
        status, answer = deliver(daemon, "github", sha)
        assert status == 200 and answer["result"] == "deployed", answer
        assert len(github.wait_for(2)) == 2  # 422 is not retried
        run_id = answer["run"]
        steps = wait_for_report_step(daemon, run_id)
        assert steps[-1]["status"] == 422
        assert "description is too long" in steps[-1]["output"]
        assert steps[-1]["command"] == f"POST {github.url}/repos/{REPOSITORY}/statuses/{sha}"
        assert "description is too long" in page(daemon.url + f"/runs/{run_id}")
        assert_token_hidden(daemon, repos, run_id)
    finally:
        daemon.stop()


def wait_for_report_step(daemon: Daemon, run_id: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        steps = http("GET", daemon.url + f"/deployments/{run_id}")[1]["steps"]
        if steps and steps[-1]["name"] == "report":
            return steps
        time.sleep(0.05)
    raise AssertionError(f"no report step in run {run_id}: {steps}")


def test_a_slow_forge_never_delays_the_deploy_or_its_answer(
        repos: Repos, secret_file: Path, github: FakeForge) -> None:
    release = threading.Event()
    github.answer("/statuses/", Answer(201, hold=release))
    daemon = start(repos, secret_file, github)
    try:
        sha = repos.commit("site.txt", "slow\n")
        status, answer = deliver(daemon, "github", sha)  # while the forge holds "pending"
        assert status == 200 and answer["result"] == "deployed", answer
        assert [r.status for r in github.requests] == [0]  # still unanswered
        release.set()
        assert [r.body["state"] for r in github.wait_for(2)] == ["pending", "success"]
    finally:
        release.set()
        daemon.stop()


def test_a_missing_token_is_recorded_and_the_deploy_goes_on(
        repos: Repos, secret_file: Path, github: FakeForge) -> None:
    daemon = start(repos, secret_file, github,
                   report_token_file=str(repos.root / "missing-token"))
    try:
        sha = repos.commit("site.txt", "no token\n")
        status, answer = deliver(daemon, "github", sha)
        assert status == 200, answer
        steps = wait_for_report_step(daemon, answer["run"])
        assert "cannot read the token" in steps[-1]["output"]
        assert github.requests == []
    finally:
        daemon.stop()


@pytest.mark.parametrize("text", [f"{TOKEN}\n# the CI bot's token, rotate in May\n",
                                  f"# the deploy token\n\n   {TOKEN}  \n\n"])
def test_comment_lines_in_the_token_file_are_skipped_and_the_token_is_logged_nowhere(
        repos: Repos, secret_file: Path, github: FakeForge, text: str) -> None:
    """A token file with ``#`` comment lines and blank lines around the token: the token
    line is sent (the forge sees it), and no log line, traceback or record holds it."""
    token = repos.root / "commented.token"
    token.write_text(text)
    daemon = start(repos, secret_file, github, report_token_file=str(token))
    try:
        status, answer = deliver(daemon, "github", repos.commit("site.txt", "commented\n"))
        assert status == 200, answer
        seen = github.wait_for(2)
        assert [(r.authorized, r.body["state"]) for r in seen] == [
            (True, "pending"), (True, "success")]
        assert_token_hidden(daemon, repos, answer["run"])
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log() and "rotate in May" not in daemon.log()


BAD_CHARACTERS = "holds a token with whitespace, control or non-ASCII characters"


@pytest.mark.parametrize(("text", "words"), [
    (f"{TOKEN}\nghp_second0token0line\n", "holds more than one token line"),
    (f"# two tokens\n{TOKEN}\n# old one\nghp_second0token0line\n",
     "holds more than one token line"),
    (f"{TOKEN[:8]} ghp_second0token0line\n", BAD_CHARACTERS),
    (f"{TOKEN[:8]}\x1bghp_second0token0line\n", BAD_CHARACTERS),
    (f"{TOKEN[:8]}\u00e9ghp_second0token0line\n", BAD_CHARACTERS),
    ("# ghp_second0token0line, in the vault\n\n", "holds no token"),
])
def test_a_malformed_token_file_fails_naming_the_file_never_its_content(
        repos: Repos, secret_file: Path, github: FakeForge, text: str, words: str) -> None:
    """Two token lines, a token holding whitespace or a control character, or only
    comments: no call is sent; the run gets a ``report`` step and ``deployhook check``
    a FAIL line, both naming the file and what is wrong with it; no log line, step or
    check line holds any of the file's content."""
    from deployhook.cli.check import report_token

    token = repos.root / "malformed.token"
    token.write_text(text)
    token.chmod(0o600)
    daemon = start(repos, secret_file, github, report_token_file=str(token))
    try:
        status, answer = deliver(daemon, "github", repos.commit("site.txt", "malformed\n"))
        assert status == 200, answer
        step = wait_for_report_step(daemon, answer["run"])[-1]
        assert f"{token} {words}" in step["output"], step
        assert github.requests == []
    finally:
        daemon.stop()
    config = load(repos.root / "config.py", {})
    lines = [r.line() for r in report_token(config.target("site"))]
    assert len(lines) == 1 and lines[0].startswith(f"FAIL report     {token} {words}"), lines
    shown = "\n".join([daemon.log(), json.dumps(step), *lines])
    for part in (TOKEN, TOKEN[:8], "ghp_second0token0line"):
        assert part not in shown, part
    assert "Traceback" not in daemon.log()


def test_a_request_that_cannot_be_built_fails_with_no_header_in_its_reason(tmp_path: Path) -> None:
    """A token holding a newline (as a token file's two lines read whole gave it): the
    HTTP client refuses the header with its text in the message; the ReportError says
    what failed without that text, and nothing reaches the forge."""
    fake = FakeForge("github").start()
    token = f"{TOKEN}\n# the CI token"
    call = reporter.status_call("github", fake.url, token,
                                Status(REPOSITORY, "a" * 40, SUCCESS, CONTEXT, "ok"))
    try:
        with pytest.raises(reporter.ReportError) as caught:
            asyncio.run(reporter.Reporter(Recorder(str(tmp_path / "record.sqlite3")),
                                          lambda: None).send(call, token))
    finally:
        fake.stop()
    assert fake.requests == []
    assert caught.value.reason == "the request could not be sent (ValueError)"
    assert TOKEN not in str(caught.value) and "Authorization" not in str(caught.value)


def test_a_crash_in_reporting_is_logged_as_its_type_and_place_only() -> None:
    """An unexpected exception whose text holds a header: the log line names its type,
    file, line and function, never its text."""
    def build_headers() -> None:
        raise ValueError(f"Illegal header: Authorization: Bearer {TOKEN}")

    try:
        build_headers()
    except ValueError as exc:
        site = reporter.crash_site(exc)
    assert site.startswith("ValueError at test_report.py:") and "in build_headers" in site
    assert TOKEN not in site and "Authorization" not in site


def test_a_forge_that_cannot_be_reached_is_tried_again_then_a_report_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing listening at ``api_url``: each try is a 599 (connection refused), tried
    again as documented, then a ReportError with the connection's reason."""
    monkeypatch.setattr(reporter, "BACKOFF", 0.01)
    api = f"http://127.0.0.1:{free_port()}"
    call = reporter.status_call("github", api, TOKEN,
                                Status(REPOSITORY, "a" * 40, SUCCESS, CONTEXT, "ok"))
    with pytest.raises(reporter.ReportError) as caught:
        asyncio.run(reporter.Reporter(Recorder(str(tmp_path / "record.sqlite3")),
                                      lambda: None).send(call, TOKEN))
    assert caught.value.status == 599 and "Connection refused" in caught.value.reason
    assert TOKEN not in str(caught.value)


# -- settings ---------------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "words"), [
    ({"report": "status"}, "needs forge"),
    ({"report": "status", "forge": "gogs"}, "gogs"),
    ({"report": "deployment", "forge": "gitlab"}, "needs forge 'github'"),
    ({"report": "commit", "forge": "github"}, "report must be one of"),
    ({"report": "status", "forge": "bitbucket-server"}, "needs api_url"),
    ({"api_url": "ftp://x"}, "api_url must be"),
])
def test_bad_report_settings_are_config_errors(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Config().default_target("site", **settings)


def test_public_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="public_url"):
        Config(public_url="deploy.example.com")


def test_systemd_credential_is_the_token_file_of_each_target(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "report-token-blog").write_text(TOKEN)
    config = write_config(tmp_path / "config.py", targets={
        "blog": {"repo_path": "blog", "forge": "github", "report": "status"},
        "docs": {"repo_path": "docs"}})
    loaded = load(config, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert loaded.target("blog").report_token_file == str(credentials / "report-token-blog")
    assert loaded.target("docs").report_token_file is None
    assert TOKEN not in repr(loaded)


# -- the pure parts -----------------------------------------------------------------------
def test_descriptions_are_cut_to_140_characters() -> None:
    text = short("x" * 500)
    assert len(text) == DESCRIPTION_MAX and text.endswith("...")
    status = Status(REPOSITORY, "a" * 40, SUCCESS, CONTEXT, "y" * 300)
    for forge in ("github", "gitlab", "gitea", "bitbucket"):
        call = reporter.status_call(forge, None, TOKEN, status)
        assert len(call.body["description"]) <= DESCRIPTION_MAX
        assert TOKEN not in call.what and TOKEN not in repr(call)


def test_public_apis_by_default() -> None:
    status = Status(REPOSITORY, "a" * 40, SUCCESS, CONTEXT, "ok")
    urls = {forge: reporter.status_call(forge, None, TOKEN, status).url
            for forge in ("github", "gitlab", "gitea", "forgejo", "bitbucket")}
    assert urls["github"].startswith("https://api.github.com/repos/")
    assert urls["gitlab"].startswith("https://gitlab.com/api/v4/projects/octo-org%2Fblog/")
    assert urls["forgejo"].startswith("https://codeberg.org/api/v1/repos/")
    assert urls["bitbucket"].startswith("https://api.bitbucket.org/2.0/repositories/")


@pytest.mark.parametrize(("forge", "path"), [
    ("github", "/repos/octo/%2E%2E/a/statuses/..%2F..%2Fadmin%2Fusers%3Fpromote%3D1%23"),
    ("gitlab", "/projects/octo%2F..%2Fa/statuses/..%2F..%2Fadmin%2Fusers%3Fpromote%3D1%23"),
    ("gitea", "/repos/octo/%2E%2E/a/statuses/..%2F..%2Fadmin%2Fusers%3Fpromote%3D1%23"),
    ("bitbucket", "/repositories/octo/%2E%2E/a/commit/..%2F..%2Fadmin%2Fusers%3Fpromote%3D1%23"
                  "/statuses/build"),
    ("bitbucket-server", "/rest/build-status/1.0/commits/"
                         "..%2F..%2Fadmin%2Fusers%3Fpromote%3D1%23"),
])
def test_each_path_segment_of_a_forge_url_is_quoted(forge: str, path: str) -> None:
    """Whatever a SHA or a repository holds, it stays one path segment of the forge's
    URL: no '..' climbs, no '?' or '#' starts a query (issue 23 finding 1)."""
    status = Status("octo/../a", "../../admin/users?promote=1#", SUCCESS, CONTEXT, "ok")
    call = reporter.status_call(forge, "https://forge.example", TOKEN, status)
    assert call.url == "https://forge.example" + path
    dots = reporter.status_call("github", "https://forge.example", TOKEN,
                                Status("octo/..", "..", SUCCESS, CONTEXT, "ok"))
    assert dots.url == "https://forge.example/repos/octo/%2E%2E/statuses/%2E%2E"


def test_a_top_level_report_is_the_default_of_targets_with_their_own_forge(
        tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.py", report="status", targets={
        "blog": {"repo_path": "blog", "forge": "github"},
        "docs": {"repo_path": "docs", "forge": "gitlab", "report": None}})
    loaded = load(config, {})
    assert (loaded.target("blog").report, loaded.target("docs").report) == ("status", None)


def test_systemd_credential_report_token_without_targets(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "report-token").write_text(TOKEN)
    config = write_config(tmp_path / "config.py", forge="gitea", report="status")
    loaded = load(config, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert loaded.targets[0].report_token_file == str(credentials / "report-token")


def response(code: int, headers: dict[str, str]) -> HTTPResponse:
    return HTTPResponse(HTTPRequest("http://forge.invalid/"), code,
                        headers=HTTPHeaders(headers), buffer=io.BytesIO(b"{}"))


@pytest.mark.parametrize(("code", "headers", "wait"), [
    (403, {"Retry-After": "7"}, 7.0),
    (429, {"Retry-After": "2"}, 2.0),
    (429, {}, 1.5),
    (500, {}, 1.5),
    (502, {}, 1.5),
    (599, {}, 1.5),
    (403, {}, None),  # a token without the permission: trying again cannot help
    (401, {}, None),
    (404, {}, None),
    (422, {}, None),
])
def test_which_answers_are_tried_again(code: int, headers: dict[str, str],
                                       wait: float | None) -> None:
    assert reporter.retry_after(response(code, headers), 1.5) == wait


def test_github_rate_limit_reset_is_waited_for() -> None:
    reset = time.time() + 30
    wait = reporter.retry_after(response(403, {"X-RateLimit-Remaining": "0",
                                               "X-RateLimit-Reset": f"{reset:.0f}"}), 1.0)
    assert wait is not None and 29 <= wait <= 32


def test_retries_are_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Against the fake forge over real HTTP: a forge that keeps failing gets TRIES calls,
    then the forge's reason (without the token) comes back as a ReportError."""
    monkeypatch.setattr(reporter, "BACKOFF", 0.01)
    fake = FakeForge("github").start()
    fake.answer("/statuses/", *[Answer(500, {"message": f"boom {TOKEN}"})] * 10)
    status = Status(REPOSITORY, "a" * 40, SUCCESS, CONTEXT, "ok")
    call = reporter.status_call("github", fake.url, TOKEN, status)
    try:
        with pytest.raises(reporter.ReportError) as caught:
            asyncio.run(reporter.Reporter(Recorder(str(tmp_path / "record.sqlite3")),
                                          lambda: None).send(call, TOKEN))
    finally:
        fake.stop()
    assert len(fake.requests) == reporter.TRIES
    assert caught.value.status == 500 and "boom ***" in caught.value.reason
    assert TOKEN not in str(caught.value)


def test_a_stopping_daemon_lets_the_forge_hear_the_end_of_the_run(
        repos: Repos, secret_file: Path, github: FakeForge) -> None:
    release = threading.Event()
    github.answer("/statuses/", Answer(201, hold=release))
    daemon = start(repos, secret_file, github)
    try:
        sha = repos.commit("site.txt", "stopping\n")
        status, answer = deliver(daemon, "github", sha)
        assert status == 200, answer
        daemon.proc.terminate()
        deadline = time.monotonic() + 30
        while "stopping: no new connections" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        release.set()  # the daemon is stopping: "pending" is answered only now
        assert daemon.proc.wait(60) == 0
        assert [(r.status, r.body["state"]) for r in github.requests] == [
            (201, "pending"), (201, "success")]
    finally:
        release.set()
        daemon.stop()


def test_a_step_is_added_to_a_finished_run(tmp_path: Path) -> None:
    from deployhook.git.steps import Step
    from deployhook.record.store import Store

    store = Store(str(tmp_path / "record.sqlite3"))
    run_id = store.start_run("webhook", "main", None, [], ["octocat"], target="site")
    store.finish_run(run_id, True, None, "b" * 40, "", [Step("fetch", "git fetch", 0, 0.1, "")])
    assert store.add_step(run_id, Step("report", "POST https://x/", 422, 0.0, "too long"))
    assert [(s["seq"], s["name"], s["status"]) for s in store.run(run_id)["steps"]] == [
        (0, "fetch", 0), (1, "report", 422)]
    assert store.run(run_id)["outcome"] == "ok"
    assert not store.add_step(run_id + 1, Step("report", "POST https://x/", 1, 0.0, ""))
    store.close()


def test_check_reports_each_targets_token_file_without_showing_it(tmp_path: Path) -> None:
    from deployhook.cli.check import report_token

    token = tmp_path / "blog.token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    config = load(write_config(tmp_path / "config.py", targets={
        "blog": {"repo_path": "blog", "forge": "github", "report": "status",
                 "report_token_file": str(token)},
        "docs": {"repo_path": "docs", "forge": "gitlab", "report": "status",
                 "report_token_file": "missing.token"},
        "site": {"repo_path": "site"}}), {})
    lines = [r.line() for target in config.targets for r in report_token(target)]
    assert lines[0].startswith("OK   report     status to github")
    assert lines[1].startswith("WARN report") and "chmod 600" in lines[1]
    assert lines[2].startswith("FAIL report     cannot read the token")
    assert len(lines) == 3 and TOKEN not in "\n".join(lines)
