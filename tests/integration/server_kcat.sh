#!/usr/bin/env bash
# sluice broker serve speaks Kafka to kcat (librdkafka): over a temporary
# broker directory with a 3-partition topic, kcat -L lists it (node 0 leads
# every partition); 300 keyed lines produced with kcat -P and the murmur2
# partitioner come back through kcat -C -e, each key in the partition Kafka's
# murmur2 gives it (computed here in Python, independently of sluice, and
# the same as sluice produce's choice, sl_partition_for_key), offsets
# contiguous from 0 in each partition, order kept; sluice consume over the
# directory shows exactly the same records. A non-loopback --listen is a
# one-line error; SIGTERM stops the server cleanly. kcat must be installed
# (scripts/deps.sh): without it this test fails, it never skips.
set -euo pipefail
bin=$1
. "$(dirname "$0")/lib/serve.sh"
serve_init server_kcat
command -v kcat > /dev/null || fail "kcat is not installed (scripts/deps.sh installs it)"
command -v python3 > /dev/null || fail "python3 is not installed"
export SLUICE_DIR="$tmp/broker"
"$bin" topic create t --partitions 3
"$bin" topic create ref --partitions 3

# Refusals: a non-loopback address, a malformed one; one line each.
for a in 0.0.0.0:9092 10.1.2.3:9092 127.0.0.1 127.0.0.1:99999; do
  if "$bin" broker serve --listen "$a" 2> "$tmp/refuse"; then fail "--listen $a was accepted"; fi
  [ "$(wc -l < "$tmp/refuse")" -eq 1 ] || fail "--listen $a: not one line: $(cat "$tmp/refuse")"
done
grep -q "not a loopback address" "$tmp/refuse" && fail "wrong message for a bad port"
"$bin" broker serve --listen 10.1.2.3:9092 2> "$tmp/refuse" || true
grep -q "not a loopback address" "$tmp/refuse" || fail "no loopback message: $(cat "$tmp/refuse")"

serve_start
broker=127.0.0.1:$port

kcat -b "$broker" -L > "$tmp/meta" 2>&1 || fail "kcat -L failed: $(cat "$tmp/meta")"
grep -q 'topic "t" with 3 partitions' "$tmp/meta" || fail "kcat -L: $(cat "$tmp/meta")"
grep -q "broker 0 at 127.0.0.1:$port" "$tmp/meta" || fail "kcat -L: $(cat "$tmp/meta")"
for p in 0 1 2; do
  grep -q "partition $p, leader 0, replicas: 0, isrs: 0" "$tmp/meta" ||
    fail "kcat -L partition $p: $(cat "$tmp/meta")"
done

for i in $(seq 1 300); do echo "key$((i % 37))-$i:value$i"; done > "$tmp/lines"
kcat -b "$broker" -P -t t -K: -X partitioner=murmur2_random < "$tmp/lines" 2> "$tmp/p.err" ||
  fail "kcat -P failed: $(cat "$tmp/p.err")"
kcat -b "$broker" -C -t t -e -q -f '%p %o %k %s\n' > "$tmp/kcat.out" 2> "$tmp/c.err" ||
  fail "kcat -C failed: $(cat "$tmp/c.err")"
[ "$(wc -l < "$tmp/kcat.out")" -eq 300 ] || fail "kcat -C read $(wc -l < "$tmp/kcat.out") records, not 300"

# sluice's own choice of partition for the same keys (sl_partition_for_key).
"$bin" produce ref -K: < "$tmp/lines"
"$bin" consume ref -e -f '%p %k\n' > "$tmp/ref.out"

python3 - "$tmp/kcat.out" "$tmp/lines" "$tmp/ref.out" << 'PY' || fail "records check failed"
import sys
def murmur2(data):
    m, r = 0x5bd1e995, 24
    h = (0x9747b28c ^ len(data)) & 0xffffffff
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], 'little')
        k = (k * m) & 0xffffffff
        k ^= k >> r
        k = (k * m) & 0xffffffff
        h = (h * m) & 0xffffffff
        h ^= k
    rest = data[4 * n4:]
    if len(rest) >= 3: h ^= rest[2] << 16
    if len(rest) >= 2: h ^= rest[1] << 8
    if len(rest) >= 1:
        h ^= rest[0]
        h = (h * m) & 0xffffffff
    h ^= h >> 13
    h = (h * m) & 0xffffffff
    h ^= h >> 15
    return h
out = [l.split(' ') for l in open(sys.argv[1]).read().splitlines()]
sent = [l.split(':', 1) for l in open(sys.argv[2]).read().splitlines()]
ref = dict(reversed(l.split(' ')) for l in open(sys.argv[3]).read().splitlines())
assert len(out) == 300, len(out)
assert sorted((k, v) for _, _, k, v in out) == sorted((k, v) for k, v in sent), "records differ"
order = {v: i for i, (k, v) in enumerate(sent)}
for p in range(3):
    recs = [(int(o), v, k) for pp, o, k, v in out if int(pp) == p]
    assert [o for o, _, _ in recs] == list(range(len(recs))), f"partition {p}: offsets {[o for o, _, _ in recs]}"
    idx = [order[v] for _, v, _ in recs]
    assert idx == sorted(idx), f"partition {p}: order not kept"
    for _, _, k in recs:
        want = (murmur2(k.encode()) & 0x7fffffff) % 3
        assert want == p, f"key {k} in partition {p}, murmur2 says {want}"
        assert int(ref[k]) == p, f"key {k} in partition {p}, sluice produce put it in {ref[k]}"
PY

"$bin" consume t -e -f '%p %o %k %s\n' > "$tmp/consume.out"
sort "$tmp/kcat.out" > "$tmp/a"
sort "$tmp/consume.out" > "$tmp/b"
cmp -s "$tmp/a" "$tmp/b" || fail "sluice consume differs from kcat: $(diff "$tmp/a" "$tmp/b" | head -5)"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM: $(cat "$tmp/serve.err")"
grep -q '^sluice broker serve: stopped$' "$tmp/serve.err" || fail "no stop line: $(cat "$tmp/serve.err")"
[ "$(wc -l < "$tmp/serve.err")" -eq 2 ] || fail "stderr is not two lines: $(cat "$tmp/serve.err")"
echo "server_kcat: ok (port $port)"
