/*
 * connectors/broker/kcompress.c - decompression of a Kafka v2 record batch's
 * records section, for Produce (kapi_produce.c).
 *
 * A v2 batch with attributes bits 0-2 != 0 keeps its 61-byte header as is
 * and compresses only what follows it (the records, as batch.h draws them).
 * Produce decompresses that section into the server's one growable buffer
 * (server_int.h: zbuf), behind a copy of the header, and decodes the result
 * exactly as an uncompressed batch; the log stores it uncompressed, so Fetch
 * sends it uncompressed, which every client accepts. The formats:
 *
 *   gzip (1): one gzip stream (RFC 1952); further members are read too
 *     offset  size  field
 *          0     2  magic 1f 8b
 *          2     1  method 8 (deflate)
 *          3     1  flags; 4 mtime; 1 xfl; 1 os; optional fields per flags
 *          *     *  deflate data (RFC 1951)
 *        end-8   4  CRC-32 of the data (LE)
 *        end-4   4  its length mod 2^32 (LE)
 *
 *   snappy (2), raw (librdkafka's producer sends this: rdkafka_msgset_writer.c
 *   compresses with rd_kafka_snappy_compress_iov, no framing)
 *     offset  size  field
 *          0   1-5  uncompressed length, varint (LE base 128)
 *          *     *  snappy elements (literals, copies)
 *
 *   snappy (2), xerial framing (Kafka's Java clients: snappy-java's
 *   SnappyOutputStream; told apart from raw by its magic, as librdkafka does)
 *     offset  size  field
 *          0     8  magic 82 'S' 'N' 'A' 'P' 'P' 'Y' 00
 *          8     4  version (BE), 1
 *         12     4  minimum compatible version (BE), 1
 *         16     4  block length n (BE)        } repeated to the end
 *         20     n  one raw snappy block        }
 *
 *   lz4 (3): one LZ4 frame (lz4's frame format; v2 batches carry a correct
 *   header checksum, unlike Kafka's old v0/v1 message sets)
 *     offset  size  field
 *          0     4  magic 04 22 4d 18 (LE 0x184D2204)
 *          4   3-15 frame descriptor: FLG, BD, [content size 8], [dict id 4], HC
 *          *     *  blocks: 4-byte LE size (bit 31: stored), data, [checksum 4]
 *          *     4  end mark 00 00 00 00, then [content checksum 4]
 *
 *   zstd (4): one zstd frame (RFC 8878)
 *     offset  size  field
 *          0     4  magic 28 b5 2f fd (LE 0xFD2FB528)
 *          4  2-14  frame header (descriptor, window, dict id, content size)
 *          *     *  blocks: 3-byte header (last, type, size), data
 *          *     4  [content checksum]
 *
 * Invariants: output never goes beyond `max` bytes after `at` (the caller
 * passes the request size limit): a batch that expands above it (a "zip
 * bomb") is SL_ETOOBIG, found while decompressing, never after allocating
 * it; zstd's window is limited to the cap (at least 8 MB, at most 128 MB),
 * so a frame cannot make the decoder allocate much more either (a frame
 * asking for more is SL_ETOOBIG). Malformed and truncated input is
 * SL_ECORRUPT, never a read or write outside the buffers. The codecs' own
 * contexts (zlib's, LZ4F's, zstd's) are created and freed per batch, not per
 * record.
 */
#include "connectors/broker/kcompress.h"

#include <limits.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "sluice/error.h"

/* Where output goes: (*buf)[at, at + n), at most max bytes. */
typedef struct {
    uint8_t **buf;
    size_t *cap;
    size_t at, max, n;
    char *err;
    size_t errlen;
} zout;

