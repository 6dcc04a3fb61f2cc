#!/usr/bin/env bash
# The checkpoint options of the bundled jobs, as a user meets them (issue 9):
#   - bad values and combinations are one-line usage errors (exit 2): an
#     interval of 0 or garbage, a checkpoint option without --checkpoint-dir,
#     an unknown guarantee, exactly-once or at-least-once without a directory;
#   - a checkpoint directory that is a file, exactly-once to standard output
#     and a --from-checkpoint that is not a checkpoint are one-line runtime
#     errors (exit 1) naming the problem;
#   - SIGTERM stops the job with a savepoint (exit 0, "savepoint" on stderr,
#     only committed output in the file), the next start says it resumes,
#     and the file then holds exactly the uninterrupted run's lines;
#   - a corrupt latest checkpoint is skipped with a warning and the one
#     before it is used; `sluice checkpoints DIR` names the damage;
#   - a job that finished, started again, adds nothing.
# Run by ctest as: bash checkpoint_cli.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
S=$1
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect STATUS PATTERN -- command...: exit status and one stderr line matching
expect() {
    local want=$1 pat=$2
    shift 3
    local rc=0
    "$@" >"$tmp/o" 2>"$tmp/e" || rc=$?
    [ "$rc" = "$want" ] || fail "$* exited $rc, expected $want: $(cat "$tmp/e")"
    grep -q -- "$pat" "$tmp/e" || fail "$*: stderr does not say '$pat': $(cat "$tmp/e")"
}

"$S" run generate --events 400000 --keys 500 >"$tmp/ev.csv" 2>/dev/null
WA=(run window-agg --input "$tmp/ev.csv" --window sliding:10s:1s)
"$S" "${WA[@]}" --out "$tmp/ref" 2>/dev/null
sort "$tmp/ref" >"$tmp/ref.sorted"

expect 2 "--checkpoint-interval needs a duration above 0" -- "$S" "${WA[@]}" --checkpoint-dir "$tmp/c" --checkpoint-interval 0
expect 2 "--checkpoint-interval needs a duration above 0" -- "$S" "${WA[@]}" --checkpoint-dir "$tmp/c" --checkpoint-interval soon
expect 2 "--checkpoint-interval needs --checkpoint-dir" -- "$S" "${WA[@]}" --checkpoint-interval 1s
expect 2 "--guarantee must be exactly-once, at-least-once or none, not 'maybe'" -- "$S" "${WA[@]}" --guarantee maybe
expect 2 "--guarantee exactly-once needs --checkpoint-dir" -- "$S" "${WA[@]}" --guarantee exactly-once
expect 2 "--checkpoint-capture must be auto, sync or fork, not 'cow'" -- "$S" "${WA[@]}" --checkpoint-dir "$tmp/c" --checkpoint-capture cow
expect 2 "--checkpoint-keep needs a whole number" -- "$S" "${WA[@]}" --checkpoint-dir "$tmp/c" --checkpoint-keep 0
[ ! -e "$tmp/c" ] || fail "a usage error made the checkpoint directory"

echo x >"$tmp/file"
expect 1 "$tmp/file" -- "$S" "${WA[@]}" --out "$tmp/o1" --checkpoint-dir "$tmp/file"
expect 1 "exactly-once needs a file" -- "$S" "${WA[@]}" --checkpoint-dir "$tmp/c0"
expect 1 "needs a checkpoint directory chk-<id>" -- "$S" "${WA[@]}" --out "$tmp/o1" --checkpoint-dir "$tmp/c0" --from-checkpoint "$tmp/ev.csv"

# SIGTERM: a savepoint, then resume to the end. The stopped run reads the first
# half of the input through a FIFO held open, so it cannot reach the end before the
# SIGTERM (from the file the whole run takes 0.25 s: under load it finished first,
# with no savepoint); the resumed run seeks to the same byte offset in the file.
mkfifo "$tmp/fifo"
"$S" run window-agg --input "$tmp/fifo" --window sliding:10s:1s --out "$tmp/out" --checkpoint-dir "$tmp/ck" \
    --checkpoint-interval 50ms 2>"$tmp/e1" &
pid=$!
exec 5>"$tmp/fifo"
head -n 200000 "$tmp/ev.csv" >&5
for _ in $(seq 100); do # wait for the first completed checkpoint
    [ -n "$(ls "$tmp/ck" 2>/dev/null)" ] && break
    sleep 0.05
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
exec 5>&-
[ "$rc" = 0 ] || fail "SIGTERM: exit $rc: $(cat "$tmp/e1")"
grep -q "savepoint" "$tmp/e1" || fail "SIGTERM: no savepoint line: $(cat "$tmp/e1")"
sort "$tmp/out" >"$tmp/got"
[ "$(comm -23 "$tmp/got" "$tmp/ref.sorted" | wc -l)" = 0 ] || fail "the stopped run committed lines the reference does not have"
"$S" "${WA[@]}" --out "$tmp/out" --checkpoint-dir "$tmp/ck" --checkpoint-interval 50ms 2>"$tmp/e2" || fail "resume: $(cat "$tmp/e2")"
grep -q "resuming from checkpoint" "$tmp/e2" || fail "resume: no 'resuming' line: $(cat "$tmp/e2")"
sort "$tmp/out" | cmp -s - "$tmp/ref.sorted" || fail "after stop and resume the output differs from the uninterrupted run"

# Finished: a start adds nothing.
"$S" "${WA[@]}" --out "$tmp/out" --checkpoint-dir "$tmp/ck" 2>"$tmp/e3" || fail "rerun: $(cat "$tmp/e3")"
sort "$tmp/out" | cmp -s - "$tmp/ref.sorted" || fail "a finished job started again changed its output"

# A corrupt latest checkpoint: skipped with a warning, the one before used.
"$S" "${WA[@]}" --out "$tmp/o2" --checkpoint-dir "$tmp/ck2" --checkpoint-interval 20ms \
    --guarantee at-least-once 2>/dev/null
last=$(ls "$tmp/ck2" | sed 's/chk-//' | sort -n | tail -1)
printf 'garbage' | dd of="$tmp/ck2/chk-$last/MANIFEST" bs=1 seek=20 conv=notrunc 2>/dev/null
"$S" checkpoints "$tmp/ck2" >"$tmp/list" 2>&1 || true
grep -q "corrupt" "$tmp/list" || fail "sluice checkpoints does not show the damage: $(cat "$tmp/list")"
"$S" "${WA[@]}" --out "$tmp/o2" --checkpoint-dir "$tmp/ck2" --guarantee at-least-once 2>"$tmp/e4" ||
    fail "fallback run: $(cat "$tmp/e4")"
grep -q "warning: checkpoint $last skipped" "$tmp/e4" || fail "no warning about checkpoint $last: $(cat "$tmp/e4")"
grep -q "resuming from checkpoint" "$tmp/e4" || fail "fallback did not resume: $(cat "$tmp/e4")"
echo "checkpoint CLI: ok"
