#!/usr/bin/env bash
# `sluice bench saga --orders 2000` runs and reports every figure with a
# number: the baseline's and the engine's sagas/s (1 and 2 threads, and the
# fault mix), the ratio lines, the reply-to-outcome latency at two sizes,
# and the checkpoint and RSS bytes per in-flight saga. The bench itself
# fails when the job's ledger check fails, the baseline does not complete
# every saga, or the state run does not hold every saga in flight. Only
# that it runs and reports is checked, never the values (no test asserts
# on speed). --csv prints the header and rows; bad options, an unknown
# --only and an operand are one-line usage errors (exit 2).
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_saga: $*" >&2
  exit 1
}
num='[0-9][0-9.]*'

"$bin" bench saga --orders 2000 > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
for v in "baseline (hand loop, no engine)  *1" "engine  *1" "engine  *2" "engine, faults 0.1 / 0.05  *1"; do
  grep -q "^  $v  *2000  *$num  *$num  *$num\$" "$tmp/out" || fail "no row '$v': $(cat "$tmp/out")"
done
grep -q "^  faults: $num completed, $num compensated, .*ledger consistent\$" "$tmp/out" ||
  fail "no faults line: $(cat "$tmp/out")"
grep -q "^  ratio engine-1t / baseline: $num " "$tmp/out" || fail "no baseline ratio: $(cat "$tmp/out")"
grep -q "^  ratio engine-2t / 1t: $num\$" "$tmp/out" || fail "no thread ratio: $(cat "$tmp/out")"
for n in 1000 2000; do
  grep -q "^  reply-to-outcome p50 us: $num, p99 us: $num, max us: $num ($n orders, $num sagas measured)\$" "$tmp/out" ||
    fail "no latency line at $n orders: $(cat "$tmp/out")"
done
grep -q "^  checkpoint bytes per saga: $num (.*; 2000 sagas)\$" "$tmp/out" ||
  fail "no checkpoint bytes line: $(cat "$tmp/out")"
grep -q "^  RSS growth bytes per saga: -\?$num (.*; 2000 sagas)\$" "$tmp/out" ||
  fail "no RSS line: $(cat "$tmp/out")"

"$bin" bench saga --orders 2000 --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
for v in "baseline-hand-loop,1" "engine,1" "engine,2" "engine-faults-0.1-0.05,1" \
  "latency-p50-us=$num,1" "latency-p99-us=$num,1" "latency-max-us=$num,1" \
  "state-checkpoint-bytes-per-saga=$num,1" "state-rss-bytes-per-saga=-\?$num,1"; do
  grep -q "^saga,$v,$num,$num,$num,$num\$" "$tmp/csv" || fail "--csv: no row '$v': $(cat "$tmp/csv")"
done
[ "$(grep -c "^saga,latency-p50-us=" "$tmp/csv")" = 2 ] || fail "--csv: not two latency runs: $(cat "$tmp/csv")"
[ "$(grep -vc "^saga," "$tmp/csv")" = 1 ] || fail "--csv: lines that are not rows: $(cat "$tmp/csv")"

usage() { # args...: must exit 2 with one stderr line
  local rc=0
  "$bin" bench saga "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "^sluice bench saga: " "$tmp/err" ||
    fail "$*: exit $rc: $(cat "$tmp/err")"
}
usage --orders 5
usage --orders many
usage --only everything
grep -q "must be throughput, latency or state" "$tmp/err" || fail "--only: $(cat "$tmp/err")"
usage --orders 2000 extra
grep -q "unexpected argument 'extra'" "$tmp/err" || fail "operand: $(cat "$tmp/err")"
usage --seed -1
usage --frobnicate
echo "bench_saga: ok"
