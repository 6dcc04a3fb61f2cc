#!/usr/bin/env bash
# `sluice bench window-agg --events 40000` runs and reports every row and
# ratio line with a number; the bench itself fails when the job's results
# (count and sum of counts) differ from the hand loop's at either
# cardinality or thread count. Only that it runs and reports is checked,
# never the values (no test asserts on speed). --csv prints the header and
# six rows; a bad --events and an operand are one-line usage errors (exit 2);
# nothing is left in TMPDIR.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_window_agg: $*" >&2
  exit 1
}
num='[0-9][0-9.]*'
export TMPDIR=$tmp/t
mkdir "$TMPDIR"

"$bin" bench window-agg --events 40000 > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
for v in "loop 1k keys  *1  *40000" "job 1k keys  *1  *40000" "job 1k keys  *2  *40000" \
  "loop 1000k keys  *1  *10000" "job 1000k keys  *1  *10000" "job 1000k keys  *2  *10000"; do
  grep -q "^  $v  *$num  *${num}M  *$num\$" "$tmp/out" || fail "no row '$v': $(cat "$tmp/out")"
done
[ "$(grep -c "^  results: $num (key, window) counts summing to $num in every variant\$" "$tmp/out")" = 2 ] ||
  fail "no results lines: $(cat "$tmp/out")"
for r in "job 1 thread / loop, 1 k keys" "job 1 thread / loop, 1 M keys" \
  "job 2 threads / 1, 1 k keys" "job 2 threads / 1, 1 M keys"; do
  grep -q "^  $r  *$num  (target >= " "$tmp/out" || fail "no ratio '$r': $(cat "$tmp/out")"
done
[ -z "$(ls -A "$TMPDIR")" ] || fail "left in TMPDIR: $(ls -A "$TMPDIR")"

"$bin" bench window-agg --events 40000 --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
[ "$(grep -c "^window-agg,\(loop\|job\)-1000\(000\)\?-keys,[12],[0-9]*,$num,$num,$num\$" "$tmp/csv")" = 6 ] ||
  fail "--csv rows: $(cat "$tmp/csv")"

set +e
"$bin" bench window-agg --events 12x > /dev/null 2> "$tmp/err"
[ $? = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q -- "--events" "$tmp/err" || fail "bad --events: $(cat "$tmp/err")"
"$bin" bench window-agg extra > /dev/null 2> "$tmp/err"
[ $? = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] || fail "operand: $(cat "$tmp/err")"
exit 0
