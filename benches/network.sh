#!/usr/bin/env bash
# Benchmark: container networks, each figure against a peer measured in the
# same run, all inside network namespaces made here (no packet leaves them).
#  - TCP throughput container -> host with iperf3 over skiff's path (tap on
#    the network's bridge, skiff's nftables rules in place) vs the same VM and
#    tap with every nftables rule removed (the bare QEMU tap data path).
#    target: ratio >= 0.9. Also: the rootless path (passt) against the same.
#  - HTTP requests per second (ab, busybox httpd in the container) through
#    the published port (-p, the monitor's publisher on 127.0.0.1) vs straight
#    to the container's address. target: ratio >= 0.8
#  - seconds from `skiff run -d -p` to the first successful request.
#
#   benches/network.sh [SECONDS]   (root; scripts/setup.sh --peers first)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
SECS=${1:-5}
bench_prepare
command -v iperf3 >/dev/null || { echo "iperf3 missing: scripts/setup.sh --peers" >&2; exit 1; }
command -v ab >/dev/null || { echo "ab missing: scripts/setup.sh" >&2; exit 1; }

NS=skiff-bench-$$
work=$(mktemp -d)
cleanup() {
  ip netns exec "$NS" "$SKIFF" system reset --force >/dev/null 2>&1 || true
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$NS-o" 2>/dev/null || true
  kill "${reg_pid:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export SKIFF_ROOT=$work/store
in_ns() { ip netns exec "$NS" "$@"; }

# An image with busybox and iperf3 (its shared libraries copied along).
root=$work/img
# (iperf3 keeps its stream buffer in a file under /tmp.)
mkdir -p "$root/bin" "$root/www" "$root/tmp" && chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in sh sleep httpd cat; do ln -s busybox "$root/bin/$a"; done
cp /usr/bin/iperf3 "$root/bin/"
for lib in $(ldd /usr/bin/iperf3 | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
head -c 512 /dev/zero | tr '\0' x > "$root/www/index.html"
umoci init --layout "$work/oci" && umoci new --image "$work/oci:net"
for d in bin www tmp lib lib64 usr; do
  [ -e "$root/$d" ] && umoci insert --image "$work/oci:net" "$root/$d" "/$d" >/dev/null
done
umoci config --image "$work/oci:net" --os linux --architecture amd64 --config.cmd sh --config.env PATH=/bin
start_registry "$work/registry"
reg_pid=$REGISTRY_PID
IMG=$REGISTRY/bench/net:latest
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:net" "docker://$IMG"
"$SKIFF" pull -q "$IMG" >/dev/null

# The host namespace, with a veth to an outside one (passt needs a default route).
ip netns add "$NS"; ip netns add "$NS-o"
ip -n "$NS" link set lo up; ip -n "$NS-o" link set lo up
ip link add vh netns "$NS" type veth peer name vo netns "$NS-o"
ip -n "$NS" addr add 198.51.100.1/24 dev vh; ip -n "$NS-o" addr add 198.51.100.2/24 dev vo
ip -n "$NS" link set vh up; ip -n "$NS-o" link set vo up
ip -n "$NS" route add default via 198.51.100.2

ratio() { echo "scale=3; $1 / $2" | bc -l; }
# iperf3 from container $1 to $2:5201 for SECS seconds: Gbit/s received.
iperf() {
  in_ns "$SKIFF" exec "$1" iperf3 -c "$2" -t "$SECS" -J > "$work/iperf.json" || true
  python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))
if "error" in j: sys.exit("iperf3: " + j["error"])
print("%.3f" % (j["end"]["sum_received"]["bits_per_second"] / 1e9))' "$work/iperf.json"
}

in_ns iperf3 -s -D -p 5201 --pidfile "$work/iperf.pid"
echo "== time from run -d -p to the first answer"
t0=$(now)
in_ns "$SKIFF" run -d --name web -p 8080:80 "$IMG" httpd -f -p 80 -h /www >/dev/null
until in_ns curl -sf -o /dev/null http://127.0.0.1:8080/; do sleep 0.02; done
t1=$(now)
printf 'run -d -p -> first HTTP 200: %.2f s\n' "$(echo "$t1 - $t0" | bc -l)"

GW=$(in_ns "$SKIFF" inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["NetworkSettings"]["Gateway"])')
IP=$(in_ns "$SKIFF" inspect web | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["NetworkSettings"]["IPAddress"])')

echo "== iperf3 container -> host, ${SECS}s each"
skiff_gbps=$(iperf web "$GW")
saved=$(in_ns nft -j list ruleset)
in_ns nft flush ruleset
bare_gbps=$(iperf web "$GW")
echo "$saved" | in_ns nft -j -f -
skiff_gbps2=$(iperf web "$GW")
# skiff's runs bracket the bare one: their mean against it.
skiff_mean=$(echo "scale=3; ($skiff_gbps + $skiff_gbps2) / 2" | bc -l)
printf 'skiff (tap + rules): %s and %s Gbit/s   bare tap, no rules: %s Gbit/s   ratio %s\n' \
  "$skiff_gbps" "$skiff_gbps2" "$bare_gbps" "$(ratio "$skiff_mean" "$bare_gbps")"
in_ns "$SKIFF" run -d --name rootless --network passt "$IMG" sleep 600 >/dev/null
passt_gbps=$(iperf rootless 10.0.2.2)
printf 'rootless (passt): %s Gbit/s   ratio to the bare tap %s\n' "$passt_gbps" "$(ratio "$passt_gbps" "$bare_gbps")"

echo "== HTTP requests/s (ab -n 2000 -c 4, 512-byte page)"
rps() { in_ns ab -q -n 2000 -c 4 "$1" 2>/dev/null | awk '/Requests per second/ {print $4}'; }
published=$(rps http://127.0.0.1:8080/index.html)
direct=$(rps "http://$IP/index.html")
printf 'through -p: %s req/s   straight to %s: %s req/s   ratio %s\n' \
  "$published" "$IP" "$direct" "$(ratio "$published" "$direct")"
