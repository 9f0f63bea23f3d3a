#!/usr/bin/env bash
# Installs what skiff and its tests need on Debian 12 (run as root).
# Idempotent: skips apt when every package is already installed.
set -euo pipefail

PACKAGES=(
  docker-registry   # the CNCF distribution server the tests run on 127.0.0.1
  skopeo            # an independent registry client the tests check against
  umoci             # builds test images offline
  busybox-static    # content for test images
  musl              # a musl image for image check's tests (ld-musl + libc)
  apache2-utils     # htpasswd, for the Basic-auth registry in the tests
  jq curl ca-certificates python3 bc
  e2fsprogs
  gcc libc6-dev pkg-config
  protobuf-compiler # protoc, for skiff-proto's generated gRPC code
  cpio              # tests read back the initramfs
  nftables          # nft: NAT, published ports and isolation of skiff networks
  passt             # user-mode networking for containers of non-root users
  iproute2          # ip netns: the network tests run in namespaces of their own
)

# --peers: also what the slow suite needs: the peers it checks against, and
# debootstrap for skiff-ext4's Debian rootfs test (cached outside the clone).
if [ "${1:-}" = --peers ]; then
  PACKAGES+=(docker.io podman debootstrap iperf3)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The guest kernel is fetched with `apt-get download`: stale package lists
# would name a version the mirror no longer serves.
stale_lists=0
if [ "$(id -u)" = 0 ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -7 2>/dev/null | head -1)" ]; then
  stale_lists=1
fi
if ((${#missing[@]})) || ((stale_lists)); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  updated=1
  if ((${#missing[@]})); then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# QEMU: the VMM (qemu-system-x86, microvm machine) and qemu-img (qcow2
# overlays). Both from the same suite: installing bookworm's qemu-system-x86
# beside a newer qemu-utils (e.g. from backports) removes qemu-utils.
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install qemu-system-x86 and qemu-utils" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  ((${updated:-0})) || apt-get update -qq
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    qemu-system-x86 "qemu-utils/$suite" >/dev/null
fi
qemu-system-x86_64 --version >/dev/null || { echo "setup: qemu-system-x86_64 does not run" >&2; exit 1; }
qemu-img --version >/dev/null || { echo "setup: qemu-img does not run" >&2; exit 1; }

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and re-run" >&2
  exit 1
fi
for t in docker-registry skopeo umoci htpasswd protoc cpio nft passt; do
  command -v "$t" >/dev/null || { echo "setup: $t missing after install" >&2; exit 1; }
done
echo "setup: ok"
