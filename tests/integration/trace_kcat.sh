#!/usr/bin/env bash
# W3C trace context through a pipeline, with kcat at both ends: records
# produced with kcat -H traceparent=... (and -H tracestate=...) into
# `sluice broker serve` are read by a small pipeline
# (tests/tools/trace_pipe.c: source -> flat_map -> key_by shuffle into 2
# instances -> rebalance -> sink), once with the built-in broker's topic
# source and sink over the server's directory, once with the Kafka source
# and sink (librdkafka) through the server, and a third time with the Kafka
# sink exactly-once (whose records wait staged for their checkpoint's
# transaction); read with kcat -C -f '%h', they come out with a traceparent
# of the same trace id and flags and a new parent span id, followed by a
# tracestate header of the same bytes when they had one: a two-member
# tracestate as it was, one longer than 512 bytes cut after its last
# member that ends within 512 bytes (exactly 512 here), and several
# tracestate headers joined in order with ',' into one list (W3C: they are
# one list), which is dropped and counted whole when one of them is
# malformed. Records without a
# traceparent come out without one; each kind of malformed traceparent (too
# long, too short, uppercase, version ff, zero trace id, zero span id, bad
# separators, a non-hex digit, empty) is ignored and counted by the
# pipeline ("malformed N"), once per record even with a tracestate (valid
# or not) beside it, and neither header comes out; a malformed tracestate
# (an uppercase key) beside a valid traceparent is dropped and counted, the
# traceparent kept; a tracestate without a traceparent is ignored, not
# counted; nothing crashes. kcat must be installed (scripts/deps.sh):
# without it this test fails, it never skips.
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
state=congo=t61rcWkgMzE,rojo=00f067aa0ba902b7

