"""The Debian package (``debian/``): built, checked by lintian, installed under a real
systemd, used as ``debian/README.Debian`` says, and purged.

The package is built with ``dpkg-buildpackage -us -uc -b`` in a Debian 12 container,
``localhost/deployhook-debbuild``: the systemd test image (``localhost/debian-systemd``,
``tests/systemd/build-image.sh``) plus ``apt-get build-dep`` of ``debian/control`` and
lintian, made once and labelled with debian/control's hash (a change rebuilds it).
lintian must report no error.

Then, in a fresh container of the systemd image (tests/test_systemd.py's
:func:`~tests.test_systemd.booted`): ``apt-get install ./deployhook_*.deb`` (tornado, GitPython
and prometheus-client from Debian 12's archive), ``deployhook init --config
/etc/deployhook/config.py``, ``repo_path`` set to a checkout of a local origin,
``systemctl enable --now deployhook`` with the unit as packaged, a signed push, and
``apt-get purge deployhook``: the checkout stays.

What differs from a real machine: ``mount --make-rshared /`` before the service starts.
systemd's ``LoadCredential=`` needs shared mount propagation, which a real boot has;
podman's root is private, and without it the credentials folder stays empty
(tests/test_systemd.py works around that with ``secret_file``; here the unit's
credentials are what is tested).

Needs podman and network access to a Debian mirror (apt-get).  Outside CI without the
image: skipped (``sh .ci/setup-systemd.sh`` makes it); under CI a failure.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from deployhook.version import __version__
from tests.helpers import http, push_payload, signed
from tests.test_systemd import IMAGE, PODMAN, Box, booted, podman_ready, timed
from tests.tools import require_tool, under_ci

ROOT = Path(__file__).resolve().parents[1]
CONTROL = ROOT / "debian" / "control"
BUILD_IMAGE = "localhost/deployhook-debbuild"
LABEL = "deployhook.debbuild"
DEB = f"deployhook_{__version__}-1_all.deb"
CONFIG = "/etc/deployhook/config.py"
REPOSITORY = "octo-org/blog"

pytestmark = pytest.mark.timeout(1500)


def test_changelog_names_the_packages_version() -> None:
    """debian/changelog's newest entry is deployhook/version.py's version, revision 1."""
    first = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"deployhook ({__version__}-1) "), first


def podman(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run podman with the systemd tests' runtime options; fail with its output."""
    proc = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"podman {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc


def image_ready() -> None:
    """Skip (fail under CI) unless the systemd image exists or can be built."""
    require_tool(shutil.which("podman"), "podman is not installed: run sh .ci/setup-systemd.sh")
    exists = subprocess.run(["podman", "image", "exists", IMAGE]).returncode == 0
    if not exists and not under_ci():
        pytest.skip(f"image {IMAGE} is missing: run sh .ci/setup-systemd.sh (as root)")
    podman_ready()


def build_image() -> None:
    """BUILD_IMAGE: IMAGE with debian/control's build dependencies and lintian, made
    again only when debian/control changed."""
    key = hashlib.sha256(CONTROL.read_bytes()).hexdigest()[:16]
    label = subprocess.run(["podman", "image", "inspect", "--format",
                            f'{{{{ index .Labels "{LABEL}" }}}}', BUILD_IMAGE],
                           capture_output=True, text=True).stdout.strip()
    if label == key:
        return
    name = f"deployhook-debbuild-{uuid.uuid4().hex[:8]}"
    try:
        podman("run", "--name", name, "--network", "host",
               "-v", f"{CONTROL}:/src/debian/control:ro", IMAGE, "sh", "-euc",
               "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
               "apt-get build-dep -y -q /src && DEBIAN_FRONTEND=noninteractive "
               "apt-get install -y -q --no-install-recommends lintian && apt-get clean")
        podman("commit", "--quiet", "--change", f"LABEL {LABEL}={key}", name, BUILD_IMAGE)
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built from a copy of this checkout, and lintian's report next to it."""
    image_ready()
    with timed("build image (build-dep, lintian)"):
        build_image()
    out = tmp_path_factory.mktemp("debian")
    source = out / f"deployhook-{__version__}"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
        ".benchmarks", "_build", "tests", "bench", "fuzz"))
    start = time.monotonic()
    podman("run", "--rm", "-v", f"{out}:/build", "-w", f"/build/{source.name}", BUILD_IMAGE,
           "dpkg-buildpackage", "-us", "-uc", "-b")
    print(f"\n[debian] dpkg-buildpackage -us -uc -b: {time.monotonic() - start:.1f}s", end="")
    lintian = subprocess.run([*PODMAN, "run", "--rm", "-v", f"{out}:/build", "-w", "/build",
                              BUILD_IMAGE, "lintian", DEB], capture_output=True, text=True)
    (out / "lintian.txt").write_text(lintian.stdout + lintian.stderr)
    return out / DEB


