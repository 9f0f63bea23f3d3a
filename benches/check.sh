#!/usr/bin/env bash
# Benchmark: `skiff image check` of the debootstrap'd Debian minbase (~200 MB,
# ~7k files, ~1,300 ELF files) as a one-layer image (.tar.gz and .tar.zst),
# against the peer measured in the same run: `tar -x` of the same layer, then
# `readelf -ldVW` over every regular file of the tree. readelf prints what
# the check reads of each file (interpreter, NEEDED, RPATH/RUNPATH, symbol
# version needs and definitions) without resolving anything, so the peer is
# a floor for a script doing the same job; `ldd` is not used because it runs
# each program's loader (unsafe on an untrusted image, host-arch only) and is
# slower still. `gzip -dc`/`zstd -dc` alone are printed too: the floor of
# reading the layer at all. Medians of RUNS runs; the load average is printed
# with them. Target (issue): skiff image check of the .tar.gz <= 1 s.
#
#   benches/check.sh [RUNS]      (root: debootstrap, tar --same-owner)
#   SKIFF_BENCH_BIN=target/debug/skiff benches/check.sh 1   (the script itself)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-5}
CACHE=${SKIFF_BENCH_CACHE:-$PWD/target/bench-cache}
mkdir -p "$CACHE"

# SKIFF_BENCH_BIN=path: time that skiff instead of building the release one.
if [ -n "${SKIFF_BENCH_BIN:-}" ]; then
  SKIFF=$SKIFF_BENCH_BIN
else
  cargo build --release -q -p skiff
  SKIFF=${CARGO_TARGET_DIR:-$PWD/target}/release/skiff
fi

bench_minbase "$CACHE"
[ -f "$CACHE/minbase.tar.gz" ] || { gzip -6 -c "$CACHE/minbase.tar" >"$CACHE/minbase.tar.gz.tmp" && mv "$CACHE/minbase.tar.gz.tmp" "$CACHE/minbase.tar.gz"; }
[ -f "$CACHE/minbase.tar.zst" ] || zstd -q -3 -T0 "$CACHE/minbase.tar" -o "$CACHE/minbase.tar.zst"

work=$(mktemp -d "${TMPDIR:-/tmp}/skiff-bench-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SKIFF_ROOT=$work/store

sha() { sha256sum "$1" | cut -d' ' -f1; }

# An OCI archive of one layer, loaded into the store as bench/minbase:FMT.
load_image() { # FMT MEDIATYPE-SUFFIX
  local d=$work/oci-$1 layer=$CACHE/minbase.tar.$1 ld cd md
  mkdir -p "$d/blobs/sha256"
  ld=$(sha "$layer")
  ln -f "$layer" "$d/blobs/sha256/$ld" 2>/dev/null || cp "$layer" "$d/blobs/sha256/$ld"
  printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["bash"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$DIFF_ID" >"$d/config"
  cd=$(sha "$d/config")
  mv "$d/config" "$d/blobs/sha256/$cd"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+%s","digest":"sha256:%s","size":%d}]}' \
    "$cd" "$(stat -c %s "$d/blobs/sha256/$cd")" "$2" "$ld" "$(stat -c %s "$layer")" >"$d/manifest"
  md=$(sha "$d/manifest")
  mv "$d/manifest" "$d/blobs/sha256/$md"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"bench/minbase:%s"}}]}' \
    "$md" "$(stat -c %s "$d/blobs/sha256/$md")" "$1" >"$d/index.json"
  tar -C "$d" -cf "$work/oci-$1.tar" .
  "$SKIFF" image load -q -i "$work/oci-$1.tar" >/dev/null
  rm -rf "$d" "$work/oci-$1.tar"
}
DIFF_ID=$(sha "$CACHE/minbase.tar")
load_image gz gzip
load_image zst zstd

skiff_run() { # FMT
  local t0 t1
  t0=$(now)
  "$SKIFF" image check --format json "bench/minbase:$1" >"$work/report.json" || true
  t1=$(now)
  t=$(elapsed "$t0" "$t1")
}

