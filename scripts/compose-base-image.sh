#!/usr/bin/env bash
# Builds a local Debian bookworm base image for the Dockerfile (`--build-arg BASE_IMAGE=...`) without any
# container registry: a debootstrap root filesystem (Debian mirror only) imported with `docker import`.
# Used by `make test-compose`, where no registry image can be pulled; users build on python:3.11-slim.
#
# Prints the image tag on stdout (everything else goes to stderr). The tag carries a hash of this script,
# so the slow debootstrap (minutes) runs once per version of the recipe and later runs reuse the image.
# Needs root (debootstrap) and a running dockerd.
set -euo pipefail

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# bookworm's python3 is 3.11, what pyproject.toml asks for; python3-venv because Debian's system Python is
# "externally managed" (PEP 668): the Dockerfile installs into a venv on either base.
PACKAGES="python3,python3-venv,python3-pip,ca-certificates"

# This machine's CA bundle goes into the image: where TLS to PyPI passes through an intercepting proxy, the
# host trusts that proxy's CA and `pip install` inside `docker build` must too (Debian's bundle alone fails
# with "self-signed certificate in certificate chain"). The host is Debian too, so its bundle is a superset.
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

recipe_hash="$(cat "${BASH_SOURCE[0]}" "$HOST_CA_BUNDLE" | sha256sum | cut -c1-12)"
tag="codex-pooler-base:bookworm-${recipe_hash}"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag cached" >&2
  echo "$tag"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
rootfs="$(mktemp -d /var/tmp/pooler-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
started=$SECONDS
echo "debootstrap bookworm into $rootfs (once per recipe; takes minutes)" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >&2
cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
# Package caches are dead weight in an image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" --numeric-owner -c . |
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$tag" >&2
# Older recipes' images are unreachable now: drop them rather than let them pile up (one is ~190 MB).
docker images --format '{{.Repository}}:{{.Tag}}' codex-pooler-base | grep -vxF "$tag" | xargs -r docker rmi >&2 || true
echo "base image $tag built in $((SECONDS - started))s" >&2
echo "$tag"
