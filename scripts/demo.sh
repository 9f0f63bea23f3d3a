#!/usr/bin/env bash
# The main job, end to end: start a local registry, put a test image in it,
# pull it with skiff, list it. Uses a private store under $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release -q -p skiff
SKIFF=$PWD/target/release/skiff

work=$(mktemp -d)
trap 'kill "${reg_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
start_registry "$work/registry"
reg_pid=$REGISTRY_PID

# A two-layer busybox image, built offline with umoci, pushed with skopeo.
umoci init --layout "$work/oci"
umoci new --image "$work/oci:latest"
umoci insert --image "$work/oci:latest" /bin/busybox /bin/busybox >/dev/null
echo "hello from skiff" > "$work/motd"
umoci insert --image "$work/oci:latest" "$work/motd" /etc/motd >/dev/null
umoci config --image "$work/oci:latest" --config.cmd /bin/sh
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:latest" "docker://$REGISTRY/test/busybox:latest"

export SKIFF_ROOT=$work/store
echo "+ skiff image pull $REGISTRY/test/busybox:latest"
"$SKIFF" image pull "$REGISTRY/test/busybox:latest"
echo "+ skiff image ls"
"$SKIFF" image ls
