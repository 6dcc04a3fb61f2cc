#!/usr/bin/env bash
# window-agg at the ends of int64 (issue 8, item 5), through the CLI:
#   - a sum that leaves int64 fails the job (exit 1) with one line naming the
#     key and the window; it is never printed wrapped;
#   - avg of two INT64_MAX is 2^63, not -1;
#   - a session window of a record at INT64_MAX ends at INT64_MAX (the
#     end saturates), never at a negative time;
#   - the CSV numbers: INT64_MIN and INT64_MAX read as themselves, one
#     past either end, a sign alone, '+', spaces, an empty field and a
#     trailing letter are dead letters with the reason of the field, and a
#     third comma is "too many fields" whatever else is wrong.
# Run by ctest as: bash int64_edges.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
S=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
MAX=9223372036854775807

printf '1000,k1,%s\n2000,k1,1\n' "$MAX" >"$tmp/in"
for w in tumbling:10s sliding:10s:5s session:5s; do
    rc=0
    "$S" run window-agg --window "$w" --agg sum <"$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" = 1 ] || fail "$w: sum overflow exit status $rc, want 1"
    [ ! -s "$tmp/out" ] || fail "$w: printed a result of a wrong sum: $(cat "$tmp/out")"
    grep -q "key 'k1'" "$tmp/err" || fail "$w: error does not name the key: $(cat "$tmp/err")"
    grep -q "in window \[" "$tmp/err" || fail "$w: error does not name the window: $(cat "$tmp/err")"
    grep -q "leaves int64" "$tmp/err" || fail "$w: error does not say overflow: $(cat "$tmp/err")"
done

printf '1000,k1,%s\n2000,k1,%s\n' "$MAX" "$MAX" >"$tmp/in"
out=$("$S" run window-agg --window tumbling:10s --agg avg <"$tmp/in" 2>/dev/null)
[ "$out" = "0,10000,k1,9223372036854775808.000" ] || fail "avg of two INT64_MAX: '$out'"
out=$("$S" run window-agg --window tumbling:10s --agg max <"$tmp/in" 2>/dev/null)
[ "$out" = "0,10000,k1,$MAX" ] || fail "max: '$out'"

printf '%s,k1,1\n' "$MAX" >"$tmp/in"
out=$("$S" run window-agg --window session:5s --agg count <"$tmp/in" 2>/dev/null)
[ "$out" = "$MAX,$MAX,k1,1" ] || fail "session at INT64_MAX: '$out'"
MIN=-9223372036854775808
printf '%s,k1,%s\n1000,k2,%s\n' "$MIN" "$MAX" "$MIN" >"$tmp/in"
out=$("$S" run window-agg --window tumbling:10s --agg sum <"$tmp/in" 2>/dev/null | sort)
# the window of INT64_MIN starts below int64: its start saturates
[ "$out" = "$(printf '%s,-9223372036854770000,k1,%s\n0,10000,k2,%s' "$MIN" "$MAX" "$MIN")" ] ||
    fail "int64 ends: '$out'"
bad_ts=("9223372036854775808" "-9223372036854775809" "-" "+5" " 5" "5 " "" "12a" "99999999999999999999")
for t in "${bad_ts[@]}"; do
    printf '%s,k1,1\n' "$t" >"$tmp/in"
    rc=0
    "$S" run window-agg <"$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ ! -s "$tmp/out" ] || fail "ts '$t' gave a result: $(cat "$tmp/out")"
    grep -q "bad event_time_ms" "$tmp/err" || fail "ts '$t': $(cat "$tmp/err")"
    printf '1000,k1,%s\n' "$t" >"$tmp/in"
    "$S" run window-agg <"$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ ! -s "$tmp/out" ] || fail "value '$t' gave a result: $(cat "$tmp/out")"
    grep -q "bad value" "$tmp/err" || fail "value '$t': $(cat "$tmp/err")"
done
printf 'x,,1,2\n' >"$tmp/in"
"$S" run window-agg <"$tmp/in" >"$tmp/out" 2>"$tmp/err" || true
grep -q "too many fields" "$tmp/err" || fail "third comma: $(cat "$tmp/err")"
printf -- '-0,k1,-0\n' >"$tmp/in"
out=$("$S" run window-agg --window tumbling:10s --agg sum <"$tmp/in" 2>/dev/null)
[ "$out" = "0,10000,k1,0" ] || fail "-0: '$out'"
echo ok
