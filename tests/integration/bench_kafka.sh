#!/usr/bin/env bash
# `sluice bench kafka --quick` runs (sluice's Kafka server in the bench
# process and librdkafka's mock cluster, tiny sizes) and prints the issue's
# three figure lines, "produce: ...", "fetch: ..." and "latency: ...", each
# with its target and "met" or "NOT met"; --csv prints the header and the
# produce, fetch and latency rows. Only that the bench runs and reports is
# checked, never the values (no test asserts on speed). A bad option is a
# one-line usage error, exit 2; a directory that cannot be made, one line
# and exit 1.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_kafka: $*" >&2
  exit 1
}

"$bin" bench kafka --quick > "$tmp/out" 2> "$tmp/err" ||
  fail "exit $?: $(cat "$tmp/err")"
for fig in produce fetch latency; do
  n=$(grep -c "^$fig: .*(target .*): \(met\|NOT met\)$" "$tmp/out" || true)
  [ "$n" -eq 1 ] || fail "expected one '$fig:' figure line, found $n: $(cat "$tmp/out")"
done
grep -q "mock cluster (baseline)" "$tmp/out" || fail "no baseline row: $(cat "$tmp/out")"

"$bin" bench kafka --quick --csv > "$tmp/csv" 2> "$tmp/err" ||
  fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
for v in produce_sluice produce_mock fetch_sluice fetch_read_baseline latency_p99_sluice; do
  grep -q "^kafka,$v,[0-9]*,[0-9]*,[0-9.]*,[0-9]*,[0-9.]*$" "$tmp/csv" ||
    fail "--csv: no $v row: $(cat "$tmp/csv")"
done

rc=0
"$bin" bench kafka --records 5 > /dev/null 2> "$tmp/err" || rc=$?
[ "$rc" -eq 2 ] || fail "--records 5: exit $rc, expected 2"
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "--records 5: not one line: $(cat "$tmp/err")"
grep -q -- "--records" "$tmp/err" || fail "--records 5: $(cat "$tmp/err")"
# A broker directory that cannot be made: exit 1, one line naming it.
rc=0
"$bin" bench kafka --quick --dir /proc/no-such-dir > /dev/null 2> "$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || fail "--dir /proc/no-such-dir: exit $rc, expected 1"
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "--dir /proc/no-such-dir: not one line: $(cat "$tmp/err")"
grep -q "^sluice bench kafka: .*/proc/no-such-dir" "$tmp/err" ||
  fail "--dir /proc/no-such-dir: $(cat "$tmp/err")"
echo "bench_kafka: the three figure lines and the csv rows are printed"
