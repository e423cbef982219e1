#!/bin/bash
# The agent's life on a gateway, under a real systemd (PID 1 of a Debian 12 nspawn container with
# no network): fresh install from an offline bundle, READY, a watchdog restart of a hung agent,
# an upgrade to a newer build, a broken upgrade that rolls itself back, --rollback by hand,
# uninstall and purge; no traceback in the journal. Needs root, systemd-nspawn, debootstrap.
#
#   tests/systemd/e2e.sh SRC WORK      (tests/systemd/test_e2e.py runs it; about 3-4 minutes)
set -euo pipefail
SRC=$(realpath "$1"); W=$2
mkdir -p "$W"; W=$(realpath "$W"); t0=$SECONDS
log() { echo "[$((SECONDS - t0))s] $*"; }
fail() { echo "FAIL: $*"; exit 1; }

# --- three builds: the tree as it is, a newer one, and a newer one that never gets READY ------
BASE=$(sh "$SRC/tests/systemd/rootfs.sh")
ROOT=$W/rootfs
rm -rf "$ROOT"; cp -a "$BASE" "$ROOT"
PY=$(basename "$(ls "$ROOT"/usr/bin/python3.[0-9]* | grep -E 'python3\.[0-9]+$' | head -n 1)" | sed 's/python//')
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/pyproject.toml" | head -n 1)
mkdir -p "$W/bundles"
build() {  # build NAME VERSION [broken]: a bundle of a copy of the tree at VERSION
    local tree=$W/src-$1
    rm -rf "$tree"; mkdir -p "$tree"
    tar -C "$SRC" --exclude=__pycache__ -cf - pyproject.toml README.md LICENSE constraints.txt agent kernels \
        hil configs systemd | tar -C "$tree" -xf -
    sed -i "s/^version = \".*\"$/version = \"$2\"/" "$tree/pyproject.toml"
    if [ "${3:-}" = broken ]; then  # `run` exits at start; check-config and warmup still pass
        echo 'raise SystemExit("vfd-agent e2e: this build is deliberately broken")' >>"$tree/agent/service.py"
    fi
    # Its kernel cache starts from the last build's (the same kernels), the first from the suite's.
    bundle=$(sh "$tree/systemd/bundle.sh" --out "$W/bundles" --python "$PY" --arch "$(uname -m)" \
        ${KERNELS:+--kernel-cache-from "$KERNELS"} | tail -n 1)
    KERNELS=$W/kernels-$1; rm -rf "$KERNELS"; mkdir -p "$KERNELS"
    tar -xf "$bundle" -C "$KERNELS" --strip-components=2 --wildcards '*/kernel-cache/*'
}
KERNELS=${NUMBA_CACHE_DIR:-}
NEW=$VERSION+e2e.1; BROKEN=$VERSION+e2e.2
build old "$VERSION"; build new "$NEW"; build broken "$BROKEN" broken
log "rootfs copied, three bundles built ($VERSION, $NEW, $BROKEN)"

# --- boot: systemd as PID 1, no network at all (the bundle must be enough) ----------------------
echo vfde2e >"$ROOT/etc/hostname"
systemd-nspawn -q -D "$ROOT" -M vfde2e -b --console=passive --register=no --keep-unit --private-network \
    --bind-ro="$W/bundles":/bundles --bind-ro="$SRC/systemd":/src/systemd >"$W/nspawn.log" 2>&1 &
NSPAWN=$!
cleanup() {
    kill -TERM "$NSPAWN" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 1; done
    kill -KILL "$NSPAWN" 2>/dev/null || true
}
trap cleanup EXIT
LEADER=
for _ in $(seq 100); do LEADER=$(pgrep -P "$NSPAWN" -x systemd || true); [ -n "$LEADER" ] && break; sleep 0.2; done
[ -n "$LEADER" ] || { cat "$W/nspawn.log"; fail "container did not boot"; }
ct() { nsenter -t "$LEADER" -m -u -i -n -p -C -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
       LANG=C.UTF-8 "$@"; }
ct sh -c 'for i in $(seq 90); do case $(systemctl is-system-running 2>/dev/null) in running|degraded) exit 0;; esac;
          sleep 1; done; exit 1' || fail "systemd did not finish booting"
[ "$(ct ls /sys/class/net)" = lo ] || fail "the container has a network"
log "container booted (no network)"

install() { ct sh /src/systemd/install.sh "$@"; }
current() { ct readlink /opt/vfd-agent/current; }
drives_up() {  # every drive of the demo plant polled: vfd_up 1 three times
    ct python3 -c 'import sys, time, urllib.request
for _ in range(90):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:9847/metrics", timeout=2).read().decode()
        if sum(1 for l in text.splitlines() if l.startswith("vfd_up{") and l.endswith(" 1.0")) == 3:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit(1)'
}
energy() {  # total energy booked over every drive, joules
    ct python3 -c 'import urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9847/metrics", timeout=5).read().decode()
print(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("vfd_energy_joules_total{")))'
}

