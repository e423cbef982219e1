#!/bin/sh
# Install, upgrade, roll back or remove vfd-agent as a systemd service on a Debian-like gateway.
#
#   sudo install.sh [--bundle FILE.tar] [--no-start] [--ready-timeout SECONDS]
#   sudo install.sh --rollback [--restore-ledger]
#   sudo install.sh --uninstall            (keeps the config and the ledger)
#   sudo install.sh --purge [--yes]        (removes them too; asks unless --yes)
#
# Where from: --bundle FILE (an offline bundle from systemd/bundle.sh: verified against its
# SHA-256 manifest, installed with pip --no-index, no network touched); run from inside an
# unpacked bundle, the same; run from a source tree, pip installs the tree from the index, with
# its kernels compiled (the `compiled` extra: vfd-agent-kernels) where the index has them for
# this platform, else without them (the first warm-up then compiles them).
#
# Layout: every version in /opt/vfd-agent/releases/VERSION (its own venv), `current` and
# `previous` symlinks beside them; the unit runs /opt/vfd-agent/current/venv/bin/vfd-agent.
# An upgrade installs beside the running release, compiles its kernels and checks the config
# with it before switching; if the new one is not READY (sd_notify) within --ready-timeout, it
# switches back by itself and restores the ledger copied before the switch.
#
# Ledger: a new version may migrate the ledger's schema forward when it starts; an old version
# refuses a ledger newer than it knows. So the ledger is copied before each switch
# (/var/lib/vfd-agent/ledger.sqlite.before-VERSION) and --rollback refuses to start an old
# release on a newer ledger unless --restore-ledger (losing what was booked since the copy).
set -eu

PREFIX=/opt/vfd-agent
RELEASES=$PREFIX/releases
CONF_DIR=/etc/vfd-agent
CONF=$CONF_DIR/vfd-agent.yaml
STATE_DIR=/var/lib/vfd-agent
CACHE_DIR=/var/cache/vfd-agent
UNIT_PATH=/etc/systemd/system/vfd-agent.service
USER_NAME=vfd-agent
HERE=$(cd "$(dirname "$0")" && pwd)

ACTION=install
BUNDLE=
START=yes
YES=no
RESTORE_LEDGER=no
READY_TIMEOUT=300
NOT_READY=

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
    case $1 in
        --bundle) [ $# -ge 2 ] || usage; BUNDLE=$2; shift ;;
        --no-start) START=no ;;
        --ready-timeout) [ $# -ge 2 ] || usage; READY_TIMEOUT=$2; shift ;;
        --rollback) ACTION=rollback ;;
        --restore-ledger) RESTORE_LEDGER=yes ;;
        --uninstall) ACTION=uninstall ;;
        --purge) ACTION=purge ;;
        --yes|-y) YES=yes ;;
        -h|--help) usage ;;
        *) echo "install.sh: unknown option $1" >&2; usage ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"

# systemd is PID 1 on a gateway; in a chroot or container build there is none to talk to.
have_systemd() { [ -d /run/systemd/system ]; }

# --- checks before anything is changed -------------------------------------------------------
check_platform() {
    machine=$(uname -m)
    case $machine in
        x86_64|aarch64) ;;
        armv6l|armv7l|armv8l|arm*|i?86)
            die "this is a 32-bit system ($machine): numba and llvmlite publish no wheels for it, and vfd-agent needs them. Install a 64-bit OS (Raspberry Pi OS 64-bit, Debian arm64) on the gateway." ;;
        *) die "unsupported architecture $machine: vfd-agent is built for x86_64 and aarch64 (64-bit ARM)" ;;
    esac
    command -v python3 >/dev/null || die "python3 is required (Debian: apt-get install python3)"
    PY_PLATFORM=$(python3 -c 'import sysconfig; print(sysconfig.get_platform())')
    case $PY_PLATFORM in
        linux-x86_64|linux-aarch64) ;;
        *) die "python3 is built for $PY_PLATFORM (a 32-bit userland on a 64-bit kernel?): numba and llvmlite publish no wheels for it; install a 64-bit OS" ;;
    esac
    PY_TAG=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
        die "python3 is $(python3 -V 2>&1); vfd-agent needs 3.10 or newer (Debian 12 has 3.11)"
}

ensure_venv_support() {
    python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
    [ -z "$BUNDLE_DIR" ] || die "python3-venv is missing and this is an offline install: install the Debian package python3-venv (from the installation medium) first"
    say "installing python3-venv"
    # Only now, and only once, refresh the package lists.
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >/dev/null 2>&1 || {
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv; }
}

