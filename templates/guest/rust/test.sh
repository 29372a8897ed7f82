#!/usr/bin/env bash
# Runs the guest's unit tests natively, through sluice-guest's test stub (no WebAssembly).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --target-dir target