# A tracestate of 6 members, 720 bytes: the first 4 end at byte 512
# exactly (3 + 125 bytes each, 3 + 122 the fourth, and 3 commas), so it
# comes out as those 4; the values hold spaces and punctuation.
vals() { # N: N characters of a repeated printable pattern, no ',' or '='
  local p='t61rcWkgMzE 00f-067aa.0ba9_02b7;Q~' out=
  while [ ${#out} -lt "$1" ]; do out+=$p; done
  printf '%s' "${out:0:$1}"
}
members=("a1=$(vals 125)" "b2=$(vals 125)" "c3=$(vals 125)" "d4=$(vals 122)"
  "e5=$(vals 100)" "f6=$(vals 100)")
longstate=$(
  IFS=,
  echo "${members[*]}"
)
longcut= # the members that end within 512 bytes, computed as the rule says
for m in "${members[@]}"; do
  c=${longcut:+$longcut,}$m
  [ ${#c} -le 512 ] || break
  longcut=$c
done
[[ ${#longstate} -gt 512 && ${#longcut} -eq 512 ]] ||
  fail "the long tracestate is ${#longstate} bytes, cut to ${#longcut}: expected > 512, cut to 512"

# name|traceparent|tracestate|malformed headers counted per record ("-": no
# header); the ones with a valid traceparent first
kinds=(
  "sampled|00-$tid-$span-01|-|0"
  "unsampled|00-$tid-$span-00|-|0"
  "state|00-$tid-$span-01|$state|0"
  "badstate|00-$tid-$span-01|Congo=x|1"
  "longstate|00-$tid-$span-01|$longstate|0"
  "twostates|00-$tid-$span-01|rojo=00f067aa0ba902b7^congo=t61rcWkgMzE^ ,vendor=x|0"
  "twobad|00-$tid-$span-01|rojo=00f067aa0ba902b7^Congo=x|1"
  "none|-|-|0"
  "stateonly|-|$state|0"
  "badparent|00-$tid-$span-1|$state|1"
  "badboth|00-$tid-$span-1|Congo=x|1"
  "long|00-$tid-$span-01-|-|1"
  "short|00-$tid-$span-1|-|1"
  "upper|00-4BF92F3577B34DA6A3CE929D0E0E4736-$span-01|-|1"
  "vff|ff-$tid-$span-01|-|1"
  "zerotrace|00-00000000000000000000000000000000-$span-01|-|1"
  "zerospan|00-$tid-0000000000000000-01|-|1"
  "separators|00_${tid}_${span}_01|-|1"
  "nothex|00-$tid-$span-0x|-|1"
  "empty||-|1"
)
traced=7 # kinds that keep their trace
malformed=0
for k in "${kinds[@]}"; do
  IFS='|' read -r name tp ts bad <<< "$k"
  for i in 1 2 3; do echo "$name-$i"; done > "$tmp/msgs"
  h=()
  [ "$tp" = "-" ] || h+=(-H "traceparent=$tp")
  if [ "$ts" != "-" ]; then # ^ splits several tracestate headers
    IFS='^' read -r -a states <<< "$ts"
    for st in "${states[@]}"; do h+=(-H "tracestate=$st"); done
  fi
  kcat -b "$broker" -P -t in "${h[@]}" < "$tmp/msgs" 2> "$tmp/p.err" ||
    fail "kcat -P ($name): $(cat "$tmp/p.err")"
  malformed=$((malformed + 3 * bad))
done
n_in=$((${#kinds[@]} * 3))

# kcat's -H really made the headers, in that order (read back through the
# server).
kcat -b "$broker" -C -t in -e -q -f '%s|%h\n' > "$tmp/in.out" 2> "$tmp/c.err" ||
  fail "kcat -C in: $(cat "$tmp/c.err")"
[ "$(wc -l < "$tmp/in.out")" -eq "$n_in" ] || fail "kcat read $(wc -l < "$tmp/in.out") records of in, not $n_in"
grep -q "^sampled-1|traceparent=00-$tid-$span-01$" "$tmp/in.out" ||
  fail "kcat -H made no traceparent header: $(head -3 "$tmp/in.out")"
grep -qxF "state-1|traceparent=00-$tid-$span-01,tracestate=$state" "$tmp/in.out" ||
  fail "kcat -H made no tracestate header: $(grep '^state-' "$tmp/in.out")"
grep -qxF "longstate-1|traceparent=00-$tid-$span-01,tracestate=$longstate" "$tmp/in.out" ||
  fail "kcat -H made no long tracestate header: $(grep '^longstate-' "$tmp/in.out")"
grep -qxF "twostates-1|traceparent=00-$tid-$span-01,tracestate=rojo=00f067aa0ba902b7,tracestate=congo=t61rcWkgMzE,tracestate= ,vendor=x" "$tmp/in.out" ||
  fail "kcat -H made no three tracestate headers: $(grep '^twostates-' "$tmp/in.out")"
grep -qxF "stateonly-1|tracestate=$state" "$tmp/in.out" ||
  fail "kcat -H made no lone tracestate header: $(grep '^stateonly-' "$tmp/in.out")"

# check_out TOPIC: what kcat reads of TOPIC after the pipeline wrote it
check_out() {
  local topic=$1 value headers name flags want s
  kcat -b "$broker" -C -t "$topic" -e -q -f '%s|%h\n' > "$tmp/out.out" 2> "$tmp/c.err" ||
    fail "kcat -C $topic: $(cat "$tmp/c.err")"
  [ "$(wc -l < "$tmp/out.out")" -eq "$n_in" ] ||
    fail "kcat read $(wc -l < "$tmp/out.out") records of $topic, not $n_in: $(cat "$tmp/out.out")"
  spans=()
  while IFS='|' read -r value headers; do
    name=${value%-*}
    case $name in
    sampled | unsampled | badstate | twobad)
      flags=01
      [ "$name" = unsampled ] && flags=00
      [[ $headers =~ ^traceparent=00-$tid-([0-9a-f]{16})-$flags$ ]] ||
        fail "$topic: $value came out with '$headers', expected traceparent=00-$tid-<new span>-$flags and no tracestate"
      ;;
    state | longstate | twostates)
      want=$state
      [ "$name" = longstate ] && want=$longcut
      [ "$name" = twostates ] && want="rojo=00f067aa0ba902b7,congo=t61rcWkgMzE, ,vendor=x"
      [[ $headers =~ ^traceparent=00-$tid-([0-9a-f]{16})-01,tracestate=(.*)$ ]] ||
        fail "$topic: $value came out with '$headers', expected traceparent=00-$tid-<new span>-01,tracestate=$want"
      [ "${BASH_REMATCH[2]}" = "$want" ] ||
        fail "$topic: $value came out with tracestate '${BASH_REMATCH[2]}' (${#BASH_REMATCH[2]} bytes), expected '$want' (${#want} bytes)"
      ;;
    *)
      [ -z "$headers" ] || fail "$topic: $value came out with '$headers', expected no headers"
      continue
      ;;
    esac
    s=${BASH_REMATCH[1]}
    [ "$s" != "$span" ] || fail "$topic: $value: the parent span id is the producer's, not a new one"
    [ "$s" != 0000000000000000 ] || fail "$topic: $value: a zero span id"
    spans+=("$s")
  done < "$tmp/out.out"
  [ "${#spans[@]}" -eq $((traced * 3)) ] ||
    fail "$topic: ${#spans[@]} records kept their trace, expected $((traced * 3))"
  [ "$(printf '%s\n' "${spans[@]}" | sort -u | wc -l)" -eq $((traced * 3)) ] ||
    fail "$topic: span ids repeat: ${spans[*]}"
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
grep -qx "malformed $malformed" "$tmp/pipe.out" ||
  fail "the exactly-once Kafka pipeline counted '$(cat "$tmp/pipe.out")' malformed headers, expected $malformed"
check_out out-eo
kill -0 "$pid" || fail "the server died: $(cat "$tmp/serve.err")"
echo "trace_kcat: broker, Kafka and Kafka exactly-once: $n_in records each, $((traced * 3)) traced with new span ids, 9 with their tracestate (3 of them cut from ${#longstate} to 512 bytes, 3 joined from three headers), $malformed malformed headers counted (6 of them tracestates)"
