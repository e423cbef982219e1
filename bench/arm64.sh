#!/bin/bash
# vfd-agent on emulated aarch64 (qemu-user via binfmt_misc) in a Debian 12 arm64 rootfs, with
# the real aarch64 wheels: install, cold and cached warm-up, a 30 s demo, the kernel tests.
# Prints a timeline; README "Performance" holds the figures and the x86_64 ratios.
# Needs root, Debian's mirror and a package index. About 20 minutes on 2 cores from nothing.
#
#   bench/arm64.sh [WORK]        (WORK defaults to /var/tmp/vfd-agent-arm64; the rootfs is kept)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd); W=${1:-/var/tmp/vfd-agent-arm64}; ROOT=$W/rootfs; t0=$SECONDS
log() { echo "[$((SECONDS - t0))s] $*"; }
command -v qemu-aarch64-static >/dev/null && command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null || \
  { apt-get update -q && apt-get install -y -q qemu-user-static binfmt-support systemd-container debootstrap; }
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64   # F: the interpreter works inside the rootfs
MIRROR=$(sed -n "s/^URIs: *//p" /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$MIRROR" ] || MIRROR=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
mkdir -p "$W"
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOT" "$MIRROR" >"$W/debootstrap.log" 2>&1
fi
chmod 0755 "$ROOT"
log "arm64 rootfs ready"
# The CAs this machine trusts, and pip's settings (index, cache-less) inside.
cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || true
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndefault-timeout = 180\n' >"$ROOT/etc/pip.conf"
rm -rf "$ROOT/root/vfd-agent" "$ROOT/root/venv" "$ROOT/root/nc"; mkdir -p "$ROOT/root/vfd-agent"
tar -C "$SRC" --exclude=__pycache__ -cf - pyproject.toml README.md LICENSE constraints.txt agent kernels hil \
  configs tests | tar -C "$ROOT/root/vfd-agent" -xf -
# A Numba cache built under qemu targets qemu's CPU model: it stays in this rootfs, never on a Pi.
arm() { systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --as-pid2 --resolv-conf=copy-host --console=pipe \
          --setenv=LANG=C.UTF-8 --setenv=NUMBA_CACHE_DIR=/root/nc --chdir=/root/vfd-agent "$@"; }
arm uname -m | grep -qx aarch64
arm python3 -m venv /root/venv
log "venv ready"
arm /root/venv/bin/pip install -q --constraint constraints.txt '/root/vfd-agent[test]'
log "pip install done (aarch64 wheels, pinned)"
arm /root/venv/bin/vfd-agent warmup | tail -n 1
log "cold warm-up done"
arm /root/venv/bin/vfd-agent warmup | tail -n 1
log "cached warm-up done"
arm --private-network /root/venv/bin/vfd-agent demo --duration 30 --state-dir /root/demo-state | tail -n 2
log "demo done"
arm --private-network /root/venv/bin/python -m pytest -q -p no:cacheprovider tests/kernels | tail -n 1
log "kernel tests done"
