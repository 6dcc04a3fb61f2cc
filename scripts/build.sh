#!/usr/bin/env bash
# Configures and builds sluice into build/ (release build with debug info).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DSLUICE_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
