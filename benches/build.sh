#!/usr/bin/env bash
# Benchmark: `skiff build` against `podman build` (Debian's podman 4.3,
# buildah inside), the same Containerfiles in the same go:
#  - an unchanged rebuild of a 5-step Containerfile (target: ≤ 0.2 s)
#  - a COPY of a ~200 MB directory of real files (this host's C toolchain,
#    scripts/toolchain-rootfs.sh) into a scratch image, cache off
#    (target: ≤ 0.5× podman), for each of skiff's layer compressions
#
#   benches/build.sh [RUNS]   (root; scripts/setup.sh --peers first)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-5}
bench_prepare

work=$(mktemp -d)
cleanup() {
  kill "${reg_pid:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export SKIFF_ROOT=$work/store SKIFF_NETWORK=none

# One busybox base for both, built offline.
bench_busybox "$work"
reg_pid=$REGISTRY_PID
"$SKIFF" pull -q "$IMG" >/dev/null

cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = []
CONF
export CONTAINERS_CONF=$work/containers.conf
PODMAN=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --cgroup-manager cgroupfs --events-backend none)
podman "${PODMAN[@]}" load -q -i "$work/bb.tar" >/dev/null
podman "${PODMAN[@]}" tag bench/busybox:latest "$IMG"


# --- unchanged rebuild, 5 steps ---
mkdir -p "$work/ctx5"
echo data >"$work/ctx5/data.txt"
cat >"$work/ctx5/Containerfile" <<EOF
FROM $IMG
ENV A=1
WORKDIR /app
COPY data.txt .
RUN echo built > /app/built
CMD ["cat", "/app/built"]
EOF
"$SKIFF" build -q -t bench/five "$work/ctx5" >/dev/null
podman "${PODMAN[@]}" build -q --network none -t bench/five "$work/ctx5" >/dev/null
skiff_rebuild=$(time_runs "$RUNS" "$SKIFF" build -q -t bench/five "$work/ctx5")
podman_rebuild=$(time_runs "$RUNS" podman "${PODMAN[@]}" build -q --network none -t bench/five "$work/ctx5")

# --- COPY of a big directory ---
mkdir -p "$work/ctxbig/tree"
scripts/toolchain-rootfs.sh "$work/tree.tar"
tar -C "$work/ctxbig/tree" -xf "$work/tree.tar"
rm "$work/tree.tar"
size=$(du -sm "$work/ctxbig/tree" | cut -f1)
files=$(find "$work/ctxbig/tree" | wc -l)
printf 'FROM scratch\nCOPY tree/ /tree/\n' >"$work/ctxbig/Containerfile"
sync
COPY_RUNS=3
declare -A skiff_copy
modes=("gzip" "gzip 6" "zstd" "uncompressed")
for m in "${modes[@]}"; do
  read -r c level <<<"$m"
  skiff_copy[$m]=$(time_runs "$COPY_RUNS" "$SKIFF" build -q --no-cache --compression "$c" ${level:+--compression-level "$level"} -t bench/big "$work/ctxbig")
done
podman_copy=$(time_runs "$COPY_RUNS" podman "${PODMAN[@]}" build -q --no-cache -t bench/big "$work/ctxbig")

printf '%d runs each (COPY: %d), medians\n' "$RUNS" "$COPY_RUNS"
printf '| | skiff | podman build | ratio |\n| --- | --- | --- | --- |\n'
printf '| unchanged rebuild, 5 steps | %.3f s | %.3f s | %.2f (target: skiff ≤ 0.2 s) |\n' \
  "$skiff_rebuild" "$podman_rebuild" "$(echo "$skiff_rebuild / $podman_rebuild" | bc -l)"
for m in "${modes[@]}"; do
  printf '| COPY %d MB (%d files), %s | %.2f s | %.2f s | %.2f (target ≤ 0.5) |\n' \
    "$size" "$files" "$m" "${skiff_copy[$m]}" "$podman_copy" "$(echo "${skiff_copy[$m]} / $podman_copy" | bc -l)"
done
