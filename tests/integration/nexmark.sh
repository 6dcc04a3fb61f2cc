#!/usr/bin/env bash
# tests/integration/nexmark.sh - the bundled job nexmark: the generator's
# properties (1 : 3 : 46, ids, references to people and auctions that exist,
# times that never decrease, no comma or quote in strings, hot auctions and
# bidders; the same seed the same events, another seed other events), and
# each query (q0 q1 q2 q3 q4 q5 q7 q8 q11) against the single-threaded reference
# (nexmark_ref.py) on a dump of 10^5 events, read back with --input and
# generated directly, at --parallelism 1 and 2 and --threads 1 and 2; sorted
# output must equal the reference's byte for byte; the same after a kill -9
# and a resume from the latest checkpoint. Then the usage errors, a
# malformed dump line and an input out of event-time order.
#
# Run by ctest as: bash nexmark.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -u
BIN=$1
SRC=$2
TMP=$(mktemp -d "${3:-/tmp}/nexmark.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PY=/usr/bin/python3
REF=$SRC/tests/integration/nexmark_ref.py
fail=0
say() { printf '%s\n' "$*" >&2; }
bad() {
    say "FAIL: $*"
    fail=1
}

jobs=$("$BIN" jobs)
grep -q '^nexmark' <<<"$jobs" || bad "'sluice jobs' does not list nexmark"

# --- the generator -------------------------------------------------------------------
N=100000
GEN="--events $N --seed 7 --rate 1000"
# shellcheck disable=SC2086
"$BIN" run nexmark --dump-events "$TMP/d1.csv" $GEN || bad "dump exited $?"
# shellcheck disable=SC2086
"$BIN" run nexmark --dump-events "$TMP/d2.csv" $GEN || bad "second dump exited $?"
"$BIN" run nexmark --dump-events "$TMP/d3.csv" --events $N --seed 8 --rate 1000 ||
    bad "dump with seed 8 exited $?"
[ "$(wc -l <"$TMP/d1.csv")" -eq $N ] || bad "the dump has $(wc -l <"$TMP/d1.csv") lines, not $N"
cmp -s "$TMP/d1.csv" "$TMP/d2.csv" || bad "two dumps with one seed differ"
cmp -s "$TMP/d1.csv" "$TMP/d3.csv" && bad "dumps with seeds 7 and 8 are equal"
$PY "$REF" check "$TMP/d1.csv" || bad "the generator's properties (above)"
for k in person auction bid; do
    case $k in person) want=$((N / 50)) ;; auction) want=$((3 * N / 50)) ;; bid) want=$((46 * N / 50)) ;; esac
    got=$(grep -c "^$k," "$TMP/d1.csv")
    [ "$got" -eq "$want" ] || bad "$got ${k}s, expected $want"
done
# every kind's field count (no stray commas)
awk -F, '($1=="person"&&NF!=9)||($1=="auction"&&NF!=11)||($1=="bid"&&NF!=8){print NR": "$0; exit 1}' \
    "$TMP/d1.csv" >/dev/null || bad "a dump line has the wrong number of fields"
# the first events of the dump: the generator makes event n alone, so a
# shorter dump is a prefix of a longer one
"$BIN" run nexmark --dump-events "$TMP/short.csv" --events 1234 --seed 7 --rate 1000 ||
    bad "short dump exited $?"
head -n 1234 "$TMP/d1.csv" | cmp -s - "$TMP/short.csv" || bad "a 1234-event dump is not a prefix"

# --- the queries against the reference ------------------------------------------------
for q in q0 q1 q2 q3 q4 q5 q7 q8 q11; do
    $PY "$REF" query $q "$TMP/d1.csv" | LC_ALL=C sort >"$TMP/ref" || bad "reference $q failed"
    [ "$(wc -l <"$TMP/ref")" -gt 1 ] || bad "$q: the reference has no results"
    for tp in "1 1" "2 1" "2 2"; do
        set -- $tp
        for src in input gen; do
            if [ $src = input ]; then args=(--input "$TMP/d1.csv"); else args=($GEN); fi
            "$BIN" run nexmark --query $q "${args[@]}" --threads "$1" --parallelism "$2" \
                --out "$TMP/out" 2>"$TMP/err"
            rc=$?
            [ $rc -eq 0 ] || {
                bad "$q $src threads $1 parallelism $2 exited $rc: $(head -c 300 "$TMP/err")"
                continue
            }
            head -n 1 "$TMP/out" | grep -q '^[a-z_]*,' || bad "$q $src: no header line"
            LC_ALL=C sort "$TMP/out" >"$TMP/sorted"
            if ! cmp -s "$TMP/sorted" "$TMP/ref"; then
                bad "$q $src threads $1 parallelism $2 differs from the reference:"
                diff "$TMP/sorted" "$TMP/ref" | head -5 >&2
            fi
        done
    done
done

