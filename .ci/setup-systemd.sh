#!/bin/sh
# CI, before the tests: podman, runc and debootstrap from Debian's packages and the
# image localhost/debian-systemd that tests/test_systemd.py runs deployhook in
# (systemd as PID 1).  Idempotent: the root file system tarball is cached in
# ${DEPLOYHOOK_CACHE:-~/.cache/deployhook}, outside the checkout.  Runs as root.
set -eu
cd "$(dirname "$0")/.."
exec sh tests/systemd/build-image.sh
