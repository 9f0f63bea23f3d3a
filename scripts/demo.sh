#!/usr/bin/env bash
# The main job, end to end: start a local registry, put a busybox image in it,
# and run a container from it in its own micro-VM (skiff pulls the image,
# writes its ext4, boots QEMU with the Debian cloud kernel and skiff-init).
# Uses a private store under $TMPDIR; the guest kernel is installed once into
# target/demo-kernel (apt-get download linux-image-cloud-amd64's image package).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release -q -p skiff
./scripts/build-init.sh >/dev/null
SKIFF=$PWD/target/release/skiff
export SKIFF_INIT=$PWD/target/skiff-init
export SKIFF_KERNEL_DIR=$PWD/target/demo-kernel
if [ ! -e "$SKIFF_KERNEL_DIR/current" ]; then
  echo "+ skiff system kernel install"
  SKIFF_ROOT=$PWD/target "$SKIFF" system kernel install >/dev/null
fi

work=$(mktemp -d)
trap 'kill "${reg_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
start_registry "$work/registry"
reg_pid=$REGISTRY_PID

# A two-layer busybox image, built offline with umoci, pushed with skopeo.
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for a in sh echo cat uname id nproc; do ln -s busybox "$work/rootfs/bin/$a"; done
umoci init --layout "$work/oci"
umoci new --image "$work/oci:latest"
umoci insert --image "$work/oci:latest" "$work/rootfs/bin" /bin >/dev/null
echo "hello from skiff" > "$work/motd"
umoci insert --image "$work/oci:latest" "$work/motd" /etc/motd >/dev/null
umoci config --image "$work/oci:latest" --config.cmd sh --config.env PATH=/bin
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:latest" "docker://$REGISTRY/test/busybox:latest"

export SKIFF_ROOT=$work/store
set -x
"$SKIFF" system info
"$SKIFF" run --rm "$REGISTRY/test/busybox:latest" sh -c 'cat /etc/motd; uname -sr; echo "$(nproc) CPU"'
"$SKIFF" image ls
