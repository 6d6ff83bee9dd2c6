#!/bin/sh
# CI, before the tests: what tests/test_container.py needs.  Docker Hub is not
# reachable, so the Dockerfile is built FROM localhost/deployhook-base: the Debian
# image of .ci/setup-systemd.sh plus openssh-client and tini
# (tests/container/build-base.sh); and podman-compose runs compose.yaml.
# Idempotent and cached (quiet when there is nothing to do); runs as root.
set -eu
cd "$(dirname "$0")/.."
if ! command -v podman-compose >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman-compose
fi
sh tests/systemd/build-image.sh
exec sh tests/container/build-base.sh
