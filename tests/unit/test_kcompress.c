/*
 * tests/unit/test_kcompress.c - slb_kdecompress (connectors/broker/kcompress.c),
 * the decompression of a compressed Kafka batch's records for Produce.
 *
 * Each codec round-trips a buffer compressed here with the codec's own
 * library (zlib's gzip, raw snappy and snappy in xerial framing, an LZ4
 * frame, a zstd frame), written after a 61-byte prefix that must stay
 * untouched, into a buffer reused from call to call. Refusals, table-driven
 * over the codecs: a truncated input, a garbled one (its first bytes
 * replaced) and empty input are SL_ECORRUPT; an input that expands above
 * the cap is SL_ETOOBIG without the buffer ever growing beyond the cap; an
 * output of exactly the cap is accepted; an unknown codec is SL_ENOTSUP.
 * Every failure leaves a message in err. Under ASan any read or write out of
 * bounds is a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "connectors/broker/kcompress.h"
#include "sluice/error.h"

#define AT 61

/* Compress in with codec (xerial: snappy in xerial framing, 2 blocks). */
static uint8_t *zcompress(int codec, bool xerial, const uint8_t *in, size_t n, size_t *outn)
{
    uint8_t *out = NULL;
    switch (codec) {
    case SLB_KZ_GZIP: {
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
        size_t cap = deflateBound(&z, (uLong)n) + 64;
        out = malloc(cap);
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        *outn = z.total_out;
        deflateEnd(&z);
        break;
    }
    case SLB_KZ_SNAPPY: {
        if (!xerial) {
            size_t cap = snappy_max_compressed_length(n);
            out = malloc(cap);
            *outn = cap;
            assert_int_equal(snappy_compress((const char *)in, n, (char *)out, outn), SNAPPY_OK);
            break;
        }
        size_t half = n / 2, cap = 16 + 8 + snappy_max_compressed_length(half) * 2 + 64;
        out = malloc(cap);
        memcpy(out, "\x82SNAPPY\0\0\0\0\1\0\0\0\1", 16);
        size_t at = 16;
        for (int b = 0; b < 2; b++) {
            const uint8_t *p = in + (b ? half : 0);
            size_t pn = b ? n - half : half, cn = cap - at - 4;
            assert_int_equal(snappy_compress((const char *)p, pn, (char *)out + at + 4, &cn),
                             SNAPPY_OK);
            out[at] = (uint8_t)(cn >> 24);
            out[at + 1] = (uint8_t)(cn >> 16);
            out[at + 2] = (uint8_t)(cn >> 8);
            out[at + 3] = (uint8_t)cn;
            at += 4 + cn;
        }
        *outn = at;
        break;
    }
    case SLB_KZ_LZ4: {
        size_t cap = LZ4F_compressFrameBound(n, NULL);
        out = malloc(cap);
        *outn = LZ4F_compressFrame(out, cap, in, n, NULL);
        assert_false(LZ4F_isError(*outn));
        break;
    }
    case SLB_KZ_ZSTD: {
        size_t cap = ZSTD_compressBound(n);
        out = malloc(cap);
        *outn = ZSTD_compress(out, cap, in, n, 3);
        assert_false(ZSTD_isError(*outn));
        break;
    }
    default: fail();
    }
    return out;
}

typedef struct {
    const char *name;
    int codec;
    bool xerial;
} zcase;

static const zcase CASES[] = {
    {"gzip", SLB_KZ_GZIP, false},           {"snappy", SLB_KZ_SNAPPY, false},
    {"snappy-xerial", SLB_KZ_SNAPPY, true}, {"lz4", SLB_KZ_LZ4, false},
    {"zstd", SLB_KZ_ZSTD, false},
};
#define NCASES (sizeof CASES / sizeof CASES[0])

/* Records-like data: repetitive text with some noise. */
static uint8_t *sample(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (i % 64 < 40) ? (uint8_t)("sluice record value "[i % 20]) : (uint8_t)(seed >> 16);
    }
    return p;
}

static void test_roundtrip(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t cap = 0;
    const size_t sizes[] = {1, 1000, 300000, 2000000};
    for (size_t c = 0; c < NCASES; c++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k], zn, outn = 0;
            uint8_t *in = sample(n, (unsigned)(c * 10 + k));
            uint8_t *z = zcompress(CASES[c].codec, CASES[c].xerial, in, n, &zn);
            if (cap >= AT) memset(buf, 0xAB, AT);
            char err[160];
            int rc = slb_kdecompress(CASES[c].codec, z, zn, &buf, &cap, AT, 100u << 20, &outn, err,
                                     sizeof err);
            if (rc != 0) fail_msg("%s, %zu bytes: %d %s", CASES[c].name, n, rc, err);
            assert_int_equal(outn, n);
            assert_memory_equal(buf + AT, in, n);
            if (k > 0)
                for (int i = 0; i < AT; i++) assert_int_equal(buf[i], 0xAB); /* prefix kept */
            free(in);
            free(z);
        }
    }
    free(buf);
}

