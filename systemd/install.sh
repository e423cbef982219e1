#!/bin/sh
# Install vfd-agent as a systemd service on a Debian-like gateway.
#
#   sudo systemd/install.sh [--no-start]
#
# - a dedicated system user `vfd-agent` (no login, no home)
# - a virtual environment in /opt/vfd-agent/venv with this source tree installed
# - /etc/vfd-agent/vfd-agent.yaml from configs/example.yaml, unless one exists already
# - the unit in /etc/systemd/system, enabled and (unless --no-start) started
# - the Numba kernels compiled once into /var/cache/vfd-agent/numba
# Run it again to upgrade: the config is kept, the venv is updated.
set -eu

PREFIX=/opt/vfd-agent
CONF_DIR=/etc/vfd-agent
CACHE_DIR=/var/cache/vfd-agent
SRC=$(cd "$(dirname "$0")/.." && pwd)
START=yes
[ "${1:-}" = "--no-start" ] && START=no

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo $0)" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "install.sh: python3 is required" >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || {
    echo "install.sh: python3 venv support missing; installing python3-venv" >&2
    apt-get install -y python3-venv
}

if ! id vfd-agent >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --user-group vfd-agent
fi

install -d -m 0755 "$PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
"$PREFIX/venv/bin/pip" install --quiet "$SRC"
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

install -d -m 0750 -g vfd-agent "$CONF_DIR"
if [ ! -e "$CONF_DIR/vfd-agent.yaml" ]; then
    install -m 0640 -g vfd-agent "$SRC/configs/example.yaml" "$CONF_DIR/vfd-agent.yaml"
    echo "install.sh: wrote $CONF_DIR/vfd-agent.yaml from the example; edit it for your drives"
fi
"$PREFIX/venv/bin/vfd-agent" check-config "$CONF_DIR/vfd-agent.yaml" || \
    echo "install.sh: fix the config above before starting the service" >&2

# Compile the kernels now, as the service user, into the service's cache directory.
install -d -m 0750 -o vfd-agent -g vfd-agent "$CACHE_DIR"
runuser -u vfd-agent -- env NUMBA_CACHE_DIR="$CACHE_DIR/numba" "$PREFIX/venv/bin/vfd-agent" warmup

install -m 0644 "$SRC/systemd/vfd-agent.service" /etc/systemd/system/vfd-agent.service
systemctl daemon-reload
systemctl enable vfd-agent.service
if [ "$START" = yes ]; then
    systemctl restart vfd-agent.service
    systemctl --no-pager status vfd-agent.service || true
fi
