#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-js (installed into node_modules from npm).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi
npm run build
echo "built $(pwd)/{{name}}.wasm"
