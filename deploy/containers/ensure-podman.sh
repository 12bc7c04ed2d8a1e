#!/usr/bin/env bash
# Podman (with runc) and a Debian bookworm base image built from Debian's packages, for machines
# with no Docker engine and no registry to pull from. Idempotent; run as root. Prints the base image.
set -euo pipefail

BASE_IMAGE="${HUB_BASE_IMAGE:-localhost/debian-bookworm:latest}"
CONF=/etc/containers/containers.conf

# catatonit: `podman kube play` builds its pod's pause image from it; podman only recommends it,
# so a machine with podman already installed may lack it.
if ! command -v podman > /dev/null || ! command -v runc > /dev/null \
    || ! command -v debootstrap > /dev/null || ! command -v catatonit > /dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc catatonit debootstrap uidmap slirp4netns fuse-overlayfs >&2
fi

# crun, podman's default runtime, cannot set RLIMIT_NOFILE in this sandbox; runc can when podman
# sets no ulimits of its own.
if ! grep -q '^runtime = "runc"' "$CONF" 2>/dev/null; then
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
fi

if ! podman image exists "$BASE_IMAGE"; then
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >&2
    tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >&2
fi

echo "$BASE_IMAGE"
