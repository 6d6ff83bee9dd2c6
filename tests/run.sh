#!/bin/sh
# Run the test suite: creates .venv with deployhook and its test tools the
# first time, then runs ruff and pytest (extra arguments go to pytest).
# The tests run in 4 processes (pytest-xdist; most of the time they wait on git,
# daemons and containers, so more than the cores), each module (or test class) in one
# of them, the longest first (tests/conftest.py).  Add -n 0 to run them in this one.
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check deployhook tests examples
exec .venv/bin/python -m pytest -n 4 --dist loadscope --no-loadscope-reorder "$@"
