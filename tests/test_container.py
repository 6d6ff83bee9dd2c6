"""The container image, for real with podman (issue 14, "Container").

The image is built FROM a local base (Docker Hub is not reachable here):
``localhost/deployhook-base`` from tests/container/build-base.sh (.ci/setup-container.sh),
with deployhook installed from wheels built on this machine (the Dockerfile's
``wheels`` stage replaced by ``--build-context``).  The container runs as its
non-root user with real repositories bind-mounted at the same path (the checkout
owned by that user, as docs/container.rst says), the secret
as a podman secret and its settings as ``DEPLOYHOOK_*`` variables.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    REPOSITORY,
    SECRET,
    STATUS_PASSWORD,
    Repos,
    free_port,
    http,
    make_repos,
    push_payload,
    signed,
)
from tests.test_systemd import build_wheels
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
BASE = os.environ.get("DEPLOYHOOK_BASE_IMAGE", "localhost/deployhook-base")
IMAGE = "localhost/deployhook-test"
UID = 10001  # the Dockerfile's default deployhook user

pytestmark = pytest.mark.timeout(600)


def podman(*args: str, check: bool = True) -> str:
    """Run podman; return its stdout.  Raises AssertionError when it fails and ``check``."""
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip()


def wait_for(what: str, check: Callable[[], Any], explain: Callable[[], str],
             timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (generous bound, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen in {timeout}s:\n{explain()}")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the Dockerfile FROM the local base, deployhook from freshly built wheels."""
    require_tool(shutil.which("podman"),
                 "podman is not installed: run `sh .ci/setup-container.sh` as root first")
    require_tool(subprocess.run([*PODMAN, "image", "exists", BASE]).returncode == 0,
                 f"no base image {BASE}: run `sh .ci/setup-container.sh` as root first")
    context = tmp_path_factory.mktemp("wheels")
    start = time.monotonic()
    build_wheels(context / "wheels")
    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    # --layers=false: the wheels differ at each run, so cached stages would only pile up.
    podman("build", "--layers=false", "--network", "host", "--format", "docker",
           "--build-arg", f"BASE_IMAGE={BASE}", "--build-context", f"wheels={context}",
           "-t", IMAGE, str(ROOT))
    if old and old != podman("image", "inspect", "--format", "{{.Id}}", IMAGE):
        podman("rmi", old, check=False)  # the previous run's image, unless in use
    print(f"\n[container] wheels and image: {time.monotonic() - start:.1f}s, "
          f"image size {podman('image', 'inspect', '--format', '{{.Size}}', IMAGE)} bytes")
    return IMAGE


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Repos]:
    """Repositories in a folder the container user can enter, the checkout its own."""
    root = tmp_path / "c"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    repos = make_repos(root)
    repos.fetch_log.touch()
    (root / "gitconfig").write_text('[protocol "file"]\n\tallow = always\n')
    for path in (repos.deployed, repos.fetch_log):
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(path)], check=True)
    yield repos


def head(repo: Path) -> str:
    """HEAD of a checkout another user owns (git's safe.directory, from the command line)."""
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), "rev-parse",
                           "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def deploy_restart_and_stop(name: str, url: str, site: Repos,
                            logs: Callable[[], str]) -> None:
    """The container ``name`` serving ``url`` runs as its user and is healthy; a signed
    push moves ``site``'s checkout; reload "exit" ends the process with 0 and the
    restart policy starts it again; ``podman stop`` (SIGTERM) ends it with 0."""
    assert podman("exec", name, "id", "-u") == str(UID)  # not root
    assert podman("exec", name, "cat", "/proc/1/comm") == "tini"  # reaps, forwards signals
    podman("healthcheck", "run", name)  # exit status 0: healthy

    after = site.commit("news.rst")
    body, headers = signed(push_payload(after))
    status, answer = http("POST", url + "/github", body, headers)
    assert status in (200, 202), answer
    wait_for("the checkout at the pushed commit", lambda: head(site.deployed) == after, logs)
    assert site.fetches() >= 1  # fetched through the bind-mounted origin

    # reload = "exit" (the image's default): exit 0, and the runtime restarts it.
    wait_for("a restart after the deploy", lambda: int(podman(
        "inspect", "--format", "{{.RestartCount}}", name)) >= 1, logs)
    wait_for("/health after the restart",
             lambda: http("GET", url + "/health", auth=False)[0] == 200, logs)
    podman("healthcheck", "run", name)

    podman("stop", "--time", "60", name)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name) == "0", logs()
    text = logs()
    assert "exiting for the supervisor to restart" in text
    assert text.count("stopped") >= 2 and "listening on" in text  # logs on stdout/stderr
    assert SECRET.decode() not in text


