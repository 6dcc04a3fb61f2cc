#!/usr/bin/env bash
# `sluice bench kafka-e2e --quick` runs (ysb topic to topic through sluice's Kafka
# server in the bench process and on the built-in broker, then the latency of a
# stateless job; tiny sizes) and prints its figure lines, "ysb: ..." per thread
# count with the goal and "met" or "NOT met", and "latency: ..."; --csv prints the
# header and the rows. Only that the bench runs, compares its two outputs (it fails
# if they differ) and reports is checked, never the values (no test asserts on
# speed). A bad option is a one-line usage error, exit 2.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_kafka_e2e: $*" >&2
  exit 1
}

"$bin" bench kafka-e2e --quick > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
n=$(grep -c "^ysb: [12] threads\{0,1\}: kafka / embedded = [0-9.]* (goal >= 0.7): \(met\|NOT met\)$" "$tmp/out" || true)
[ "$n" -eq 2 ] || fail "expected two 'ysb:' figure lines, found $n: $(cat "$tmp/out")"
grep -q "^latency: p50 [0-9.]* ms, p99 [0-9.]* ms" "$tmp/out" || fail "no latency line: $(cat "$tmp/out")"

"$bin" bench kafka-e2e --quick --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
grep -q "^kafka-e2e,ysb kafka,2," "$tmp/csv" || fail "--csv: no ysb kafka row: $(cat "$tmp/csv")"

rc=0
"$bin" bench kafka-e2e --events x > /dev/null 2> "$tmp/err" || rc=$?
[ "$rc" = 2 ] || fail "--events x: exit $rc, not 2"
[ "$(wc -l < "$tmp/err")" = 1 ] || fail "--events x: not one line: $(cat "$tmp/err")"
echo "bench_kafka_e2e: ok"
