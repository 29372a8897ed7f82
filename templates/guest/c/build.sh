#!/usr/bin/env bash
# Builds {{name}}.wasm: C bindings from wit/ and componentizing by sluice-guest-tool (built with
# sluice), compiling by Zig (pip install --user ziglang) for wasm32-wasi.
set -euo pipefail
cd "$(dirname "$0")"
tool="${SLUICE_GUEST_TOOL:-{{tool}}}"
mkdir -p target
"$tool" c-bindings --wit wit --world {{world}} --out target/bindings
python3 -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -s \
  -I target/bindings -I . {{name}}.c target/bindings/{{world_c}}.c \
  target/bindings/{{world_c}}_component_type.o -o target/{{name}}.core.wasm
"$tool" componentize target/{{name}}.core.wasm -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