def container_logs(name: str) -> str:
    """What the container wrote: deployhook logs to stderr, which podman logs keeps apart."""
    proc = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def test_container_deploys_restarts_on_reload_and_stops_cleanly(image: str, site: Repos) -> None:
    """A signed push moves the bind-mounted checkout; reload "exit" makes the container
    exit 0 and podman restart it; the HEALTHCHECK passes; ``podman stop`` exits 0."""
    name = f"deployhook-test-{uuid.uuid4().hex[:8]}"
    secret_file = site.root / "secret.in"
    secret_file.write_bytes(SECRET + b"\n")
    podman("secret", "create", name, str(secret_file))
    secret_file.unlink()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = str(site.root)
    start = time.monotonic()
    try:
        podman("run", "-d", "--name", name, "--network", "host", "--restart", "always",
               "-v", f"{root}:{root}", "--secret", f"{name},target=webhook-secret",
               "-e", f"DEPLOYHOOK_PORT={port}", "-e", f"DEPLOYHOOK_REPO_PATH={site.deployed}",
               "-e", f"DEPLOYHOOK_REPOSITORY={REPOSITORY}",
               "-e", f"GIT_CONFIG_GLOBAL={root}/gitconfig", image)
        logs = functools.partial(container_logs, name)
        assert wait_for("/health", lambda: http("GET", url + "/health", auth=False)[0] == 200,
                        logs)
        assert http("GET", url + "/health", auth=False)[1] == {"status": "ok"}
        deploy_restart_and_stop(name, url, site, logs)
        print(f"\n[container] run, push, restart and stop: {time.monotonic() - start:.1f}s")
    finally:
        podman("rm", "-f", "-v", name, check=False)  # -v: its anonymous state volume
        podman("secret", "rm", name, check=False)


def test_compose_publishes_plain_http_on_loopback_only() -> None:
    """compose.yaml publishes the container's plain-HTTP port on the host's loopback
    address only, saying to put a TLS proxy in front for the outside."""
    text = (ROOT / "compose.yaml").read_text()
    published = re.findall(r"(?m)^ {4}ports:\n((?: {6}- .*\n)+)", text)
    assert published == ['      - "127.0.0.1:${DH_HOST_PORT:-8000}:8000"\n'], published
    assert "TLS proxy" in text


def test_compose_file_runs_the_image(image: str, site: Repos, tmp_path: Path) -> None:
    """compose.yaml as shipped, run by podman-compose: the checkout volume, the secrets,
    the DEPLOYHOOK_* settings, the published port and the restart policy work.  An
    override file only names the test image and mounts the origin at its own path."""
    require_tool(shutil.which("podman-compose"), "podman-compose is not installed: run "
                 "`sh .ci/setup-container.sh` as root first")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "compose.yaml", project)
    for name, text in (("webhook-secret.txt", SECRET.decode()),
                       ("status-password.txt", STATUS_PASSWORD)):
        (project / name).write_text(text + "\n")
        os.chown(project / name, UID, UID)
        (project / name).chmod(0o400)
    root = str(site.root)
    (project / "test.yaml").write_text(
        "services:\n  deployhook:\n"
        f"    image: {image}\n"
        f"    volumes: ['{root}:{root}']\n"
        f"    environment:\n      DEPLOYHOOK_REPOSITORY: {REPOSITORY}\n"
        f"      GIT_CONFIG_GLOBAL: {root}/gitconfig\n")
    port = free_port()
    name = f"dhtest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DH_CHECKOUT": str(site.deployed),
           "DH_HOST_PORT": str(port)}
    compose = ["podman-compose", "-p", name, "-f", "compose.yaml", "-f", "test.yaml"]
    container = f"{name}_deployhook_1"
    try:
        up = subprocess.run([*compose, "up", "-d", "--no-build"], cwd=project, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        url = f"http://127.0.0.1:{port}"
        wait_for("/health", lambda: http("GET", url + "/health", auth=False)[0] == 200,
                 lambda: container_logs(container))
        assert http("GET", url + "/deployments")[0] == 200  # the status-password secret
        assert podman("port", container) == f"8000/tcp -> 127.0.0.1:{port}"  # loopback only
        deploy_restart_and_stop(container, url, site, lambda: container_logs(container))
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=project, env=env, capture_output=True,
                       stdin=subprocess.DEVNULL)
        podman("network", "rm", "-f", f"{name}_default", check=False)