# The group that owns serial ports: dialout on Debian/Raspberry Pi OS, uucp on Arch and others.
serial_group() {
    for group in dialout uucp; do
        getent group "$group" >/dev/null 2>&1 && { echo "$group"; return 0; }
    done
    echo ""
}

# --- the bundle ------------------------------------------------------------------------------
BUNDLE_DIR=
WORK=
cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }
trap cleanup EXIT

verify_bundle() {  # $1: an unpacked bundle; every file listed in SHA256SUMS, every one intact
    dir=$1
    [ -f "$dir/SHA256SUMS" ] || die "$dir: no SHA256SUMS manifest: not a vfd-agent bundle"
    (cd "$dir" && sha256sum --check --strict --quiet SHA256SUMS) || \
        die "bundle verification failed: a file does not match SHA256SUMS (damaged or altered); nothing installed"
    unlisted=$(cd "$dir" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | \
        while read -r f; do cut -d' ' -f3- SHA256SUMS | grep -qxF "$f" || echo "$f"; done)
    [ -z "$unlisted" ] || die "bundle verification failed: files not in SHA256SUMS: $unlisted"
    ls "$dir"/wheels/*-"$PY_TAG"-*"$(uname -m)"*.whl >/dev/null 2>&1 || \
        die "this bundle has no wheels for CPython ${PY_TAG#cp} on $(uname -m); it carries: $(cat "$dir/PLATFORMS" 2>/dev/null)"
}

locate_source() {
    if [ -n "$BUNDLE" ]; then
        [ -f "$BUNDLE" ] || die "$BUNDLE: no such file"
        WORK=$(mktemp -d /tmp/vfd-agent-install.XXXXXX)
        tar -xf "$BUNDLE" -C "$WORK" || die "$BUNDLE: not a readable tar archive"
        BUNDLE_DIR=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -n 1)
        [ -n "$BUNDLE_DIR" ] || die "$BUNDLE: empty archive"
    elif [ -f "$HERE/SHA256SUMS" ]; then
        BUNDLE_DIR=$HERE
    fi
    if [ -n "$BUNDLE_DIR" ]; then
        verify_bundle "$BUNDLE_DIR"
        VERSION=$(cat "$BUNDLE_DIR/VERSION")
        UNIT_SRC=$BUNDLE_DIR/vfd-agent.service
        EXAMPLE=$BUNDLE_DIR/example.yaml
        say "bundle verified: vfd-agent $VERSION, $(ls "$BUNDLE_DIR"/wheels | wc -l) wheels"
    else
        SRC=$(cd "$HERE/.." && pwd)
        [ -f "$SRC/pyproject.toml" ] || die "no bundle given and $SRC is not a source tree"
        VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/pyproject.toml" | head -n 1)
        UNIT_SRC=$SRC/systemd/vfd-agent.service
        EXAMPLE=$SRC/configs/example.yaml
    fi
    [ -n "$VERSION" ] || die "cannot tell the version to install"
}

# --- releases --------------------------------------------------------------------------------
current_version() { [ -L "$PREFIX/current" ] && basename "$(readlink "$PREFIX/current")" || true; }
previous_version() { [ -L "$PREFIX/previous" ] && basename "$(readlink "$PREFIX/previous")" || true; }

point() {  # point NAME VERSION: atomically (re)point a symlink at a release
    ln -sfn "releases/$2" "$PREFIX/$1.tmp" && mv -Tf "$PREFIX/$1.tmp" "$PREFIX/$1"
}

build_release() {  # a venv for $VERSION in $RELEASES/$VERSION, kernels compiled, config checked
    rel=$RELEASES/$VERSION
    rm -rf "$rel"
    install -d -m 0755 "$rel"
    python3 -m venv "$rel/venv"
    if [ -n "$BUNDLE_DIR" ]; then
        "$rel/venv/bin/pip" install --quiet --no-index --find-links "$BUNDLE_DIR/wheels" \
            --constraint "$BUNDLE_DIR/constraints.txt" "vfd-agent==$VERSION" || \
            { rm -rf "$rel"; die "pip could not install from the bundle (see above); nothing changed"; }
        install -m 0644 "$BUNDLE_DIR/README.md" "$rel/README.md"
    else
        "$rel/venv/bin/pip" install --quiet --upgrade pip
        # With its kernels compiled (vfd-agent-kernels, systemd/kernels_wheel.py) where the index
        # has them for this CPython and architecture; else vfd-agent alone, which compiles them.
        if "$rel/venv/bin/pip" install --quiet --constraint "$SRC/constraints.txt" "$SRC[compiled]" 2>/dev/null; then
            say "installed with its compiled kernels (vfd-agent-kernels $VERSION)"
        else
            say "the package index has no vfd-agent-kernels $VERSION for CPython $(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') on $(uname -m): installing vfd-agent alone; its first warm-up compiles the kernels (15-17 s on a PC, minutes on a Pi)"
            "$rel/venv/bin/pip" install --quiet --constraint "$SRC/constraints.txt" "$SRC" || \
                { rm -rf "$rel"; die "pip could not install $SRC (see above); nothing changed"; }
        fi
        install -m 0644 "$SRC/README.md" "$rel/README.md"
    fi
    # Compile the kernels now, as the service user, into the service's cache directory (or load
    # those the bundle carries: compiled where it was built, for this platform).
    install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$CACHE_DIR"
    seed_kernel_cache
    runuser -u "$USER_NAME" -- env NUMBA_CACHE_DIR="$CACHE_DIR/numba" "$rel/venv/bin/vfd-agent" warmup || \
        { rm -rf "$rel"; die "vfd-agent $VERSION failed to compile its kernels; nothing changed"; }
    if [ -e "$CONF" ]; then
        "$rel/venv/bin/vfd-agent" check-config "$CONF" || \
            { rm -rf "$rel"; die "vfd-agent $VERSION rejects $CONF (see above); nothing changed"; }
    fi
}

seed_kernel_cache() {  # the bundle's compiled kernels, where the service looks for them
    [ -n "$BUNDLE_DIR" ] && [ -d "$BUNDLE_DIR/kernel-cache" ] || return 0
    built_for=$(cat "$BUNDLE_DIR/KERNEL_CACHE")
    this="CPython $(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")') $(uname -m)"
    if [ "$built_for" != "$this" ]; then  # Numba would find nothing of its own in them
        say "the bundle's compiled kernels are for $built_for, this is $this: compiling them here"
        return 0
    fi
    install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$CACHE_DIR/numba"
    for cached in "$BUNDLE_DIR"/kernel-cache/*; do
        # A directory there already (the same kernels, an earlier install) is the device's own.
        [ -e "$CACHE_DIR/numba/$(basename "$cached")" ] || cp -R "$cached" "$CACHE_DIR/numba/"
    done
    chown -R "$USER_NAME:$USER_NAME" "$CACHE_DIR/numba"
    say "kernel cache seeded from the bundle (compiled for $built_for)"
}

kernel_cache_name() {  # the directory of a release's compiled kernels in $CACHE_DIR/numba
    python=$RELEASES/$1/venv/bin/python
    # Named by the kernels' code (kernels._numba.cache_name); without JIT the import compiles nothing.
    NUMBA_DISABLE_JIT=1 "$python" -c 'from kernels._numba import cache_name; print(cache_name())' \
        2>/dev/null && return 0
    for kernels in "$RELEASES/$1"/venv/lib/python3*/site-packages/kernels; do  # releases before it:
        if [ -d "$kernels" ]; then echo "kernels_$(printf %s "$kernels" | sha1sum | cut -c1-40)"; fi  # SHA1(path)
    done
}

