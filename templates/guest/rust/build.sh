#!/usr/bin/env bash
# Builds {{name}}.wasm (needs Rust's wasm32-wasip2 target: rustup target add wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")"
# --target-dir: a CARGO_TARGET_DIR set elsewhere must not move the output.
cargo build --release --target wasm32-wasip2 --target-dir target
cp target/wasm32-wasip2/release/{{crate}}.wasm {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
