#!/bin/sh
# Set up and start deployhook on this machine: a virtualenv in .venv, a fresh
# random secret in secret.txt (if there is none yet), then the daemon with
# config.py.  Run it again at any time; it only adds what is missing.
set -eu
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/deployhook init --config config.py
exec .venv/bin/deployhook serve --config config.py
