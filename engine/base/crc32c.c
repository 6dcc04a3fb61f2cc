/*
 * engine/base/crc32c.c - CRC-32C (polynomial 0x1EDC6F41, reflected
 * 0x82F63B78) for checkpoint files.
 *
 * x86-64 with SSE4.2 uses the crc32 instruction 8 bytes at a time (one
 * chain: checkpoint files are written off the processing path, so the
 * three-chain trick of the broker's version is not needed); elsewhere a
 * byte-wise table, built once under a pthread_once flag and never changed
 * afterwards.
 *
 * Invariant: sli_crc32c(sli_crc32c(0, a, n), b, m) == sli_crc32c(0, a||b, n+m).
 */
#include "engine/base/crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[n] = c;
    }
}

static uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&table_once, table_init);
    const unsigned char *p = buf;
    crc = ~crc;
    while (len--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf,
                                                            size_t len)
{
    const unsigned char *p = buf;
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    while (len--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

uint32_t sli_crc32c(uint32_t crc, const void *buf, size_t len)
{
    if (__builtin_cpu_supports("sse4.2")) return crc32c_hw(crc, buf, len);
    return crc32c_sw(crc, buf, len);
}
#else
uint32_t sli_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return crc32c_sw(crc, buf, len);
}
#endif
