#!/bin/sh
# Run the test suite: creates .venv with deployhook and its test tools the
# first time, then runs ruff and pytest (extra arguments go to pytest).
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check deployhook tests examples
exec .venv/bin/python -m pytest "$@"
