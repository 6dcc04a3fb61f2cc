#!/usr/bin/env bash
# `sluice bench crdt --quick` runs and reports every part: a row per type for
# updates and merges, encoded sizes at 10^3 and at the large size, the three
# window variants with the distinct / count line, the memory lines, and the
# combiner's records crossing the shuffle for count and distinct. The
# bench itself fails when the window variants disagree on the number of
# results, distinct-exact miscounts the memory run's values, or a combined
# run's results differ from the run without the combiner. Only that it
# runs and reports is checked, never the values (no test asserts on speed).
# --csv prints the header and rows; bad options are one-line usage errors.
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "bench_crdt: $*" >&2
  exit 1
}

"$bin" bench crdt --quick > "$tmp/out" 2> "$tmp/err" || fail "exit $?: $(cat "$tmp/err")"
for t in gcounter pncounter lww mvreg orset hll; do
  grep -q "^  update $t " "$tmp/out" || fail "no update row for $t: $(cat "$tmp/out")"
  grep -q "^  merge $t" "$tmp/out" || fail "no merge row for $t: $(cat "$tmp/out")"
done
for t in gcounter pncounter lww orset "hll p14"; do
  [ "$(grep -c "^  $t  " "$tmp/out")" = 2 ] || fail "not two size rows for $t: $(cat "$tmp/out")"
done
for v in count distinct distinct-exact; do
  grep -q "^  $v  " "$tmp/out" || fail "no window row for $v: $(cat "$tmp/out")"
done
grep -q "^  distinct / count: [0-9.]* (goal >= 0.7)" "$tmp/out" || fail "no ratio line: $(cat "$tmp/out")"
grep -q "^  distinct-exact / distinct: " "$tmp/out" || fail "no memory ratio line: $(cat "$tmp/out")"
[ "$(grep -c "^  \(count\|distinct\): records crossing the shuffle / " "$tmp/out")" = 2 ] ||
  fail "no combiner lines: $(cat "$tmp/out")"

"$bin" bench crdt --quick --csv > "$tmp/csv" 2> "$tmp/err" || fail "--csv: exit $?: $(cat "$tmp/err")"
[ "$(head -n 1 "$tmp/csv")" = "bench,variant,threads,events,seconds,events_per_s,peak_rss_mb" ] ||
  fail "--csv header: $(head -n 1 "$tmp/csv")"
grep -q "^crdt,window-distinct," "$tmp/csv" || fail "--csv: no window-distinct row: $(cat "$tmp/csv")"
grep -q "^crdt,memory-distinct-exact-peak-mb=" "$tmp/csv" || fail "--csv: no memory row: $(cat "$tmp/csv")"

rc=0
"$bin" bench crdt --only everything > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] && grep -q "must be ops, sizes, windows, memory or combiner" "$tmp/err" ||
  fail "--only everything: exit $rc: $(cat "$tmp/err")"
rc=0
"$bin" bench crdt --events 5 > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] || fail "--events 5: exit $rc: $(cat "$tmp/err")"
echo "bench_crdt: ok"
