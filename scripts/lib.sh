# Shared shell helpers for scripts/ and benches/ (sourced, not run).

# start_registry DIR: runs docker-registry on a free loopback port with its
# storage under DIR; sets REGISTRY (host:port) and REGISTRY_PID.
start_registry() {
  local dir=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  cat >"$dir/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
log:
  level: error
YML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY=127.0.0.1:$port
  for _ in $(seq 100); do
    curl -fs "http://$REGISTRY/v2/" >/dev/null && return 0
    sleep 0.1
  done
  echo "docker-registry did not start; see $dir/registry.log" >&2
  return 1
}

# bench_minbase CACHE: a debootstrap'd Debian minbase (~200 MB, ~7k files) in
# CACHE/rootfs and as one uncompressed layer, CACHE/minbase.tar (made once).
bench_minbase() {
  local cache=$1
  if [ ! -x "$cache/rootfs/bin/sh" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    rm -rf "$cache/rootfs"
    debootstrap --variant=minbase bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log"
    rm -f "$cache"/minbase.tar*
  fi
  if [ ! -f "$cache/minbase.tar" ]; then
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$cache/rootfs" -cf "$cache/minbase.tar.tmp" .
    mv "$cache/minbase.tar.tmp" "$cache/minbase.tar"
    rm -f "$cache/minbase.tar.gz" "$cache/minbase.tar.zst"
  fi
}

# bench_prepare: the release skiff, the static skiff-init and the guest kernel
# (cached in $SKIFF_BENCH_CACHE, default target/bench-cache) for a benchmark.
# Sets CACHE, SKIFF, SKIFF_INIT and SKIFF_KERNEL_DIR.
bench_prepare() {
  CACHE=${SKIFF_BENCH_CACHE:-$PWD/target/bench-cache}
  mkdir -p "$CACHE"
  cargo build --release -q -p skiff
  ./scripts/build-init.sh >/dev/null
  SKIFF=$PWD/target/release/skiff
  export SKIFF_INIT=$PWD/target/skiff-init
  export SKIFF_KERNEL_DIR=$CACHE/kernel
  [ -e "$SKIFF_KERNEL_DIR/current" ] || SKIFF_ROOT=$CACHE "$SKIFF" system kernel install >/dev/null
}

# bench_busybox WORK: a busybox image (sh, true, sleep, cat, echo) built
# offline with umoci, pushed to a fresh local registry as
# $REGISTRY/bench/busybox:latest (IMG) and saved as WORK/bb.tar (docker-archive)
# for the peers. Sets IMG, REGISTRY and REGISTRY_PID.
bench_busybox() {
  local work=$1
  mkdir -p "$work/img/bin"
  cp /bin/busybox "$work/img/bin/"
  for a in sh true sleep cat echo; do ln -s busybox "$work/img/bin/$a"; done
  umoci init --layout "$work/oci" && umoci new --image "$work/oci:bb"
  umoci insert --image "$work/oci:bb" "$work/img/bin" /bin >/dev/null
  umoci config --image "$work/oci:bb" --os linux --architecture amd64 --config.cmd sh --config.env PATH=/bin
  start_registry "$work/registry"
  IMG=$REGISTRY/bench/busybox:latest
  skopeo copy -q --dest-tls-verify=false "oci:$work/oci:bb" "docker://$IMG"
  skopeo copy -q "oci:$work/oci:bb" "docker-archive:$work/bb.tar:bench/busybox:latest"
}

# Timing helpers of the benches.
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
elapsed() { echo "$2 - $1" | bc -l; }
# time_runs N CMD...: median wall seconds of N runs (output discarded).
time_runs() {
  local n=$1 t=(); shift
  for _ in $(seq "$n"); do
    local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    t+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%s\n' "${t[@]}" | median
}
# decompress_run CMD LAYER: sets t to the seconds `CMD -dc LAYER` takes.
decompress_run() {
  local t0 t1
  t0=$(now)
  $1 -dc "$2" >/dev/null
  t1=$(now)
  t=$(elapsed "$t0" "$t1")
}
