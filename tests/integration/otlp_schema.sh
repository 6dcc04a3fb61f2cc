#!/usr/bin/env bash
# OTLP/JSON as sluice writes it, checked by an independent decoder:
# protobufjs with the OpenTelemetry proto files (tests/integration/otlp/:
# protobufjs and @opentelemetry/otlp-grpc-exporter-base 0.34.0, whose
# build/protos/ holds opentelemetry-proto's files, Apache-2.0; versions
# locked in package-lock.json, installed with `npm ci` into
# BUILD_DIR/npm-otlp when missing; nothing is copied into the repository).
#
#  1. the span driver (tests/otlp/otlp_spans.c: every attribute type, NaN and
#     infinities, links, error status with quotes, control characters and
#     invalid UTF-8, dropped attributes and links, every kind, remote
#     parents; batches of 7) writes 150 spans; otlp_check.js checks every
#     line: strict field names and JSON types, fromObject + verify, and a
#     protobuf round trip that must give the line back;
#  2. the checker is seen to fail on lines broken on purpose (a misspelt
#     field, an int64 as a number, an enum as a name, a base64-looking id,
#     snake_case, a missing '}'), so it is not a checker that passes all;
#  3. a job (wordcount) with --trace-out writes its span (checked the same
#     way, service.name from --service-name) and prints the same results as
#     without; with --otlp-endpoint at a port where nothing listens (a
#     collector that is down), together with --trace-out, the results are
#     the same too, exit 0, the drop is told on stderr, and the file still
#     gets the span; --trace-sample 0 writes no span;
#  4. bad tracing options (a ratio outside [0, 1] or not a number, a URL
#     that is not http(s), an unwritable --trace-out, --trace-sample or
#     --service-name without an output) exit 2 with one line naming it.
# node and npm must be installed (README); the test exits 77 (skipped) only
# when the npm registry cannot be reached, and says so.
# Run by ctest as: bash otlp_schema.sh SLUICE_BIN SOURCE_DIR BUILD_DIR
set -euo pipefail
bin=$(realpath "$1")
src=$(cd "$2" && pwd)
build=$(cd "$3" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "otlp_schema: $*" >&2
  exit 1
}
command -v node > /dev/null || fail "node is not installed"
command -v npm > /dev/null || fail "npm is not installed"
driver=$build/tests/otlp_spans
[ -x "$driver" ] || fail "$driver is not built"

npmdir=$build/npm-otlp
lock=$src/tests/integration/otlp/package-lock.json
if [ ! -f "$npmdir/node_modules/protobufjs/package.json" ] || ! cmp -s "$lock" "$npmdir/package-lock.json"; then
  if ! npm ping > "$tmp/ping.log" 2>&1; then
    echo "otlp_schema: SKIPPED: the npm registry is unreachable ($(tail -1 "$tmp/ping.log"))" >&2
    exit 77
  fi
  rm -rf "$npmdir"
  mkdir -p "$npmdir"
  cp "$src/tests/integration/otlp/package.json" "$lock" "$npmdir/"
  (cd "$npmdir" && npm ci --no-audit --no-fund) > "$tmp/npm.log" 2>&1 ||
    fail "npm ci failed: $(tail -5 "$tmp/npm.log")"
fi
nm=$npmdir/node_modules
protos=$nm/@opentelemetry/otlp-grpc-exporter-base/build/protos
[ -f "$protos/opentelemetry/proto/trace/v1/trace.proto" ] || fail "no trace.proto under $protos"
check() { node "$src/tests/integration/otlp_check.js" "$nm" "$protos" "$@"; }

# 1. the driver's spans
out=$("$driver" "$tmp/spans.jsonl" 50) || fail "otlp_spans failed"
[ "$out" = "spans: 150" ] || fail "otlp_spans said '$out'"
check "$tmp/spans.jsonl" 150 > "$tmp/check.out" 2>&1 || fail "$(cat "$tmp/check.out")"
grep -q '^ok: [0-9]* lines, 150 spans$' "$tmp/check.out" || fail "checker said: $(cat "$tmp/check.out")"
[ "$(wc -l < "$tmp/spans.jsonl")" -ge 22 ] || fail "150 spans in batches of 7 fit in fewer than 22 lines"
# the 25 odd traces' 3 spans each keep the remote parent's tracestate, escaped
n=$(grep -oF '"traceState":"congo=t61rcWkgMzE,rojo=q\"u\\o"' "$tmp/spans.jsonl" | wc -l)
[ "$n" = 75 ] || fail "$n spans with the remote tracestate, 75 expected"

# 2. broken lines must fail
head -1 "$tmp/spans.jsonl" > "$tmp/one.jsonl"
check "$tmp/one.jsonl" > /dev/null 2>&1 || fail "the first line alone does not pass"
while IFS= read -r expr; do
  sed -E "$expr" "$tmp/one.jsonl" > "$tmp/bad.jsonl"
  cmp -s "$tmp/one.jsonl" "$tmp/bad.jsonl" && fail "mutation '$expr' changed nothing"
  if check "$tmp/bad.jsonl" > "$tmp/bad.out" 2>&1; then
    fail "the checker took a line broken by '$expr'"
  fi