drop_release() {  # a release; its compiled kernels go with prune_kernel_caches
    rm -rf "${RELEASES:?}/$1"
}

prune_kernel_caches() {  # the compiled kernels of no kept release (two releases may share them)
    keep=" "
    for v in $(current_version) $(previous_version); do keep="$keep$(kernel_cache_name "$v") "; done
    for cached in "$CACHE_DIR"/numba/kernels[-_]*; do
        [ -d "$cached" ] || continue
        case $keep in *" $(basename "$cached") "*) ;; *) rm -rf "$cached" ;; esac
    done
}

prune_releases() {  # keep current and previous; their compiled kernels too
    keep_c=$(current_version); keep_p=$(previous_version)
    for rel in "$RELEASES"/*; do
        [ -d "$rel" ] || continue
        v=$(basename "$rel")
        [ "$v" = "$keep_c" ] || [ "$v" = "$keep_p" ] && continue
        drop_release "$v"
        say "removed old release $v"
    done
    prune_kernel_caches
    rm -rf "$PREFIX/venv"  # the layout before versioned releases
}

install_unit() {
    group=$(serial_group)
    if [ -n "$group" ]; then
        usermod -a -G "$group" "$USER_NAME"
        sed "s/^SupplementaryGroups=.*/SupplementaryGroups=$group/" "$UNIT_SRC" >"$UNIT_PATH.tmp"
    else
        say "no dialout or uucp group: RTU buses will not reach the serial ports"
        sed "/^SupplementaryGroups=/d" "$UNIT_SRC" >"$UNIT_PATH.tmp"
    fi
    chmod 0644 "$UNIT_PATH.tmp" && mv -f "$UNIT_PATH.tmp" "$UNIT_PATH"
    ! have_systemd || systemctl daemon-reload
}