peer_run() { # LAYER TAR-FLAG
  rm -rf "$work/dir"
  mkdir "$work/dir"
  local t0 t1 t2
  t0=$(now)
  tar "$2" -xf "$1" -C "$work/dir" --numeric-owner --same-owner -p
  t1=$(now)
  find "$work/dir" -type f -print0 | xargs -0 readelf -ldVW >/dev/null 2>&1 || true
  t2=$(now)
  tx=$(elapsed "$t0" "$t1")
  tr=$(elapsed "$t1" "$t2")
}


load=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$CACHE"/minbase.tar.gz "$CACHE"/minbase.tar.zst >/dev/null
# One run to check the report: it must have looked at the programs and found glibc.
skiff_run gz
python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
fails = [f for f in r["files"] if f["verdict"] == "fails"]
assert r["libc"] and r["libc"][0].startswith("glibc"), r["libc"]
assert r["entrypoint_ok"] is True, r["files"][:3]
print(f"report: {len(r['files'])} programs listed, {len(fails)} failing, libc {', '.join(r['libc'])}")
for f in fails[:10]:
    print(f"  fails: {f['path']}: {f.get('reason')}")
PY
elves=$(find "$CACHE/rootfs" -type f -size +0 -exec sh -c 'for f; do if head -c4 "$f" | grep -q ELF; then echo; fi; done' _ {} + | wc -l)

declare -A T
for fmt in gz zst; do
  layer=$CACHE/minbase.tar.$fmt
  if [ "$fmt" = gz ]; then flag=-z; dec=gzip; else flag=--zstd; dec=zstd; fi
  s=() x=() e=() a=() d=()
  for _ in $(seq "$RUNS"); do
    decompress_run "$dec" "$layer"; d+=("$t")
    peer_run "$layer" "$flag"; x+=("$tx") e+=("$tr") a+=("$(echo "$tx + $tr" | bc -l)")
    skiff_run "$fmt"; s+=("$t")
  done
  T[$fmt.dec]=$(printf '%s\n' "${d[@]}" | median)
  T[$fmt.tar]=$(printf '%s\n' "${x[@]}" | median)
  T[$fmt.readelf]=$(printf '%s\n' "${e[@]}" | median)
  T[$fmt.peer]=$(printf '%s\n' "${a[@]}" | median)
  T[$fmt.skiff]=$(printf '%s\n' "${s[@]}" | median)
  T[$fmt.runs]="${s[*]}"
done

printf 'load average before: %s; %s CPUs; %d runs, medians\n' "$load" "$(nproc)" "$RUNS"
printf 'layer: Debian minbase, %d entries, %d ELF files, %.1f MB tar, %.1f MB .tar.gz, %.1f MB .tar.zst\n' \
  "$(tar -tf "$CACHE/minbase.tar" | wc -l)" "$elves" \
  "$(echo "$(stat -c %s "$CACHE/minbase.tar") / 1000000" | bc -l)" \
  "$(echo "$(stat -c %s "$CACHE/minbase.tar.gz") / 1000000" | bc -l)" \
  "$(echo "$(stat -c %s "$CACHE/minbase.tar.zst") / 1000000" | bc -l)"
printf '%-8s %10s %12s %12s %12s %8s\n' layer "dec_s" "peer_s" "skiff_s" "(tar+readelf)" ratio
for fmt in gz zst; do
  printf '%-8s %10.3f %12.3f %12.3f %6.3f+%-6.3f %7.2fx   (skiff runs: %s)\n' ".tar.$fmt" \
    "${T[$fmt.dec]}" "${T[$fmt.peer]}" "${T[$fmt.skiff]}" "${T[$fmt.tar]}" "${T[$fmt.readelf]}" \
    "$(echo "${T[$fmt.peer]} / ${T[$fmt.skiff]}" | bc -l)" "${T[$fmt.runs]}"
done
echo "(ratio: peer time / skiff time; dec_s: decompressing the layer alone)"
printf 'target: .tar.gz skiff image check <= 1.000 s: %s\n' \
  "$(echo "${T[gz.skiff]} <= 1.0" | bc -l | sed 's/1/met/;s/0/MISSED/')"
