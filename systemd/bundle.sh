#!/bin/sh
# Build the offline bundle: one tar file a plant carries into an air-gapped network.
#
#   systemd/bundle.sh [--out DIR] [--python "3.11 3.13"] [--arch "x86_64 aarch64"]
#                     [--no-kernel-cache | --kernel-cache-from NUMBA_CACHE_DIR]
#
# It holds the project's wheel and every dependency as a wheel, pinned by constraints.txt,
# for each CPython version and architecture asked (default: 3.11 = Debian 12 / Raspberry Pi OS
# bookworm and 3.13 = Debian 13 / trixie, on x86_64 and aarch64), plus install.sh, the unit,
# the example config, the README, the licence and SHA256SUMS over every file.
# It also carries the kernels compiled for the platform it is built on (kernel-cache/, named in
# KERNEL_CACHE), when that is one of its own (python3's CPython and this architecture): install.sh
# seeds the service's cache with them, so a gateway of that platform loads its kernels instead of
# compiling them (README, "Memory"). A gateway of another platform compiles them, as before. For
# an aarch64 cache, run this script on an aarch64 machine, or in an arm64 Debian rootfs under
# qemu-user (bench/arm64.sh builds one; /work/shared/tools/arm64-emu.sh on the build machine):
# there the host platform is aarch64 (the compile is several times slower under emulation).
# --kernel-cache-from starts from the kernels an earlier warm-up cached there (a directory of
# exactly these kernels, numba, llvmlite, NumPy and Python, by its name), compiling only what
# it lacks. Install with
#   sudo ./install.sh --bundle vfd-agent-VERSION-bundle.tar
# Needs python3 with pip and a package index (run it where there is one); prints the path.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$SRC/dist
PYTHONS="3.11 3.13"
ARCHES="x86_64 aarch64"
KERNEL_CACHE=yes
CACHE_FROM=
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift ;;
        --python) PYTHONS=$2; shift ;;
        --arch) ARCHES=$2; shift ;;
        --no-kernel-cache) KERNEL_CACHE="no (--no-kernel-cache)" ;;
        --kernel-cache-from) CACHE_FROM=$2; shift ;;
        *) echo "bundle.sh: unknown option $1 (--out DIR, --python LIST, --arch LIST, --no-kernel-cache," \
               "--kernel-cache-from DIR)" >&2; exit 2 ;;
    esac
    shift
done
# The oldest glibc a gateway may have (manylinux2014 = glibc 2.17) up to Debian 13's (2.41):
# pip matches a --platform tag exactly, so name every manylinux_2_N a wheel may carry.
GLIBC_MINORS=$(seq 17 41)

WORK=$(mktemp -d /tmp/vfd-agent-bundle.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# The project's wheel, from a clean copy (setuptools never cleans build/ in the tree).
mkdir "$WORK/src"
tar -C "$SRC" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md LICENSE \
    agent kernels hil configs | tar -C "$WORK/src" -xf -
python3 -m pip wheel --quiet --no-deps --wheel-dir "$WORK/project" "$WORK/src"
WHEEL=$(ls "$WORK"/project/vfd_agent-*.whl)
VERSION=$(basename "$WHEEL" | cut -d- -f2)
NAME=vfd-agent-$VERSION
B=$WORK/$NAME
mkdir -p "$B/wheels"
cp "$WHEEL" "$B/wheels/"

for py in $PYTHONS; do
    tag=cp$(echo "$py" | tr -d .)
    for arch in $ARCHES; do
        platforms="--platform manylinux2014_$arch"
        for minor in $GLIBC_MINORS; do platforms="$platforms --platform manylinux_2_${minor}_$arch"; done
        # shellcheck disable=SC2086  # $platforms is a list of options
        python3 -m pip download --quiet --only-binary=:all: --implementation cp --python-version "$py" \
            --abi "$tag" --abi abi3 --abi none $platforms --constraint "$SRC/constraints.txt" \
            --dest "$B/wheels" "$WHEEL"
        echo "CPython $py $arch" >>"$B/PLATFORMS"
    done
done

# Every kernel compiled once, here, with the bundle's own wheels in a throw-away venv
# (compile_kernels.sh, which the kernels wheel's kernels_wheel.py shares).
HOST_PY=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
HOST_ARCH=$(uname -m)
case " $PYTHONS " in *" $HOST_PY "*) ;; *) KERNEL_CACHE="no (CPython $HOST_PY not in the bundle)" ;; esac
case " $ARCHES " in *" $HOST_ARCH "*) ;; *) KERNEL_CACHE="no ($HOST_ARCH not in the bundle)" ;; esac
if [ "$KERNEL_CACHE" = yes ]; then
    sh "$SRC/systemd/compile_kernels.sh" "$B/wheels" "$SRC/constraints.txt" "$VERSION" "$WORK/cache-venv" \
        "$B/kernel-cache" "$CACHE_FROM" >/dev/null
    echo "CPython $HOST_PY $HOST_ARCH" >"$B/KERNEL_CACHE"
else
    echo "bundle.sh: no compiled kernels in the bundle: $KERNEL_CACHE" >&2
fi

cp "$SRC/systemd/install.sh" "$B/install.sh"
chmod 0755 "$B/install.sh"
cp "$SRC/systemd/vfd-agent.service" "$SRC/constraints.txt" "$SRC/README.md" "$SRC/LICENSE" "$B/"
cp "$SRC/configs/example.yaml" "$B/example.yaml"
echo "$VERSION" >"$B/VERSION"
(cd "$B" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >"$WORK/SHA256SUMS")
mv "$WORK/SHA256SUMS" "$B/SHA256SUMS"

TAR=$OUT/$NAME-bundle.tar
tar -C "$WORK" --owner=0 --group=0 -cf "$TAR.tmp" "$NAME"
mv -f "$TAR.tmp" "$TAR"
(cd "$OUT" && sha256sum "$(basename "$TAR")" >"$(basename "$TAR").sha256")
echo "$TAR"
