#!/bin/sh
# CI, before the tests: the base image tests/test_container.py builds the Dockerfile
# FROM (Docker Hub is not reachable): localhost/debian-systemd (.ci/setup-systemd.sh)
# plus openssh-client and tini.  Idempotent and cached; runs as root.
set -eu
cd "$(dirname "$0")/.."
sh tests/systemd/build-image.sh
exec sh tests/container/build-base.sh
