#!/usr/bin/env bash
# Embedded and served together (issue 10 item 5): while `sluice broker serve`
# runs over a directory it is recorded in DIR/.server.PID (its address); an
# embedded writer (`sluice produce --dir`) on a partition the server has
# written gets one line naming the server and where to produce instead, and
# exits non-zero, with -p and without (the round-robin path, which waits for
# a partition held by another embedded writer, must not wait for a server);
# in-process readers (`consume
# --dir`) read what clients produced through the server; a topic the server
# never wrote stays writable in process (partition writers are taken
# lazily). After a clean stop the record is gone and the log is intact and
# writable again; after kill -9 the next server removes the stale record.
set -euo pipefail
bin=$1
. "$(dirname "$0")/lib/serve.sh"
serve_init server_embedded
export SLUICE_DIR="$tmp/broker"
"$bin" topic create t --partitions 2
"$bin" topic create own --partitions 1

start_server() {
  serve_start
  b=127.0.0.1:$port
}
start_server

# The record: "PID HOST:PORT".
[ "$(cat "$SLUICE_DIR/.server.$pid")" = "$pid $b" ] ||
  fail ".server.$pid holds '$(cat "$SLUICE_DIR/.server.$pid" 2> /dev/null)', not '$pid $b'"

# Clients write both partitions of t through the server.
for i in $(seq 1 50); do echo "k$i:v$i"; done > "$tmp/p0"
for i in $(seq 51 80); do echo "k$i:v$i"; done > "$tmp/p1"
"$bin" produce t -K : -p 0 -b "$b" < "$tmp/p0" 2> "$tmp/err" || fail "produce -b -p 0: $(cat "$tmp/err")"
"$bin" produce t -K : -p 1 -b "$b" < "$tmp/p1" 2> "$tmp/err" || fail "produce -b -p 1: $(cat "$tmp/err")"

# An embedded writer on a partition the server writes: one line, exit != 0.
want="topic 't' partition 0 is written by sluice broker serve (pid $pid, $b); produce through it (-b $b)"
if echo "x:embedded" | "$bin" produce t -K : -p 0 > "$tmp/out" 2> "$tmp/err"; then
  fail "produce --dir -p 0 was accepted while the server writes t/0"
fi
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "produce --dir -p 0 said $(wc -l < "$tmp/err") lines: $(cat "$tmp/err")"
grep -qF "$want" "$tmp/err" || fail "produce --dir -p 0 said: $(cat "$tmp/err") (wanted: $want)"
# Without -p (round-robin: it would wait for a partition another embedded
# writer holds, but not for the server). timeout is a safety net against a
# hang, not a time assertion.
rc=0
echo "embedded" | timeout 120 "$bin" produce t > "$tmp/out" 2> "$tmp/err" || rc=$?
[ "$rc" -ne 124 ] || fail "produce --dir without -p waited for the server's partition lock"
[ "$rc" -ne 0 ] || fail "produce --dir without -p was accepted while the server writes t"
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "produce --dir said $(wc -l < "$tmp/err") lines: $(cat "$tmp/err")"
grep -qF "is written by sluice broker serve (pid $pid, $b); produce through it (-b $b)" "$tmp/err" ||
  fail "produce --dir without -p said: $(cat "$tmp/err")"

# In-process readers read what the clients produced.
"$bin" consume t -e -p 0 -f '%k:%s\n' > "$tmp/got0"
"$bin" consume t -e -p 1 -f '%k:%s\n' > "$tmp/got1"
cmp -s "$tmp/p0" "$tmp/got0" || fail "consume --dir -p 0: $(wc -l < "$tmp/got0") lines unlike what was produced"
cmp -s "$tmp/p1" "$tmp/got1" || fail "consume --dir -p 1: $(wc -l < "$tmp/got1") lines unlike what was produced"

# A topic the server never wrote: the embedded writer takes it, and the
# server's readers see it.
echo "e:mine" | "$bin" produce own -K : 2> "$tmp/err" || fail "produce --dir own: $(cat "$tmp/err")"
"$bin" consume own -e -f '%k:%s\n' -b "$b" > "$tmp/own" 2> "$tmp/err" || fail "consume -b own: $(cat "$tmp/err")"
[ "$(cat "$tmp/own")" = "e:mine" ] || fail "consume -b own: $(cat "$tmp/own")"

# Clean stop: the record gone, the log intact, the partitions writable again.
first=$pid
kill "$pid"
wait "$pid" || fail "server exit status $?: $(cat "$tmp/serve.err")"
pid=
[ ! -e "$SLUICE_DIR/.server.$first" ] || fail ".server.$first left after a clean stop"
"$bin" topic describe t > "$tmp/desc"
awk '$1 == "0" && $3 == "50" { a = 1 } $1 == "1" && $3 == "30" { b = 1 } END { exit !(a && b) }' \
  "$tmp/desc" || fail "next offsets after the stop: $(cat "$tmp/desc")"
echo "x:after" | "$bin" produce t -K : -p 0 2> "$tmp/err" || fail "produce --dir after the stop: $(cat "$tmp/err")"
[ "$("$bin" consume t -e -p 0 | wc -l)" -eq 51 ] || fail "t/0 after the stop: not 51 records"

# kill -9 leaves the record behind, unlocked: the next server removes it.
start_server
dead=$pid
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
pid=
[ -e "$SLUICE_DIR/.server.$dead" ] || fail "kill -9 removed .server.$dead (the test expects a stale one)"
start_server
[ ! -e "$SLUICE_DIR/.server.$dead" ] || fail "the stale .server.$dead was not removed"
[ "$(cat "$SLUICE_DIR/.server.$pid")" = "$pid $b" ] || fail "no record of the new server"
kill "$pid"
wait "$pid" || fail "server exit status $?: $(cat "$tmp/serve.err")"
pid=
echo "server_embedded: ok"
