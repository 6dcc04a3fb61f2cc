/*
 * connectors/broker/kcompress.h - decompression of the records section of a
 * Kafka v2 record batch (kcompress.c). Internal to the broker module.
 */
#ifndef SLUICE_BROKER_KCOMPRESS_H
#define SLUICE_BROKER_KCOMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* Kafka's codecs: attributes bits 0-2 of a v2 batch. */
enum { SLB_KZ_NONE = 0, SLB_KZ_GZIP = 1, SLB_KZ_SNAPPY = 2, SLB_KZ_LZ4 = 3, SLB_KZ_ZSTD = 4 };

/* Decompress in (inlen bytes, compressed with codec) into *buf from offset
 * `at` on, growing *buf (capacity *bufcap, realloc'ed; the caller owns it and
 * frees it) as needed; *outlen gets the decompressed length (bytes after
 * `at`). Never writes more than max bytes after `at`. Returns 0, SL_ECORRUPT
 * (malformed or truncated input), SL_ETOOBIG (output above max),
 * SL_ENOTSUP (unknown codec) or SL_ENOMEM; err (errlen bytes) gets a
 * one-line message on failure. Thread-safe: no state outside its arguments. */
int slb_kdecompress(int codec, const uint8_t *in, size_t inlen, uint8_t **buf, size_t *bufcap,
                    size_t at, size_t max, size_t *outlen, char *err, size_t errlen);

#endif
