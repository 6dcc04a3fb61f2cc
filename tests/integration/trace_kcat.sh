#!/usr/bin/env bash
# W3C trace context through a pipeline, with kcat at both ends: records
# produced with kcat -H traceparent=... into `sluice broker serve` are read
# by a small pipeline (tests/tools/trace_pipe.c: source -> flat_map ->
# key_by shuffle into 2 instances -> rebalance -> sink), once with the
# built-in broker's topic source and sink over the server's directory and
# once with the Kafka source and sink (librdkafka) through the server, and
# come out (and a third time with the Kafka sink exactly-once, whose records
# wait staged for their checkpoint's transaction), read with kcat -C -f '%h',
# with a traceparent of the same trace id and
# flags and a new parent span id; records without the header come out
# without one; each kind of malformed header (too long, too short,
# uppercase, version ff, zero trace id, zero span id, bad separators, a
# non-hex digit, empty) is ignored and counted by the pipeline, and nothing
# crashes. kcat must be installed (scripts/deps.sh): without it this test
# fails, it never skips.
set -euo pipefail
bin=$1
build=$3
. "$(dirname "$0")/lib/serve.sh"
serve_init trace_kcat
command -v kcat > /dev/null || fail "kcat is not installed (scripts/deps.sh installs it)"
pipe="$build/tests/trace_pipe"
[ -x "$pipe" ] || fail "no $pipe (built with the tests)"
export SLUICE_DIR="$tmp/broker"
"$bin" topic create in --partitions 2
"$bin" topic create out --partitions 2
serve_start
broker=127.0.0.1:$port

tid=4bf92f3577b34da6a3ce929d0e0e4736
span=00f067aa0ba902b7
# name|header value ("-": no header); valid ones first
kinds=(
  "sampled|00-$tid-$span-01"
  "unsampled|00-$tid-$span-00"
  "none|-"
  "long|00-$tid-$span-01-"
  "short|00-$tid-$span-1"
  "upper|00-4BF92F3577B34DA6A3CE929D0E0E4736-$span-01"
  "vff|ff-$tid-$span-01"
  "zerotrace|00-00000000000000000000000000000000-$span-01"
  "zerospan|00-$tid-0000000000000000-01"
  "separators|00_${tid}_${span}_01"
  "nothex|00-$tid-$span-0x"
  "empty|"
)
malformed=0
for k in "${kinds[@]}"; do
  name=${k%%|*}
  value=${k#*|}
  for i in 1 2 3; do echo "$name-$i"; done > "$tmp/msgs"
  if [ "$value" = "-" ]; then
    kcat -b "$broker" -P -t in < "$tmp/msgs" 2> "$tmp/p.err" || fail "kcat -P ($name): $(cat "$tmp/p.err")"
  else
    kcat -b "$broker" -P -t in -H "traceparent=$value" < "$tmp/msgs" 2> "$tmp/p.err" ||
      fail "kcat -P ($name): $(cat "$tmp/p.err")"
    case $name in sampled | unsampled) ;; *) malformed=$((malformed + 3)) ;; esac
  fi
done
n_in=$((${#kinds[@]} * 3))

# kcat's -H really made the headers (read back through the server).
kcat -b "$broker" -C -t in -e -q -f '%s|%h\n' > "$tmp/in.out" 2> "$tmp/c.err" ||
  fail "kcat -C in: $(cat "$tmp/c.err")"
[ "$(wc -l < "$tmp/in.out")" -eq "$n_in" ] || fail "kcat read $(wc -l < "$tmp/in.out") records of in, not $n_in"
grep -q "^sampled-1|traceparent=00-$tid-$span-01$" "$tmp/in.out" ||
  fail "kcat -H made no traceparent header: $(head -3 "$tmp/in.out")"

# check_out TOPIC: what kcat reads of TOPIC after the pipeline wrote it
check_out() {
  local topic=$1 value headers name flags s
  kcat -b "$broker" -C -t "$topic" -e -q -f '%s|%h\n' > "$tmp/out.out" 2> "$tmp/c.err" ||
    fail "kcat -C $topic: $(cat "$tmp/c.err")"
  [ "$(wc -l < "$tmp/out.out")" -eq "$n_in" ] ||
    fail "kcat read $(wc -l < "$tmp/out.out") records of $topic, not $n_in: $(cat "$tmp/out.out")"
  spans=()
  while IFS='|' read -r value headers; do
    name=${value%-*}
    case $name in
    sampled | unsampled)
      flags=01
      [ "$name" = unsampled ] && flags=00
      [[ $headers =~ ^traceparent=00-$tid-([0-9a-f]{16})-$flags$ ]] ||
        fail "$topic: $value came out with '$headers', expected traceparent=00-$tid-<new span>-$flags"
      s=${BASH_REMATCH[1]}
      [ "$s" != "$span" ] || fail "$topic: $value: the parent span id is the producer's, not a new one"
      [ "$s" != 0000000000000000 ] || fail "$topic: $value: a zero span id"
      spans+=("$s")
      ;;
    *)
      [[ $headers != *traceparent* ]] ||
        fail "$topic: $value came out with '$headers', expected no traceparent"
      ;;
    esac
  done < "$tmp/out.out"
  [ "${#spans[@]}" -eq 6 ] || fail "$topic: ${#spans[@]} records kept their trace, expected 6"
  [ "$(printf '%s\n' "${spans[@]}" | sort -u | wc -l)" -eq 6 ] || fail "$topic: span ids repeat: ${spans[*]}"
}

# the built-in broker's source and sink, over the server's directory
"$pipe" "$SLUICE_DIR" in out > "$tmp/pipe.out" 2> "$tmp/pipe.err" ||
  fail "the pipeline failed: $(cat "$tmp/pipe.err")"
grep -qx "malformed $malformed" "$tmp/pipe.out" ||
  fail "the pipeline counted '$(cat "$tmp/pipe.out")' malformed headers, expected $malformed"
check_out out

# the Kafka source and sink, through the server
"$bin" topic create out-kafka --partitions 2
"$pipe" --kafka "$broker" in out-kafka > "$tmp/pipe.out" 2> "$tmp/pipe.err" ||
  fail "the Kafka pipeline failed: $(cat "$tmp/pipe.err")"
grep -qx "malformed $malformed" "$tmp/pipe.out" ||
  fail "the Kafka pipeline counted '$(cat "$tmp/pipe.out")' malformed headers, expected $malformed"
check_out out-kafka

# the same, the Kafka sink exactly-once: contexts staged with the records
"$bin" topic create out-eo --partitions 2
"$pipe" --kafka-eo "$tmp/chk" "$broker" in out-eo > "$tmp/pipe.out" 2> "$tmp/pipe.err" ||
  fail "the exactly-once Kafka pipeline failed: $(cat "$tmp/pipe.err")"
check_out out-eo
kill -0 "$pid" || fail "the server died: $(cat "$tmp/serve.err")"
echo "trace_kcat: broker, Kafka and Kafka exactly-once: $n_in records each, 6 traced with new span ids, $malformed malformed headers counted"
