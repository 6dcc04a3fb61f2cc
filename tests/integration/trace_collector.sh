#!/usr/bin/env bash
# `sluice run trace-collector` against an independent reference
# (trace_collector.py): generated traces of known structure (errors, slow
# traces, orphans, several services, out-of-order arrival, spans split over
# lines and many per line, the mapping's variants, late spans, event time 0,
# huge times, 23 malformed lines of as many kinds). For three policy sets
# (and watermark steps 1 ms, the default 100 ms, and 250 ms) the
# statistics must equal the reference's text exactly, the kept traces and the
# late spans must be the reference's; the run with --threads 2
# --parallelism 2, with one credit per channel, from standard input and from
# a broker topic and from Kafka (`sluice broker serve`) must give
# byte-identical statistics and the same sorted output. A small case checks
# the exact text of a kept trace (span JSON as read, grouped under its
# resource and scope; two spans of one resource and scope in a row, which
# the trace's buffer stores once) and its statistics. What `sluice run saga
# --trace-out` writes is read and written back unchanged. Usage errors exit
# 2 with one line.
#
# Run by ctest as: bash trace_collector.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
bin=$1
src=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/serve.sh"
serve_init trace_collector # tmp, fail, and an EXIT trap that stops the server below
py="$src/tests/integration/trace_collector.py"

# --- against the reference ------------------------------------------------------------
[ "$(python3 "$py" gen 1 "$tmp/in")" = 23 ] || fail "generator: not 23 malformed lines"
A="--trace-gap 2000 --delay 500 --keep-errors --keep-slower-than 300 --sample-rate 0.25 --watermark-step 1"
B="--trace-gap 5000 --delay 0 --sample-rate 0"
C="--trace-gap 100 --delay 0 --keep-slower-than 700 --watermark-step 250"
run() { # NAME OPTIONS... : run the job on $tmp/in into $tmp/NAME.{stats,kept,late,err}
  local n=$1
  shift
  "$bin" run trace-collector "$@" --out "$tmp/$n.kept" --late-out "$tmp/$n.late" \
    --stats "$tmp/$n.stats" 2> "$tmp/$n.err" || fail "$n: exit $?: $(tail -3 "$tmp/$n.err")"
}
for cfg in A B C; do
  # shellcheck disable=SC2086
  run "$cfg" --input "$tmp/in" ${!cfg}
  # shellcheck disable=SC2086
  python3 "$py" ref "$tmp/in" ${!cfg} -- "$tmp/$cfg.stats" "$tmp/$cfg.kept" "$tmp/$cfg.late" \
    > "$tmp/$cfg.ref" || fail "$cfg: differs from the reference"
  cat "$tmp/$cfg.ref"
  [ "$(grep -c "^sluice run trace-collector: line [0-9]*: " "$tmp/$cfg.err")" = 10 ] ||
    fail "$cfg: not ten malformed lines reported: $(cat "$tmp/$cfg.err")"
  grep -q "^sluice run trace-collector: 23 malformed lines skipped in all\$" "$tmp/$cfg.err" ||
    fail "$cfg: no malformed total: $(cat "$tmp/$cfg.err")"
done
# the figures are not vacuous: every policy kept some, spans were late, orphans seen
grep -q "^ok: 30[0-9] traces, [1-9][0-9]* kept ([1-9][0-9]*/[1-9][0-9]*/[1-9][0-9]*), .* [1-9][0-9]* orphans, [1-9][0-9]* late, 23 malformed\$" "$tmp/A.ref" ||
  fail "A: a policy kept nothing: $(cat "$tmp/A.ref")"
grep -q "^ok: .*, 0 kept (0/0/0)," "$tmp/B.ref" || fail "B: kept some at rate 0: $(cat "$tmp/B.ref")"
[ ! -s "$tmp/B.kept" ] || fail "B: wrote traces at rate 0"
grep -q "^ok: .* kept (0/[1-9][0-9]*/[1-9][0-9]*)," "$tmp/C.ref" || fail "C: $(cat "$tmp/C.ref")"
[ "$(grep -o '[0-9]* late' "$tmp/C.ref")" != "$(grep -o '[0-9]* late' "$tmp/A.ref")" ] ||
  fail "C: a short gap made no more late spans than A"

