"""The release: ``python -m build`` makes an sdist and a wheel that ``twine check``
accepts; the wheel holds the package data the daemon reads and installs into a fresh
virtual environment where ``deployhook --version``, ``init`` and ``check`` work; the
sdist holds what it takes to test and document deployhook from source.

Slow for a test (about 40 s on 2 cores, once per session: a real build in an isolated
environment, a real venv and a real ``pip install`` of the wheel and its dependencies,
from pip's cache once they have been downloaded); it never skips under CI, where
``build`` and ``twine`` come with the ``test`` extra.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from deployhook.version import __version__
from tests.helpers import free_port, git, make_origin
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
# Read from the installed package: the status page, the API's document and page scripts.
PACKAGE_DATA = ("deployhook/web/templates/base.html", "deployhook/web/templates/run.html",
                "deployhook/web/static/live.js", "deployhook/web/openapi.json",
                "deployhook/web/docs.js", "deployhook/cli/config_example.py",
                "deployhook/version.py")
# What the sdist must hold besides the package (MANIFEST.in).
SDIST_FILES = ("CHANGELOG.rst", "README.rst", "config.py", "secret.txt.example",
               "MANIFEST.in", "setup.py", "pyproject.toml", "quickstart.sh",
               "tests/test_packaging.py", "tests/helpers.py", "tests/fixtures",
               "docs/conf.py", "docs/index.rst", "docs/_ext/deployhook_docs.py",
               "examples/blog.py", "contrib/systemd/deployhook.service", "bench/run.py",
               "fuzz", *PACKAGE_DATA)


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command, output kept; never raises for its exit status."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the sdist and the wheel ``python -m build`` makes of this checkout
    (the wheel built from the sdist, as build does by default)."""
    require_tool(importlib.util.find_spec("build") and importlib.util.find_spec("twine"),
                 "build and twine are not installed: pip install -e '.[release]'")
    out = tmp_path_factory.mktemp("dist")
    done = run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def test_build_makes_one_sdist_and_one_wheel_of_this_version_that_twine_accepts(
        dist: Path) -> None:
    sdist, wheel = only(dist, "*.tar.gz"), only(dist, "*.whl")
    assert sdist.name == f"deployhook-{__version__}.tar.gz"
    assert wheel.name == f"deployhook-{__version__}-py3-none-any.whl"
    done = run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_holds_the_package_data_and_states_its_dependencies(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        metadata = Parser().parsestr(wheel.read(
            f"deployhook-{__version__}.dist-info/METADATA").decode())
    assert set(PACKAGE_DATA) <= names, set(PACKAGE_DATA) - names
    assert not [name for name in names if name.startswith(("tests/", "docs/"))]
    assert metadata["Version"] == __version__
    requires = metadata.get_all("Requires-Dist")
    assert "tornado<7,>=6.4.2" in requires  # the lowest versions: .ci/lowest.txt
    assert 'swagger-ui-py>=23.9.23; extra == "apidocs"' in requires  # not in the base
    assert set(metadata.get_all("Provides-Extra")) >= {
        "fleet", "apidocs", "notify", "docs", "release", "test"}


def test_sdist_holds_the_tests_docs_and_examples_and_no_build_litter(dist: Path) -> None:
    prefix = f"deployhook-{__version__}/"
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.removeprefix(prefix) for name in sdist.getnames()}
    assert set(SDIST_FILES) <= names, set(SDIST_FILES) - names
    litter = [n for n in names if "__pycache__" in n or n.endswith(".pyc")
              or n.startswith(("docs/_build", ".venv", "dist/", "build/"))]
    assert not litter
    if (ROOT / ".git").exists():  # from a checkout: every tracked file there is shipped
        tracked = git(ROOT, "ls-files", "tests", "docs", "examples", "contrib").splitlines()
        assert set(tracked) <= names, set(tracked) - names


def test_wheel_installs_into_a_fresh_venv_and_its_command_inits_and_checks(
        dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEPLOYHOOK_", "PYTHON", "VIRTUAL_ENV"))}
    done = run(venv / "bin" / "python", "-m", "pip", "install", "--quiet",
               only(dist, "*.whl"), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    command = venv / "bin" / "deployhook"
    assert run(command, "--version", cwd=tmp_path, env=env).stdout == (
        f"deployhook {__version__}\n")
    where = run(venv / "bin" / "python", "-c", "import deployhook; print(deployhook.__file__)",
                cwd=tmp_path, env=env).stdout
    assert where.startswith(str(venv)), where  # the wheel's code, not this checkout's

    _, _, pusher = make_origin(tmp_path)
    checkout = tmp_path / "site"
    git(tmp_path, "clone", "-q", "--recurse-submodules",
        git(pusher, "remote", "get-url", "origin"), str(checkout))
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "config.py"
    env |= {"DEPLOYHOOK_REPO_PATH": str(checkout), "DEPLOYHOOK_PORT": str(free_port())}
    done = run(command, "init", "--config", config, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.name for p in config.parent.iterdir()} == {
        "config.py", "secret.txt", "status-password.txt"}
    done = run(command, "check", "--config", config, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout and "OK" in done.stdout
