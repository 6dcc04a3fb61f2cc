#!/bin/sh
# tests/fuzz/build.sh - build the libFuzzer targets with clang.
#
#   tests/fuzz/build.sh [OUTDIR]          (default OUTDIR: build-fuzz)
#   OUTDIR/fuzz_batch_decode tests/fuzz/corpus/batch_decode -max_total_time=60
#   OUTDIR/fuzz_segment_reader WORK tests/fuzz/corpus/segment_reader -max_total_time=60
#   OUTDIR/fuzz_index_load WORK tests/fuzz/corpus/index_load -max_total_time=60
#   TMPDIR=/dev/shm OUTDIR/fuzz_server_request WORK tests/fuzz/corpus/server_request \
#       -max_total_time=600
#   OUTDIR/fuzz_crdt_decode WORK tests/fuzz/corpus/crdt_decode -max_total_time=300
#   OUTDIR/fuzz_otlp_read WORK tests/fuzz/corpus/otlp_read -max_total_time=300
#
# (WORK: an empty directory for new inputs, so that the committed corpus only
# grows by hand; its files are named by the verdict they must have, see
# tests/unit/test_broker_fuzz_*.c.) The reader and index targets link the
# broker's storage (connectors/broker/ without the connector*.c adapters) and engine/base/,
# which is all it depends on; the server target (a broker directory in
# TMPDIR, rebuilt after each input that changed it: a tmpfs makes it several
# times faster) links the protocol server too, which is in the same
# directory, and OpenSSL for the server's TLS and SCRAM. The CRDT target links
# operators/crdt/ and the sl_buf of engine/buf.c, which is all they use.
#
# Needs clang with libFuzzer (clang 14 on Debian 12 has it).
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-"$here/build-fuzz"}
cc=${CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "tests/fuzz/build.sh: $cc not found; the fuzz targets need clang" >&2
    exit 1
fi
mkdir -p "$out"
"$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$here/include" -I"$here" \
    "$here/tests/fuzz/fuzz_batch_decode.c" \
    "$here/connectors/broker/batch.c" "$here/engine/base/crc32c.c" \
    -lpthread -o "$out/fuzz_batch_decode"
echo "built $out/fuzz_batch_decode"
storage=""
for f in "$here"/connectors/broker/*.c "$here"/engine/base/*.c; do
    case "$f" in */broker/connector*.c) continue ;; esac # the adapters: above the floor
    storage="$storage $f"
done
for t in fuzz_segment_reader fuzz_index_load fuzz_server_request; do
    # shellcheck disable=SC2086 # $storage is a list of paths without spaces
    "$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -I"$here/include" -I"$here" \
        "$here/tests/fuzz/$t.c" $storage "$here/engine/error.c" \
        -lxxhash -lssl -lcrypto -lz -llz4 -lzstd -lsnappy -lm -lpthread -o "$out/$t"
    echo "built $out/$t"
done
"$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$here/include" -I"$here" \
    "$here/tests/fuzz/fuzz_otlp_read.c" "$here/connectors/otlp/otlp_read.c" \
    -o "$out/fuzz_otlp_read"
echo "built $out/fuzz_otlp_read"
"$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$here/include" -I"$here" \
    "$here/tests/fuzz/fuzz_crdt_decode.c" "$here"/operators/crdt/*.c "$here/engine/buf.c" \
    -lxxhash -lm -o "$out/fuzz_crdt_decode"
echo "built $out/fuzz_crdt_decode"