static int zfail(zout *o, int rc, const char *fmt, ...)
{
    if (o->err && o->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->err, o->errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int toobig(zout *o)
{
    return zfail(o, SL_ETOOBIG, "decompressed batch above the limit of %zu bytes", o->max);
}

/* Make the buffer hold at least `need` bytes, doubling, but never beyond
 * at + max + 1. */
static int zgrow(zout *o, size_t need)
{
    if (need <= *o->cap) return 0;
    size_t c = *o->cap ? *o->cap : 65536;
    while (c < need) c = c > SIZE_MAX / 2 ? need : c * 2;
    size_t lim = o->at + o->max + 1; /* never beyond what the cap needs */
    if (c > lim && need <= lim) c = lim;
    void *q = realloc(*o->buf, c);
    if (!q) return zfail(o, SL_ENOMEM, "out of memory decompressing a batch");
    *o->buf = q;
    *o->cap = c;
    return 0;
}

/* Room for more output of a streaming decoder: *p and *avail > 0. The limit
 * is one byte past max, so that "exactly max" and "more" differ. */
static int zroom(zout *o, uint8_t **p, size_t *avail)
{
    size_t lim = o->at + o->max + 1, end = o->at + o->n;
    if (end >= lim) return toobig(o);
    if (end >= *o->cap) {
        size_t want = *o->cap ? *o->cap * 2 : 65536;
        if (want > lim) want = lim;
        if (want <= end) want = end + 1;
        int rc = zgrow(o, want);
        if (rc < 0) return rc;
    }
    size_t top = *o->cap < lim ? *o->cap : lim;
    *p = *o->buf + end;
    *avail = top - end;
    return 0;
}

static int un_gzip(zout *o, const uint8_t *in, size_t inlen)
{
    if (inlen > UINT_MAX) return zfail(o, SL_ECORRUPT, "gzip: input too large");
    z_stream z;
    memset(&z, 0, sizeof z);
    /* 15 + 32: a gzip or zlib header, detected */
    if (inflateInit2(&z, 15 + 32) != Z_OK) return zfail(o, SL_ENOMEM, "gzip: inflateInit2 failed");
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)inlen;
    int rc = 0;
    for (;;) {
        uint8_t *p;
        size_t avail;
        if ((rc = zroom(o, &p, &avail)) < 0) break;
        if (avail > UINT_MAX) avail = UINT_MAX;
        z.next_out = p;
        z.avail_out = (uInt)avail;
        int zr = inflate(&z, Z_NO_FLUSH);
        o->n += avail - z.avail_out;
        if (zr == Z_STREAM_END) {
            /* another gzip member follows: read it too (as gunzip does) */
            if (z.avail_in >= 2 && z.next_in[0] == 0x1f && z.next_in[1] == 0x8b) {
                if (inflateReset(&z) != Z_OK) {
                    rc = zfail(o, SL_ECORRUPT, "gzip: inflateReset failed");
                    break;
                }
                continue;
            }
            break;
        }
        if (zr == Z_MEM_ERROR) {
            rc = zfail(o, SL_ENOMEM, "gzip: out of memory");
            break;
        }
        if (zr == Z_BUF_ERROR && z.avail_in == 0) {
            rc = zfail(o, SL_ECORRUPT, "gzip: truncated stream");
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = zfail(o, SL_ECORRUPT, "gzip: %s", z.msg ? z.msg : "corrupt stream");
            break;
        }
    }
    inflateEnd(&z);
    if (rc == 0 && o->n > o->max) rc = toobig(o);
    return rc;
}

/* One raw snappy block, appended to the output. */
static int un_snappy_block(zout *o, const uint8_t *in, size_t inlen)
{
    size_t n;
    if (snappy_uncompressed_length((const char *)in, inlen, &n) != SNAPPY_OK)
        return zfail(o, SL_ECORRUPT, "snappy: bad length prefix");
    if (n > o->max - o->n) return toobig(o);
    int rc = zgrow(o, o->at + o->n + n + 1);
    if (rc < 0) return rc;
    size_t got = n;
    if (snappy_uncompress((const char *)in, inlen, (char *)*o->buf + o->at + o->n, &got) !=
            SNAPPY_OK ||
        got != n)
        return zfail(o, SL_ECORRUPT, "snappy: corrupt block");
    o->n += n;
    return 0;
}

static const uint8_t XERIAL_MAGIC[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};

static int un_snappy(zout *o, const uint8_t *in, size_t inlen)
{
    if (inlen < 16 || memcmp(in, XERIAL_MAGIC, 8) != 0) return un_snappy_block(o, in, inlen);
    size_t i = 16;
    while (i < inlen) {
        if (inlen - i < 4) return zfail(o, SL_ECORRUPT, "snappy (xerial): truncated block length");
        size_t bl =
            (size_t)in[i] << 24 | (size_t)in[i + 1] << 16 | (size_t)in[i + 2] << 8 | in[i + 3];
        i += 4;
        if (bl > inlen - i) return zfail(o, SL_ECORRUPT, "snappy (xerial): truncated block");
        int rc = un_snappy_block(o, in + i, bl);
        if (rc < 0) return rc;
        i += bl;
    }
    return 0;
}

static int un_lz4(zout *o, const uint8_t *in, size_t inlen)
{
    LZ4F_dctx *d;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
        return zfail(o, SL_ENOMEM, "lz4: cannot create a context");
    size_t left = inlen, hint = 1;
    int rc = 0;
    while (hint != 0) {
        uint8_t *p;
        size_t avail;
        if ((rc = zroom(o, &p, &avail)) < 0) break;
        size_t dst = avail, src = left;
        hint = LZ4F_decompress(d, p, &dst, in, &src, NULL);
        if (LZ4F_isError(hint)) {
            rc = zfail(o, SL_ECORRUPT, "lz4: %s", LZ4F_getErrorName(hint));
            break;
        }
        in += src;
        left -= src;
        o->n += dst;
        if (hint != 0 && src == 0 && dst == 0) {
            rc = zfail(o, SL_ECORRUPT, "lz4: truncated frame");
            break;
        }
    }
    LZ4F_freeDecompressionContext(d);
    if (rc == 0 && o->n > o->max) rc = toobig(o);
    return rc;
}

static int un_zstd(zout *o, const uint8_t *in, size_t inlen)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) return zfail(o, SL_ENOMEM, "zstd: cannot create a context");
    /* the window the frame may ask for: the cap's, at least 8 MB (zstd's
     * levels 1-19 use windows of at most 8 MB when the size is unknown, so
     * a small cap does not refuse good frames), at most zstd's default
     * limit of 128 MB */
    int wl = 23;
    while (wl < 27 && ((size_t)1 << wl) < o->max) wl++;
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, wl);
    ZSTD_inBuffer ib = {in, inlen, 0};
    int rc = 0;
    for (;;) {
        uint8_t *p;
        size_t avail;
        if ((rc = zroom(o, &p, &avail)) < 0) break;
        ZSTD_outBuffer ob = {p, avail, 0};
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge) {
            rc = zfail(o, SL_ETOOBIG, "zstd: frame window above the limit of %zu bytes",
                       (size_t)1 << wl);
            break;
        }
        if (ZSTD_isError(r)) {
            rc = zfail(o, SL_ECORRUPT, "zstd: %s", ZSTD_getErrorName(r));
            break;
        }
        o->n += ob.pos;
        if (r == 0) break; /* frame done and flushed */
        if (ib.pos == ib.size && ob.pos < ob.size) {
            rc = zfail(o, SL_ECORRUPT, "zstd: truncated frame");
            break;
        }
    }
    ZSTD_freeDCtx(d);
    if (rc == 0 && o->n > o->max) rc = toobig(o);
    return rc;
}

int slb_kdecompress(int codec, const uint8_t *in, size_t inlen, uint8_t **buf, size_t *bufcap,
                    size_t at, size_t max, size_t *outlen, char *err, size_t errlen)
{
    zout o = {buf, bufcap, at, max, 0, err, errlen};
    *outlen = 0;
    if (err && errlen) err[0] = '\0';
    if (!in || inlen == 0) return zfail(&o, SL_ECORRUPT, "empty compressed records");
    int rc;
    switch (codec) {
    case SLB_KZ_GZIP: rc = un_gzip(&o, in, inlen); break;
    case SLB_KZ_SNAPPY: rc = un_snappy(&o, in, inlen); break;
    case SLB_KZ_LZ4: rc = un_lz4(&o, in, inlen); break;
    case SLB_KZ_ZSTD: rc = un_zstd(&o, in, inlen); break;
    default: return zfail(&o, SL_ENOTSUP, "unknown compression codec %d", codec);
    }
    if (rc == 0) *outlen = o.n;
    return rc;
}
