#!/bin/sh
# Install Debian's headless Chromium (/usr/bin/chromium) for the status page's
# browser test, unless it is already there.  Idempotent, quiet, never reads stdin.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends chromium </dev/null >/dev/null
command -v chromium >/dev/null
