#!/usr/bin/env bash
# The README's main job in small: events generated into a 3-partition broker
# topic, then window-agg reading the topic, must give exactly what window-agg
# gives on the same events from standard input, with no late records; and a
# missing topic is a one-line error naming it.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SLUICE_DIR="$tmp/broker"
"$bin" topic create ev --partitions 3
"$bin" run generate --events 50000 --keys 7 --disorder 1500 --topic ev
"$bin" run window-agg --topic ev --window sliding:10s:5s --agg sum --delay 1500 \
  --parallelism 2 --threads 2 --out "$tmp/a" --late-out "$tmp/late"
"$bin" run generate --events 50000 --keys 7 --disorder 1500 |
  "$bin" run window-agg --window sliding:10s:5s --agg sum --delay 1500 --out "$tmp/b" --late-out "$tmp/late2"
sort "$tmp/a" > "$tmp/a.s"; sort "$tmp/b" > "$tmp/b.s"
cmp "$tmp/a.s" "$tmp/b.s"
[ -s "$tmp/a.s" ] && [ ! -s "$tmp/late" ]
if "$bin" run window-agg --topic no-such-topic 2> "$tmp/err"; then exit 1; fi
grep -q "no-such-topic" "$tmp/err" && [ "$(wc -l < "$tmp/err")" -eq 1 ]
echo "broker window test passed"
