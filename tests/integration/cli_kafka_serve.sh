#!/usr/bin/env bash
# sluice produce/consume/topic -b against sluice's own Kafka server (sluice
# broker serve, on a free port over a temporary directory): keyed lines
# produced through librdkafka (-b) land where `produce --dir` would put them
# (the same partitions, checked by consuming over the directory), consume -b
# prints exactly what consume --dir prints for the same -f, -p, -o and -c (in
# the same order within a partition),
# and topic list/describe -b name the topic and its partitions. The other
# half (groups, refused deliveries, unreachable brokers) is in
# tests/unit/test_cli_kafka.c against librdkafka's mock cluster.
set -euo pipefail
bin=$1
. "$(dirname "$0")/lib/serve.sh"
serve_init cli_kafka_serve -TERM
export SLUICE_DIR="$tmp/broker"
"$bin" topic create t --partitions 3
"$bin" topic create ref --partitions 3

serve_start
b=127.0.0.1:$port

for i in $(seq 1 200); do echo "key$((i % 23)):value$i"; done > "$tmp/lines"
"$bin" produce t -K : -b "$b" < "$tmp/lines" 2> "$tmp/err" || fail "produce -b: $(cat "$tmp/err")"
[ -s "$tmp/err" ] && fail "produce -b said: $(cat "$tmp/err")"
"$bin" produce ref -K : < "$tmp/lines"

fmt='%p %o %k %s\n'
"$bin" consume t -e -f "$fmt" > "$tmp/t.dir"
"$bin" consume ref -e -f "$fmt" > "$tmp/ref.dir"
[ "$(wc -l < "$tmp/t.dir")" -eq 200 ] || fail "consume --dir: $(wc -l < "$tmp/t.dir") lines, not 200"
cmp -s "$tmp/t.dir" "$tmp/ref.dir" || fail "produce -b placed records unlike produce --dir"

# Across partitions the interleaving may differ (sorted); within one, not.
"$bin" consume t -e -f "$fmt" -b "$b" > "$tmp/all" 2> "$tmp/err" || fail "consume -e -b: $(cat "$tmp/err")"
cmp -s <(sort "$tmp/t.dir") <(sort "$tmp/all") || fail "consume -e -b: not the records of --dir"
for args in "-e -p 0" "-e -p 1" "-e -p 2 -o -3" "-p 2 -c 7" "-p 1 -o 4 -c 2" "-e -o end"; do
  # shellcheck disable=SC2086
  "$bin" consume t $args -f "$fmt" > "$tmp/want"
  # shellcheck disable=SC2086
  "$bin" consume t $args -f "$fmt" -b "$b" > "$tmp/got" 2> "$tmp/err" ||
    fail "consume $args -b: $(cat "$tmp/err")"
  cmp -s "$tmp/want" "$tmp/got" || fail "consume $args: -b printed $(wc -l < "$tmp/got") lines unlike --dir"
done

"$bin" topic list -b "$b" > "$tmp/list" || fail "topic list -b"
grep -qx t "$tmp/list" || fail "topic list -b: $(cat "$tmp/list")"
grep -qx ref "$tmp/list" || fail "topic list -b: $(cat "$tmp/list")"
"$bin" topic describe t -b "$b" > "$tmp/desc" || fail "topic describe -b"
grep -q "^topic t: 3 partitions$" "$tmp/desc" || fail "topic describe -b: $(cat "$tmp/desc")"
[ "$(wc -l < "$tmp/desc")" -eq 5 ] || fail "topic describe -b: $(cat "$tmp/desc")"

kill "$pid"
wait "$pid" || fail "server exit status $?: $(cat "$tmp/serve.err")"
pid=
echo "cli_kafka_serve: ok"