# --- service ---------------------------------------------------------------------------------
wait_ready() {  # READY=1 (ActiveState=active for Type=notify) within $READY_TIMEOUT seconds
    waited=0
    restarts=$(systemctl show -P NRestarts vfd-agent.service)
    while [ "$waited" -lt "$READY_TIMEOUT" ]; do
        state=$(systemctl show -P ActiveState vfd-agent.service)
        [ "$state" = active ] && return 0
        # Failing again and again before READY: no need to wait out the timeout.
        if [ "$(systemctl show -P NRestarts vfd-agent.service)" -ge $((restarts + 2)) ]; then
            NOT_READY="it failed twice in ${waited} s"
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    NOT_READY="it did not report READY within ${READY_TIMEOUT} s"
    return 1
}

ledger_copy() { echo "$STATE_DIR/ledger.sqlite.before-$1"; }

snapshot_ledger() {  # $1: the version about to start; the service is stopped
    [ -f "$STATE_DIR/ledger.sqlite" ] || return 0
    python3 - "$STATE_DIR/ledger.sqlite" "$(ledger_copy "$1")" <<'EOF'
import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
source.backup(target)
target.close()
source.close()
EOF
    chown "$USER_NAME:$USER_NAME" "$(ledger_copy "$1")"
    chmod 0640 "$(ledger_copy "$1")"
}

restore_ledger() {  # $1: the version whose pre-start copy to restore
    copy=$(ledger_copy "$1")
    [ -f "$copy" ] || return 0
    rm -f "$STATE_DIR/ledger.sqlite-wal" "$STATE_DIR/ledger.sqlite-shm"
    cp -p "$copy" "$STATE_DIR/ledger.sqlite"
    say "restored the ledger copied before $1 started"
}

config_is_untouched_example() { [ -f "$CONF" ] && cmp -s "$CONF" "$EXAMPLE"; }

switch_to() {  # switch_to NEW OLD: stop, copy the ledger, point current, start, fall back on failure
    new=$1; old=$2; old_previous=$(previous_version)
    systemctl stop vfd-agent.service || true
    snapshot_ledger "$new"
    point current "$new"
    [ -z "$old" ] || [ "$old" = "$new" ] || point previous "$old"
    systemctl start --no-block vfd-agent.service
    if wait_ready; then
        say "vfd-agent $new is READY"
        return 0
    fi
    say "vfd-agent $new is not READY: $NOT_READY"
    [ -n "$old" ] && [ "$old" != "$new" ] || die "no earlier release to go back to; see journalctl -u vfd-agent"
    systemctl stop vfd-agent.service || true
    restore_ledger "$new"
    point current "$old"
    if [ -n "$old_previous" ] && [ "$old_previous" != "$old" ]; then point previous "$old_previous"
    else rm -f "$PREFIX/previous"; fi
    systemctl reset-failed vfd-agent.service 2>/dev/null || true
    systemctl start --no-block vfd-agent.service
    wait_ready || die "rolled back to $old, but it is not READY either; see journalctl -u vfd-agent"
    drop_release "$new"
    prune_kernel_caches
    die "upgrade to $new failed; rolled back to $old, which is READY (see journalctl -u vfd-agent)"
}

