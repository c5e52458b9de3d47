#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Turn a fresh `debootstrap --variant=minbase` tree into a container base:
# apt sources for the suite, its updates and its security archive; no apt lists
# or package caches (images stay small; every Dockerfile runs apt-get update);
# no host files leaked into the image (resolv.conf, hostname, machine-id).
#
# Usage: finalize-rootfs.sh ROOTFS SUITE MIRROR
set -euo pipefail

rootfs=$1
suite=$2
mirror=$3

[[ -x "$rootfs/usr/bin/apt-get" ]] || { echo "finalize-rootfs: $rootfs is not a Debian tree" >&2; exit 1; }

# Apt keeps working inside the image: sources stay, only the downloaded lists go.
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${mirror}
Suites: ${suite} ${suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror}-security
Suites: ${suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Containers get these from the engine; the host's copies must not ship.
: > "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/hostname"
rm -f "$rootfs/etc/machine-id" "$rootfs/var/lib/dbus/machine-id"
: > "$rootfs/etc/machine-id"

# Small image: no apt lists, no downloaded .debs, no logs from the bootstrap.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
mkdir -p "$rootfs/var/lib/apt/lists/partial"
rm -rf "$rootfs"/var/log/apt/* "$rootfs/var/log/bootstrap.log" "$rootfs"/var/log/dpkg.log
rm -rf "$rootfs"/tmp/* "$rootfs"/var/tmp/*
