#!/usr/bin/env bash
# tests/integration/window_jobs.sh - the bundled jobs window-agg and ysb on
# small fixed inputs (tests/data/window_agg, tests/data/ysb) against expected
# files, for several --threads / --parallelism (sorted output must not change),
# plus malformed-line reporting, usage errors and exit statuses.
#
# Run by ctest as: bash window_jobs.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -u
BIN=$1
SRC=$2
TMP=$(mktemp -d "${3:-/tmp}/window_jobs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail=0
say() { printf '%s\n' "$*" >&2; }
bad() { say "FAIL: $*"; fail=1; }

jobs=$("$BIN" jobs) # captured: a pipe into grep -q can fail under pipefail
if ! grep -q '^window-agg' <<<"$jobs" || ! grep -q '^ysb' <<<"$jobs"; then
    say "FAIL: 'sluice jobs' does not list window-agg and ysb (cli/sluice.c must register"
    say "      job_window_agg and job_ysb from examples/jobs.h)"
    exit 1
fi

WA=$SRC/tests/data/window_agg
# name | options
cases=(
    "tumbling_sum|--window tumbling:1s --agg sum --delay 500"
    "sliding_avg|--window sliding:2s:500ms --agg avg --delay 300 --lateness 1s"
    "session_count|--window session:800ms --agg count --delay 200 --lateness 500"
    "tumbling_max|--window tumbling:2s --agg max"
)
for c in "${cases[@]}"; do
    name=${c%%|*}
    opts=${c#*|}
    for tp in "1 1" "2 1" "2 3" "1 4"; do
        set -- $tp
        # shellcheck disable=SC2086
        "$BIN" run window-agg --input "$WA/input.csv" $opts --threads "$1" --parallelism "$2" \
            --out "$TMP/out" --late-out "$TMP/late" 2>"$TMP/err"
        rc=$?
        [ $rc -eq 0 ] || bad "window-agg $name (threads $1, parallelism $2): exit $rc: $(cat "$TMP/err")"
        sort "$TMP/out" | cmp -s - "$WA/$name.out" ||
            bad "window-agg $name (threads $1, parallelism $2): results differ from $name.out"
        sort "$TMP/late" | cmp -s - "$WA/$name.late" ||
            bad "window-agg $name (threads $1, parallelism $2): late records differ from $name.late"
        n=$(grep -c '^sluice run window-agg: line [0-9]*: ' "$TMP/err")
        [ "$n" -eq 4 ] || bad "window-agg $name: expected 4 malformed-line reports, got $n"
    done
done
# stdin and stdout, late records on stderr
"$BIN" run window-agg --window tumbling:1s --agg sum --delay 500 <"$WA/input.csv" >"$TMP/out" 2>"$TMP/err" ||
    bad "window-agg from stdin: exit $?"
sort "$TMP/out" | cmp -s - "$WA/tumbling_sum.out" || bad "window-agg from stdin: results differ"
grep '^late,' "$TMP/err" | sort | cmp -s - "$WA/tumbling_sum.late" ||
    bad "window-agg: late records on stderr differ"
grep -q '^sluice run window-agg: line 7: ' "$TMP/err" || bad "window-agg: line 7 not reported"

# usage errors exit 2 with one line
for args in "--window hopping:1s" "--agg median" "--delay soon" "--bogus" "--window sliding:1s"; do
    # shellcheck disable=SC2086
    "$BIN" run window-agg $args </dev/null >/dev/null 2>"$TMP/err"
    rc=$?
    [ $rc -eq 2 ] || bad "window-agg $args: exit $rc, want 2"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^sluice run window-agg: ' "$TMP/err" ||
        bad "window-agg $args: want one 'sluice run window-agg: ...' line, got: $(cat "$TMP/err")"
done
"$BIN" run window-agg --input "$TMP/missing.csv" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || bad "window-agg on a missing file: want exit 1"
grep -q 'usage: sluice run window-agg' <<<"$("$BIN" run window-agg --help)" || bad "window-agg --help"

# ysb: JSON lines with a campaigns file, and the generator
Y=$SRC/tests/data/ysb
for tp in "1 1" "2 2" "2 3"; do
    set -- $tp
    "$BIN" run ysb --input "$Y/events.jsonl" --campaigns "$Y/campaigns.csv" --delay 2s \
        --threads "$1" --parallelism "$2" --out "$TMP/out" 2>"$TMP/err"
    rc=$?
    [ $rc -eq 0 ] || bad "ysb json (threads $1, parallelism $2): exit $rc: $(cat "$TMP/err")"
    sort "$TMP/out" | cmp -s - "$Y/expected.out" || bad "ysb json (threads $1, parallelism $2): results differ"
    grep -q 'line 11: unknown ad_id' "$TMP/err" || bad "ysb json: unknown ad not reported"
    grep -q 'line 31: not a JSON object' "$TMP/err" || bad "ysb json: malformed line not reported"
    grep -q '4 dead letters' "$TMP/err" || bad "ysb json: dead letters not counted: $(cat "$TMP/err")"

    "$BIN" run ysb --events 30000 --threads "$1" --parallelism "$2" >"$TMP/out" 2>"$TMP/err" ||
        bad "ysb generator (threads $1, parallelism $2): exit $?: $(cat "$TMP/err")"
    sort "$TMP/out" | cmp -s - "$Y/generator_30000.out" ||
        bad "ysb generator (threads $1, parallelism $2): results differ"
done
"$BIN" run ysb --events none >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] || bad "ysb --events none: want exit 2"

# Records a window does not count are never lost: with slide > size the ones
# between windows are "no-window", not "late"; late ones stay "late".
printf '0,a,1\n1500,a,2\n2500,b,3\n4000,a,4\n100,a,9\n' |
    "$BIN" run window-agg --window sliding:1s:2s --out "$TMP/out" --late-out "$TMP/late" 2>/dev/null ||
    bad "window-agg slide > size: exit $?"
sort "$TMP/late" > "$TMP/late.s"
printf 'late,100,a,9\nno-window,1500,a,2\n' | cmp -s - "$TMP/late.s" ||
    bad "window-agg slide > size: diverted records: $(cat "$TMP/late.s")"
[ "$(wc -l < "$TMP/out")" -eq 3 ] || bad "window-agg slide > size: want 3 results"

[ $fail -eq 0 ] && say "window_jobs: all passed"
exit $fail
