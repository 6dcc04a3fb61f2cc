#!/bin/sh
# tests/fuzz/build.sh - build the libFuzzer targets with clang.
#
#   tests/fuzz/build.sh [OUTDIR]          (default OUTDIR: build-fuzz)
#   OUTDIR/fuzz_batch_decode tests/fuzz/corpus/batch_decode -max_total_time=60
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
    "$here/connectors/broker/batch.c" "$here/connectors/broker/crc32c.c" \
    -lpthread -o "$out/fuzz_batch_decode"
echo "built $out/fuzz_batch_decode"
