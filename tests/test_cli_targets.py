"""The CLI with several targets and every forge (issue 11): ``--target`` on ``history``,
``show``, ``deploy`` and ``send``, ``check`` per target, and ``send --forge``.

Real git repositories, ``python -m deployhook`` subprocesses and, for ``send``, a
small Tornado app standing for the daemon that checks what arrives with
:func:`deployhook.forges.verify` and :func:`deployhook.forges.parse`, then a real
daemon answering at ``/hooks/<target>``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.web

from deployhook import forges
from deployhook.errors import DeliveryError
from deployhook.forges.delivery import parse_body
from tests.helpers import SECRET, Daemon, Repos, free_port, git, make_repos, write_config
from tests.test_cli import WRONG_SECRET, cli

DOCS_SECRET = b"the docs target's own secret"


@dataclass
class Site:
    """Two targets, blog and docs, each with its own origin and checkout."""

    root: Path
    blog: Repos
    docs: Repos

    def config(self, **extra: Any) -> Path:
        (self.root / "docs-secret.txt").write_bytes(b"\n" + DOCS_SECRET + b"\n")
        targets = {
            "blog": {"repo_path": str(self.blog.deployed), "repository": "octo-org/blog",
                     "reload": "none"},
            "docs": {"repo_path": str(self.docs.deployed), "repository": "group/docs",
                     "secret_file": str(self.root / "docs-secret.txt"), "reload": "none",
                     "forge": "gitlab"},
        }
        values = {"secret_file": str(self.root / "secret.txt"), "port": free_port(),
                  "targets": targets, **extra}
        return write_config(self.root / "config.py", **values)


@pytest.fixture
def site(tmp_path: Path, secret_file: Path) -> Site:
    for name in ("blog", "docs"):
        (tmp_path / name).mkdir()
    made = Site(tmp_path, make_repos(tmp_path / "blog"), make_repos(tmp_path / "docs"))
    made.config()
    return made


def run(site: Site, *args: str) -> Any:
    return cli(*args, "--config", "config.py", cwd=site.root)


def test_deploy_and_send_without_target_stop_with_the_list(site: Site) -> None:
    """Several targets, no --target: deploy and send exit 2 naming them; nothing moves."""
    heads = site.blog.head(site.blog.deployed), site.docs.head(site.docs.deployed)
    site.blog.commit()
    site.docs.commit()
    for command in (["deploy"], ["send", "--event", "push"]):
        result = run(site, *command)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "2 targets (blog, docs); choose one with --target NAME" in result.stderr
        assert "Traceback" not in result.stderr
    assert (site.blog.head(site.blog.deployed), site.docs.head(site.docs.deployed)) == heads
    assert not (site.root / "deployhook.sqlite3").exists()


def test_an_unknown_target_exits_2_naming_the_valid_ones(site: Site) -> None:
    for command in (["deploy"], ["send", "--event", "ping"], ["history"], ["show", "1"]):
        result = run(site, *command, "--target", "wiki")
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        assert "no target 'wiki' in this config; its targets: blog, docs" in result.stderr


def test_deploy_one_target_then_history_and_show_per_target(site: Site) -> None:
    """deploy --target deploys that checkout only; history shows every target with a
    target column, --target filters it; show prints the run's target."""
    blog_before = site.blog.head(site.blog.deployed)
    docs_before = site.docs.head(site.docs.deployed)
    docs_sha = site.docs.commit("guide.rst")
    blog_sha = site.blog.commit("post.rst")
    docs = run(site, "deploy", "--target", "docs")
    assert docs.returncode == 0, docs.stdout + docs.stderr
    assert "target docs: deploying main of group/docs" in docs.stdout
    assert site.docs.head(site.docs.deployed) == docs_sha
    assert site.blog.head(site.blog.deployed) == blog_before  # untouched
    blog = run(site, "deploy", "--target", "blog")
    assert blog.returncode == 0, blog.stdout + blog.stderr
    assert site.blog.head(site.blog.deployed) == blog_sha

    history = run(site, "history")
    assert history.returncode == 0, history.stderr
    header, *rows = history.stdout.splitlines()
    assert header.split()[:3] == ["id", "target", "started"]
    assert [row.split()[:2] for row in rows] == [["2", "blog"], ["1", "docs"]]
    only = run(site, "history", "--target", "docs")
    assert only.returncode == 0, only.stderr
    header, *rows = only.stdout.splitlines()
    assert "target" not in header.split() and len(rows) == 1
    assert rows[0].split()[0] == "1" and f"{docs_before[:8]} -> {docs_sha[:8]}" in rows[0]
    as_json = json.loads(run(site, "history", "--json", "--target", "blog").stdout)
    assert as_json["total"] == 1 and as_json["runs"][0]["target"] == "blog"
    assert as_json["runs"][0]["trigger"] == "cli" and as_json["runs"][0]["head_after"] == blog_sha

    shown = run(site, "show", "1")
    assert shown.returncode == 0 and "run 1: ok  (target docs, trigger cli" in shown.stdout
    assert run(site, "show", "1", "--target", "docs").returncode == 0
    wrong = run(site, "show", "1", "--target", "blog")
    assert wrong.returncode == 1 and "run 1 is a run of target docs, not of blog" in wrong.stderr


