#!/usr/bin/env bash
# tests/integration/kafka_scaleout.sh - scale-out through a Kafka consumer group, on
# `sluice broker serve`: window-agg --group G over a 12-partition topic.
#
#   reference  one process in group "ref" reads the whole input; its committed output
#              (read_committed) is what every other run must give
#   scale-out  three processes in group "scale"; the input comes in three parts, and
#              the next part is produced only when the group has committed all of the
#              previous one (so the test never depends on speed):
#                part 1  three members share the 12 partitions
#                part 2  after one member is killed (SIGKILL): the other two can only
#                        commit part 2 by taking over its partitions and their state
#                        (restored from the state topic)
#                part 3  after a fourth member joined and took partitions
#              then SIGTERM to every member (a final checkpoint each, exit 0)
#   fencing    a member paused with SIGSTOP past its session timeout loses its
#              partitions to the other; resumed, it cannot commit and stops with a line
#              naming the fencing, exit 1; the output is still exact
# The committed outputs are compared as sorted multisets of lines.
set -Eeuo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/serve.sh"
serve_init kafka_scaleout
# No silent exit: a command that fails without its own message names its line.
trap 'echo "kafka_scaleout: line $LINENO: a command exited $? (set -e)" >&2' ERR
export SLUICE_DIR="$tmp/broker"
mkdir -p "$SLUICE_DIR"
serve_start
B=127.0.0.1:$port
PER=40000 # events per part
st=5s     # session timeout of the members: how soon a killed one's partitions move
# A sanitizer build, with other tests beside it on 2 cores, stalls members and the server
# for seconds (CI saw a lone member take 12 s to join and then lose its session): a
# longer session there, so that only a kill or a pause ends one.
case $("$bin" --version 2>&1) in *sanitizer*) st=20s ;; esac

for t in in-ref in-scale in-fence out-ref out-scale out-fence; do
  np=12
  [ "${t#out-}" = "$t" ] || np=4
  "$bin" topic create "$t" --partitions $np -b "$B" > /dev/null 2> "$tmp/topic.err" ||
    fail "topic create $t: $(cat "$tmp/topic.err")"
done

# produce_part TOPIC N: part N (1-based) of the input: PER events, 1,000 keys, event
# time going on from the part before (20 events per ms).
produce_part() {
  "$bin" run generate --events $PER --keys 1000 --rate 20000 --disorder 50 \
    --start $((($2 - 1) * PER / 20)) --topic "$1" --kafka "$B" 2> "$tmp/gen.err" ||
    fail "generate part $2 into $1: $(cat "$tmp/gen.err")"
}

# start_member GROUP OUT NAME: a member in the background (reading in-GROUP); its pid
# in $last.
start_member() {
  "$bin" run window-agg --kafka "$B" --group "$1" --topic "in-$1" --out-topic "$2" \
    --window tumbling:1s --agg sum --delay 50 --checkpoint-interval 200ms \
    --session-timeout $st --checkpoint-dir "$tmp/work-$3" 2> "$tmp/$3.err" &
  last=$!
  serve_track "$last"
}

# committed GROUP: the group's committed offsets summed over its input's partitions
# (0 while `group describe` fails: the callers poll; its last error is kept in
# $tmp/describe.err for their failure message).
committed() {
  { "$bin" group describe "$1" --topic "in-$1" -b "$B" 2> "$tmp/describe.err" || true; } |
    awk -v t="in-$1" '$1 == t && $3 != "-" { s += $3 } END { print s + 0 }'
}

# took NAME: how many partitions member NAME has taken so far (over all rebalances).
took() { grep -c "took partition" "$tmp/$1.err" || true; }

