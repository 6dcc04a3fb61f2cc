#!/usr/bin/env bash
# `sluice bench nexmark --events 20000` runs every query on 1 and 2 threads
# and reports each row and the two summary lines with a number; --query
# runs one; --csv prints the header and a row per query and thread count;
# an unknown query, a bad --events and an operand are one-line usage errors
# (exit 2). Only that it runs and reports is checked, never the values (no
# test asserts on speed).
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_nexmark: $*" >&2
  exit 1
}
num='[0-9][0-9.]*'

"$bin" bench nexmark --events 20000 > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
for q in q0 q1 q2 q3 q4 q5 q7 q8 q11; do
  grep -q "^  $q  *1  *20000  *$num  *${num}M  *${num}M  *$num  *$num\$" "$tmp/out" ||
    fail "no 1-thread row of $q: $(cat "$tmp/out")"
  grep -q "^  $q  *2  *20000  *$num  *${num}M  *${num}M  *$num  *$num  *$num\$" "$tmp/out" ||
    fail "no 2-thread row of $q: $(cat "$tmp/out")"
done
grep -q "^  lowest x Flink per core  *$num  (target >= 100" "$tmp/out" || fail "no Flink line: $(cat "$tmp/out")"
grep -q "^  lowest 2 threads / 1 thread  *$num  (target >= 1.8" "$tmp/out" || fail "no scaling line: $(cat "$tmp/out")"

"$bin" bench nexmark --events 20000 --query q7 --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
[ "$(grep -c "^nexmark,q7,[12],20000,$num,$num,$num\$" "$tmp/csv")" = 2 ] || fail "--csv rows: $(cat "$tmp/csv")"
[ "$(wc -l < "$tmp/csv")" = 3 ] || fail "--csv: $(cat "$tmp/csv")"

set +e
for args in "--query q6" "--events 5x" "extra"; do
  # shellcheck disable=SC2086
  "$bin" bench nexmark $args > /dev/null 2> "$tmp/err"
  [ $? = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] || fail "'$args': $(cat "$tmp/err")"
done
exit 0