def test_history_keeps_a_target_the_config_no_longer_names(site: Site) -> None:
    """Runs of a target later removed from the config stay readable with --target."""
    site.docs.commit()
    assert run(site, "deploy", "--target", "docs").returncode == 0
    write_config(site.root / "config.py", repo_path=str(site.blog.deployed), reload="none",
                 secret_file=str(site.root / "secret.txt"))
    history = run(site, "history")
    assert history.stdout.splitlines()[0].split()[:2] == ["id", "target"]  # docs and default
    old = run(site, "history", "--target", "docs")
    assert old.returncode == 0 and old.stdout.splitlines()[1].split()[0] == "1"


# ``python -m deployhook`` as a terminal's foreground job starts it: SIGINT at its default.
# A command inherits an ignored SIGINT (the tests run as a background job of a
# non-interactive shell: POSIX ignores SIGINT and SIGQUIT there), and deployhook, as
# Python and every well-behaved program, leaves an inherited ignore as it is.
AS_A_TERMINAL_JOB = ("import runpy, signal, sys; "
                     "signal.signal(signal.SIGINT, signal.default_int_handler); "
                     "sys.argv[0] = 'deployhook'; "
                     "runpy.run_module('deployhook', run_name='__main__', alter_sys=True)")


def test_ctrl_c_in_deploy_records_the_run_as_interrupted(site: Site) -> None:
    """Ctrl-C during the fetch: exit 130 with the CLI's message, HEAD unchanged, and
    the run (of that target) recorded as failed, "interrupted by the user (Ctrl-C)".
    As a terminal does, SIGINT goes to the command's whole process group (git and the
    remote's upload-pack are in it)."""
    head = site.blog.head(site.blog.deployed)
    site.blog.commit()
    site.blog.slow(60)
    proc = subprocess.Popen([sys.executable, "-c", AS_A_TERMINAL_JOB, "deploy", "--target",
                             "blog", "--config", "config.py"], cwd=site.root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while site.blog.fetches() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    masks = _signal_masks(proc.pid)  # SigIgn/SigBlk: said when the run is not interrupted
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"{out}{err}\nthe CLI's signal masks: {masks}"
    assert "(run 1)" in out and "deploy FAILED: interrupted by the user (Ctrl-C)" in out
    assert "Traceback" not in err
    assert site.blog.head(site.blog.deployed) == head
    [run_] = json.loads(run(site, "history", "--json").stdout)["runs"]
    assert (run_["target"], run_["trigger"], run_["outcome"]) == ("blog", "cli", "failed")
    assert run_["reason"] == "interrupted by the user (Ctrl-C)" and run_["head_after"] == head


def _signal_masks(pid: int) -> list[str]:
    """The SigBlk/SigIgn lines of ``pid``'s /proc status (SIGINT is bit 1)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as exc:
        return [str(exc)]
    return [line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]


def test_check_checks_every_target(site: Site) -> None:
    """A heading per target, then its secret, checkout and remote; docs on a branch its
    remote lacks fails alone."""
    site.config(targets={
        "blog": {"repo_path": str(site.blog.deployed), "reload": "none"},
        "docs": {"repo_path": str(site.docs.deployed), "branch": "mastr", "reload": "none",
                 "secret_file": str(site.root / "docs-secret.txt")}})
    result = run(site, "check")
    out = result.stdout
    assert result.returncode == 1, out
    blog, docs = out.split(f"== target blog: {site.blog.deployed}")[1].split(
        f"== target docs: {site.docs.deployed}")
    assert "OK   secret" in blog and "OK   remote" in blog and "FAIL" not in blog, out
    assert "docs-secret.txt is readable" in docs and "FAIL remote" in docs, out
    assert out.count("OK   writable   repo_path") == 2 and out.count("state_db") == 1, out


def test_check_shows_its_progress_on_a_terminal_only(site: Site) -> None:
    """On a terminal, check says how many targets it has checked ("checked 2/2 targets");
    with its output in a pipe (a script's, a log's) it says nothing of the kind."""
    import pty

    argv = [sys.executable, "-m", "deployhook", "check", "--config", "config.py"]
    shown: list[bytes] = []

    def read(fd: int) -> bytes:
        shown.append(os.read(fd, 65536))
        return shown[-1]

    here = os.getcwd()
    os.chdir(site.root)
    try:
        status = pty.spawn(argv, read)
    finally:
        os.chdir(here)
    terminal = b"".join(shown).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, terminal
    assert "checked 2/2 targets" in terminal and "== target docs" in terminal, terminal
    piped = run(site, "check")
    assert piped.returncode == 0 and "checked " not in piped.stdout + piped.stderr, piped


# -- send --forge, verified by a fake daemon ---------------------------------------------------

class Received(tornado.web.RequestHandler):
    """The fake daemon: checks a delivery with forges.detect, verify and parse."""

    def initialize(self, secrets: dict[str, bytes], seen: list[dict[str, Any]]) -> None:
        self.secrets, self.seen = secrets, seen

    def post(self, name: str) -> None:
        headers = dict(self.request.headers.get_all())
        forge = forges.detect(headers)
        try:
            forges.verify(forge, [self.secrets[name]], headers, self.request.body)
            event = forges.parse(forge, headers, parse_body(
                headers.get("Content-Type"), self.request.body))
        except DeliveryError as exc:
            self.set_status(exc.status)
            self.finish({"result": "refused", "reason": exc.reason})
            return
        self.seen.append({"target": name, "forge": forge, "event": event, "headers": headers})
        self.finish({"result": "verified", "reason": type(event).__name__, "forge": forge})


@pytest.fixture
def fake_daemon(site: Site) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A Tornado app in a thread answering POST /hooks/<name>: (base URL, what it saw)."""
    seen: list[dict[str, Any]] = []
    secrets = {"blog": SECRET, "docs": DOCS_SECRET}
    started = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            app = tornado.web.Application([(r"/hooks/([a-z0-9_-]+)", Received,
                                            {"secrets": secrets, "seen": seen})])
            server = app.listen(0, "127.0.0.1")
            state["port"] = next(iter(server._sockets.values())).getsockname()[1]
            state["stop"] = asyncio.Event()
            state["loop"] = asyncio.get_running_loop()
            started.set()
            await state["stop"].wait()
            server.stop()
        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}", seen
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


