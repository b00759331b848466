#!/usr/bin/env bash
# Builds localhost/dce-deps, the image deploy/cluster.yaml runs PostgreSQL and
# Redis from, out of Debian's own packages alone (no registry is needed: a
# host that reaches only Debian's mirror can build it). debootstrap installs
# a minimal Debian bookworm with postgresql-15 and redis-server into a
# folder, and podman import makes it an image. Run it as root once:
#   apt-get install podman runc debootstrap
#   deploy/deps-image.sh            # about a minute and 200 MB of downloads
set -euo pipefail
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tag=${1:-localhost/dce-deps:latest}
[ "$(id -u)" = 0 ] || { echo "deps-image: run as root (debootstrap needs it)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "deps-image: apt-get install debootstrap" >&2; exit 1; }
root=$(mktemp -d /var/tmp/dce-deps.XXXXXX)
trap 'rm -rf "$root"' EXIT
timeout 1200 debootstrap --variant=minbase --include=postgresql-15,redis-server bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# The package's own cluster and the download cache are not needed: the
# pod's PostgreSQL makes its cluster in its own volume at first start.
rm -rf "$root/var/lib/postgresql/15/main" "$root/etc/postgresql/15/main" "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -cf - . | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "deps-image: $tag ($(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
