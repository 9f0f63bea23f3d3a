#!/usr/bin/env bash
# The main job, end to end: start a local registry, put a test image in it,
# pull it with skiff, list it. Uses a private store under $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p skiff
SKIFF=$PWD/target/release/skiff

work=$(mktemp -d)
trap 'kill "${reg_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

# A two-layer busybox image, built offline with umoci, pushed with skopeo.
umoci init --layout "$work/oci"
umoci new --image "$work/oci:latest"
umoci insert --image "$work/oci:latest" /bin/busybox /bin/busybox >/dev/null
echo "hello from skiff" > "$work/motd"
umoci insert --image "$work/oci:latest" "$work/motd" /etc/motd >/dev/null
umoci config --image "$work/oci:latest" --config.cmd /bin/sh
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:latest" "docker://127.0.0.1:$port/test/busybox:latest"

export SKIFF_ROOT=$work/store
echo "+ skiff image pull 127.0.0.1:$port/test/busybox:latest"
"$SKIFF" image pull "127.0.0.1:$port/test/busybox:latest"
echo "+ skiff image ls"
"$SKIFF" image ls
