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
# and skipped, as kafka-python itself cannot produce them). The server must
# log nothing but its start and stop lines. kcat and kafka-python must be
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
missing=""
for z in lz4 snappy zstd; do case " $kp_codecs " in *" $z "*) ;; *) missing="$missing $z" ;; esac; done

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "server exit status $status after SIGTERM: $(cat "$tmp/serve.err")"
[ "$(wc -l < "$tmp/serve.err")" -eq 2 ] || fail "stderr is not two lines: $(cat "$tmp/serve.err")"
echo "server_compression: ok (kcat: $codecs; kafka-python: $kp_codecs${missing:+; not installed for kafka-python:$missing})"
