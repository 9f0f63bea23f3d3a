#!/usr/bin/env bash
# Benchmark: `skiff mkfs` (layer straight into ext4) against the classic way,
# `tar -x` into a directory + `mkfs.ext4 -d DIR` (same image size), on a
# debootstrap'd Debian minbase (~200 MB, ~7k files) as one layer, .tar.gz and
# .tar.zst, all in the same run; plus `gzip -dc` and `zstd -dc` alone (the
# floor: decompressing the bytes). Medians of RUNS runs. Prints MB/s of the
# uncompressed layer and skiff's peak RSS (it must not grow with contents).
# Targets (issue 3): .tar.gz >= 2.5x faster than tar+mkfs; .tar.zst < 0.6 s.
#
#   benches/mkfs.sh [RUNS]      (root: tar -p/--same-owner and debootstrap)
#
# Everything is written under TMPDIR (default /tmp): the extracted directory
# and both images. The figures depend on that filesystem and on what else
# runs: the load average is printed with them. SKIFF_BENCH_EXTRACT=DIR puts
# the extracted tree elsewhere (e.g. /dev/shm: the peer's best case).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-3}
CACHE=${SKIFF_BENCH_CACHE:-$PWD/target/bench-cache}
mkdir -p "$CACHE"

cargo build --release -q -p skiff
SKIFF=${CARGO_TARGET_DIR:-$PWD/target}/release/skiff

# 1. The rootfs (debootstrap once; benches/pull.sh shares it) and the layers.
bench_minbase "$CACHE"
[ -f "$CACHE/minbase.tar.gz" ] || { gzip -6 -c "$CACHE/minbase.tar" >"$CACHE/minbase.tar.gz.tmp" && mv "$CACHE/minbase.tar.gz.tmp" "$CACHE/minbase.tar.gz"; }
[ -f "$CACHE/minbase.tar.zst" ] || zstd -q -3 -T0 "$CACHE/minbase.tar" -o "$CACHE/minbase.tar.zst"
tar_bytes=$(stat -c %s "$CACHE/minbase.tar")
files=$(tar -tf "$CACHE/minbase.tar" | wc -l)

work=$(mktemp -d "${TMPDIR:-/tmp}/skiff-bench-mkfs.XXXXXX")
extract=$(mktemp -d "${SKIFF_BENCH_EXTRACT:-$work}/extract.XXXXXX")
trap 'rm -rf "$work" "$extract"' EXIT


# One skiff run: seconds and peak RSS (KiB) into $t and $rss.
skiff_run() { # LAYER OUT
  rm -f "$2"
  sync
  local t0 t1
  t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" "$SKIFF" mkfs -q -o "$2" "$1"
  t1=$(now)
  t=$(elapsed "$t0" "$t1")
  rss=$(tail -1 "$work/rss")
}

# One tar -x + mkfs.ext4 -d run: seconds of each into $tx and $tm.
peer_run() { # LAYER TAR-FLAG SIZE-KIB
  rm -rf "$extract/dir" "$work/peer.ext4"
  mkdir "$extract/dir"
  sync
  local t0 t1 t2
  t0=$(now)
  tar "$2" -xf "$1" -C "$extract/dir" --numeric-owner --same-owner -p --xattrs --xattrs-include='*'
  t1=$(now)
  mkfs.ext4 -q -F -d "$extract/dir" "$work/peer.ext4" "${3}k" >/dev/null
  t2=$(now)
  tx=$(elapsed "$t0" "$t1")
  tm=$(elapsed "$t1" "$t2")
}


load=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm the page cache and check skiff's output once.
cat "$CACHE"/minbase.tar.gz "$CACHE"/minbase.tar.zst >/dev/null
skiff_run "$CACHE/minbase.tar.gz" "$work/check.ext4"
e2fsck -fn "$work/check.ext4" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log"; echo "skiff's image is not fsck-clean" >&2; exit 1; }
size_kib=$(($(stat -c %s "$work/check.ext4") / 1024))
rm -f "$work/check.ext4"

declare -A T
for fmt in gz zst; do
  layer=$CACHE/minbase.tar.$fmt
  if [ "$fmt" = gz ]; then flag=-z; dec=gzip; else flag=--zstd; dec=zstd; fi
  s=() r=() x=() m=() a=() d=()
  for _ in $(seq "$RUNS"); do
    decompress_run "$dec" "$layer"; d+=("$t")
    peer_run "$layer" "$flag" "$size_kib"; x+=("$tx") m+=("$tm") a+=("$(echo "$tx + $tm" | bc -l)")
    skiff_run "$layer" "$work/skiff.ext4"; s+=("$t") r+=("$rss")
  done
  T[$fmt.dec]=$(printf '%s\n' "${d[@]}" | median)
  T[$fmt.tar]=$(printf '%s\n' "${x[@]}" | median)
  T[$fmt.mkfs]=$(printf '%s\n' "${m[@]}" | median)
  T[$fmt.peer]=$(printf '%s\n' "${a[@]}" | median)
  T[$fmt.skiff]=$(printf '%s\n' "${s[@]}" | median)
  T[$fmt.rss]=$(printf '%s\n' "${r[@]}" | sort -n | tail -1)
  T[$fmt.runs]="${s[*]}"
done

mb() { echo "$tar_bytes / $1 / 1000000" | bc -l; }
printf 'images in %s (%s), tar -x into %s (%s); load average before: %s\n' "$work" "$(findmnt -no FSTYPE -T "$work")" \
  "$extract" "$(findmnt -no FSTYPE -T "$extract")" "$load"
printf 'layer: Debian minbase, %d entries, %.1f MB tar, %.1f MB .tar.gz, %.1f MB .tar.zst; image %d MiB; %d runs, medians; %s\n' \
  "$files" "$(echo "$tar_bytes / 1000000" | bc -l)" \
  "$(echo "$(stat -c %s "$CACHE/minbase.tar.gz") / 1000000" | bc -l)" \
  "$(echo "$(stat -c %s "$CACHE/minbase.tar.zst") / 1000000" | bc -l)" \
  "$((size_kib / 1024))" "$RUNS" "$(nproc) CPUs"
for fmt in gz zst; do
  dec=gzip; [ "$fmt" = zst ] && dec=zstd
  printf '\n.tar.%s\n' "$fmt"
  printf '  %-5s -dc alone                %7.3f s\n' "$dec" "${T[$fmt.dec]}"
  printf '  (a) tar -x + mkfs.ext4 -d      %7.3f s   (tar %.3f + mkfs %.3f)\n' "${T[$fmt.peer]}" "${T[$fmt.tar]}" "${T[$fmt.mkfs]}"
  rss_mib=$(( ${T[$fmt.rss]} / 1024 ))
  printf '  (b) skiff mkfs                 %7.3f s   %6.1f MB/s   peak RSS %d MiB   (runs: %s)\n' \
    "${T[$fmt.skiff]}" "$(mb "${T[$fmt.skiff]}")" "$rss_mib" "${T[$fmt.runs]}"
  printf '  ratio (a)/(b): %.2fx\n' "$(echo "${T[$fmt.peer]} / ${T[$fmt.skiff]}" | bc -l)"
done
printf '\ntargets: .tar.gz (a)/(b) >= 2.50x: %s; .tar.zst (b) < 0.600 s: %s\n' \
  "$(echo "${T[gz.peer]} / ${T[gz.skiff]} >= 2.5" | bc -l | sed 's/1/met/;s/0/MISSED/')" \
  "$(echo "${T[zst.skiff]} < 0.6" | bc -l | sed 's/1/met/;s/0/MISSED/')"
