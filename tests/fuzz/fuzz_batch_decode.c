/*
 * tests/fuzz/fuzz_batch_decode.c - libFuzzer target for the broker's record
 * batch decoder (connectors/broker/batch.c).
 *
 * The input is treated as the bytes of a segment file: a sequence of batches.
 * slb_decode_all checks each batch header, optionally the CRC, and walks every
 * record and header with bounds checks; it must return an error code for any
 * malformed input and never read outside the buffer (ASan/UBSan catch it if it
 * does). The CRC-off pass lets the fuzzer reach the record parser without
 * having to forge CRCs.
 *
 * Build: tests/fuzz/build.sh (clang -fsanitize=fuzzer,address,undefined).
 * Its corpus, tests/fuzz/corpus/batch_decode/, is replayed by
 * tests/unit/test_broker_fuzz_corpus.c in every ctest run.
 */
#include <stddef.h>
#include <stdint.h>

#include "connectors/broker/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)slb_decode_all(data, size, true);
    (void)slb_decode_all(data, size, false);
    return 0;
}
