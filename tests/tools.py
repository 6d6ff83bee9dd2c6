"""Tests that need a tool this machine may lack: skip locally, fail under CI.

``.ci/run`` installs every tool the tests use and exports ``CI=true``; there a
missing tool is a broken CI set-up, so the test fails instead of skipping silently.
"""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
    """True when ``$CI`` is set to a true value (``.ci/run`` sets ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(available: object, reason: str) -> None:
    """Return if ``available`` is truthy; else fail the test under CI, skip it otherwise.

    Raises:
        pytest.fail.Exception: under CI, when the tool is missing.
        pytest.skip.Exception: elsewhere, when the tool is missing.
    """
    if available:
        return
    if under_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run installs it, so a missing tool fails)",
                    pytrace=False)
    pytest.skip(reason)
