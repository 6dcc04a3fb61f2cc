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
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2> /dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "cli_kafka_serve: $*" >&2
  exit 1
}
export SLUICE_DIR="$tmp/broker"
"$bin" topic create t --partitions 3
"$bin" topic create ref --partitions 3

"$bin" broker serve --listen 127.0.0.1:0 2> "$tmp/serve.err" &
pid=$!
port=
for _ in $(seq 1 600); do # readiness: the start line names the port
  port=$(sed -n 's/.* on port \([0-9][0-9]*\)$/\1/p' "$tmp/serve.err")
  [ -n "$port" ] && break
  kill -0 "$pid" 2> /dev/null || fail "server exited: $(cat "$tmp/serve.err")"
  sleep 0.05
done
[ -n "$port" ] || fail "no start line: $(cat "$tmp/serve.err")"
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