static void test_refusals(void **state)
{
    (void)state;
    const size_t n = 1000000;
    uint8_t *in = sample(n, 3);
    for (size_t c = 0; c < NCASES; c++) {
        size_t zn, outn = 12345;
        uint8_t *z = zcompress(CASES[c].codec, CASES[c].xerial, in, n, &zn);
        char err[160];
        uint8_t *buf = NULL;
        size_t cap = 0;

        /* truncated: at several points */
        const size_t cuts[] = {1, 5, 17, zn / 2, zn - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            int rc = slb_kdecompress(CASES[c].codec, z, cuts[i], &buf, &cap, AT, 100u << 20, &outn,
                                     err, sizeof err);
            if (rc != SL_ECORRUPT)
                fail_msg("%s cut at %zu/%zu: %d (%s)", CASES[c].name, cuts[i], zn, rc, err);
            assert_true(err[0] != '\0');
            assert_int_equal(outn, 0);
        }
        /* garbled: the first bytes replaced (magic, length prefix, header) */
        uint8_t *g = malloc(zn);
        memcpy(g, z, zn);
        memset(g, 0xff, zn < 24 ? zn : 24);
        assert_int_equal(slb_kdecompress(CASES[c].codec, g, zn, &buf, &cap, AT, 100u << 20, &outn,
                                         err, sizeof err),
                         SL_ECORRUPT);
        /* garbled in the middle: an error or some output, within the cap,
         * never a crash (lz4 and snappy carry no checksum by default) */
        memcpy(g, z, zn);
        for (size_t i = zn / 3; i < zn / 3 + 32 && i < zn; i++) g[i] ^= 0x5a;
        int rc = slb_kdecompress(CASES[c].codec, g, zn, &buf, &cap, AT, n, &outn, err, sizeof err);
        assert_true(rc == 0 || rc == SL_ECORRUPT || rc == SL_ETOOBIG);
        if (rc == 0) assert_true(outn <= n);
        free(g);
        /* empty */
        assert_int_equal(slb_kdecompress(CASES[c].codec, z, 0, &buf, &cap, AT, 100u << 20, &outn,
                                         err, sizeof err),
                         SL_ECORRUPT);
        /* above the cap: refused, the buffer never grown past it */
        free(buf);
        buf = NULL;
        cap = 0;
        const size_t max = 64 * 1024;
        rc = slb_kdecompress(CASES[c].codec, z, zn, &buf, &cap, AT, max, &outn, err, sizeof err);
        if (rc != SL_ETOOBIG) fail_msg("%s above the cap: %d (%s)", CASES[c].name, rc, err);
        assert_non_null(strstr(err, "limit"));
        assert_true(cap <= AT + max + 1);
        /* exactly the cap: accepted */
        rc = slb_kdecompress(CASES[c].codec, z, zn, &buf, &cap, AT, n, &outn, err, sizeof err);
        if (rc != 0) fail_msg("%s at the cap: %d (%s)", CASES[c].name, rc, err);
        assert_int_equal(outn, n);
        assert_memory_equal(buf + AT, in, n);
        /* one byte under: refused */
        assert_int_equal(
            slb_kdecompress(CASES[c].codec, z, zn, &buf, &cap, AT, n - 1, &outn, err, sizeof err),
            SL_ETOOBIG);
        free(buf);
        free(z);
    }
    free(in);
}

/* A "zip bomb": 50 MB of zeros in a few KB, against a 1 MB cap. */
static void test_bomb(void **state)
{
    (void)state;
    const size_t n = 50u << 20;
    uint8_t *zeros = calloc(1, n);
    for (size_t c = 0; c < NCASES; c++) {
        size_t zn, outn;
        uint8_t *z = zcompress(CASES[c].codec, CASES[c].xerial, zeros, n, &zn);
        uint8_t *buf = NULL;
        size_t cap = 0;
        char err[160];
        int rc = slb_kdecompress(CASES[c].codec, z, zn, &buf, &cap, AT, 1u << 20, &outn, err,
                                 sizeof err);
        if (rc != SL_ETOOBIG) fail_msg("%s bomb: %d (%s)", CASES[c].name, rc, err);
        assert_true(cap <= AT + (1u << 20) + 1);
        free(buf);
        free(z);
    }
    free(zeros);
}

static void test_unknown_codec(void **state)
{
    (void)state;
    uint8_t *buf = NULL, x[8] = {0};
    size_t cap = 0, outn;
    char err[160];
    assert_int_equal(slb_kdecompress(5, x, sizeof x, &buf, &cap, AT, 1000, &outn, err, sizeof err),
                     SL_ENOTSUP);
    assert_int_equal(slb_kdecompress(0, x, sizeof x, &buf, &cap, AT, 1000, &outn, err, sizeof err),
                     SL_ENOTSUP);
    assert_true(err[0] != '\0');
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bomb),
        cmocka_unit_test(test_unknown_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