# --- errors: one line each, exit 2 for usage -------------------------------------------
expect() { # expect STATUS PATTERN ARGS...
    local want=$1 pat=$2
    shift 2
    "$BIN" run nexmark "$@" >"$TMP/o" 2>"$TMP/e"
    local rc=$?
    [ $rc -eq "$want" ] || bad "'$*' exited $rc, expected $want"
    grep -q -- "$pat" "$TMP/e" || bad "'$*': stderr lacks '$pat': $(head -c 300 "$TMP/e")"
}
expect 2 "unknown query 'q6'" --query q6
expect 2 "unknown query 'x'" --query x
expect 2 "--events needs a whole number" --query q0 --events ten
expect 2 "--events needs a whole number" --query q0 --events 0
expect 2 "--rate needs a whole number" --query q0 --rate 0
expect 2 "give --query" --events 10
expect 2 "not --input" --query q0 --input "$TMP/d1.csv" --seed 3
expect 1 "cannot read" --query q0 --input "$TMP/nonexistent.csv"
head -n 60 "$TMP/d1.csv" >"$TMP/badin.csv"
sed -i '7s/^bid,\([0-9]*\),/bid,\1x,/; 12s/$/,extra/; 20s/^bid/bud/' "$TMP/badin.csv"
expect 1 "line 7: bad auction" --query q0 --input "$TMP/badin.csv"
grep -q "line 12: a bid line has 8 fields" "$TMP/e" || bad "line 12 not reported: $(cat "$TMP/e")"
grep -q "line 20: the first field must be" "$TMP/e" || bad "line 20 not reported: $(cat "$TMP/e")"
# lines 1..60 hold 52 bids, 3 of them bad: 49 results and the header
[ "$(wc -l <"$TMP/o")" -eq 50 ] || bad "good lines of a bad dump: $(wc -l <"$TMP/o") out"

# kill -9 during a run with checkpoints, then resume from the latest one
# (at the same and at another parallelism): the output is the reference's.
# Where the kill lands does not matter: with no checkpoint yet the job
# starts over, after the last one it only finishes.
for q in q3 q4 q5 q7 q8 q11; do
    $PY "$REF" query $q "$TMP/d1.csv" | LC_ALL=C sort >"$TMP/ref"
    for pp in "2 2" "2 1"; do
        set -- $pp
        rm -rf "$TMP/ck" "$TMP/out"
        "$BIN" run nexmark --query $q --input "$TMP/d1.csv" --parallelism "$1" --threads 2 \
            --checkpoint-dir "$TMP/ck" --checkpoint-interval 20ms --out "$TMP/out" 2>/dev/null &
        pid=$!
        sleep 0.4
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
        id=$("$BIN" checkpoints "$TMP/ck" 2>/dev/null | awk '$4 == "complete" {id = $1} END {print id}')
        last=${id:+$TMP/ck/chk-$id}
        from=()
        [ -n "$last" ] && from=(--from-checkpoint "$last")
        "$BIN" run nexmark --query $q --input "$TMP/d1.csv" --parallelism "$2" --threads 2 \
            --checkpoint-dir "$TMP/ck" "${from[@]}" --out "$TMP/out" 2>"$TMP/err" ||
            bad "$q resumed from '${last:-nothing}' at parallelism $2: $(head -c 300 "$TMP/err")"
        LC_ALL=C sort "$TMP/out" | cmp -s - "$TMP/ref" ||
            bad "$q killed at parallelism $1, resumed from '${last:-nothing}' at $2: not the reference"
    done
done

# a run that finished, resumed from its last checkpoint (taken after the
# end): nothing is emitted twice (q4's final aggregate once re-emitted all)
for q in q4 q5; do
    $PY "$REF" query $q "$TMP/d1.csv" | LC_ALL=C sort >"$TMP/ref"
    rm -rf "$TMP/ck" "$TMP/out"
    "$BIN" run nexmark --query $q --input "$TMP/d1.csv" --parallelism 2 --threads 2 \
        --checkpoint-dir "$TMP/ck" --out "$TMP/out" 2>"$TMP/err" || bad "$q with checkpoints: $(cat "$TMP/err")"
    id=$("$BIN" checkpoints "$TMP/ck" 2>/dev/null | awk '$4 == "complete" {id = $1} END {print id}')
    [ -n "$id" ] || bad "$q: no complete checkpoint after the run"
    "$BIN" run nexmark --query $q --input "$TMP/d1.csv" --parallelism 1 --threads 2 \
        --checkpoint-dir "$TMP/ck" --from-checkpoint "$TMP/ck/chk-$id" --out "$TMP/out" 2>"$TMP/err" ||
        bad "$q resumed after its end: $(cat "$TMP/err")"
    LC_ALL=C sort "$TMP/out" | cmp -s - "$TMP/ref" || bad "$q resumed after its end: not the reference"
done

# an input out of event-time order beyond the watermark: a failure, never a wrong result
(head -n 150 "$TMP/d1.csv" && grep -m1 '^bid,' "$TMP/d1.csv" |
    awk -F, -v OFS=, '{$7 = sprintf("%.0f", $7 - 100000); print}') >"$TMP/late.csv"
for q in q5 q7 q11; do
    expect 1 "not in event-time order" --query $q --input "$TMP/late.csv"
done

exit $fail
