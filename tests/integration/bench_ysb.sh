#!/usr/bin/env bash
# `sluice bench ysb` on small explicit sizes (--events, --repeat): the table
# with the median and min - max per variant (and peak RSS, CPUs), both ratio lines and the
# window-result latency lines; --csv the header of DESIGN.md's columns with
# the added ones, and a row per variant with engine latencies. The bench
# itself fails when an engine run counts other views than the loop. Only
# that it runs and reports is checked, never the values (no test asserts on
# speed). Bad options are one-line usage errors.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_ysb: $*" >&2
  exit 1
}

"$bin" bench ysb --events 200000 --repeat 3 > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
grep -q "^ysb: 3 rounds, each running every variant once; 200000 events per run (--events)$" "$tmp/out" ||
  fail "no heading: $(cat "$tmp/out")"
for v in "hand-loop        1" "engine           1" "engine           2"; do
  grep -q "^  $v       200000 *[0-9.]* *[0-9.]*  ( *[0-9.]* - *[0-9.]*) *[0-9.]* *[0-9.]*$" "$tmp/out" ||
    fail "no row for $v: $(cat "$tmp/out")"
done
grep -q "^  ratio engine-1t / loop: [0-9.]* (target >= 0.5; medians)$" "$tmp/out" || fail "no loop ratio: $(cat "$tmp/out")"
grep -q "^  ratio engine-2t / 1t:   [0-9.]* (target >= 1.8; medians)$" "$tmp/out" || fail "no 2t ratio: $(cat "$tmp/out")"
grep -q "^  window-result latency: result at the sink - the generator made its window's newest event$" "$tmp/out" ||
  fail "no latency heading: $(cat "$tmp/out")"
for t in "1 thread " "2 threads"; do
  # 200000 events: 20 s of event time, 2 windows x 100 campaigns per run, 3 runs
  grep -q "^    engine $t  p50 [0-9.]* ms  p99 [0-9.]* ms  (600 results)$" "$tmp/out" ||
    fail "no latency line for $t: $(cat "$tmp/out")"
done

"$bin" bench ysb --events 200000 --repeat 1 --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb,rounds,events_per_s_min,events_per_s_max,latency_p50_ms,latency_p99_ms,cpus" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
grep -q "^ysb,hand-loop,1,200000,[0-9.]*,[0-9]*,[0-9.]*,1,[0-9]*,[0-9]*,,,[0-9.]*$" "$tmp/csv" || fail "--csv: no loop row: $(cat "$tmp/csv")"
for t in 1 2; do
  grep -q "^ysb,engine,$t,200000,[0-9.]*,[0-9]*,[0-9.]*,1,[0-9]*,[0-9]*,[0-9.]*,[0-9.]*,[0-9.]*$" "$tmp/csv" ||
    fail "--csv: no engine row for $t threads: $(cat "$tmp/csv")"
done
[ "$(wc -l < "$tmp/csv")" = 4 ] || fail "--csv: not 4 lines: $(cat "$tmp/csv")"

for args in "--repeat 0" "--events 10" "--events 100000 --seconds 3" "--bogus" "extra"; do
  rc=0
  # shellcheck disable=SC2086
  "$bin" bench ysb $args > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "^sluice bench ysb: " "$tmp/err" ||
    fail "$args: exit $rc: $(cat "$tmp/err")"
done
echo "bench_ysb: ok"
