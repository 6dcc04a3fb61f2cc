#!/usr/bin/env bash
# `sluice bench trace --spans 20000 --events 20000 --repeat 1` runs and
# reports every figure of its collector part with a number: the reader-alone
# baseline and the job's spans/s at 1 and 2 threads, the two ratio lines and
# the memory per in-flight trace; and of its overhead part: bench core's
# pipeline plain and with a trace point (no tracer, 1 %, 100 %), the three
# overhead lines (fastest, medians, paired and CPU-time ratios), the spans sampled and dropped, the cost of one span (the
# bench fails when a run counts differently from the loop); and of its export
# part: the copy floor and the OTLP/JSON encoding rows and the encoding line. The bench itself fails when a run does not decide every
# generated trace, the two runs keep different traces, the memory run does
# not hold every trace in flight at once, or the generated input has a
# malformed or late span. Only the shape is checked, never the values (no
# test asserts on speed). --csv prints the header and rows; bad options, an
# unknown --only and an operand are one-line usage errors (exit 2).
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_trace: $*" >&2
  exit 1
}
num='[0-9][0-9.]*'

small="--events 20000 --repeat 1"
"$bin" bench trace --spans 20000 $small > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
grep -q "^trace-collector: 20000 spans in 2500 traces of 8, 4 per line; kept $num traces\$" "$tmp/out" ||
  fail "no title line: $(cat "$tmp/out")"
for v in "baseline (reader alone)  *1" "collector  *1" "collector  *2"; do
  grep -q "^  $v  *20000  *$num  *${num}M  *$num\$" "$tmp/out" || fail "no row '$v': $(cat "$tmp/out")"
done
grep -q "^  ratio collector-1t / baseline: $num " "$tmp/out" || fail "no baseline ratio: $(cat "$tmp/out")"
grep -q "^  ratio collector-2t / 1t: $num\$" "$tmp/out" || fail "no thread ratio: $(cat "$tmp/out")"
grep -q "^  memory per in-flight trace: RSS growth -\?$num bytes, span buffers $num bytes (all 2500 traces in flight at once)\$" "$tmp/out" ||
  fail "no memory line: $(cat "$tmp/out")"
grep -q "^overhead: bench core's pipeline, 20000 events, 1 worker thread, fastest of 1 rounds\$" "$tmp/out" ||
  fail "no overhead title: $(cat "$tmp/out")"
for v in "core" "point without tracer" "point 1% sampled" "point 100% sampled"; do
  grep -q "^  $v  *1  *20000  *$num  *${num}M  *$num\$" "$tmp/out" || fail "no row '$v': $(cat "$tmp/out")"
done
m="medians [-+]$num %, paired [-+]$num %, cpu [-+]$num %"
for l in "trace point without tracer  *[-+]$num %  (goal <= 2; $m)" \
  "1 % sampled  *[-+]$num %  (goal <= 5; $m)" "100 % sampled  *[-+]$num %  ($m)"; do
  grep -q "^  overhead, $l\$" "$tmp/out" || fail "no line 'overhead, $l': $(cat "$tmp/out")"
done
grep -q "^  point 1% sampled: $num spans sampled, $num dropped (export queue full)\$" "$tmp/out" ||
  fail "no 1% spans line: $(cat "$tmp/out")"
grep -q "^  point 100% sampled: 20000 spans sampled, $num dropped (export queue full)\$" "$tmp/out" ||
  fail "no 100% spans line: $(cat "$tmp/out")"
grep -q "^  one span (100 % sampled: extra time / spans): -\?$num ns\$" "$tmp/out" ||
  fail "no span cost line: $(cat "$tmp/out")"
for v in "export-copy-floor" "export-otlp-json"; do
  grep -q "^  $v  *1  *20000  *$num  *${num}M  *$num\$" "$tmp/out" || fail "no row '$v': $(cat "$tmp/out")"
done
grep -q "^  OTLP/JSON encoding  *$num M spans/s, $num bytes/span, $num MB/s (copying the bytes: $num MB/s)\$" "$tmp/out" ||
  fail "no encoding line: $(cat "$tmp/out")"

"$bin" bench trace --spans 20000 $small --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
for v in "collector-baseline-reader,1" "collector,1" "collector,2" \
  "collector-rss-bytes-per-trace=-\?$num,1" "collector-held-bytes-per-trace=$num,1" \
  "core,1" "point without tracer,1" "point 1% sampled,1" "point 100% sampled,1" \
  "export-copy-floor,1" "export-otlp-json,1"; do
  grep -q "^trace,$v,20000,$num,$num,$num\$" "$tmp/csv" || fail "--csv: no row '$v': $(cat "$tmp/csv")"
done
[ "$(grep -vc "^trace," "$tmp/csv")" = 1 ] || fail "--csv: lines that are not rows: $(cat "$tmp/csv")"
"$bin" bench trace --spans 2000 --only collector > /dev/null || fail "--only collector"
"$bin" bench trace $small --only overhead > "$tmp/out" || fail "--only overhead"
! grep -q "trace-collector" "$tmp/out" || fail "--only overhead ran the collector"
"$bin" bench trace --spans 2000 --only export > "$tmp/out" || fail "--only export"
grep -q "OTLP/JSON encoding" "$tmp/out" && ! grep -q "overhead" "$tmp/out" || fail "--only export: $(cat "$tmp/out")"

usage() { # args...: must exit 2 with one stderr line
  local rc=0
  "$bin" bench trace "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "^sluice bench trace: " "$tmp/err" ||
    fail "$*: exit $rc: $(cat "$tmp/err")"
}
usage --spans 5
usage --spans many
usage --events 10
usage --repeat 0
usage --only everything
grep -q "must be collector" "$tmp/err" || fail "--only: $(cat "$tmp/err")"
usage --spans 2000 extra
grep -q "unexpected argument 'extra'" "$tmp/err" || fail "operand: $(cat "$tmp/err")"
usage --frobnicate
echo "bench_trace: ok"
