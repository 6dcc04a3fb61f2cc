#!/usr/bin/env bash
# Issue 8, item 7: the smaller integrity faults of the CLI, each as a user met it.
#  - `--dir ""` is a usage error (2), not a silent fall back to ./sluice-data;
#  - a topic or group name the broker refuses is a usage error (2, not 1), and
#    `topic create` with one changes nothing (not even a new broker directory);
#  - running out of file descriptors says "Too many open files", whatever
#    the call that met it ("cannot list d1/p0/125" said nothing);
#  - two keyless producers share a topic: the second takes the partitions the
#    first does not write, or waits for one, instead of failing because
#    round-robin had taken every partition's lock.
# No assertion depends on timing: waits are for a condition (a record visible,
# a process ended), bounded only to turn a hang into a failure.
set -euo pipefail
bin=$(realpath "$1")
tmp=$(mktemp -d)
pids=()
cleanup() {
  exec 3>&- 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp"
unset SLUICE_DIR
fail() { echo "cli_usage_errors: $*" >&2; exit 1; }

# expect STATUS NEEDLE CMD...: exit status STATUS, one stderr line containing NEEDLE
expect() {
  local want=$1 needle=$2 st=0
  shift 2
  "$bin" "$@" < /dev/null > out 2> err || st=$?
  [ "$st" -eq "$want" ] || fail "sluice $*: status $st, want $want; stderr: $(cat err)"
  [ "$(wc -l < err)" -eq 1 ] || fail "sluice $*: want one stderr line, got: $(cat err)"
  grep -qF -- "$needle" err || fail "sluice $*: stderr lacks '$needle': $(cat err)"
}

# --- --dir "" ---------------------------------------------------------------------------
"$bin" topic create t --dir b
dirmsg="--dir needs a directory, not an empty string"
expect 2 "$dirmsg" topic create t --dir ""
expect 2 "$dirmsg" topic create t --dir=
expect 2 "$dirmsg" topic list --dir ""
expect 2 "$dirmsg" topic describe t --dir ""
expect 2 "$dirmsg" topic delete t --dir ""
expect 2 "$dirmsg" topic clean t --dir ""
expect 2 "$dirmsg" topic repair t --dir ""
expect 2 "$dirmsg" produce t --dir ""
expect 2 "$dirmsg" consume t -e --dir ""
expect 2 "$dirmsg" run generate --events 3 --topic t --dir ""
expect 2 "$dirmsg" run window-agg --topic t --dir ""
[ ! -e sluice-data ] || fail "--dir \"\" fell back to ./sluice-data"

# --- names the broker refuses: usage errors --------------------------------------------
long=$(printf 'x%.0s' $(seq 1 201))
for name in 'bad/name' 'a b' '.hidden' "$long" ''; do
  expect 2 "topic name" topic create "$name" --dir b
  expect 2 "topic name" topic describe "$name" --dir b
  expect 2 "topic name" topic delete "$name" --dir b
  expect 2 "topic name" topic clean "$name" --dir b
  expect 2 "topic name" topic repair "$name" --dir b
  expect 2 "topic name" produce "$name" --dir b
  expect 2 "topic name" consume "$name" -e --dir b
done
# internal names ('__' first) may be read, not made or written
expect 2 "reserved" topic create __internal --dir b
expect 2 "reserved" produce __internal --dir b
expect 2 "group name" consume t -e -G 'bad/group' --dir b
expect 2 "topic name" topic create 'bad/name' --dir fresh
[ ! -e fresh ] || fail "topic create with a bad name made the broker directory"
# an unknown topic is not a usage error: the name is fine, the topic is missing
expect 1 "unknown topic 'nosuch'" consume nosuch -e --dir b

# --- out of file descriptors -------------------------------------------------------------
"$bin" topic create many --partitions 64 --dir b
seen=0
for n in $(seq 8 60); do
  st=0
  (ulimit -n "$n"; seq 200 | exec "$bin" produce many --dir b) 2> err || st=$?
  if [ "$st" -ne 0 ]; then
    seen=$((seen + 1))
    [ "$(wc -l < err)" -eq 1 ] || fail "ulimit -n $n: want one stderr line, got: $(cat err)"
    grep -q "Too many open files" err || fail "ulimit -n $n: no 'Too many open files': $(cat err)"
  fi
done
[ "$seen" -gt 0 ] || fail "no file descriptor limit made produce fail"

# --- two keyless producers on one topic --------------------------------------------------
export SLUICE_DIR="$tmp/b"
"$bin" topic create shared --partitions 4
mkfifo fifo
# wait_records N ARGS...: until `consume shared -e ARGS` shows at least N records
wait_records() {
  local want=$1 i
  shift
  for i in $(seq 1 3000); do
    [ "$("$bin" consume shared -e "$@" 3>&- | wc -l)" -ge "$want" ] && return 0
    sleep 0.02
  done
  fail "never saw $want records (consume shared -e $*)"
}

# A writes partition 0 only and keeps running; a keyless B takes the others.
"$bin" produce shared -p 0 < fifo &
pids+=($!)
apid=$!
exec 3> fifo
echo a-first >&3
wait_records 1 -p 0
seq 1 100 | "$bin" produce shared 2> err 3>&- || fail "keyless producer beside a -p 0 writer: $(cat err)"
[ "$("$bin" consume shared -e -p 0)" = "a-first" ] || fail "the keyless producer wrote partition 0"
[ "$("$bin" consume shared -e | wc -l)" -eq 101 ] || fail "records lost beside a -p 0 writer"
exec 3>&-
wait "$apid" || fail "the -p 0 producer failed"

# A is keyless and holds every partition; B, keyless too, waits for one.
"$bin" produce shared < fifo &
apid=$!
pids+=($apid)
exec 3> fifo
for i in 1 2 3 4 5 6 7 8; do echo "a$i" >&3; done
wait_records 109
(exec 3>&-; seq 1 100 | sed 's/^/b/' | exec "$bin" produce shared 2> err) &
bpid=$!
pids+=($bpid)
echo a9 >&3
exec 3>&-
wait "$apid" || fail "the first keyless producer failed"
wait "$bpid" || fail "the second keyless producer failed: $(cat err)"
[ "$("$bin" consume shared -e | grep -c '^b')" -eq 100 ] || fail "the second producer lost records"
[ "$("$bin" consume shared -e | grep -c '^a')" -eq 10 ] || fail "the first producer lost records"
echo "cli usage errors test passed"
