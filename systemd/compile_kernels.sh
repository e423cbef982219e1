#!/bin/sh
# Compile every kernel once, with exactly the wheels a gateway will install: the step the offline
# bundle (bundle.sh) and the kernels wheel (kernels_wheel.py) share.
#
#   systemd/compile_kernels.sh WHEELS CONSTRAINTS VERSION VENV CACHE [CACHE_FROM]
#
# Installs vfd-agent==VERSION from the wheels in WHEELS (pip --no-index, pinned by CONSTRAINTS)
# into a new venv VENV (without pip) (the caller removes it), then runs `vfd-agent warmup` of every kernel into
# CACHE. The cache's key is what the code is made of (kernels._numba.cache_name), its machine
# code the architecture's baseline (agent.numba_cache.CPU_NAME, whatever this host's CPU), so it
# is the one a gateway of this architecture and CPython would build. CACHE_FROM: a Numba cache
# directory whose kernels of exactly that name are copied in first (an earlier warm-up's, the
# test suite's), so only what it lacks compiles. The venv's Python: $PYTHON, else python3.
# Prints the cache name.
set -eu

[ $# -ge 5 ] || { echo "usage: compile_kernels.sh WHEELS CONSTRAINTS VERSION VENV CACHE [CACHE_FROM]" >&2; exit 2; }
WHEELS=$1; CONSTRAINTS=$2; VERSION=$3; VENV=$4; CACHE=$5; CACHE_FROM=${6:-}

PY=${PYTHON:-python3}
# No pip of its own (ensurepip takes seconds): this Python's pip installs into it (pip >= 22.3).
"$PY" -m venv --without-pip "$VENV"
"$PY" -m pip --python "$VENV/bin/python" install --quiet --no-compile --no-index --find-links "$WHEELS" \
    --constraint "$CONSTRAINTS" "vfd-agent==$VERSION"
# From the venv's folder: python -m would find a source tree in the current directory first.
name=$(cd "$VENV" && NUMBA_DISABLE_JIT=1 "$VENV/bin/python" -c \
    'from kernels._numba import cache_name; print(cache_name())')
mkdir -p "$CACHE"
if [ -n "$CACHE_FROM" ] && [ -d "$CACHE_FROM/$name" ]; then
    cp -R "$CACHE_FROM/$name" "$CACHE/"
fi
(cd "$VENV" && env -u CACHE_DIRECTORY -u NUMBA_CPU_NAME -u NUMBA_CPU_FEATURES \
    NUMBA_CACHE_DIR="$CACHE" "$VENV/bin/vfd-agent" warmup --jobs "$(nproc)" >&2)
[ -d "$CACHE/$name" ] || { echo "compile_kernels.sh: the warm-up cached no kernel (see above)" >&2; exit 1; }
find "$CACHE" -name '*.tmp.*' -delete
echo "$name"