flushed() {  # wait for a ledger flush with energy booked (flush_interval_s 10 in the example)
    ct python3 -c 'import sys, time, urllib.request
for _ in range(90):
    text = urllib.request.urlopen("http://127.0.0.1:9847/metrics", timeout=5).read().decode()
    energy = sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("vfd_energy_joules_total{"))
    flushes = sum(float(l.split()[-1]) for l in text.splitlines()
                  if l.startswith("vfd_ledger_flushes_total{result=\"ok\"}"))
    if energy > 0 and flushes >= 1:
        sys.exit(0)
    time.sleep(1)
sys.exit(1)'
}

# --- fresh install: the example config is not polled ------------------------------------------
install --bundle "/bundles/vfd-agent-$VERSION-bundle.tar" | tee "$W/install-1.log"
grep -q "is still the example: the service is not enabled" "$W/install-1.log" || fail "untouched example not noticed"
[ "$(ct systemctl is-enabled vfd-agent || true)" = disabled ] || fail "enabled with the untouched example"
[ "$(current)" = "releases/$VERSION" ] || fail "current is $(current)"
log "fresh install: $VERSION, not started on the example config"

# The plant: the demo plant on 127.0.0.1:5020 (the example's bus), served from the first release
# (a running process keeps its files when a release is removed).
ct systemd-run -q --unit=vfd-sim "/opt/vfd-agent/releases/$VERSION/venv/bin/vfd-sim" --plant \
    "$(ct sh -c "ls /opt/vfd-agent/releases/$VERSION/venv/lib/python3*/site-packages/configs/plants/demo.yaml")" \
    --listen 127.0.0.1:5020 --metrics 127.0.0.1:9100
ct sh -c 'echo "# commissioned for the e2e plant" >>/etc/vfd-agent/vfd-agent.yaml'
install --bundle "/bundles/vfd-agent-$VERSION-bundle.tar" | tee "$W/install-2.log"
ct systemctl is-active -q vfd-agent || fail "not active after install"
[ "$(ct systemctl is-enabled vfd-agent)" = enabled ] || fail "not enabled"
[ "$(ct systemctl show -P WatchdogUSec vfd-agent)" != 0 ] || fail "no watchdog"
drives_up || fail "drives not up"
log "READY, 3 drives up ($(ct systemctl show -P StatusText vfd-agent))"

# --- the watchdog restarts a hung agent ---------------------------------------------------------
ct systemctl kill --kill-whom=main -s SIGSTOP vfd-agent
ct sh -c 'for i in $(seq 90); do [ "$(systemctl show -P NRestarts vfd-agent)" = 1 ] && exit 0; sleep 1; done; exit 1' \
    || fail "no watchdog restart"
ct sh -c 'for i in $(seq 90); do systemctl is-active -q vfd-agent && exit 0; sleep 1; done; exit 1' || fail "not back"
drives_up || fail "drives not up after the watchdog restart"
log "watchdog restart ok"

# --- systemctl reload: SIGHUP re-reads the config in the same process ---------------------------
pid=$(ct systemctl show -P MainPID vfd-agent)
ct sh -c 'echo "# reloaded by the e2e test" >>/etc/vfd-agent/vfd-agent.yaml'
ct systemctl reload vfd-agent || fail "systemctl reload failed"
ct sh -c 'for i in $(seq 30); do journalctl -u vfd-agent -o cat | grep -q "reloaded /etc/vfd-agent/vfd-agent.yaml" \
    && exit 0; sleep 1; done; exit 1' || fail "no reload in the journal"
[ "$(ct systemctl show -P MainPID vfd-agent)" = "$pid" ] || fail "reload restarted the agent"
ct systemctl is-active -q vfd-agent || fail "not active after the reload"
drives_up || fail "drives not up after the reload"
log "systemctl reload: same process ($pid), config applied, drives up"

# --- upgrade to a newer build: beside the running one, ledger read by the new code --------------
flushed || fail "no ledger flush"   # energy on disk, so the new release has totals to restore
before=$(energy)
install --bundle "/bundles/vfd-agent-$NEW-bundle.tar" | tee "$W/install-3.log"
[ "$(current)" = "releases/$NEW" ] || fail "current is $(current) after the upgrade"
[ "$(ct readlink /opt/vfd-agent/previous)" = "releases/$VERSION" ] || fail "previous is not $VERSION"
drives_up || fail "drives not up after the upgrade"
after=$(energy)
python3 -c "import sys; sys.exit(not float('$after') >= float('$before') > 0)" || \
    fail "energy went from $before J to $after J across the upgrade (ledger not carried over)"
