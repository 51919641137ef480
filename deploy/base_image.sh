#!/bin/sh
# Make a local base image for the Dockerfile from Debian packages, for Docker engines that cannot
# pull python:3.11-slim from a registry:
#
#   sh deploy/base_image.sh                      # -> topicbridge-base:bookworm
#   docker build --build-arg BASE_IMAGE=topicbridge-base:bookworm -t topicbridge .
#
# Needs root, debootstrap and a Debian mirror (MIRROR, default deb.debian.org). Debian 12's
# python3 is 3.11; python3-venv brings the venv module the Dockerfile uses. Behind a proxy that
# re-signs TLS, name its CA certificates (PEM, space-separated) in EXTRA_CA: they are added to the
# base's trust store, so pip in `docker build` can reach PyPI, e.g.
#   EXTRA_CA="$(ls /usr/local/share/ca-certificates/*.crt)" sh deploy/base_image.sh
set -eu
TAG="${1:-topicbridge-base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null || { echo "base_image.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/topicbridge-base.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT INT TERM
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOTFS" "$MIRROR"
for ca in ${EXTRA_CA:-}; do
  cp "$ca" "$ROOTFS/usr/local/share/ca-certificates/$(basename "$ca" .crt).crt"
done
[ -z "${EXTRA_CA:-}" ] || chroot "$ROOTFS" update-ca-certificates
# Downloaded packages and apt lists are not needed at run time.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/*
tar -C "$ROOTFS" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$TAG"
echo "$TAG"
