#!/bin/sh
# Build the base image tests/test_container.py builds the Dockerfile FROM, without
# Docker Hub: the Debian bookworm image of tests/systemd/build-image.sh (python3,
# python3-venv, git; the root file system is cached in ~/.cache/deployhook) plus
# openssh-client and tini from Debian's mirror.  Idempotent and quiet when the image
# exists with the same package list (its label); run as root, after build-image.sh.
#
# Environment:
#   DEPLOYHOOK_IMAGE        the Debian image (default localhost/debian-systemd)
#   DEPLOYHOOK_BASE_IMAGE   the image built here (default localhost/deployhook-base)
set -eu

FROM="${DEPLOYHOOK_IMAGE:-localhost/debian-systemd}"
IMAGE="${DEPLOYHOOK_BASE_IMAGE:-localhost/deployhook-base}"
PACKAGES="openssh-client tini ca-certificates"
podman() { command podman --runtime runc --cgroup-manager=cgroupfs "$@"; }
say() { printf 'build-base: %s\n' "$*" >&2; }

from_id=$(podman image inspect --format '{{ .Id }}' "$FROM")
KEY="$from_id:$PACKAGES"
if [ "$(podman image inspect --format '{{ index .Labels "deployhook.base" }}' "$IMAGE" \
        2>/dev/null)" = "$KEY" ]; then
    exit 0
fi
say "building $IMAGE from $FROM with $PACKAGES"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT INT TERM
cat > "$context/Containerfile" <<CONTAINERFILE
FROM $FROM
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
LABEL deployhook.base="$KEY"
CONTAINERFILE
podman build --quiet --network host --format docker -t "$IMAGE" "$context" >/dev/null
say "image $IMAGE ready"
