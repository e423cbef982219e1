#!/bin/sh
# Print the path of a Debian 12 (bookworm) root filesystem with systemd and python3, built
# once with debootstrap (about a minute) and kept in /var/tmp for later runs. Tests copy it.
# Needs root and Debian's package mirror.
set -eu
BASE=${VFD_TEST_ROOTFS:-/var/tmp/vfd-agent-test-rootfs}
ROOT=$BASE/bookworm-1   # bump the suffix when the package list changes
[ -x "$ROOT/usr/bin/python3" ] && [ -x "$ROOT/lib/systemd/systemd" ] && { echo "$ROOT"; exit 0; }
command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null || {
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap systemd-container >&2; }
MIRROR=$(sed -n "s/^URIs: *//p" /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
mkdir -p "$BASE"
TMP=$(mktemp -d "$BASE/build.XXXXXX")
chmod 0755 "$TMP"   # the root directory of the system: every user traverses it
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-venv \
    bookworm "$TMP" "$MIRROR" >"$TMP.log" 2>&1 || { tail -20 "$TMP.log" >&2; rm -rf "$TMP"; exit 1; }
# Another run may have finished first: keep one.
mv -T "$TMP" "$ROOT" 2>/dev/null || rm -rf "$TMP"
rm -f "$TMP.log"
echo "$ROOT"