# --- the same result however it runs ----------------------------------------------------
same() { # NAME: stats identical to A's, sorted kept and late output identical
  cmp -s "$tmp/A.stats" "$tmp/$1.stats" || fail "$1: statistics differ from A: $(diff "$tmp/A.stats" "$tmp/$1.stats" | head -5)"
  cmp -s <(sort "$tmp/A.kept") <(sort "$tmp/$1.kept") || fail "$1: kept traces differ from A"
  cmp -s <(sort "$tmp/A.late") <(sort "$tmp/$1.late") || fail "$1: late spans differ from A"
}
# shellcheck disable=SC2086
run P2 --input "$tmp/in" $A --threads 2 --parallelism 2
same P2
# shellcheck disable=SC2086
run P3 --input "$tmp/in" $A --threads 2 --parallelism 3 --credits 1
same P3
# shellcheck disable=SC2086
run C1 --input "$tmp/in" $A --credits 1
same C1
# shellcheck disable=SC2086
run STDIN $A < "$tmp/in"
same STDIN
export SLUICE_DIR="$tmp/broker"
"$bin" topic create spans --partitions 1 > /dev/null
grep -v '^$' "$tmp/in" | "$bin" produce spans > /dev/null
# the topic holds no empty line (a message per line): one malformed line fewer
# shellcheck disable=SC2086
run TOPIC --topic spans $A --parallelism 2 --threads 2
sed 's/malformed lines: 23$/malformed lines: 22/' "$tmp/A.stats" > "$tmp/A22.stats"
cmp -s "$tmp/A22.stats" "$tmp/TOPIC.stats" || fail "topic: statistics differ: $(diff "$tmp/A22.stats" "$tmp/TOPIC.stats" | head -5)"
cmp -s <(sort "$tmp/A.kept") <(sort "$tmp/TOPIC.kept") || fail "topic: kept traces differ"
# and from Kafka (`sluice broker serve`)
serve_start
"$bin" topic create kspans --partitions 1 -b "127.0.0.1:$port" > /dev/null
grep -v '^$' "$tmp/in" | "$bin" produce kspans -b "127.0.0.1:$port"
# shellcheck disable=SC2086
run KAFKA --kafka "127.0.0.1:$port" --topic kspans $A
cmp -s "$tmp/A22.stats" "$tmp/KAFKA.stats" || fail "kafka: statistics differ: $(diff "$tmp/A22.stats" "$tmp/KAFKA.stats" | head -5)"
cmp -s <(sort "$tmp/A.kept") <(sort "$tmp/KAFKA.kept") || fail "kafka: kept traces differ"

# --- the exact text of a kept trace -------------------------------------------------------
t=0102030405060708090a0b0c0d0e0f10
r1='{"attributes":[{"key":"service.name","value":{"stringValue":"saga"}}]}'
s1="{\"traceId\":\"$t\",\"spanId\":\"0000000000000001\",\"name\":\"root\",\"startTimeUnixNano\":\"1000000\",\"endTimeUnixNano\":\"5000000\",\"unknown\":[1, {\"x\" : null}]}"
s2="{ \"traceId\": \"$t\", \"spanId\": \"0000000000000002\", \"parentSpanId\": \"0000000000000001\", \"endTimeUnixNano\": 2000000 }"
s3="{\"traceId\":\"$t\",\"spanId\":\"0000000000000003\",\"parentSpanId\":\"00000000000000ff\",\"endTimeUnixNano\":3000000,\"status\":{\"code\":\"STATUS_CODE_ERROR\"}}"
s4="{\"traceId\":\"$t\",\"spanId\":\"0000000000000004\",\"parentSpanId\":\"0000000000000003\",\"name\":\"root\",\"startTimeUnixNano\":\"3000000\",\"endTimeUnixNano\":\"3500000\"}"
{
  echo "{\"resourceSpans\":[{\"resource\":$r1,\"scopeSpans\":[{\"scope\":{\"name\":\"a\"},\"spans\":[$s1]}]},{\"scopeSpans\":[{\"spans\":[$s2]}]}]}"
  echo "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[$s3,$s4],\"scope\":{\"name\":\"a\"}}],\"resource\":$r1}]}"
} > "$tmp/small"
"$bin" run trace-collector --input "$tmp/small" --out "$tmp/small.kept" --keep-errors --sample-rate 0 \
  > "$tmp/small.stats" 2> /dev/null || fail "small: exit $?"