restored=$(ct journalctl -u vfd-agent -o cat | grep "drive(s) restored" | tail -n 1)
case $restored in *": 3 drive(s) restored"*) ;; *) fail "the new release did not restore the ledger: $restored" ;; esac
log "upgraded to $NEW: READY, the ledger's 3 drives restored, energy $before J -> $after J"

# --- a broken upgrade switches back by itself -------------------------------------------------
if install --ready-timeout 120 --bundle "/bundles/vfd-agent-$BROKEN-bundle.tar" >"$W/install-4.log" 2>&1; then
    cat "$W/install-4.log"; fail "the broken upgrade succeeded"
fi
cat "$W/install-4.log"
grep -q "rolled back to $NEW" "$W/install-4.log" || fail "no rollback message"
[ "$(current)" = "releases/$NEW" ] || fail "current is $(current) after the broken upgrade"
ct test ! -e "/opt/vfd-agent/releases/$BROKEN" || fail "the broken release was left behind"
ct systemctl is-active -q vfd-agent || fail "not active after the automatic rollback"
drives_up || fail "drives not up after the automatic rollback"
log "broken upgrade $BROKEN rolled back to $NEW by itself"

# --- rollback by hand ---------------------------------------------------------------------------
install --rollback
[ "$(current)" = "releases/$VERSION" ] || fail "current is $(current) after --rollback"
drives_up || fail "drives not up after --rollback"
restored=$(ct journalctl -u vfd-agent -o cat | grep "drive(s) restored" | tail -n 1)
case $restored in *": 3 drive(s) restored"*) ;; *) fail "$VERSION did not restore the ledger: $restored" ;; esac
log "--rollback to $VERSION: READY, the ledger's 3 drives restored"

# As if $VERSION had migrated the ledger past what $NEW reads: --rollback refuses, names the copy.
ct python3 -c 'import sqlite3
db = sqlite3.connect("/var/lib/vfd-agent/ledger.sqlite")
db.execute("UPDATE schema_version SET version = version + 1")
db.commit()'
if install --rollback >"$W/rollback-2.log" 2>&1; then cat "$W/rollback-2.log"; fail "rolled back onto a newer ledger"; fi
grep -q -- "--rollback --restore-ledger restores /var/lib/vfd-agent/ledger.sqlite.before-$VERSION" "$W/rollback-2.log" \
    || { cat "$W/rollback-2.log"; fail "no way out named"; }
[ "$(current)" = "releases/$VERSION" ] || fail "current changed by a refused rollback"
install --rollback --restore-ledger
[ "$(current)" = "releases/$NEW" ] || fail "current is $(current) after --rollback --restore-ledger"
drives_up || fail "drives not up after --rollback --restore-ledger"
restored=$(ct journalctl -u vfd-agent -o cat | grep "drive(s) restored" | tail -n 1)
case $restored in *": 3 drive(s) restored"*) ;; *) fail "$NEW did not restore the ledger copy: $restored" ;; esac
log "--rollback refused on a newer ledger schema; --restore-ledger back to $NEW: READY"

# --- the journal: no traceback, no directory-mode warning ---------------------------------------
ct journalctl --no-pager -o cat >"$W/journal.txt"
! grep -n 'Traceback' "$W/journal.txt" || fail "traceback in the journal"
! grep -n 'already exists but the mode is different' "$W/journal.txt" || fail "directory mode warning"
ct systemd-analyze security vfd-agent --no-pager | tail -n 1

# --- uninstall keeps config and ledger; purge asks, then removes them ---------------------------
install --uninstall
ct test ! -e /etc/systemd/system/vfd-agent.service || fail "unit left behind"
ct test ! -e /opt/vfd-agent || fail "/opt/vfd-agent left behind"
ct test -f /etc/vfd-agent/vfd-agent.yaml || fail "config removed by --uninstall"
ct test -f /var/lib/vfd-agent/ledger.sqlite || fail "ledger removed by --uninstall"
if install --purge </dev/null; then fail "--purge without --yes and no terminal went ahead"; fi
ct test -f /var/lib/vfd-agent/ledger.sqlite || fail "ledger removed without confirmation"
install --purge --yes
ct test ! -e /etc/vfd-agent || fail "config left by --purge"
ct test ! -e /var/lib/vfd-agent || fail "ledger left by --purge"
! ct id vfd-agent 2>/dev/null || fail "user left by --purge"
log "uninstall kept config and ledger; purge removed them"
log "PASS"
