#!/usr/bin/env bash
# tests/integration/kafka_repartition.sh - ysb --group through the group's repartition
# topic, on `sluice broker serve`. ysb counts by campaign, which its input is not
# partitioned by: the input tasks send the views, keyed by campaign, through
# "G.repartition", whose tasks count them (sluice/kafka.h, "Repartitioning").
#
#   input      ysb's JSON lines (--emit-json, 60 s of event time: six 10 s windows),
#              dealt round-robin over a 12-partition topic in two halves (with -p:
#              unkeyed lines would stick to a few partitions), then one "flush" line
#              per partition: a click (views drops it: no output of its own) far
#              beyond the data, so that the group, which never sees the end of its
#              input, closes every window
#   expected   ysb --input on the same lines (every line and flush line, one process)
#   group      three members; the first half is committed, and the windows that every
#              input partition has passed are closed and committed (watermarks cross
#              the repartition topic mid-run); one member is killed (SIGKILL), the
#              second half and the flush lines follow: the survivors commit them only by
#              taking over its tasks (input and repartition partitions) and their state;
#              then SIGTERM (exit 0 each). The committed output (read_committed) must
#              equal the expected lines, sorted.
#   reference  ysb --kafka --topic IN --out-topic OUT-REF, bounded, one process, on the
#              same topic once it is complete (its end of input closes every window):
#              the expected lines too
#
# Why the output cannot depend on timing: ysb's input never goes idle (its watermark has
# no idle_ms), so a repartition task's watermark is the minimum over every input
# partition's (sluice/kafka.h), the killed member's partitions hold it until they are
# taken over, and within a partition the lines are in event-time order: no view is
# ever late (--delay 0, the default). The flush lines close the windows that the end of
# input closes in the single process.
# No wait depends on speed: each is a bounded poll that fails naming what it waited for.
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/serve.sh"
serve_init kafka_repartition
export SLUICE_DIR="$tmp/broker"
mkdir -p "$SLUICE_DIR"
serve_start
B=127.0.0.1:$port
N=60000 # events: 60 s of event time at 1,000 per s
P=12    # input partitions
G=rep
st=10s # session timeout of the members
# A sanitizer build, with other tests beside it on 2 cores, stalls members for seconds (CI
# saw a lone kafka_scaleout.sh member take 12 s to join and then lose its session): a
# longer session there, so that only the kill ends one.
case $("$bin" --version 2>&1) in *sanitizer*) st=20s ;; esac

"$bin" topic create in --partitions $P -b "$B" > /dev/null
for t in out-ref out-g; do "$bin" topic create "$t" --partitions 4 -b "$B" > /dev/null; done

"$bin" run ysb --emit-json --events $N --rate 1000 > "$tmp/all.json"
head -n $((N / 2)) "$tmp/all.json" > "$tmp/half1.json"
tail -n +$((N / 2 + 1)) "$tmp/all.json" > "$tmp/half2.json"
for p in $(seq 0 $((P - 1))); do
  echo '{"ad_id": "0", "event_type": "click", "event_time": "1000000000"}'
done > "$tmp/flush.json"
cat "$tmp/all.json" "$tmp/flush.json" > "$tmp/input.json"
"$bin" run ysb --input "$tmp/input.json" 2> "$tmp/file.err" | sort > "$tmp/want.txt" ||
  fail "ysb --input: $(cat "$tmp/file.err")"
want=$(wc -l < "$tmp/want.txt")
[ "$want" = 600 ] || fail "ysb --input wrote $want lines, not 100 campaigns x 6 windows"
# the windows that end before every input partition's last event time in the first half
awk -F, '$2 < 20000' "$tmp/want.txt" > "$tmp/want-early.txt"

# produce FILE: its lines dealt round-robin over the partitions (line i to i % P).
produce() {
  local p
  rm -f "$tmp"/part-*
  awk -v n=$P -v d="$tmp" '{ print > (d "/part-" ((NR - 1) % n)) }' "$1"
  for p in $(seq 0 $((P - 1))); do
    [ -f "$tmp/part-$p" ] || continue
    "$bin" produce in -b "$B" -p "$p" < "$tmp/part-$p" 2> "$tmp/produce.err" ||
      fail "produce $1 into partition $p: $(cat "$tmp/produce.err")"
  done
}

