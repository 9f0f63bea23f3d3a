#!/usr/bin/env bash
# Benchmark: `skiff run --rm IMAGE true` against a bare QEMU boot of the same
# kernel with the same machine/accelerator/CPU/memory/command-line flags and an
# initramfs whose /init powers off at once. Prints both medians and the ratio
# (skiff's own overhead: initramfs modules, virtio devices, control channel,
# rootfs, process). Also: command → process start (from --debug), skiff-init's
# size, and the RSS of an idle container's QEMU.
# Targets: ratio ≤ 1.3 under TCG; with KVM, command → process start < 200 ms.
#
#   benches/run.sh [RUNS]        (root; uses scripts/setup.sh's packages)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-5}
bench_prepare

work=$(mktemp -d)
trap 'kill "${reg_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
export SKIFF_ROOT=$work/store

# A busybox image in a local registry.
mkdir -p "$work/img/bin"
cp /bin/busybox "$work/img/bin/"
ln -s busybox "$work/img/bin/sh"; ln -s busybox "$work/img/bin/true"; ln -s busybox "$work/img/bin/sleep"
umoci init --layout "$work/oci" && umoci new --image "$work/oci:bb"
umoci insert --image "$work/oci:bb" "$work/img/bin" /bin >/dev/null
umoci config --image "$work/oci:bb" --os linux --architecture amd64 --config.cmd sh --config.env PATH=/bin
start_registry "$work/registry"
reg_pid=$REGISTRY_PID
IMG=$REGISTRY/bench/busybox:latest
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:bb" "docker://$IMG"

# Warm-up: pull, base filesystem, initramfs, accelerator probe. Capture the
# QEMU command line skiff uses (from /proc while it runs).
"$SKIFF" pull -q "$IMG" >/dev/null
"$SKIFF" run --rm "$IMG" sleep 3 &
run_pid=$!
qpid=
for _ in $(seq 300); do
  qpid=$(pgrep -f "qemu-system.*$work/store.*control.sock" | head -1 || true)
  [ -n "$qpid" ] && break
  sleep 0.05
done
[ -n "$qpid" ] || { echo "no QEMU seen" >&2; exit 1; }
for _ in $(seq 100); do
  tr '\0' '\n' <"/proc/$qpid/cmdline" >"$work/qemu.argv" || true
  grep -q '^-kernel$' "$work/qemu.argv" && break
  sleep 0.05
done
grep -q '^-kernel$' "$work/qemu.argv" || { echo "could not read QEMU's command line (pid $qpid)" >&2; exit 1; }
wait "$run_pid"
accel=$("$SKIFF" system info --format json | jq -r .accelerator)

# The bare boot: same flags minus skiff's devices and initramfs; /init is a
# static C program that powers off.
cat >"$work/poweroff.c" <<'C'
#include <sys/reboot.h>
#include <unistd.h>
int main(void) { sync(); reboot(RB_POWER_OFF); return 0; }
C
mkdir -p "$work/bare/dev"
gcc -static -Os -o "$work/bare/init" "$work/poweroff.c"
mknod "$work/bare/dev/console" c 5 1
(cd "$work/bare" && printf 'init\ndev\ndev/console\n' | cpio -o -H newc --quiet >"$work/bare.cpio")
python3 - "$work/qemu.argv" "$work/bare.cpio" "$work/bare.args" <<'PY'
import sys
argv = open(sys.argv[1]).read().split('\n')[:-1]
out, i = [argv[0]], 1
while i < len(argv):
    a = argv[i]
    v = argv[i + 1] if i + 1 < len(argv) else ''
    if a in ('-drive',) or (a == '-device' and ('virtio' in v or 'virtserial' in v)) or (a == '-chardev' and v.startswith('socket')):
        i += 2; continue
    if a == '-initrd':
        out += [a, sys.argv[2]]; i += 2; continue
    if a == '-chardev' and v.startswith('file'):
        out += [a, 'file,id=con,path=/dev/null']; i += 2; continue
    out.append(a); i += 1
open(sys.argv[3], 'w').write('\0'.join(out))
PY

bare_t=() skiff_t=() start_t=()
for _ in $(seq "$RUNS"); do
  t0=$(now); xargs -0 -a "$work/bare.args" sh -c 'exec "$0" "$@"' >"$work/bare.log" 2>&1 || { cat "$work/bare.log" >&2; exit 1; }; t1=$(now)
  bare_t+=("$(echo "$t1 - $t0" | bc -l)")
  t0=$(now); "$SKIFF" --debug run --rm "$IMG" true 2>"$work/debug.log"; t1=$(now)
  skiff_t+=("$(echo "$t1 - $t0" | bc -l)")
  # "command→process start 1.234s" or "...ms"
  s=$(grep -o 'command→process start [0-9.]*[mµ]*s' "$work/debug.log" | awk '{print $3}')
  case $s in *ms) s=$(echo "${s%ms} / 1000" | bc -l);; *µs) s=$(echo "${s%µs} / 1000000" | bc -l);; *s) s=${s%s};; esac
  start_t+=("$s")
done
b=$(printf '%s\n' "${bare_t[@]}" | median)
k=$(printf '%s\n' "${skiff_t[@]}" | median)
p=$(printf '%s\n' "${start_t[@]}" | median)

# An idle container's QEMU: resident memory.
"$SKIFF" run --rm "$IMG" sleep 20 &
run_pid=$!
sleep 1
qpid=
for _ in $(seq 600); do
  qpid=$(pgrep -f "qemu-system.*$work/store.*control.sock" | head -1 || true)
  [ -n "$qpid" ] && [ -S "$(ls -d "$work"/store/containers/*/ | head -1)control.sock" ] && break
  sleep 0.05
done
sleep 8
rss=$(awk '/VmRSS/ {print $2}' "/proc/$qpid/status")
kill -TERM "$run_pid" 2>/dev/null || true
wait "$run_pid" 2>/dev/null || true

printf 'accelerator: %s; %d runs, medians\n' "$accel" "$RUNS"
printf 'bare QEMU boot + power-off:   %.3f s\n' "$b"
printf 'skiff run --rm IMG true:      %.3f s\n' "$k"
printf 'ratio skiff / bare:           %.2f  (target ≤ 1.3 under TCG)\n' "$(echo "$k / $b" | bc -l)"
printf 'command → process start:      %.3f s  (target with KVM: < 0.200 s)\n' "$p"
printf 'skiff-init size (stripped):   %s bytes\n' "$(stat -c %s "$SKIFF_INIT")"
printf 'idle container QEMU RSS:      %s MiB\n' "$((rss / 1024))"
