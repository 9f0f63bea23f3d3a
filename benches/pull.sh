#!/usr/bin/env bash
# Benchmark: `skiff image pull` against `skopeo copy docker://… oci:DIR` on the
# same ~200 MB multi-layer image (a debootstrap'd Debian minbase split into
# layers), served by a local docker-registry. Prints both, the ratio, and the
# re-pull time. Targets: skiff ≤ 0.8× skopeo; re-pull < 5% of the first pull.
#
#   benches/pull.sh [RUNS]        (root; installs debootstrap on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-3}
CACHE=${SKIFF_BENCH_CACHE:-$PWD/target/bench-cache}
mkdir -p "$CACHE"

cargo build --release -q -p skiff
SKIFF=$PWD/target/release/skiff

# 1. The image: Debian minbase, as an OCI layout with four layers (built once).
if [ ! -f "$CACHE/oci/index.json" ]; then
  bench_minbase "$CACHE"
  rm -rf "$CACHE/oci"
  umoci init --layout "$CACHE/oci"
  umoci new --image "$CACHE/oci:latest"
  for d in usr/lib usr/share usr var etc; do
    umoci insert --image "$CACHE/oci:latest" "$CACHE/rootfs/$d" "/$d" >/dev/null
  done
fi

# 2. A registry on loopback with the image in it.
work=$(mktemp -d)
trap 'kill "${reg_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
start_registry "$work/registry"
reg_pid=$REGISTRY_PID
REF=$REGISTRY/bench/debian:minbase
skopeo copy -q --dest-tls-verify=false "oci:$CACHE/oci:latest" "docker://$REF"
size=$(skopeo inspect --raw --tls-verify=false "docker://$REF" | jq '[.layers[].size] | add')


skopeo_t=() skiff_t=() repull_t=()
for i in $(seq "$RUNS"); do
  rm -rf "$work/skopeo-out" "$work/store"
  sync
  t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$work/skopeo-out:latest"; t1=$(now)
  skopeo_t+=("$(echo "$t1 - $t0" | bc -l)")
  sync
  t0=$(now); SKIFF_ROOT=$work/store "$SKIFF" image pull -q "$REF" >/dev/null; t1=$(now)
  skiff_t+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now); SKIFF_ROOT=$work/store "$SKIFF" image pull -q "$REF" >/dev/null; t1=$(now)
  repull_t+=("$(echo "$t1 - $t0" | bc -l)")
done
s=$(printf '%s\n' "${skopeo_t[@]}" | median)
k=$(printf '%s\n' "${skiff_t[@]}" | median)
r=$(printf '%s\n' "${repull_t[@]}" | median)
printf 'image: %s, %d layers, %.1f MB compressed; %d runs, medians\n' "$REF" \
  "$(skopeo inspect --raw --tls-verify=false "docker://$REF" | jq '.layers | length')" "$(echo "$size / 1000000" | bc -l)" "$RUNS"
printf 'skopeo copy docker:// oci:   %6.3f s   (runs: %s)\n' "$s" "${skopeo_t[*]}"
printf 'skiff image pull (empty):   %6.3f s   (runs: %s)\n' "$k" "${skiff_t[*]}"
printf 'skiff image pull (again):   %6.3f s\n' "$r"
printf 'ratio skiff/skopeo: %.2f (target <= 0.80); re-pull/pull: %.1f%% (target < 5%%)\n' \
  "$(echo "$k / $s" | bc -l)" "$(echo "100 * $r / $k" | bc -l)"