want="{\"resourceSpans\":[{\"resource\":$r1,\"scopeSpans\":[{\"scope\":{\"name\":\"a\"},\"spans\":[$s1,$s3,$s4]}]},{\"resource\":{},\"scopeSpans\":[{\"scope\":{},\"spans\":[$s2]}]}]}"
[ "$(cat "$tmp/small.kept")" = "$want" ] || fail "small: kept line is
$(cat "$tmp/small.kept")
not
$want"
grep -q "^saga	root	2	0	0.0000	500.000	4000.000	4000.000\$" "$tmp/small.stats" ||
  fail "small: no root row: $(cat "$tmp/small.stats")"
grep -q "^saga		1	1	1.0000	3000.000	3000.000	3000.000\$" "$tmp/small.stats" ||
  fail "small: no row for the unnamed saga span: $(cat "$tmp/small.stats")"
grep -q "^unknown_service		1	0	0.0000	2000.000	2000.000	2000.000\$" "$tmp/small.stats" ||
  fail "small: no unknown_service row: $(cat "$tmp/small.stats")"
grep -q "^traces: 1, kept: 1, spans: 4, orphans: 1\$" "$tmp/small.stats" ||
  fail "small: summary: $(cat "$tmp/small.stats")"

# --- what a job's --trace-out writes: the saga job's spans (its runs, and each saga a trace
# of a root "saga" span and one span per command attempt: reserve, charge, ship without faults)
"$bin" run saga --orders 100 --trace-out "$tmp/saga.spans" > /dev/null 2> "$tmp/saga.err" ||
  fail "saga --trace-out: $(cat "$tmp/saga.err")"
"$bin" run trace-collector --input "$tmp/saga.spans" --out "$tmp/saga.kept" > "$tmp/saga.stats" \
  2> "$tmp/saga.err" || fail "reading saga's spans: $(cat "$tmp/saga.err")"
[ -s "$tmp/saga.spans" ] || fail "saga --trace-out wrote nothing"
j=$(awk -F'\t' '$1 == "saga" && $2 == "job saga" {print $3}' "$tmp/saga.stats")
[ -n "$j" ] && [ "$j" -ge 1 ] || fail "saga's spans: no job span: $(cat "$tmp/saga.stats")"
for op in saga reserve charge ship; do
  grep -q "^saga	$op	100	0	0.0000	" "$tmp/saga.stats" || fail "saga's spans: no 100 '$op' spans: $(cat "$tmp/saga.stats")"
done
t=$((100 + j)) s=$((400 + j))
grep -q "^traces: $t, kept: $t, spans: $s, orphans: 0\$" "$tmp/saga.stats" ||
  fail "saga's spans: $(cat "$tmp/saga.stats")"
grep -q "^late spans: 0, malformed lines: 0\$" "$tmp/saga.stats" || fail "saga's spans: $(cat "$tmp/saga.stats")"
[ "$(grep -o '"spanId"' "$tmp/saga.kept" | wc -l)" -eq "$s" ] || fail "saga's kept spans are not the $s read"

# --- usage -------------------------------------------------------------------------------
"$bin" run trace-collector --help > "$tmp/help"
for o in --input --topic --out --late-out --stats --trace-gap --delay --keep-errors \
  --keep-slower-than --sample-rate --watermark-step --credits --threads --parallelism --explain --dir --kafka; do
  grep -q -- "$o" "$tmp/help" || fail "--help does not mention $o"
done
usage() { # MATCH ARGS...: must exit 2 with one stderr line that says MATCH
  local m=$1 rc=0
  shift
  "$bin" run trace-collector "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "^sluice run trace-collector: .*$m" "$tmp/err" ||
    fail "$*: exit $rc: $(cat "$tmp/err")"
}
usage "--out FILE is required" --input "$tmp/in"
usage "--sample-rate needs a number from 0 to 1, not '1.5'" --out x --sample-rate 1.5
usage "--sample-rate needs" --out x --sample-rate abc
usage "--trace-gap needs a duration" --out x --trace-gap 0
usage "--keep-slower-than needs a duration" --out x --keep-slower-than soon
usage "--delay needs a duration" --out x --delay -1
usage "--watermark-step needs a duration" --out x --watermark-step 0
usage "unexpected argument 'extra'" --out x extra
usage "frobnicate" --out x --frobnicate
usage "give --input or --topic, not both" --out x --input a --topic b
usage "does not take checkpoints" --out x --checkpoint-dir "$tmp/chk"
usage "--credits needs a whole number" --out x --credits 0
echo "trace_collector: ok"