done << 'MUTATIONS'
s/"startTimeUnixNano"/"startTimeUnixNanos"/
s/"intValue":"([0-9]+)"/"intValue":\1/
s/"kind":2/"kind":"SPAN_KIND_SERVER"/
s/"traceId":"[0-9a-f]{32}"/"traceId":"S+ZCk1d7NNpqPOkp0ODkcw=="/
s/"scopeSpans"/"scope_spans"/
s/"doubleValue":3.25/"doubleValue":"3.25x"/
s/\}$//
MUTATIONS

# 3. a job's own span, and its results unchanged
printf 'the cat the dog\nA cat\n' > "$tmp/in.txt"
"$bin" run wordcount --input "$tmp/in.txt" > "$tmp/plain.out" 2> /dev/null || fail "plain wordcount failed"
"$bin" run wordcount --input "$tmp/in.txt" --trace-out "$tmp/job.jsonl" --service-name "wc test" \
  > "$tmp/traced.out" 2> /dev/null || fail "traced wordcount failed"
cmp -s "$tmp/plain.out" "$tmp/traced.out" || fail "results differ with --trace-out"
check "$tmp/job.jsonl" 1 > "$tmp/check.out" 2>&1 || fail "job span: $(cat "$tmp/check.out")"
grep -q '"key":"service.name","value":{"stringValue":"wc test"}' "$tmp/job.jsonl" || fail "service.name is not 'wc test'"
grep -q '"name":"job wordcount"' "$tmp/job.jsonl" || fail "no span 'job wordcount'"
grep -q '"key":"sluice.records_out","value":{"intValue":"' "$tmp/job.jsonl" || fail "no records_out attribute"

# a collector that is down: a port bound, then closed
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
rc=0
"$bin" run wordcount --input "$tmp/in.txt" --otlp-endpoint "http://127.0.0.1:$port/v1/traces" \
  --trace-out "$tmp/both.jsonl" > "$tmp/down.out" 2> "$tmp/down.err" || rc=$?
[ "$rc" = 0 ] || fail "wordcount with the collector down exited $rc: $(cat "$tmp/down.err")"
cmp -s "$tmp/plain.out" "$tmp/down.out" || fail "results differ with the collector down"
grep -q 'tracing: 0 spans exported, 1 dropped' "$tmp/down.err" || fail "the drop is not told: $(cat "$tmp/down.err")"
check "$tmp/both.jsonl" 1 > "$tmp/check.out" 2>&1 || fail "span file beside a down collector: $(cat "$tmp/check.out")"

"$bin" run wordcount --input "$tmp/in.txt" --trace-out "$tmp/none.jsonl" --trace-sample 0 \
  > "$tmp/none.out" 2> /dev/null || fail "wordcount --trace-sample 0 failed"
cmp -s "$tmp/plain.out" "$tmp/none.out" || fail "results differ with --trace-sample 0"
[ ! -s "$tmp/none.jsonl" ] || fail "--trace-sample 0 wrote spans"
# usage errors: exit 2, one line on stderr naming the problem, nothing run
usage() { # WANT_IN_MESSAGE ARGS...
  local want=$1 rc=0
  shift
  "$bin" run wordcount --input "$tmp/in.txt" "$@" > "$tmp/u.out" 2> "$tmp/u.err" || rc=$?
  [ "$rc" = 2 ] || fail "$* exited $rc, not 2"
  [ "$(wc -l < "$tmp/u.err")" = 1 ] || fail "$*: not one stderr line: $(cat "$tmp/u.err")"
  grep -qF -- "$want" "$tmp/u.err" || fail "$*: '$want' not in: $(cat "$tmp/u.err")"
  [ ! -s "$tmp/u.out" ] || fail "$*: the job ran"
}
usage "--trace-sample needs a ratio from 0 to 1, not '1.5'" --trace-out "$tmp/u.jsonl" --trace-sample 1.5
usage "--trace-sample needs a ratio from 0 to 1, not 'x'" --trace-out "$tmp/u.jsonl" --trace-sample x
usage "--trace-sample needs a ratio from 0 to 1, not 'nan'" --trace-out "$tmp/u.jsonl" --trace-sample nan
usage "--trace-sample needs --trace-out or --otlp-endpoint" --trace-sample 0.5
usage "--service-name needs --trace-out or --otlp-endpoint" --service-name x
usage "--otlp-endpoint: 'localhost:4318' is not a URL" --otlp-endpoint localhost:4318
usage "must be http:// or https://" --otlp-endpoint ftp://127.0.0.1/v1/traces
usage "--trace-out: cannot open '$tmp/no/dir/x.jsonl' for appending: No such file or directory" \
  --trace-out "$tmp/no/dir/x.jsonl"
usage "--trace-out needs a file, not an empty string" --trace-out ""
echo "otlp_schema: ok"
