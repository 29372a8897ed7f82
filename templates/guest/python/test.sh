#!/usr/bin/env bash
# Runs the unit tests of logic.py natively.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m unittest -v test_logic
