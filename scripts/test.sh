#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds once, runs every test.
# Slower compatibility tests (docker load, podman load) run with SKIFF_SLOW=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIFF_SLOW:-0}" = 1 ]; then ./scripts/setup.sh --peers; else ./scripts/setup.sh; fi
cargo build --workspace --all-targets --quiet
# skiff-init, static, for the VM tests (target/skiff-init).
./scripts/build-init.sh >/dev/null
if [ "${SKIFF_SLOW:-0}" = 1 ]; then
  cargo test --workspace -- --include-ignored
else
  cargo test --workspace
fi
