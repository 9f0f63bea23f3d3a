#!/usr/bin/env bash
# A C toolchain root filesystem from this host's own Debian packages, as a
# tar: gcc, binutils, glibc's headers and static libraries, the shared
# libraries they need, busybox as /bin/sh. The builder stage of the build
# tests and benches, made offline in seconds (debootstrap needs a mirror and
# minutes).
# Usage: scripts/toolchain-rootfs.sh OUT.tar
set -euo pipefail
out=${1:?usage: toolchain-rootfs.sh OUT.tar}
pkgs=(gcc-12 cpp-12 libgcc-12-dev binutils binutils-x86-64-linux-gnu libbinutils
      libctf0 libctf-nobfd0 libc6 libc6-dev linux-libc-dev libcrypt-dev)
root=$(mktemp -d)
list=$(mktemp)
trap 'rm -rf "$root" "$list"' EXIT
# Debian 12 is merged-/usr: /lib is usr/lib, as on the host.
mkdir -p "$root/usr/lib" "$root/usr/lib64" "$root/usr/bin" "$root/usr/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s usr/sbin "$root/sbin"
for p in "${pkgs[@]}"; do
  dpkg -L "$p" 2>/dev/null || true
done | sort -u > "$list"
# Regular files and symlinks of the packages (directories come along).
while read -r f; do
  if [ ! -f "$f" ] && [ ! -L "$f" ]; then continue; fi
  case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/info/*|/usr/share/locale/*) continue ;; esac
  printf '%s\0' "$f"
done < "$list" | tar -C / --null -T - -cf - 2>/dev/null | tar -C "$root" --keep-directory-symlink -xf -
# The shared libraries every program above needs, following ldd.
find "$root" -type f -perm -u+x | while read -r f; do
  { ldd "${f#"$root"}" 2>/dev/null || true; } | awk '/=> \//{print $3} /^\s*\/lib/{print $1}'
done | sort -u | while read -r lib; do
  if [ -e "$root$lib" ]; then continue; fi
  mkdir -p "$root$(dirname "$lib")"
  cp -a "$lib" "$root$lib"
  real=$(readlink -f "$lib")
  if [ "$real" != "$lib" ]; then mkdir -p "$root$(dirname "$real")"; cp -a "$real" "$root$real"; fi
done
mkdir -p "$root/bin" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for a in sh cat echo ls rm mkdir; do ln -sf busybox "$root/bin/$a"; done
ln -sf gcc-12 "$root/usr/bin/gcc"
ln -sf gcc-12 "$root/usr/bin/cc"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner -cf "$out" .
