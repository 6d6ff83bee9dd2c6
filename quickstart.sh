#!/bin/sh
# Set up and start deployhook on this machine: a virtualenv in .venv, a fresh
# random webhook secret in secret.txt and status page password in
# status-password.txt (if there are none yet), then the daemon with config.py.
# Run it again at any time; it only adds what is missing.  The command is
# .venv/bin/deployhook (or plain 'deployhook' after '. .venv/bin/activate').
set -eu
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/deployhook init --config config.py
echo "In another terminal, in $(pwd): .venv/bin/deployhook send --event ping"
exec .venv/bin/deployhook serve --config config.py
