#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py (pip install --user componentize-py).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.local/bin:$PATH"
componentize-py -d wit -w {{world}} componentize app -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