@pytest.mark.parametrize("forge", forges.FORGES)
def test_send_push_of_each_forge_verifies_and_parses(
        site: Site, fake_daemon: tuple[str, list[dict[str, Any]]], forge: str) -> None:
    """The push `send --forge F` sends is detected as F, verified with the target's
    secret (docs: its own file) and parsed as that push."""
    url, seen = fake_daemon
    for name, repos, repository in (("blog", site.blog, "octo-org/blog"),
                                    ("docs", site.docs, "group/docs")):
        sha = repos.commit()
        result = run(site, "send", "--event", "push", "--target", name, "--forge", forge,
                     "--url", f"{url}/hooks/{name}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"sending {forge} push delivery" in result.stdout
        answer = json.loads(result.stdout[result.stdout.index("{"):])
        assert answer == {"result": "verified", "reason": "Pushes", "forge": forge}
        event = seen[-1]["event"]
        assert isinstance(event, forges.Pushes) and event.forge == forge
        [push] = event.changes
        assert push.ref == "refs/heads/main" and push.after == sha
        assert push.before == repos.head(repos.deployed)
        expected = "octo-org/blog" if name == "blog" else repository
        assert push.repository == expected
    wrong = cli("send", "--event", "push", "--target", "blog", "--forge", forge, "--url",
                f"{url}/hooks/blog", "--config", "config.py", cwd=site.root,
                env={"DEPLOYHOOK_SECRET": WRONG_SECRET})
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stdout, wrong.stdout


def test_send_defaults_to_the_targets_forge_and_own_url(
        site: Site, fake_daemon: tuple[str, list[dict[str, Any]]]) -> None:
    """docs sets forge = "gitlab": send without --forge sends GitLab's push to
    /hooks/docs (the configured port)."""
    url, seen = fake_daemon
    port = int(url.rsplit(":", 1)[1])
    site.config(port=port)
    site.docs.commit()
    result = run(site, "send", "--event", "push", "--target", "docs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"to {url}/hooks/docs" in result.stdout
    assert seen[-1]["forge"] == "gitlab" and seen[-1]["target"] == "docs"
    assert seen[-1]["headers"]["X-Gitlab-Event"] == "Push Hook"


@pytest.mark.parametrize("forge", ["github", "gitlab", "gitea", "bitbucket-server"])
def test_send_tag_pushes_the_remotes_tag(
        site: Site, fake_daemon: tuple[str, list[dict[str, Any]]], forge: str) -> None:
    """--tag sends the creation of a tag the remote has (GitLab: a Tag Push Hook); a tag
    the remote lacks is a clear error and sends nothing."""
    url, seen = fake_daemon
    site.blog.commit()
    git(site.blog.pusher, "tag", "-a", "-m", "release", "v1.0")
    git(site.blog.pusher, "push", "-q", "origin", "v1.0")
    tag_object = git(site.blog.pusher, "rev-parse", "v1.0")
    result = run(site, "send", "--event", "push", "--target", "blog", "--forge", forge,
                 "--tag", "v1.0", "--url", f"{url}/hooks/blog")
    assert result.returncode == 0, result.stdout + result.stderr
    [push] = seen[-1]["event"].changes
    assert (push.ref, push.before, push.after) == ("refs/tags/v1.0", "0" * 40, tag_object)
    if forge == "gitlab":
        assert seen[-1]["headers"]["X-Gitlab-Event"] == "Tag Push Hook"
    missing = run(site, "send", "--event", "push", "--target", "blog", "--forge", forge,
                  "--tag", "v9", "--url", f"{url}/hooks/blog")
    assert missing.returncode == 1 and "the remote has no tag 'v9'" in missing.stderr
    assert len(seen) == 1


@pytest.mark.parametrize("forge", ["gitlab", "gitea", "forgejo", "gogs", "bitbucket"])
def test_send_ping_of_a_forge_without_ping_exits_2(site: Site, forge: str) -> None:
    result = run(site, "send", "--event", "ping", "--target", "blog", "--forge", forge,
                 "--url", "http://127.0.0.1:9/hooks/blog")
    assert result.returncode == 2
    assert f"{forge} has no ping event: its test button sends a push" in result.stderr


@pytest.mark.parametrize("forge", ["github", "bitbucket-server"])
def test_send_ping_of_a_forge_with_ping(
        site: Site, fake_daemon: tuple[str, list[dict[str, Any]]], forge: str) -> None:
    url, seen = fake_daemon
    result = run(site, "send", "--event", "ping", "--target", "blog", "--forge", forge,
                 "--url", f"{url}/hooks/blog")
    assert result.returncode == 0, result.stdout + result.stderr
    assert isinstance(seen[-1]["event"], forges.Ping) and seen[-1]["forge"] == forge


# -- send --forge to a real daemon at /hooks/<target> ------------------------------------------

@pytest.fixture
def two_target_daemon(site: Site) -> Iterator[Daemon]:
    """The daemon serving blog and docs (docs pins forge gitlab) on a free port."""
    config = site.config()
    proc = Daemon(config, _config_port(config))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
    assert SECRET.decode() not in proc.log() and DOCS_SECRET.decode() not in proc.log()


def _config_port(config: Path) -> int:
    return int(next(line.split("=", 1)[1] for line in config.read_text().splitlines()
                    if line.startswith("port =")))


@pytest.mark.parametrize("forge", forges.FORGES)
def test_send_each_forge_to_the_daemon_deploys_that_target_only(
        site: Site, two_target_daemon: Daemon, forge: str) -> None:
    """`send --forge F --target blog` to the running daemon (its default URL,
    /hooks/blog): blog deploys the pushed commit, docs is untouched; the run and its
    delivery are recorded under blog; a wrong secret is answered 401."""
    docs_head = site.docs.head(site.docs.deployed)
    site.docs.commit()  # pushed, but no delivery for docs
    sha = site.blog.commit()
    result = run(site, "send", "--event", "push", "--target", "blog", "--forge", forge)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/hooks/blog: refs/heads/main" in result.stdout
    answer = json.loads(result.stdout[result.stdout.index("{"):])
    assert answer["result"] == "deployed" and answer["after"] == sha, answer
    assert site.blog.head(site.blog.deployed) == sha
    assert site.docs.head(site.docs.deployed) == docs_head
    shown = json.loads(run(site, "show", str(answer["run"]), "--json").stdout)
    assert shown["target"] == "blog" and shown["deliveries"][0]["after"] == sha
    wrong = cli("send", "--event", "push", "--target", "blog", "--forge", forge,
                "--config", "config.py", cwd=site.root, env={"DEPLOYHOOK_SECRET": WRONG_SECRET})
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stdout, wrong.stdout


def test_send_to_the_daemon_with_the_docs_secret_and_forge(
        site: Site, two_target_daemon: Daemon) -> None:
    """docs: its own secret file and its pinned forge, gitlab (another forge's delivery
    is refused, and send says why); docs' delivery sent to /hooks/blog is refused (blog's
    secret differs)."""
    sha = site.docs.commit()
    result = run(site, "send", "--event", "push", "--target", "docs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sending gitlab push delivery" in result.stdout
    assert site.docs.head(site.docs.deployed) == sha
    ping = run(site, "send", "--event", "ping", "--target", "blog", "--forge",
               "bitbucket-server")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    pinned = run(site, "send", "--event", "ping", "--target", "docs", "--forge",
                 "bitbucket-server")  # docs pins gitlab: the daemon refuses other forges
    assert pinned.returncode == 1 and "HTTP 401" in pinned.stdout, pinned.stdout
    assert "target docs sets forge = 'gitlab'" in pinned.stderr
    crossed = run(site, "send", "--event", "push", "--target", "docs", "--url",
                  f"{two_target_daemon.url}/hooks/blog")
    assert crossed.returncode == 1 and "HTTP 401" in crossed.stdout, crossed.stdout


def test_init_writes_each_targets_secret_and_names_its_url(tmp_path: Path) -> None:
    """Two targets, docs with its own secret_file: init writes both files (0600), never
    prints them, and names each target's /hooks/<name> URL; a rerun keeps them."""
    write_config(tmp_path / "config.py", targets={
        "blog": {"repo_path": str(tmp_path / "blog")},
        "docs": {"repo_path": str(tmp_path / "docs"), "secret_file": "docs.secret"}})
    first = cli("init", "--config", "config.py", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    secrets = [(tmp_path / name).read_text().strip() for name in ("secret.txt", "docs.secret")]
    assert all(len(secret) >= 32 for secret in secrets) and secrets[0] != secrets[1]
    assert stat.S_IMODE((tmp_path / "docs.secret").stat().st_mode) == 0o600
    assert not any(secret in first.stdout + first.stderr for secret in secrets)
    assert f"secret (target docs) to {tmp_path / 'docs.secret'}" in first.stdout
    assert "/hooks/blog" in first.stdout and "/hooks/docs" in first.stdout
    second = cli("init", "--config", "config.py", cwd=tmp_path)
    assert "wrote a new random secret" not in second.stdout
    assert [(tmp_path / n).read_text().strip() for n in ("secret.txt", "docs.secret")] == secrets
