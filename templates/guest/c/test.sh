#!/usr/bin/env bash
# Compiles logic.h's unit tests natively and runs them (cc, or Zig's when there is none).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target
if command -v "${CC:-cc}" >/dev/null; then
  "${CC:-cc}" -O1 -Wall -Werror -o target/test_logic test_logic.c
else
  python3 -m ziglang cc -O1 -Wall -Werror -o target/test_logic test_logic.c
fi
target/test_logic
