#!/usr/bin/env bash
# sluice broker serve accepts compressed record batches in Produce
# (connectors/broker/kcompress.c). For each of gzip, snappy, lz4 and zstd,
# kcat -P -z CODEC (librdkafka's compression.codec: raw snappy, an LZ4
# frame, a zstd frame, a gzip stream) writes 20,000 lines of varied lengths
# (some of 3-40 KB, so that batches span several compressed blocks) to a
# one-partition topic; kcat -C -e reads them back (Fetch sends them
# uncompressed) and they must equal the input byte for byte, offsets
# 0..19999. kafka-python (/usr/bin/python3) then produces with each
# compression_type whose Python module is installed (gzip always: zlib is in
# the standard library; lz4, snappy and zstd only with the lz4,
# python-snappy and zstandard modules: the ones missing are named on stdout
# and skipped, as kafka-python itself cannot produce them). Refusals over a
# raw socket: see below. The server must log nothing but its start and stop
# lines and the refusals' warnings. kcat and kafka-python must be
# installed (scripts/deps.sh): without them this test fails, never skips.
set -euo pipefail
bin=$1
. "$(dirname "$0")/lib/serve.sh"
serve_init server_compression
command -v kcat > /dev/null || fail "kcat is not installed (scripts/deps.sh installs it)"
/usr/bin/python3 -c 'import kafka' 2> /dev/null ||
  fail "kafka-python is not installed for /usr/bin/python3 (scripts/deps.sh installs python3-kafka)"
export SLUICE_DIR="$tmp/broker"
codecs="gzip snappy lz4 zstd"
for z in $codecs; do "$bin" topic create "k_$z" --partitions 1; done

/usr/bin/python3 - "$tmp/lines" << 'PY'
import random, sys
rnd = random.Random(7)
words = ["sluice", "kafka", "batch", "record", "offset", "zstd", "lz4", "snappy", "gzip"]
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        if i % 997 == 0:  # a few long ones: several compressed blocks
            n = rnd.randrange(3000, 40000)
            s = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))
        else:
            s = " ".join(rnd.choice(words) for _ in range(rnd.randrange(1, 12)))
        f.write(f"{i}:{s}\n")
PY
[ "$(wc -l < "$tmp/lines")" -eq 20000 ] || fail "input is not 20000 lines"

serve_start
broker=127.0.0.1:$port

for z in $codecs; do
  kcat -b "$broker" -P -t "k_$z" -z "$z" -X message.max.bytes=1000000 < "$tmp/lines" 2> "$tmp/p.err" ||
    fail "kcat -P -z $z failed: $(cat "$tmp/p.err")"
  [ ! -s "$tmp/p.err" ] || fail "kcat -P -z $z: $(cat "$tmp/p.err")"
  kcat -b "$broker" -C -t "k_$z" -e -q -f '%s\n' > "$tmp/out_$z" 2> "$tmp/c.err" ||
    fail "kcat -C ($z) failed: $(cat "$tmp/c.err")"
  cmp -s "$tmp/lines" "$tmp/out_$z" ||
    fail "$z: read back differs: $(wc -l < "$tmp/out_$z") lines; $(diff "$tmp/lines" "$tmp/out_$z" | head -3 | cut -c1-80)"
  kcat -b "$broker" -C -t "k_$z" -e -q -f '%o\n' > "$tmp/offs" 2> /dev/null
  seq 0 19999 | cmp -s - "$tmp/offs" || fail "$z: offsets are not 0..19999"
done

# kafka-python: every compression_type its modules allow here.
kp_codecs=gzip
/usr/bin/python3 -c 'import lz4' 2> /dev/null && kp_codecs="$kp_codecs lz4"
/usr/bin/python3 -c 'import snappy' 2> /dev/null && kp_codecs="$kp_codecs snappy"
/usr/bin/python3 -c 'import zstandard' 2> /dev/null && kp_codecs="$kp_codecs zstd"
for z in $kp_codecs; do
  "$bin" topic create "p_$z" --partitions 1
  /usr/bin/python3 - "$broker" "p_$z" "$z" "$tmp/lines" << 'PY' || fail "kafka-python producer ($z) failed"
import sys
from kafka import KafkaProducer
broker, topic, codec, path = sys.argv[1:]
lines = open(path, "rb").read().split(b"\n")[:5000]
p = KafkaProducer(bootstrap_servers=broker, acks="all", compression_type=codec,
                  linger_ms=50, batch_size=256 * 1024, max_request_size=1000000)
futs = [p.send(topic, value=v) for v in lines]
p.flush()
for f in futs:
    f.get(timeout=60)
