#!/usr/bin/env bash
# Build a Python 3.11 base image from Debian's packages when no image registry is reachable
# (python:3.11-slim cannot be pulled): debootstrap a minimal bookworm root file system from the
# Debian mirror apt already uses, then `docker import` it. Root only (debootstrap chroots).
#
#   deploy/scripts/build_base_image.sh [IMAGE]      # default IMAGE: mlops-base:bookworm
#
# The Dockerfiles take it as a build argument: BASE_IMAGE=mlops-base:bookworm (see deploy/README.md).
# Idempotent: an existing image of that name is kept (remove it to rebuild).
set -euo pipefail

image=${1:-mlops-base:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "build_base_image: $image exists"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "build_base_image: debootstrap needs root" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "build_base_image: install debootstrap (apt-get install debootstrap)" >&2; exit 1; }

# The mirror apt uses here (deb822 sources or the classic list), so no other network is needed.
mirror=$(grep -hs -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
if [ -z "$mirror" ]; then
    mirror=$(grep -hs -m1 -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /tmp/mlops-base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "build_base_image: debootstrap bookworm from $mirror"
# libstdc++6 and libgomp1: onnxruntime and torch need them; python:3.11-slim has them too.
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,libstdc++6,libgomp1 \
    bookworm "$rootfs" "$mirror" >/dev/null
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$image" >/dev/null
echo "build_base_image: $image ($(docker run --rm "$image" python3 --version))"
