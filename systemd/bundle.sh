#!/bin/sh
# Build the offline bundle: one tar file a plant carries into an air-gapped network.
#
#   systemd/bundle.sh [--out DIR] [--python "3.11 3.13"] [--arch "x86_64 aarch64"]
#
# It holds the project's wheel and every dependency as a wheel, pinned by constraints.txt,
# for each CPython version and architecture asked (default: 3.11 = Debian 12 / Raspberry Pi OS
# bookworm and 3.13 = Debian 13 / trixie, on x86_64 and aarch64), plus install.sh, the unit,
# the example config, the README, the licence and SHA256SUMS over every file. Install with
#   sudo ./install.sh --bundle vfd-agent-VERSION-bundle.tar
# Needs python3 with pip and a package index (run it where there is one); prints the path.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=$SRC/dist
PYTHONS="3.11 3.13"
ARCHES="x86_64 aarch64"
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$2; shift ;;
        --python) PYTHONS=$2; shift ;;
        --arch) ARCHES=$2; shift ;;
        *) echo "bundle.sh: unknown option $1 (--out DIR, --python LIST, --arch LIST)" >&2; exit 2 ;;
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
