#!/usr/bin/env bash
# The main job, end to end, on the built-in broker (no other service):
# installs what is missing, builds, fills a topic with generated events and
# runs a windowed aggregation that reads the topic and prints its results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
sluice=./build/sluice
$sluice --version
export SLUICE_DIR="$PWD/build/demo-broker"   # the broker's directory
rm -rf "$SLUICE_DIR"
$sluice topic create events --partitions 4
# 1,000,000 events over 1,000 s of event time, 50 keys, up to 2 s out of order
$sluice run generate --events 1000000 --rate 1000 --keys 50 --disorder 2000 --topic events
$sluice topic describe events
echo "== per-key average value per 1-minute window, sliding every 30 s (first lines) =="
$sluice run window-agg --topic events --window sliding:1m:30s --agg avg --delay 2s \
  --threads 2 --parallelism 2 --out build/demo-results.csv
sort -t, -k1,1n -k3,3 -o build/demo-results.csv build/demo-results.csv
head -n 12 build/demo-results.csv
echo "... $(wc -l < build/demo-results.csv) results in build/demo-results.csv"
