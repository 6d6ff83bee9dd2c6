"""The documentation (docs/, Sphinx): it builds with ``-W`` (every warning an error) as
HTML and as the man pages deployhook(1) and deployhook.conf(5), and its generated
references cover every configuration key and every subcommand.

Sphinx comes with the ``docs`` extra (and the ``test`` extra, which .ci/run installs):
outside CI a missing Sphinx skips the build test with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from deployhook import settings
from deployhook.cli.main import make_parser
from deployhook.settings_help import DESCRIPTIONS
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install -e '.[docs]'"


def test_every_setting_has_a_description_and_no_other() -> None:
    assert sorted(DESCRIPTIONS) == sorted(settings.KEYS)
    assert all(text.strip() for text in DESCRIPTIONS.values())


def sphinx(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sphinx -W -b BUILDER docs OUT`` in this interpreter, output kept."""
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
         str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=600)


def subcommands() -> list[str]:
    """Every subcommand of the ``deployhook`` parser."""
    parser = make_parser()
    return sorted(next(action for action in parser._actions
                       if hasattr(action, "choices") and isinstance(action.choices, dict)
                       ).choices)


def test_html_and_man_pages_build_without_a_warning_and_cover_every_key_and_command(
        tmp_path: Path) -> None:
    require_tool(importlib.util.find_spec("sphinx") and importlib.util.find_spec("furo"),
                 f"Sphinx and Furo are not installed: {INSTALL}")
    for builder in ("html", "man"):
        done = sphinx(builder, tmp_path / builder)
        assert done.returncode == 0, done.stderr
    html = (tmp_path / "html" / "configuration.html").read_text(encoding="utf-8")
    conf = (tmp_path / "man" / "deployhook.conf.5").read_text(encoding="utf-8")
    for key in settings.KEYS:
        assert f'<span class="pre">{key}</span>' in html, key
        assert f".B \\fB{key}\\fP\n" in conf, key  # a definition's term
    command = (tmp_path / "man" / "deployhook.1").read_text(encoding="utf-8")
    for name in subcommands():
        assert f"DEPLOYHOOK {name.upper()}" in command, name
    assert (tmp_path / "html" / "upgrading.html").read_text(encoding="utf-8").count(
        "back up") >= 1