# start_member NAME: a member of group G in the background; its pid in $last.
start_member() {
  "$bin" run ysb --kafka "$B" --group $G --topic in --out-topic out-g \
    --checkpoint-interval 200ms --session-timeout $st --checkpoint-dir "$tmp/work-$1" \
    2> "$tmp/$1.err" &
  last=$!
  serve_track "$last"
}

# committed: the group's committed offsets summed over the input's partitions (0 while
# `group describe` fails, as it may on a loaded machine: under pipefail its failure
# ended the script with no message; kafka_scaleout.sh's committed does the same).
committed() {
  { "$bin" group describe $G --topic in -b "$B" 2> /dev/null || true; } |
    awk '$1 == "in" && $3 != "-" { s += $3 } END { print s + 0 }'
}

# took NAME: how many partitions member NAME has taken so far (over all rebalances).
took() { grep -c "took partition" "$tmp/$1.err" || true; }

tails() { for f in "$tmp"/[abc].err; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done; }

# wait_took NAME N: until member NAME has taken N partitions in all (60 s at most).
wait_took() {
  local end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ]; do
    [ "$(took "$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  tails
  fail "member $1 took $(took "$1") partitions, not $2, within 60 s"
}

# owned NAME: the tasks member NAME runs now ("took" lines after its last "gave up").
owned() { tac "$tmp/$1.err" | sed '/gave up/q' | grep -c "took" || true; }

# wait_settled: until members a, b and c run the 2 x P tasks (input and repartition
# partitions) between them: the group is done rebalancing (60 s at most).
wait_settled() {
  local end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ]; do
    [ $(($(owned a) + $(owned b) + $(owned c))) = $((2 * P)) ] && return 0
    sleep 0.1
  done
  tails
  fail "members a, b and c run $(owned a) + $(owned b) + $(owned c) tasks, not $((2 * P)), after 60 s"
}

# wait_committed N: until the group has committed N input records (60 s at most).
wait_committed() {
  local c=0 end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ]; do
    c=$(committed)
    [ "$c" -ge "$1" ] && return 0
    sleep 0.1
  done
  tails
  fail "group $G committed $c of $1 input records within 60 s"
}

# wait_rep_consumed: until the group has committed every partition of the repartition
# topic to its end (lag 0): every repartition task has run and read what the input
# tasks wrote (60 s at most).
wait_rep_consumed() {
  local end=$((SECONDS + 60))
  while [ $SECONDS -lt $end ]; do
    "$bin" group describe $G --topic $G.repartition -b "$B" 2> /dev/null |
      grep -q "^total lag 0$" && return 0
    sleep 0.1
  done
  tails
  fail "group $G did not read its repartition topic to the end within 60 s"
}

lines() { "$bin" consume "$1" -b "$B" -e -f '%s\n'; }

# wait_lines TOPIC N SECONDS: until TOPIC holds N committed lines, or SECONDS passed;
# sets got (a consume of the topic takes about a second).
wait_lines() {
  local end=$((SECONDS + $3))
  got=0
  while [ $SECONDS -lt $end ]; do
    got=$({ lines "$1" || true; } | wc -l) # a failed read is a poll to repeat, not the end
    [ "$got" -ge "$2" ] && return 0
    sleep 0.1
  done
}

# --- what --group refuses (one line, exit 2) ------------------------------------------------
expect2() { # WHAT ARGS...
  local what=$1 rc=0
  shift
  timeout 60 "$bin" run ysb --kafka "$B" --group $G "$@" > /dev/null 2> "$tmp/e.err" || rc=$?
  [ "$rc" = 2 ] || fail "$what: exit $rc, not 2: $(cat "$tmp/e.err")"
  [ "$(wc -l < "$tmp/e.err")" = 1 ] || fail "$what: not one line: $(cat "$tmp/e.err")"
}
expect2 "--group without --out-topic" --topic in
expect2 "--group with --out" --topic in --out "$tmp/x.txt"
expect2 "--group with --sqlite" --topic in --sqlite "$tmp/x.db"
expect2 "--group with --input" --input "$tmp/all.json" --out-topic out-g
expect2 "--group with --from-checkpoint" --topic in --out-topic out-g --from-checkpoint "$tmp"
expect2 "--group with --explain" --topic in --out-topic out-g --explain