p.close()
PY
  kcat -b "$broker" -C -t "p_$z" -e -q -f '%s\n' > "$tmp/kp_$z" 2> "$tmp/c.err" ||
    fail "kcat -C (kafka-python, $z) failed: $(cat "$tmp/c.err")"
  head -n 5000 "$tmp/lines" | cmp -s - "$tmp/kp_$z" || fail "kafka-python $z: read back differs"
done
# Refusals over a raw socket (Produce v3, hand-built batches): a truncated
# and a garbled gzip batch, a garbled snappy one and a "zip bomb" (150 MB of
# zeros, above the 100 MB request limit) are CORRUPT_MESSAGE, each with one
# warning line on stderr; an unknown codec (7) is UNSUPPORTED_COMPRESSION;
# the connection survives all of them and takes a good batch after them.
"$bin" topic create raw --partitions 1
/usr/bin/python3 - "$port" raw << 'PY' > "$tmp/raw.out" 2>&1 || fail "raw Produce: $(cat "$tmp/raw.out")"
import socket, struct, sys, zlib
port = int(sys.argv[1]); topic = sys.argv[2].encode()
T = []
for i in range(256):
    c = i
    for _ in range(8): c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def crc32c(b):
    c = 0xffffffff
    for x in b: c = T[(c ^ x) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff
def varint(n):
    n = (n << 1) ^ (n >> 63); out = b""
    while True:
        if n < 0x80: return out + bytes([n])
        out += bytes([(n & 0x7f) | 0x80]); n >>= 7
def batch(codec, payload, count):
    after_crc = struct.pack(">hiqqqhii", codec, count - 1, 0, 0, -1, -1, -1, count) + payload
    crc = crc32c(after_crc)
    body = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(body)) + body
def record(value):
    r = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    return varint(len(r)) + r
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(60)
def produce(corr, recs):
    body = struct.pack(">hhi", -1, 1, 30000) + struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic
    body += struct.pack(">i", 1) + struct.pack(">ii", 0, len(recs)) + recs
    req = struct.pack(">hhih", 0, 3, corr, 4) + b"test" + body
    s.sendall(struct.pack(">i", len(req)) + req)
    n = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    r = s.recv(n, socket.MSG_WAITALL)
    assert struct.unpack(">i", r[:4])[0] == corr
    tl = struct.unpack(">h", r[8:10])[0]
    p = 10 + tl + 4
    return struct.unpack(">h", r[p + 4:p + 6])[0]
def gzip(b):
    c = zlib.compressobj(6, zlib.DEFLATED, 31); return c.compress(b) + c.flush()
good = gzip(record(b"raw-gzip"))
e = produce(1, batch(1, good, 1)); assert e == 0, f"good gzip batch: error {e}"
e = produce(2, batch(1, good[:len(good) // 2], 1)); assert e == 2, f"truncated gzip: error {e}, not CORRUPT_MESSAGE (2)"
e = produce(3, batch(1, b"\x1f\x8b" + b"\xff" * 40, 1)); assert e == 2, f"garbled gzip: error {e}"
e = produce(4, batch(2, b"\xff" * 40, 1)); assert e == 2, f"garbled snappy: error {e}"
e = produce(5, batch(7, good, 1)); assert e == 76, f"codec 7: error {e}, not UNSUPPORTED_COMPRESSION (76)"
# a zip bomb: 150 MB of zeros behind one record's length, above the 100 MB limit
bomb = gzip(varint(150 << 20) + bytes(150 << 20))
e = produce(6, batch(1, bomb, 1)); assert e == 2, f"zip bomb: error {e}"
e = produce(7, batch(1, good, 1)); assert e == 0, f"good batch after the bomb: error {e}"
print("raw ok")
PY
kcat -b "$broker" -C -t raw -e -q -f '%o %s\n' > "$tmp/raw.read" 2> /dev/null
printf '0 raw-gzip\n1 raw-gzip\n' | cmp -s - "$tmp/raw.read" || fail "raw: read back $(cat "$tmp/raw.read")"
[ "$(grep -c 'Produce to raw-0: ' "$tmp/serve.err")" -eq 4 ] ||
  fail "not 4 warning lines: $(cat "$tmp/serve.err")"
grep -q 'decompressed batch above the limit of 104857600 bytes' "$tmp/serve.err" ||
  fail "no zip bomb line: $(cat "$tmp/serve.err")"

missing=""
for z in lz4 snappy zstd; do case " $kp_codecs " in *" $z "*) ;; *) missing="$missing $z" ;; esac; done

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM: $(cat "$tmp/serve.err")"
[ "$(wc -l < "$tmp/serve.err")" -eq 6 ] || fail "stderr is not start, 4 warnings, stop: $(cat "$tmp/serve.err")"
echo "server_compression: ok (kcat: $codecs; kafka-python: $kp_codecs${missing:+; not installed for kafka-python:$missing})"
