#!/bin/sh
# Build the container image tests/test_systemd.py runs deployhook in: a Debian
# bookworm root file system with systemd as PID 1 (see shared/REFERENCE.md,
# "Testing under a real systemd").  Idempotent, and quiet when there is nothing
# to do:
#   1. podman, runc and debootstrap from Debian's packages, only if missing;
#   2. /etc/containers/containers.conf with default_ulimits = [] (otherwise
#      podman's RLIMIT_NOFILE setting is refused on these machines);
#   3. the image localhost/debian-systemd, from a root file system tarball
#      cached outside the checkout, so debootstrap runs once per machine.  The
#      image and the tarball carry the suite and package lists they were built
#      with; a change to any of them rebuilds them.
# Run as root (CI does; no standard input is needed).  With --check it changes
# nothing: exit 0 when all three are in place, else 1 saying what is missing
# (tests/test_systemd.py asks so, and never builds).
#
# Environment:
#   DEPLOYHOOK_CACHE   where the tarball is kept (default ~/.cache/deployhook)
#   DEPLOYHOOK_IMAGE   the image name (default localhost/debian-systemd)
#   DEBIAN_MIRROR      debootstrap's mirror (default: the Debian mirror in
#                      /etc/apt/sources.list*, else http://deb.debian.org/debian)
set -eu

IMAGE="${DEPLOYHOOK_IMAGE:-localhost/debian-systemd}"
CACHE="${DEPLOYHOOK_CACHE:-${HOME:-/root}/.cache/deployhook}"
TARBALL="$CACHE/debian-systemd.tar"
SUITE=bookworm
# procps: /bin/kill, which the shipped unit's ExecReload= runs (minbase has none).
PACKAGES=systemd,systemd-sysv,python3,python3-venv,git,dbus,procps
# Installed with apt-get in the new root after debootstrap (debootstrap's
# one-pass configuration fails on polkitd's postinst):
# polkitd: lets the deployhook user restart one site unit (contrib/polkit/).
EXTRA_PACKAGES="polkitd"
KEY="$SUITE:$PACKAGES+$EXTRA_PACKAGES"
CONF=/etc/containers/containers.conf

say() { printf 'build-image: %s\n' "$*" >&2; }
CHECK=""
[ "${1:-}" != "--check" ] || CHECK=1
needs() { [ -z "$CHECK" ] || { say "not prepared: $*"; exit 1; }; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        say "needs root for: $*"
        exit 1
    fi
}

# 1. Tools.
missing=""
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    needs "missing$missing"
    say "installing$missing"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap
fi

# 2. containers.conf: default_ulimits = [] under [containers].
if ! grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=' "$CONF" 2>/dev/null; then
    needs "no default_ulimits in $CONF"
    say "setting default_ulimits = [] in $CONF"
    as_root mkdir -p "$(dirname "$CONF")"
    if grep -q '^\[containers\]' "$CONF" 2>/dev/null; then
        as_root sed -i 's/^\[containers\].*/&\ndefault_ulimits = []/' "$CONF"
    else
        printf '[containers]\ndefault_ulimits = []\n' | as_root tee -a "$CONF" >/dev/null
    fi
fi

# 3. The image.
label() {
    podman image inspect --format '{{ index .Labels "deployhook.rootfs" }}' "$IMAGE" 2>/dev/null
}
if podman image exists "$IMAGE" && [ "$(label)" = "$KEY" ]; then
    exit 0
fi
needs "no image $IMAGE built from $KEY"

mirror() {
    # The first Debian (not -security) mirror in apt's sources, one-line or deb822 format.
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | sed -n -e 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([a-z]*:\/\/[^[:space:]]*\).*/\2/p' \
                     -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
            | grep -E '/debian/?$' | head -n 1 || true)
    echo "${found:-http://deb.debian.org/debian}"
}

mkdir -p "$CACHE"
if [ ! -s "$TARBALL" ] || [ "$(cat "$TARBALL.key" 2>/dev/null)" != "$KEY" ]; then
    url=$(mirror)
    rootfs="$CACHE/rootfs.$$"
    trap 'as_root rm -rf "$rootfs" "$TARBALL.part"' EXIT INT TERM
    say "debootstrap $SUITE from $url into $rootfs (a few minutes, once per machine)"
    as_root debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$url" \
        > "$CACHE/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE/debootstrap.log" >&2
        say "debootstrap failed; full log in $CACHE/debootstrap.log"
        exit 1
    }
    if [ -n "$EXTRA_PACKAGES" ]; then
        # policy-rc.d: no service is started in the chroot.
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$rootfs/usr/sbin/policy-rc.d" >/dev/null
        as_root chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
        as_root chroot "$rootfs" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $EXTRA_PACKAGES" \
            >> "$CACHE/debootstrap.log" 2>&1 || {
            tail -n 30 "$CACHE/debootstrap.log" >&2
            say "apt-get install $EXTRA_PACKAGES failed; full log in $CACHE/debootstrap.log"
            exit 1
        }
        as_root rm -f "$rootfs/usr/sbin/policy-rc.d"
        as_root chroot "$rootfs" apt-get clean
    fi
    as_root rm -rf "$rootfs/var/cache/apt/archives"/*.deb "$rootfs/var/lib/apt/lists"/*_Packages
    as_root tar -C "$rootfs" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    echo "$KEY" > "$TARBALL.key"
    as_root rm -rf "$rootfs"
    trap - EXIT INT TERM
fi
say "importing $TARBALL as $IMAGE"
old=$(podman image inspect --format '{{ .Id }}' "$IMAGE" 2>/dev/null || true)
podman import --quiet --change "LABEL deployhook.rootfs=$KEY" "$TARBALL" "$IMAGE" >/dev/null
[ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true  # the stale image, unless in use
say "image $IMAGE ready"
