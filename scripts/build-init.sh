#!/bin/sh
# Builds skiff-init, the guest's PID 1, as a fully static binary and copies
# it to target/skiff-init (the path the rest of skiff uses). Prints that path.
#
# musl when its rustup target is installed (static by default); otherwise the
# gnu target with +crt-static, which glibc supports for a program that does
# not use NSS or dlopen (skiff-init uses neither).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}

# SKIFF_INIT_LIBC=gnu forces the fallback (to test it where musl is installed).
libc=${SKIFF_INIT_LIBC:-musl}
if [ "$libc" = musl ] && command -v rustup >/dev/null 2>&1; then
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
fi

if [ "$libc" = musl ] && command -v rustup >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    triple=x86_64-unknown-linux-musl
    cargo build -p skiff-init --profile init --target "$triple" >&2
else
    triple=x86_64-unknown-linux-gnu
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build -p skiff-init --profile init --target "$triple" >&2
fi

out="$target_dir/skiff-init"
# Copied to a temporary name and renamed, so a reader never sees half a file.
cp "$target_dir/$triple/init/skiff-init" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