do_install() {
    check_platform
    locate_source
    ensure_venv_support
    if ! id "$USER_NAME" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            --user-group "$USER_NAME"
    fi
    install -d -m 0755 "$PREFIX" "$RELEASES"
    install -d -m 0750 -g "$USER_NAME" "$CONF_DIR"
    if [ ! -e "$CONF" ]; then
        install -m 0640 -g "$USER_NAME" "$EXAMPLE" "$CONF"
        say "wrote $CONF from the example"
    fi
    old=$(current_version)
    if [ "$old" = "$VERSION" ] && [ -x "$RELEASES/$VERSION/venv/bin/vfd-agent" ]; then
        say "vfd-agent $VERSION is already the current release"
    else
        build_release
    fi
    install_unit
    if ! have_systemd; then
        point current "$VERSION"
        [ -z "$old" ] || [ "$old" = "$VERSION" ] || point previous "$old"
        prune_releases
        say "installed vfd-agent $VERSION; no systemd running here, so the service was not started"
        return 0
    fi
    if config_is_untouched_example; then
        point current "$VERSION"
        [ -z "$old" ] || [ "$old" = "$VERSION" ] || point previous "$old"
        prune_releases
        say "installed vfd-agent $VERSION. $CONF is still the example: the service is not enabled."
        say "edit it for your drives (buses, drives, site), check it with"
        say "  $PREFIX/current/venv/bin/vfd-agent check-config $CONF"
        say "then run install.sh again, or: systemctl enable --now vfd-agent"
        return 0
    fi
    systemctl enable vfd-agent.service
    if [ "$START" = no ]; then
        point current "$VERSION"
        [ -z "$old" ] || [ "$old" = "$VERSION" ] || point previous "$old"
        prune_releases
        say "installed vfd-agent $VERSION (enabled, not started: --no-start)"
        return 0
    fi
    switch_to "$VERSION" "$old"
    prune_releases
}

do_rollback() {
    [ -L "$PREFIX/previous" ] || die "no previous release to roll back to (releases: $(ls "$RELEASES" 2>/dev/null | tr '\n' ' '))"
    cur=$(current_version); prev=$(previous_version)
    [ -x "$RELEASES/$prev/venv/bin/vfd-agent" ] || die "previous release $prev is incomplete"
    ledger=$STATE_DIR/ledger.sqlite
    if [ -f "$ledger" ] && [ "$RESTORE_LEDGER" = no ]; then
        found=$(python3 -c 'import sqlite3, sys
row = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT version FROM schema_version").fetchone()
print(row[0] if row else 0)' "$ledger")
        # agent.energy.ledger since the layout by data flow; agent.ledger in the releases before it.
        knows=$("$RELEASES/$prev/venv/bin/python" -c 'try:
    from agent.energy.ledger import SCHEMA_VERSION
except ImportError:
    from agent.ledger import SCHEMA_VERSION
print(SCHEMA_VERSION)')
        [ "$found" -le "$knows" ] || die "the ledger has schema $found, migrated by $cur; $prev reads up to $knows. \
install.sh --rollback --restore-ledger restores $(ledger_copy "$cur") (the energy booked since $cur started is lost)"
    fi
    ! have_systemd || systemctl stop vfd-agent.service || true
    [ "$RESTORE_LEDGER" = no ] || restore_ledger "$cur"
    snapshot_ledger "$prev"   # what --rollback --restore-ledger brings back after the next switch
    point previous "$cur"
    point current "$prev"
    have_systemd || { say "current release is now $prev"; return 0; }
    systemctl start --no-block vfd-agent.service
    wait_ready || die "rolled back to $prev, but it is not READY ($NOT_READY); see journalctl -u vfd-agent"
    say "rolled back from $cur to $prev, which is READY"
}

do_uninstall() {
    if have_systemd; then
        systemctl disable --now vfd-agent.service 2>/dev/null || true
    fi
    rm -f "$UNIT_PATH"
    ! have_systemd || systemctl daemon-reload
    rm -rf "$PREFIX" "$CACHE_DIR"
    say "removed vfd-agent; kept $CONF_DIR (config) and $STATE_DIR (ledger)"
}

do_purge() {
    if [ "$YES" = no ]; then
        [ -t 0 ] || die "--purge deletes $CONF_DIR and $STATE_DIR (the energy ledger): confirm with --yes"
        printf 'install.sh: delete %s and %s, the energy ledger included? [y/N] ' "$CONF_DIR" "$STATE_DIR"
        read -r answer
        case $answer in y|Y|yes|YES) ;; *) die "nothing removed" ;; esac
    fi
    do_uninstall
    rm -rf "$CONF_DIR" "$STATE_DIR"
    ! id "$USER_NAME" >/dev/null 2>&1 || userdel "$USER_NAME" 2>/dev/null || true
    say "purged $CONF_DIR, $STATE_DIR and the user $USER_NAME"
}

case $ACTION in
    install) do_install ;;
    rollback) do_rollback ;;
    uninstall) do_uninstall ;;
    purge) do_purge ;;
esac
