#!/usr/bin/env bash
# Build the small kernel the GPIO tests boot under QEMU: Debian's
# linux-source-6.1, `make tinyconfig` plus tests/vm/kernel.config. The result
# is cached outside the work tree, keyed by the fragment's hash, so only the
# first run pays. Prints the path of the bzImage on success.
#
#   tests/vm/build-kernel.sh          build if missing, print the image path
#   tests/vm/build-kernel.sh --path   print where the image is (or would be)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
fragment="$here/kernel.config"
tarball="${POWER_VM_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}"
key="$(sha256sum <"$fragment" | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/power-vm/$key"
image="$cache/bzImage"

if [ "${1:-}" = "--path" ]; then
    echo "$image"
    exit 0
fi
if [ -s "$image" ]; then
    echo "$image"
    exit 0
fi
if [ ! -r "$tarball" ]; then
    echo "build-kernel: $tarball not found; install it with" \
        "'apt-get install linux-source-6.1'" >&2
    exit 1
fi

mkdir -p "$cache"
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "build-kernel: unpacking $tarball" >&2
tar -xJf "$tarball" -C "$work"
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
jobs="$(nproc)"
(
    cd "$src"
    make -s tinyconfig >/dev/null
    scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
    make -s olddefconfig
    # Every option of the fragment must have survived the dependency check.
    missing=0
    while IFS= read -r line; do
        case "$line" in CONFIG_*=*) ;; *) continue ;; esac
        if ! grep -qx "$line" .config; then
            echo "build-kernel: $line did not take" >&2
            missing=1
        fi
    done <"$fragment"
    [ "$missing" -eq 0 ]
    echo "build-kernel: compiling with $jobs jobs" >&2
    nice -n 10 make -s -j"$jobs" bzImage
    cp .config "$cache/config"
    cp arch/x86/boot/bzImage "$image.tmp"
)
mv "$image.tmp" "$image"
echo "build-kernel: built in $(($(date +%s) - start)) s" >&2
echo "$image"
