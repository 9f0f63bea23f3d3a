#!/usr/bin/env bash
# Benchmark: living containers, against peers run here in the same go.
#  - `skiff exec C true` in a running container vs `docker exec C true`
#    (Debian's docker.io; a private dockerd with --iptables=false --bridge=none)
#    target: ratio ≤ 0.5
#  - `skiff ps -a` with 20 containers (5 running) vs `podman ps -a` with as many
#    target: ≤ 50 ms and ratio ≤ 1.5
#  - the monitor's RSS (target ≤ 10 MiB) and an idle container's QEMU RSS
#
#   benches/containers.sh [RUNS]   (root; scripts/setup.sh --peers first)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-20}
bench_prepare

work=$(mktemp -d)
cleanup() {
  [ -n "${SKIFF_ROOT:-}" ] && "$SKIFF" ps -aq --no-trunc 2>/dev/null | xargs -r "$SKIFF" rm -f >/dev/null 2>&1 || true
  if [ -n "${PODMAN_OK:-}" ]; then podman "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1 || true; fi
  [ -n "${dockerd_pid:-}" ] && kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
  kill "${reg_pid:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export SKIFF_ROOT=$work/store

# One busybox image for all three, built offline.
bench_busybox "$work"
reg_pid=$REGISTRY_PID
"$SKIFF" pull -q "$IMG" >/dev/null


# --- exec ---
"$SKIFF" run -d --name bench "$IMG" sleep 100000 >/dev/null
"$SKIFF" exec bench true
skiff_exec=$(time_runs "$RUNS" "$SKIFF" exec bench true)

mkdir -p "$work/docker"
dockerd --data-root "$work/docker/data" --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" \
  -H "unix://$work/docker/docker.sock" --iptables=false --bridge=none >"$work/docker/log" 2>&1 &
dockerd_pid=$!
DOCKER=(/usr/bin/docker -H "unix://$work/docker/docker.sock")
for _ in $(seq 300); do "${DOCKER[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
"${DOCKER[@]}" load -q -i "$work/bb.tar" >/dev/null
"${DOCKER[@]}" run -d --network none --name bench bench/busybox:latest sleep 100000 >/dev/null
"${DOCKER[@]}" exec bench true
docker_exec=$(time_runs "$RUNS" "${DOCKER[@]}" exec bench true)
"${DOCKER[@]}" rm -f bench >/dev/null

# --- the monitor's and QEMU's memory, the container idle ---
sleep 5
mpid=$("$SKIFF" inspect --format '{{.State.MonitorPid}}' bench)
qpid=$("$SKIFF" inspect --format '{{.State.SandboxPid}}' bench)
monitor_rss=$(awk '/VmRSS/ {print $2}' "/proc/$mpid/status")
qemu_rss=$(awk '/VmRSS/ {print $2}' "/proc/$qpid/status")

# --- ps with 20 containers, 5 running (the exec one is the first) ---
for i in 1 2 3 4; do "$SKIFF" run -d --name "up$i" "$IMG" sleep 100000 >/dev/null; done
for i in $(seq 15); do "$SKIFF" create --name "idle$i" "$IMG" true >/dev/null; done
[ "$("$SKIFF" ps -aq | wc -l)" = 20 ] || { echo "expected 20 skiff containers" >&2; exit 1; }
[ "$("$SKIFF" ps -q | wc -l)" = 5 ] || { echo "expected 5 running skiff containers" >&2; exit 1; }
skiff_ps=$(time_runs "$RUNS" "$SKIFF" ps -a)

cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = []
CONF
export CONTAINERS_CONF=$work/containers.conf
PODMAN=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --cgroup-manager cgroupfs --events-backend none)
PODMAN_OK=1
podman "${PODMAN[@]}" load -q -i "$work/bb.tar" >/dev/null
for i in 1 2 3 4 5; do podman "${PODMAN[@]}" run -d --network none --name "up$i" bench/busybox:latest sleep 100000 >/dev/null; done
for i in $(seq 15); do podman "${PODMAN[@]}" create --network none --name "idle$i" bench/busybox:latest true >/dev/null; done
[ "$(podman "${PODMAN[@]}" ps -aq | wc -l)" = 20 ] || { echo "expected 20 podman containers" >&2; exit 1; }
podman_ps=$(time_runs "$RUNS" podman "${PODMAN[@]}" ps -a)

accel=$("$SKIFF" system info --format json | jq -r .accelerator)
printf 'accelerator: %s; %d runs each, medians\n' "$accel" "$RUNS"
printf 'skiff exec C true:             %.3f s\n' "$skiff_exec"
printf 'docker exec C true:            %.3f s\n' "$docker_exec"
printf 'ratio skiff / docker:          %.2f  (target ≤ 0.5)\n' "$(echo "$skiff_exec / $docker_exec" | bc -l)"
printf 'skiff ps -a (20, 5 running):   %.3f s  (target ≤ 0.050)\n' "$skiff_ps"
printf 'podman ps -a (20, 5 running):  %.3f s\n' "$podman_ps"
printf 'ratio skiff / podman:          %.2f  (target ≤ 1.5)\n' "$(echo "$skiff_ps / $podman_ps" | bc -l)"
printf 'monitor RSS:                   %s KiB  (target ≤ 10240)\n' "$monitor_rss"
printf 'idle container QEMU RSS:       %s MiB\n' "$((qemu_rss / 1024))"