def test_package_builds_and_lintian_reports_no_error(package: Path) -> None:
    """``dpkg-buildpackage -us -uc -b`` makes deployhook_<version>-1_all.deb, and
    lintian reports no error (warnings are printed)."""
    assert package.is_file()
    report = (package.parent / "lintian.txt").read_text()
    tags = [line for line in report.splitlines() if line[:2] in ("E:", "W:")]
    print(f"\n[debian] {package.name}: {package.stat().st_size} bytes"
          f"\n[debian] lintian: {tags or 'clean'}", end="")
    assert not [line for line in tags if line.startswith("E:")], report


def deliver(box: Box, secret: bytes, after: str, before: str) -> tuple[int, dict]:
    """POST a push delivery signed with ``secret`` to the container's daemon."""
    body, headers = signed(push_payload(after, before, repository=REPOSITORY),
                           secret=secret, delivery=str(uuid.uuid4()))
    return http("POST", box.url + "/github", body, headers, auth=False)


def set_up_origin(box: Box) -> None:
    """A bare origin, a pusher's clone and the checkout /srv/deploy, all the deployhook
    user's (git refuses a local origin owned by another user)."""
    box.sh("install -d -o deployhook -g deployhook /srv/origin.git /srv/pusher /srv/deploy")
    box.sh("""
        git init -q --bare -b main /srv/origin.git
        git init -q -b main /srv/pusher
        cd /srv/pusher
        git remote add origin file:///srv/origin.git
        echo '<h1>blog</h1>' > index.html
        git add index.html
        git commit -q -m 'first page'
        git push -q -u origin main
        git clone -q file:///srv/origin.git /srv/deploy
    """, user="deployhook")


def test_package_installs_deploys_a_push_and_purges_keeping_the_checkout(package: Path) -> None:
    """As README.Debian says: install, ``deployhook init``, set repo_path, enable the
    unit; a signed push with the secret init wrote (handed over by LoadCredential=)
    deploys.  Purge removes the unit, the config and the secrets, keeps the checkout
    and the system user."""
    with booted("deployhook-debian") as box:
        podman("cp", str(package), f"{box.name}:/tmp/{DEB}")
        with timed("apt-get install ./" + DEB):
            box.exec("sh", "-euc", "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
                     f"apt-get install -y -q /tmp/{DEB}", timeout=600)
        assert box.sh("getent passwd deployhook").split(":")[5:] == [
            "/var/lib/deployhook", "/usr/sbin/nologin"]
        assert box.sh("systemctl is-enabled deployhook.service || true") == "disabled"
        assert box.sh("systemctl is-active deployhook.service || true") == "inactive"
        box.sh("test -s /usr/share/man/man1/deployhook.1.gz && "
               "test -s /usr/share/man/man5/deployhook.conf.5.gz")
        set_up_origin(box)
        out = box.sh(f"deployhook init --config {CONFIG}")
        assert "/etc/deployhook/secret.txt" in out, out
        box.sh(f"cat >> {CONFIG}", stdin=f'repo_path = "/srv/deploy"\nrepository = '
               f'"{REPOSITORY}"\nport = {box.port}\n')
        box.sh("mount --make-rshared /")  # what a real boot has: LoadCredential= needs it
        proc = box.systemctl("enable", "--now", "deployhook")
        assert proc.returncode == 0, proc.stderr + box.explain()
        secret = box.sh("cat /etc/deployhook/secret.txt").encode()
        before = box.head()
        after = box.push_commit("post-1.txt")
        status, body = deliver(box, secret, after, before)
        assert status == 200 and body["result"] == "deployed", f"{body}{box.explain()}"
        assert box.head() == after
        with timed("apt-get purge deployhook"):
            box.exec("sh", "-euc", "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "
                     "deployhook", timeout=300)
        assert box.head() == after  # the checkout stays, as deployed
        assert box.sh("ls -A /etc/deployhook 2>&1 || true").endswith("No such file or directory")
        assert box.sh("test -e /lib/systemd/system/deployhook.service || echo gone") == "gone"
        assert box.sh("getent passwd deployhook").startswith("deployhook:")  # Debian keeps it
