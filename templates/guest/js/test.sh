#!/usr/bin/env bash
# Runs the unit tests of logic.js natively (node --test).
set -euo pipefail
cd "$(dirname "$0")"
node --test logic.test.js