# wait_took NAME N: until member NAME has taken N partitions in all.
wait_took() {
  local i
  for i in $(seq 1 600); do
    [ "$(took "$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "member $1 took $(took "$1") partitions, not $2, within 60 s: $(tail -n 5 "$tmp/$1.err")"
}

# wait_committed GROUP N: until the group has committed N records (120 s at most).
wait_committed() {
  local i c
  for i in $(seq 1 1200); do
    c=$(committed "$1")
    [ "$c" -ge "$2" ] && return 0
    sleep 0.1
  done
  for f in "$tmp"/*.err; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done
  fail "group $1 committed $c of $2 records within 120 s (last group describe: $(cat "$tmp/describe.err"))"
}

# stop_member PID NAME: SIGTERM, must exit 0.
stop_member() {
  kill -TERM "$1"
  local rc=0
  wait "$1" || rc=$?
  [ "$rc" = 0 ] || fail "member $2 exited $rc after SIGTERM: $(tail -n 5 "$tmp/$2.err")"
}

read_out() {
  "$bin" consume "$1" -b "$B" -e -f '%s\n' 2> "$tmp/consume.err" | sort ||
    fail "consume $1: $(cat "$tmp/consume.err")"
}

# --- reference: one member ------------------------------------------------------------------
for n in 1 2 3; do produce_part in-ref $n; done
start_member ref out-ref ref
ref=$last
wait_committed ref $((3 * PER))
stop_member "$ref" ref
read_out out-ref > "$tmp/ref.txt"
[ -s "$tmp/ref.txt" ] || fail "the reference wrote nothing"
grep -q "took partition 11" "$tmp/ref.err" || fail "the single member did not take every partition: $(cat "$tmp/ref.err")"

# --- scale-out: three members, one killed, a fourth joins ----------------------------------
produce_part in-scale 1
start_member scale out-scale a
a=$last
start_member scale out-scale b
b=$last
start_member scale out-scale c
c=$last
# every member owns partitions before the kill means anything
for n in a b c; do wait_took $n 1; done
wait_committed scale $PER
kill -9 "$b"
wait "$b" 2> /dev/null || true
# Part 2 has records in every partition: the survivors commit it all only by taking
# b's partitions (after its session timeout) and their state.
produce_part in-scale 2
wait_committed scale $((2 * PER))
start_member scale out-scale d
d=$last
wait_took d 1
produce_part in-scale 3
wait_committed scale $((3 * PER))
for m in "a $a" "c $c" "d $d"; do
  set -- $m
  stop_member "$2" "$1"
done
read_out out-scale > "$tmp/scale.txt"
if ! cmp -s "$tmp/ref.txt" "$tmp/scale.txt"; then
  diff "$tmp/ref.txt" "$tmp/scale.txt" | head -n 20 >&2 || true
  fail "the scaled-out output differs from the single member's ($(wc -l < "$tmp/ref.txt") vs $(wc -l < "$tmp/scale.txt") lines)"
fi
grep -q "state of checkpoint" "$tmp/a.err" "$tmp/c.err" "$tmp/d.err" ||
  fail "no member restored a partition's state from the state topic"

# --- fencing: a paused member cannot commit --------------------------------------------------
produce_part in-fence 1
start_member fence out-fence e
e=$last
start_member fence out-fence f
f=$last
wait_took e 1
wait_took f 1
wait_committed fence $PER
n0=$(took f)
kill -STOP "$e"
# f takes all 12 partitions once e's session has expired, and commits the rest
wait_took f $((n0 + 12))
produce_part in-fence 2
produce_part in-fence 3
wait_committed fence $((3 * PER))
kill -CONT "$e"
rc=0
for i in $(seq 1 600); do
  kill -0 "$e" 2> /dev/null || break
  sleep 0.1
done
if kill -0 "$e" 2> /dev/null; then fail "the resumed member is still running 60 s after SIGCONT"; fi
wait "$e" || rc=$?
[ "$rc" = 1 ] || fail "the resumed member exited $rc, not 1: $(tail -n 5 "$tmp/e.err")"
grep -qi "fenced" "$tmp/e.err" || fail "the resumed member did not say it was fenced: $(tail -n 5 "$tmp/e.err")"
stop_member "$f" f
read_out out-fence > "$tmp/fence.txt"
cmp -s "$tmp/ref.txt" "$tmp/fence.txt" ||
  fail "after fencing the output differs from the reference ($(wc -l < "$tmp/fence.txt") vs $(wc -l < "$tmp/ref.txt") lines)"
echo "kafka_scaleout: ok ($(wc -l < "$tmp/ref.txt") result lines; 3 members, one killed, a fourth joined; a paused member fenced)"
