#!/usr/bin/env bash
# Benchmark: a container's storage beyond its image, each against the
# container's own root disk measured in the same VM and run.
#  - Untar the Debian minbase layer (~200 MB, ~7k files; the tar itself in
#    the guest's page cache) onto a host
#    directory (virtio-fs), a named volume and the root disk, sync, then read
#    every file back with the guest's caches dropped. 9p is not measured: the
#    guest kernel (Debian's cloud kernel) has no 9p.
#    target: virtio-fs >= 2x 9p; named volume ratio >= 0.9.
#  - 1 GiB written (fsync) and read sequentially on the volume and the root
#    disk. target: ratio >= 0.9.
#  - Memory: QEMU's RSS idle, after filling 300 MiB of tmpfs, and the seconds
#    until 90 % of it is back on the host after it is freed (balloon free
#    page reporting), with plain and with memfd (virtio-fs) guest RAM.
#
#   benches/volumes.sh      (root)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
bench_prepare
bench_minbase "$CACHE"

work=$(mktemp -d)
cleanup() {
  "$SKIFF" system reset --force >/dev/null 2>&1 || true
  kill "${reg_pid:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export SKIFF_ROOT=$work/store SKIFF_NETWORK=none

# busybox with every applet.
root=$work/img
mkdir -p "$root/bin" "$root/tmp" && chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in $(/bin/busybox --list | grep -vx busybox); do ln -s busybox "$root/bin/$a"; done
umoci init --layout "$work/oci" && umoci new --image "$work/oci:bb"
for d in bin tmp; do umoci insert --image "$work/oci:bb" "$root/$d" "/$d" >/dev/null; done
umoci config --image "$work/oci:bb" --os linux --architecture amd64 --config.cmd sh --config.env PATH=/bin
start_registry "$work/registry"
reg_pid=$REGISTRY_PID
IMG=$REGISTRY/bench/bb:latest
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:bb" "docker://$IMG"
"$SKIFF" pull -q "$IMG" >/dev/null

ratio() { echo "scale=3; $1 / $2" | bc -l; }
share=$work/share
mkdir -p "$share"
# Privileged: drop_caches needs CAP_SYS_ADMIN.
"$SKIFF" run -d --name b --privileged -m 1G -v "$share:/mnt/share" -v benchvol:/mnt/vol "$IMG" sleep 100000 >/dev/null
"$SKIFF" cp "$CACHE/minbase.tar" b:/src.tar
in_b() { "$SKIFF" exec b sh -c "$1"; }
# Seconds the guest spends on $1, by its own clock (/proc/uptime: busybox's
# date has no %N; no exec round trip is counted).
timed() {
  in_b "sync; echo 3 > /proc/sys/vm/drop_caches; cat /src.tar >/dev/null; t0=\$(cut -d' ' -f1 /proc/uptime); $1; t1=\$(cut -d' ' -f1 /proc/uptime); echo \$t0 \$t1" | tail -1 |
    awk '{printf "%.2f", $2 - $1}'
}
echo "== untar $(du -m "$CACHE/minbase.tar" | cut -f1) MB ($(tar -tf "$CACHE/minbase.tar" | wc -l) entries), then read it back (guest caches dropped)"
printf "%-22s %10s %10s %10s %10s\n" target untar_s read_s untar_ratio read_ratio
declare -A U R
for t in root:/d share:/mnt/share/d vol:/mnt/vol/d; do
  name=${t%%:*} dir=${t#*:}
  U[$name]=$(timed "mkdir -p $dir && tar -xf /src.tar -C $dir && sync")
  R[$name]=$(timed "tar -cf - -C $dir . | wc -c >/dev/null")
done
for name in root share vol; do
  printf "%-22s %10s %10s %10s %10s\n" "$name" "${U[$name]}" "${R[$name]}" \
    "$(ratio "${U[root]}" "${U[$name]}")" "$(ratio "${R[root]}" "${R[$name]}")"
done
echo "(ratios: root disk time / this time; >= 1 is as fast as the root disk)"

echo "== 1 GiB sequential, written with fsync and read back (guest caches dropped)"
printf "%-22s %10s %10s %10s %10s\n" target write_MBps read_MBps write_ratio read_ratio
declare -A W RD
for t in root:/big vol:/mnt/vol/big; do
  name=${t%%:*} f=${t#*:}
  w=$(timed "dd if=/dev/zero of=$f bs=1M count=1024 conv=fsync 2>/dev/null")
  r=$(timed "dd if=$f of=/dev/null bs=1M 2>/dev/null")
  in_b "rm $f"
  W[$name]=$(echo "scale=1; 1024 / $w" | bc -l) RD[$name]=$(echo "scale=1; 1024 / $r" | bc -l)
done
for name in root vol; do
  printf "%-22s %10s %10s %10s %10s\n" "$name" "${W[$name]}" "${RD[$name]}" \
    "$(ratio "${W[$name]}" "${W[root]}")" "$(ratio "${RD[$name]}" "${RD[root]}")"
done
"$SKIFF" rm -f b >/dev/null

echo "== memory: 300 MiB filled in tmpfs, then freed"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for extra in "" "-v $share:/mnt/share"; do
  # shellcheck disable=SC2086
  id=$("$SKIFF" run -d --tmpfs /big:size=400m $extra "$IMG" sleep 100000)
  sleep 3
  pid=$(pgrep -f "qemu-system.*$id" | head -1)
  idle=$(rss "$pid")
  "$SKIFF" exec "$id" dd if=/dev/zero of=/big/f bs=1M count=300 2>/dev/null
  full=$(rss "$pid")
  "$SKIFF" exec "$id" rm /big/f
  t0=$(date +%s.%N) back=""
  while :; do
    now=$(rss "$pid")
    el=$(echo "$(date +%s.%N) - $t0" | bc -l)
    if [ -z "$back" ] && [ $((full - now)) -ge $(((full - idle) * 9 / 10)) ]; then back=$el; fi
    [ -n "$back" ] && [ "$(echo "$el > $back + 3" | bc)" = 1 ] && break
    [ "$(echo "$el > 30" | bc)" = 1 ] && break
    sleep 0.2
  done
  printf "%-26s idle %6d MiB  full %6d MiB  90%% back after %5s s  settled %6d MiB\n" \
    "${extra:+memfd (virtio-fs)}${extra:-plain}" $((idle / 1024)) $((full / 1024)) "${back:-never}" $((now / 1024))
  "$SKIFF" rm -f "$id" >/dev/null
done
