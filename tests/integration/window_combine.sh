#!/usr/bin/env bash
# tests/integration/window_combine.sh - `sluice run window-agg --combine`
# (sl_stream_window_combined: a combiner before the shuffle) gives the same
# output as without it: on the fixed inputs of window_jobs.sh against their
# expected files, and on a generated input (out of order, late records,
# event times around 0) for every aggregate, tumbling and sliding windows,
# several --parallelism, against the run without --combine. Also: --explain
# shows the combiner, and --combine with session windows is a usage error.
#
# Run by ctest as: bash window_combine.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -u
BIN=$1
SRC=$2
TMP=$(mktemp -d "${3:-/tmp}/window_combine.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail=0
say() { printf '%s\n' "$*" >&2; }
bad() { say "FAIL: $*"; fail=1; }

WA=$SRC/tests/data/window_agg
cases=(
    "tumbling_sum|--window tumbling:1s --agg sum --delay 500"
    "sliding_avg|--window sliding:2s:500ms --agg avg --delay 300 --lateness 1s"
    "tumbling_max|--window tumbling:2s --agg max"
)
for c in "${cases[@]}"; do
    name=${c%%|*}
    opts=${c#*|}
    for tp in "1 1" "2 3"; do
        set -- $tp
        # shellcheck disable=SC2086
        "$BIN" run window-agg --combine --input "$WA/input.csv" $opts --threads "$1" \
            --parallelism "$2" --out "$TMP/out" --late-out "$TMP/late" 2>"$TMP/err"
        rc=$?
        [ $rc -eq 0 ] || bad "--combine $name (threads $1, parallelism $2): exit $rc: $(cat "$TMP/err")"
        sort "$TMP/out" | cmp -s - "$WA/$name.out" ||
            bad "--combine $name (threads $1, parallelism $2): results differ from $name.out"
        sort "$TMP/late" | cmp -s - "$WA/$name.late" ||
            bad "--combine $name (threads $1, parallelism $2): late records differ from $name.late"
    done
done

# A generated input: ~1 line per ms from -2 s, 13 keys, disorder up to 40 ms,
# one line in 20 up to 700 ms behind; a line at event time 0.
awk 'BEGIN { srand(7); for (i = 0; i < 30000; i++) { t = -2000 + int(i / 3);
      d = int(rand() * 41); if (rand() < 0.05) d = int(rand() * 700);
      if (i == 6000) { t = 0; d = 0 }
      printf "%d,k%d,%d\n", t - d, int(rand() * 13), int(rand() * 2000) - 1000 } }' >"$TMP/gen.csv"
for agg in count sum min max avg distinct; do
    for w in "tumbling:250ms" "sliding:600ms:200ms" "sliding:100ms:300ms"; do
        for par in 1 3; do
            opts="--window $w --agg $agg --delay 30 --lateness 150ms --threads 2 --parallelism $par"
            # shellcheck disable=SC2086
            "$BIN" run window-agg --input "$TMP/gen.csv" $opts --out "$TMP/a.out" \
                --late-out "$TMP/a.late" 2>"$TMP/err" || bad "$opts: exit $?: $(cat "$TMP/err")"
            # shellcheck disable=SC2086
            "$BIN" run window-agg --combine --input "$TMP/gen.csv" $opts --out "$TMP/b.out" \
                --late-out "$TMP/b.late" 2>"$TMP/err" || bad "--combine $opts: exit $?: $(cat "$TMP/err")"
            [ -s "$TMP/a.out" ] || bad "$opts: no results"
            cmp -s <(sort "$TMP/a.out") <(sort "$TMP/b.out") ||
                bad "--combine $opts: results differ from the run without it"
            cmp -s <(sort "$TMP/a.late") <(sort "$TMP/b.late") ||
                bad "--combine $opts: late records differ from the run without it"
        done
    done
done
grep -q '^late,' "$TMP/a.late" || bad "the generated input has no late records"

# the plan shows the combiner chained to the reader
out=$("$BIN" run window-agg --combine --input "$WA/input.csv" --parallelism 2 --explain 2>&1)
grep -q 'csv(1) -> window.combine(1): chained' <<<"$out" ||
    bad "--explain does not show window.combine chained to csv: $out"
# session windows: a usage error, one line, exit 2
"$BIN" run window-agg --combine --window session:1s --input "$WA/input.csv" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -eq 2 ] || bad "--combine with session windows: exit $rc, expected 2"
[ "$(wc -l <"$TMP/err")" -eq 1 ] || bad "--combine with session windows: not one line: $(cat "$TMP/err")"
exit $fail
