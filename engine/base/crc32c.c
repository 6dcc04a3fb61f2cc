/*
 * engine/base/crc32c.c - CRC-32C (Castagnoli polynomial 0x1EDC6F41,
 * reflected 0x82F63B78): the one checksum of sluice's files, the broker's
 * record batches (as in Kafka's record batch v2 and iSCSI), its indexes and
 * checkpoints, and the engine's checkpoints.
 *
 * Two implementations with identical results:
 *
 * - x86-64 with SSE4.2: the `crc32` instruction over 8 bytes at a time. One
 *   instruction has a latency of 3 cycles but a throughput of 1 per cycle, so
 *   a single dependent chain runs at a third of the possible speed. Long
 *   buffers are therefore cut into three adjacent blocks of LONG (then SHORT)
 *   bytes whose CRCs are computed in three independent chains in the same
 *   loop, then combined (the method of Mark Adler's crc32c.c): with the raw
 *   (non-inverted) register, crc(A || B) = shift(crc(A), |B|) ^ crc(B) where
 *   crc(B) starts from 0 and shift(c, n) is the register after n zero bytes,
 *   i.e. c * x^(8n) mod P. Since shift is linear in c, it is four table
 *   lookups (one per byte of c) in tables made for n = LONG and n = SHORT.
 *   The remainder (< 3 * SHORT bytes) runs in one chain.
 * - portable slicing-by-8 (sli_crc32c_sw), also used when the CPU lacks
 *   SSE4.2; tests compare both.
 *
 * The choice is made per call from __builtin_cpu_supports, which caches the
 * cpuid result. The tables (slicing-by-8 and the two shift tables) are built
 * on first use under a pthread_once flag; they are the only lazily written
 * static data here and never change afterwards.
 *
 * Invariant: sli_crc32c(sli_crc32c(0, a, n), b, m) == sli_crc32c(0, a||b, n+m),
 * and sli_crc32c == sli_crc32c_sw for every input.
 */
#include "engine/base/crc32c.h"

#include <pthread.h>
#include <string.h>

#define POLY  0x82F63B78u
#define LONG  8192 /* bytes per chain in the long three-chain loop */
#define SHORT 256  /* bytes per chain in the short three-chain loop */

static uint32_t table[8][256];      /* slicing-by-8 */
static uint32_t shift_long[4][256]; /* c -> c * x^(8 LONG) mod P, byte by byte */
static uint32_t shift_short[4][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* a * b mod P, polynomials in the reflected representation (bit 31 is x^0). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) p ^= b;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

static void shift_table_init(uint32_t t[4][256], size_t nbytes)
{
    uint32_t xn = 1u << 31; /* x^0 */
    for (size_t i = 0; i < 8 * nbytes; i++) xn = (xn & 1) ? (xn >> 1) ^ POLY : xn >> 1;
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 0; k < 4; k++) t[k][n] = multmodp(xn, n << (8 * k));
}

static void table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
    shift_table_init(shift_long, LONG);
    shift_table_init(shift_short, SHORT);
}

uint32_t sli_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&table_once, table_init);
    const unsigned char *p = buf;
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

static inline uint32_t shift(const uint32_t t[4][256], uint32_t c)
{
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Three chains over blocks [p, p+n), [p+n, p+2n), [p+2n, p+3n), n a multiple
 * of 8, combined into c0 with the shift table t for n bytes. */
#define CRC_3WAY(n, t)                                   \
    do {                                                 \
        uint64_t c1 = 0, c2 = 0;                         \
        const unsigned char *e = p + (n);                \
        do {                                             \
            c0 = _mm_crc32_u64(c0, load64(p));           \
            c1 = _mm_crc32_u64(c1, load64(p + (n)));     \
            c2 = _mm_crc32_u64(c2, load64(p + 2 * (n))); \
            p += 8;                                      \
        } while (p < e);                                 \
        c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c1;      \
        c0 = shift(t, (uint32_t)c0) ^ (uint32_t)c2;      \
        p += 2 * (n);                                    \
        len -= 3 * (n);                                  \
    } while (0)

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf,
                                                            size_t len)
{
    const unsigned char *p = buf;
    uint64_t c0 = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        len--;
    }
    if (len >= 3 * SHORT) {
        pthread_once(&table_once, table_init);
        while (len >= 3 * LONG) CRC_3WAY(LONG, shift_long);
        while (len >= 3 * SHORT) CRC_3WAY(SHORT, shift_short);
    }
    while (len >= 8) {
        c0 = _mm_crc32_u64(c0, load64(p));
        p += 8;
        len -= 8;
    }
    while (len--) c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return ~(uint32_t)c0;
}

uint32_t sli_crc32c(uint32_t crc, const void *buf, size_t len)
{
    if (__builtin_cpu_supports("sse4.2")) return crc32c_hw(crc, buf, len);
    return sli_crc32c_sw(crc, buf, len);
}
#else
uint32_t sli_crc32c(uint32_t crc, const void *buf, size_t len)
{
    return sli_crc32c_sw(crc, buf, len);
}
#endif
