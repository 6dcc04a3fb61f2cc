#!/usr/bin/env bash
# The main job, end to end: installs what is missing, builds, and runs the
# bundled wordcount job over the project's own documentation and sources.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/sluice --version
cat README.md engine/*.c | ./build/sluice run wordcount | head -n 20