# --- the group, part 1 -------------------------------------------------------------------
produce "$tmp/half1.json"
start_member a
a=$last
start_member b
b=$last
start_member c
c=$last
for n in a b c; do wait_took $n 1; done
wait_settled
wait_committed $((N / 2))
wait_rep_consumed
# Windows [0, 10 s) and [10 s, 20 s) end before every partition's last event time of
# the first half, and no later one does: they, and only they, are committed.
early=$(wc -l < "$tmp/want-early.txt")
wait_lines out-g "$early" 60
lines out-g | sort > "$tmp/group-early.txt"
if ! cmp -s "$tmp/want-early.txt" "$tmp/group-early.txt"; then
  tails
  diff "$tmp/want-early.txt" "$tmp/group-early.txt" | head -n 20 >&2 || true
  fail "after the first half the group committed $(wc -l < "$tmp/group-early.txt") result lines, not the $early of the windows every partition passed"
fi
kill -9 "$b"
wait "$b" 2> /dev/null || true
# the tasks b ran when it died: "partition P" and "repartition partition P" after its
# last "gave up" line
tac "$tmp/b.err" | sed '/gave up/q' | sed -n 's/.*took \(.*partition [0-9]*\) (.*/\1/p' > "$tmp/b-owned"
[ -s "$tmp/b-owned" ] || fail "the killed member owned no task: $(cat "$tmp/b.err")"
la=$(wc -l < "$tmp/a.err")
lc=$(wc -l < "$tmp/c.err")

# --- part 2: the second half after the kill, then the flush lines --------------------------
produce "$tmp/half2.json"
produce "$tmp/flush.json"

# --- the reference, on the same topic, bounded: its end closes every window ----------------
"$bin" run ysb --kafka "$B" --topic in --out-topic out-ref --checkpoint-dir "$tmp/ck-ref" \
  2> "$tmp/ref.err" || fail "the reference failed: $(cat "$tmp/ref.err")"
lines out-ref | sort > "$tmp/ref.txt"
cmp -s "$tmp/want.txt" "$tmp/ref.txt" || {
  diff "$tmp/want.txt" "$tmp/ref.txt" | head -n 10 >&2 || true
  fail "ysb through Kafka, one process, differs from ysb --input on the same lines"
}

# --- the group's committed output reaches the expected line count --------------------------
wait_lines out-g "$want" 120
if [ "$got" -lt "$want" ]; then
  tails
  fail "the group committed $got of $want result lines within 120 s"
fi
for m in "a $a" "c $c"; do
  set -- $m
  kill -TERM "$2"
  rc=0
  wait "$2" || rc=$?
  [ "$rc" = 0 ] || fail "member $1 exited $rc after SIGTERM: $(tail -n 5 "$tmp/$1.err")"
done
lines out-g | sort > "$tmp/group.txt"
if ! cmp -s "$tmp/want.txt" "$tmp/group.txt"; then
  diff "$tmp/want.txt" "$tmp/group.txt" | head -n 20 >&2 || true
  fail "the group's output differs from the single process's ($(wc -l < "$tmp/group.txt") vs $want lines)"
fi
"$bin" topic list -b "$B" > "$tmp/topics.txt"
grep -q "^$G\.repartition\b" "$tmp/topics.txt" ||
  fail "no repartition topic $G.repartition: $(cat "$tmp/topics.txt")"
{ tail -n +$((la + 1)) "$tmp/a.err" && tail -n +$((lc + 1)) "$tmp/c.err"; } > "$tmp/after.err"
while read -r t; do
  grep -q "took $t (state of checkpoint" "$tmp/after.err" && taken=1 && break
done < "$tmp/b-owned"
[ -n "${taken:-}" ] ||
  fail "no survivor took over a task of the killed member ($(tr '\n' ',' < "$tmp/b-owned")) with its state"
echo "kafka_repartition: ok ($want result lines; 3 members through $G.repartition, one killed)"
