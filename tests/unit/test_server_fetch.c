/*
 * tests/unit/test_server_fetch.c - the protocol server's data path
 * (kapi_fetch.c, kapi_admin.c, rawlog.c, server.c's output queue) over a
 * socket with hand-built frames. Each test has its own broker directory,
 * fills it through the embedded API (before the server runs: one thread per
 * broker handle) and then runs the server on a thread:
 *
 *   - fetched batches are valid Kafka v2 batches: every CRC recomputed here
 *     over the bytes received (small batches copied, large ones sendfile'd),
 *     every record decoded and compared with what was appended;
 *   - limits: the first batch whole even above the limits, partition and
 *     response limits in whole batches, a later partition gets nothing
 *     rather than a batch over the response limit; errors per partition;
 *   - a compacted topic: what Fetch returns equals what sl_log_reader reads,
 *     with batches whose records were removed (count < last_offset_delta+1);
 *   - transactions: control batches are sent, read_committed stops at the
 *     last stable offset and lists exactly the aborted transactions that
 *     overlap what was sent; read_uncommitted lists none (null);
 *   - retention deleting the segments a fetch response is still being sent
 *     from: the response arrives whole and correct;
 *   - ListOffsets by timestamp across sealed segments and the active one
 *     (v0, v1, v5), earliest and latest;
 *   - CreateTopics (configs mapped, every error) and DeleteTopics;
 *   - acks=all on a flush.messages=1 (fsync always) topic: an fdatasync
 *     that fails makes the answer an error, so it is sent after the sync;
 *   - a partition another writer holds: served by the old decoding path;
 *   - sl_log_reader (that path) opened deep in a sealed segment.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"
#include "engine/base/fsio.h"
#include "sluice/broker.h"
#include "sluice/server.h"

#define KRAW_FB_GROW
#include "kafka_raw.h"

static char dir[64];

static void start_server(void)
{
    assert_int_equal(sl_server_open(&srv, broker, "127.0.0.1:0"), 0);
    assert_int_equal(server_thread_start(), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sluice_test_sfetch_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    srv = NULL;
    return sl_broker_open(&broker, dir, 0) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    if (srv) server_thread_stop();
    sl_broker_close(broker);
    sli_fsio_fail_reset();
    return rm_dir(dir) == 0 && (!srv || run_rc == 0) ? 0 : -1;
}

static void topic(const char *name, int32_t parts, int compact, int64_t seg, int64_t ret_bytes)
{
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = parts;
    c.compact = compact;
    if (seg) c.segment_bytes = seg;
    c.retention_bytes = ret_bytes;
    assert_int_equal(sl_topic_create(broker, name, &c), 0);
}

/* One response (after its length) into a malloc'ed buffer; checks corr. */
static uint8_t *response(int fd, int32_t corr, size_t *len)
{
    uint8_t l[4];
    assert_int_equal(recv_all(fd, l, 4), 0);
    uint32_t n = (uint32_t)g32(l);
    assert_true(n >= 4 && n < (1u << 30));
    uint8_t *r = malloc(n);
    assert_non_null(r);
    assert_int_equal(recv_all(fd, r, n), 0);
    assert_int_equal(g32(r), corr);
    *len = n;
    return r;
}

/* ---- records and batches ---- */

/* The value of the record at offset o of test data: deterministic bytes. */
static size_t value_of(int64_t o, uint8_t *buf, size_t size)
{
    for (size_t i = 0; i < size; i++) buf[i] = (uint8_t)(o * 31 + (int64_t)i * 7);
    return size;
}

static void append(const char *t, int32_t part, int64_t first, int n, size_t vsize, int64_t ts0)
{
    sl_record *recs = calloc((size_t)n, sizeof *recs);
    uint8_t *vals = malloc((size_t)n * (vsize + 1));
    char(*keys)[32] = malloc((size_t)n * 32);
    assert_true(recs && vals && keys);
    sl_record_header hdr = {"h", 1, "hv", 2};
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], 32, "k%lld", (long long)(first + i));
        recs[i].key = keys[i];
        recs[i].key_len = strlen(keys[i]);
        recs[i].value = vals + (size_t)i * (vsize + 1);
        recs[i].value_len = value_of(first + i, vals + (size_t)i * (vsize + 1), vsize);
        recs[i].timestamp = ts0 + 10 * (first + i);
        if (i == 0) {
            recs[i].headers = &hdr;
            recs[i].header_count = 1;
        }
    }
    int64_t base;
    assert_int_equal(sl_log_append(broker, t, part, recs, (size_t)n, &base), 0);
    assert_int_equal(base, first);
    free(recs);
    free(vals);
    free(keys);
}

typedef struct rec {
    int64_t offset, ts;
    const uint8_t *key, *value;
    int64_t klen, vlen;
} rec;

typedef struct batch {
    int64_t base, pid;
    int32_t lod, count;
    uint16_t attrs;
    const uint8_t *p;
    int32_t len;
} batch;

static int64_t rvar(const uint8_t **p, const uint8_t *end)
{
    uint64_t z = 0;
    for (int sh = 0; *p < end && sh < 70; sh += 7) {
        uint8_t b = *(*p)++;
        z |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    }
    fail_msg("bad varint");
    return 0;
}

/* Check and split the records field (p, len) into batches (CRC recomputed,
 * lengths checked) and, if rs, their records. Returns the batch count. */
static int parse_records(const uint8_t *p, int32_t len, batch *bs, int maxb, rec *rs, int maxr,
                         int *nr)
{
    int nb = 0;
    if (nr) *nr = 0;
    const uint8_t *end = p + len;
    while (p < end) {
        assert_true(end - p >= 61);
        int32_t bl = g32(p + 8);
        assert_true(bl >= 49 && bl <= end - p - 12);
        assert_int_equal(p[16], 2);
        assert_int_equal((uint32_t)g32(p + 17), sli_crc32c(0, p + 21, (size_t)bl + 12 - 21));
        assert_true(nb < maxb);
        batch *b = &bs[nb++];
        b->base = g64(p);
        b->attrs = (uint16_t)g16(p + 21);
        b->lod = g32(p + 23);
        b->pid = g64(p + 43);
        b->count = g32(p + 57);
        b->p = p;
        b->len = bl + 12;
        assert_int_equal(b->attrs & ~0x30, 0);
        const uint8_t *q = p + 61, *bend = p + 12 + bl;
        int64_t first_ts = g64(p + 27);
        for (int32_t i = 0; i < b->count; i++) {
            int64_t rl = rvar(&q, bend);
            assert_true(rl > 0 && rl <= bend - q);
            const uint8_t *re = q + rl;
            q++; /* attributes */
            rec r;
            r.ts = first_ts + rvar(&q, re);
            r.offset = b->base + rvar(&q, re);
            r.klen = rvar(&q, re);
            r.key = q;
            q += r.klen > 0 ? r.klen : 0;
            r.vlen = rvar(&q, re);
            r.value = q;
            q += r.vlen > 0 ? r.vlen : 0;
            int64_t hc = rvar(&q, re);
            for (int64_t h = 0; h < hc; h++) {
                int64_t hk = rvar(&q, re);
                q += hk;
                int64_t hv = rvar(&q, re);
                q += hv > 0 ? hv : 0;
            }
            assert_ptr_equal(q, re);
            assert_true(r.offset <= b->base + b->lod);
            if (rs && !(b->attrs & 0x20)) {
                assert_true(*nr < maxr);
                rs[(*nr)++] = r;
            }
        }
        assert_ptr_equal(q, bend);
        p = bend;
    }
    return nb;
}

/* ---- Fetch ---- */

typedef struct fpart {
    int32_t part;
    int64_t offset;
    int32_t pmax;
    /* answer */
    int16_t err;
    int64_t hw, lso, start;
    int32_t naborted;
    int64_t aborted[16][2];
    const uint8_t *records;
    int32_t rlen;
} fpart;

/* Fetch v5 of topic t, partitions ps (answers filled in); returns the
 * response buffer (the records point into it; the caller frees it). */
static uint8_t *fetch(int fd, const char *t, fpart *ps, int n, int32_t max_bytes, int8_t iso)
{
    static int32_t corr = 1000;
    fb f = {0};
    req(&f, 1, 5, ++corr);
    b32(&f, 0xffffffff);
    b32(&f, 0); /* max_wait */
    b32(&f, 0); /* min_bytes */
    b32(&f, (uint32_t)max_bytes);
    b8(&f, (uint8_t)iso);
    b32(&f, 1);
    bstr(&f, t);
    b32(&f, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        b32(&f, (uint32_t)ps[i].part);
        b64(&f, (uint64_t)ps[i].offset);
        b64(&f, 0);
        b32(&f, (uint32_t)ps[i].pmax);
    }
    send_frame(fd, &f);
    free(f.p);
    size_t len;
    uint8_t *r = response(fd, corr, &len);
    const uint8_t *p = r + 4 + 4; /* corr, throttle */
    assert_int_equal(g32(p), 1);
    p += 4;
    assert_int_equal(g16(p), (int)strlen(t));
    p += 2 + strlen(t);
    assert_int_equal(g32(p), n);
    p += 4;
    for (int i = 0; i < n; i++) {
        assert_int_equal(g32(p), ps[i].part);
        ps[i].err = g16(p + 4);
        ps[i].hw = g64(p + 6);
        ps[i].lso = g64(p + 14);
        ps[i].start = g64(p + 22);
        ps[i].naborted = g32(p + 30);
        p += 34;
        for (int32_t j = 0; j < ps[i].naborted; j++) {
            assert_true(j < 16);
            ps[i].aborted[j][0] = g64(p);
            ps[i].aborted[j][1] = g64(p + 8);
            p += 16;
        }
        ps[i].rlen = g32(p);
        p += 4;
        ps[i].records = p;
        p += ps[i].rlen > 0 ? ps[i].rlen : 0;
    }
    assert_ptr_equal(p, r + len);
    return r;
}

static batch bs[4096];
static rec rs[20000];

static void test_fetch_batches_and_limits(void **state)
{
    (void)state;
    topic("a", 2, 0, 0, -1);
    int64_t next = 0;
    for (int i = 0; i < 20; i++, next += 10) append("a", 0, next, 10, 100, 5000); /* small */
    append("a", 0, next, 3, 60000, 5000);                                         /* large */
    next += 3;
    for (int i = 0; i < 5; i++, next += 10) append("a", 0, next, 10, 100, 5000);
    append("a", 1, 0, 10, 100, 5000);
    start_server();
    int fd = connect_srv();

    /* everything, every byte */
    fpart p = {.part = 0, .offset = 0, .pmax = 10 << 20};
    uint8_t *r = fetch(fd, "a", &p, 1, 10 << 20, 0);
    assert_int_equal(p.err, 0);
    assert_int_equal(p.hw, next);
    assert_int_equal(p.start, 0);
    assert_int_equal(p.naborted, -1); /* read_uncommitted: null */
    int nr, nb = parse_records(p.records, p.rlen, bs, 4096, rs, 20000, &nr);
    assert_int_equal(nb, 26);
    assert_int_equal(nr, next);
    uint8_t v[60000];
    for (int i = 0; i < nr; i++) {
        assert_int_equal(rs[i].offset, i);
        assert_int_equal(rs[i].ts, 5000 + 10 * i);
        size_t vl = value_of(i, v, rs[i].vlen == 60000 ? 60000 : 100);
        assert_int_equal(rs[i].vlen, (int64_t)vl);
        assert_memory_equal(rs[i].value, v, vl);
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(rs[i].klen, (int64_t)strlen(k));
        assert_memory_equal(rs[i].key, k, strlen(k));
    }
    free(r);

    /* from the middle of a batch: that batch whole */
    p = (fpart){.part = 0, .offset = 15, .pmax = 10 << 20};
    r = fetch(fd, "a", &p, 1, 10 << 20, 0);
    nb = parse_records(p.records, p.rlen, bs, 4096, NULL, 0, NULL);
    assert_int_equal(bs[0].base, 10);
    free(r);

    /* a partition limit of 1 byte: the first batch all the same, whole */
    p = (fpart){.part = 0, .offset = 200, .pmax = 1};
    r = fetch(fd, "a", &p, 1, 10 << 20, 0);
    nb = parse_records(p.records, p.rlen, bs, 4096, NULL, 0, NULL);
    assert_int_equal(nb, 1);
    assert_int_equal(bs[0].base, 200); /* the large batch (sendfile) */
    assert_true(bs[0].len > 180000);
    free(r);

    /* partition limit of two and a half small batches: two */
    p = (fpart){.part = 0, .offset = 0, .pmax = 1};
    r = fetch(fd, "a", &p, 1, 10 << 20, 0);
    parse_records(p.records, p.rlen, bs, 4096, NULL, 0, NULL);
    int32_t one = bs[0].len;
    free(r);
    p = (fpart){.part = 0, .offset = 0, .pmax = one * 5 / 2};
    r = fetch(fd, "a", &p, 1, 10 << 20, 0);
    assert_int_equal(parse_records(p.records, p.rlen, bs, 4096, NULL, 0, NULL), 2);
    free(r);

    /* response limit: the second partition gets nothing rather than a batch
     * over it; errors per partition */
    fpart ps[4] = {{.part = 0, .offset = 0, .pmax = 1 << 20},
                   {.part = 1, .offset = 0, .pmax = 1 << 20},
                   {.part = 0, .offset = next + 1, .pmax = 1 << 20},
                   {.part = 7, .offset = 0, .pmax = 1 << 20}};
    r = fetch(fd, "a", ps, 4, one * 3 / 2, 0);
    assert_int_equal(parse_records(ps[0].records, ps[0].rlen, bs, 4096, NULL, 0, NULL), 1);
    assert_int_equal(ps[1].err, 0);
    assert_int_equal(ps[1].rlen, 0);
    assert_int_equal(ps[1].hw, 10);
    assert_int_equal(ps[2].err, 1); /* OFFSET_OUT_OF_RANGE */
    assert_int_equal(ps[3].err, 3); /* UNKNOWN_TOPIC_OR_PARTITION */
    free(r);
    fpart u = {.part = 0, .offset = 0, .pmax = 100};
    r = fetch(fd, "nosuch", &u, 1, 1000, 0);
    assert_int_equal(u.err, 3);
    free(r);
    close(fd);
}

static void test_fetch_compacted(void **state)
{
    (void)state;
    topic("c", 1, 1, 1024, -1);
    sl_record recs[5];
    char keys[5][8], vals[5][16];
    for (int b = 0; b < 60; b++) {
        for (int i = 0; i < 5; i++) {
            snprintf(keys[i], sizeof keys[i], "k%d", (b * 5 + i) % 7);
            snprintf(vals[i], sizeof vals[i], "v%d", b * 5 + i);
            recs[i] = (sl_record){.key = keys[i],
                                  .key_len = strlen(keys[i]),
                                  .value = vals[i],
                                  .value_len = strlen(vals[i]),
                                  .timestamp = 1000 + b};
        }
        assert_int_equal(sl_log_append(broker, "c", 0, recs, 5, NULL), 0);
    }
    assert_int_equal(sl_topic_clean(broker, "c", 0), 0);
    /* what an in-process reader sees */
    sl_log_reader *lr;
    assert_int_equal(sl_log_reader_open(&lr, broker, "c", 0, 0), 0);
    int64_t want_off[300];
    char want_val[300][16];
    int nw = 0;
    sl_message m;
    while (sl_log_reader_next(lr, &m, 0) == 0) {
        want_off[nw] = m.offset;
        snprintf(want_val[nw], sizeof want_val[nw], "%.*s", (int)m.value_len,
                 (const char *)m.value);
        nw++;
    }
    sl_log_reader_close(lr);
    assert_true(nw < 300); /* compaction removed records */
    start_server();
    int fd = connect_srv();
    fpart p = {.part = 0, .offset = 0, .pmax = 1 << 20};
    uint8_t *r = fetch(fd, "c", &p, 1, 1 << 20, 0);
    assert_int_equal(p.err, 0);
    int nr, nb = parse_records(p.records, p.rlen, bs, 4096, rs, 20000, &nr);
    bool sparse = false;
    for (int i = 0; i < nb; i++) sparse |= bs[i].count < bs[i].lod + 1;
    assert_true(sparse); /* batches with records removed, last_offset_delta kept */
    assert_int_equal(nr, nw);
    for (int i = 0; i < nr; i++) {
        assert_int_equal(rs[i].offset, want_off[i]);
        assert_int_equal(rs[i].vlen, (int64_t)strlen(want_val[i]));
        assert_memory_equal(rs[i].value, want_val[i], strlen(want_val[i]));
    }
    free(r);
    close(fd);
}

static void txn_append(sl_txn_producer *tp, int64_t *off, int n)
{
    sl_record recs[4];
    for (int i = 0; i < n; i++)
        recs[i] = (sl_record){.key = "t", .key_len = 1, .value = "x", .value_len = 1};
    assert_int_equal(sl_txn_producer_append(tp, 0, recs, (size_t)n, off), 0);
}

static void test_fetch_read_committed(void **state)
{
    (void)state;
    topic("x", 1, 0, 0, -1);
    sl_txn_producer *a, *b;
    assert_int_equal(sl_txn_producer_open(&a, broker, "x", "ta"), 0);
    assert_int_equal(sl_txn_producer_open(&b, broker, "x", "tb"), 0);
    int64_t o, a1, b1, a2, b2;
    append("x", 0, 0, 2, 10, 1);                    /* 0-1 */
    txn_append(a, &a1, 2);                          /* 2-3, aborted */
    txn_append(b, &b1, 1);                          /* 4, committed */
    txn_append(a, &o, 1);                           /* 5 */
    assert_int_equal(sl_txn_producer_abort(a), 0);  /* marker 6 */
    assert_int_equal(sl_txn_producer_commit(b), 0); /* marker 7 */
    append("x", 0, 8, 1, 10, 1);                    /* 8 */
    txn_append(a, &a2, 1);                          /* 9, aborted later */
    assert_int_equal(sl_txn_producer_abort(a), 0);  /* marker 10 */
    txn_append(b, &b2, 2);                          /* 11-12: open, the last stable offset */
    append("x", 0, 13, 1, 10, 1);                   /* 13 */
    assert_int_equal(a1, 2);
    assert_int_equal(b1, 4);
    assert_int_equal(a2, 9);
    assert_int_equal(b2, 11);
    int64_t pa = sl_txn_producer_id(a);
    sl_txn_producer_close(a);
    sl_txn_producer_close(b);
    start_server();
    int fd = connect_srv();

    fpart p = {.part = 0, .offset = 0, .pmax = 1 << 20};
    uint8_t *r = fetch(fd, "x", &p, 1, 1 << 20, 1);
    assert_int_equal(p.err, 0);
    assert_int_equal(p.hw, 14);
    assert_int_equal(p.lso, 11);
    assert_int_equal(p.naborted, 2);
    assert_int_equal(p.aborted[0][0], pa);
    assert_int_equal(p.aborted[0][1], 2);
    assert_int_equal(p.aborted[1][0], pa);
    assert_int_equal(p.aborted[1][1], 9);
    int nr, nb = parse_records(p.records, p.rlen, bs, 4096, rs, 20000, &nr);
    int controls = 0;
    for (int i = 0; i < nb; i++) {
        assert_true(bs[i].base + bs[i].lod < 11); /* below the last stable offset */
        if (bs[i].attrs & 0x20) controls++;
        if (bs[i].attrs & 0x10) assert_true(bs[i].pid >= 0);
    }
    assert_int_equal(controls, 3);
    assert_int_equal(rs[nr - 1].offset, 9);
    free(r);

    /* from offset 7: only the transaction that overlaps it */
    p = (fpart){.part = 0, .offset = 7, .pmax = 1 << 20};
    r = fetch(fd, "x", &p, 1, 1 << 20, 1);
    assert_int_equal(p.naborted, 1);
    assert_int_equal(p.aborted[0][1], 9);
    free(r);
    /* a range that ends before the second one begins: the first only */
    p = (fpart){.part = 0, .offset = 0, .pmax = 1};
    r = fetch(fd, "x", &p, 1, 1 << 20, 1);
    assert_int_equal(parse_records(p.records, p.rlen, bs, 4096, NULL, 0, NULL), 1);
    assert_int_equal(p.naborted, 0); /* offsets 0-1 overlap no aborted transaction */
    free(r);

    /* read_uncommitted: up to the high watermark, no list */
    p = (fpart){.part = 0, .offset = 0, .pmax = 1 << 20};
    r = fetch(fd, "x", &p, 1, 1 << 20, 0);
    assert_int_equal(p.naborted, -1);
    parse_records(p.records, p.rlen, bs, 4096, rs, 20000, &nr);
    assert_int_equal(rs[nr - 1].offset, 13);
    free(r);
    close(fd);
}

/* A Kafka v2 batch of n records of vsize bytes (values from value_of at
 * first..), CRC computed. */
static void kbatch(fb *f, int64_t first, int n, size_t vsize)
{
    fb one = {0}, recs = {0};
    uint8_t *v = malloc(vsize);
    for (int i = 0; i < n; i++) {
        one.n = 0;
        b8(&one, 0);
        bvar(&one, 0);
        bvar(&one, i);
        bvar(&one, -1);
        value_of(first + i, v, vsize);
        bvar(&one, (int64_t)vsize);
        bmem(&one, v, vsize);
        bvar(&one, 0);
        bvar(&recs, (int64_t)one.n);
        bmem(&recs, one.p, one.n);
    }
    size_t at = f->n;
    b64(f, 0);
    b32(f, (uint32_t)(49 + recs.n));
    b32(f, 0);
    b8(f, 2);
    b32(f, 0); /* crc */
    b16(f, 0);
    b32(f, (uint32_t)(n - 1));
    b64(f, 7000);
    b64(f, 7000);
    b64(f, (uint64_t)-1);
    b16(f, 0xffff);
    b32(f, 0xffffffff);
    b32(f, (uint32_t)n);
    bmem(f, recs.p, recs.n);
    uint32_t crc = sli_crc32c(0, f->p + at + 21, f->n - at - 21);
    f->p[at + 17] = (uint8_t)(crc >> 24);
    f->p[at + 18] = (uint8_t)(crc >> 16);
    f->p[at + 19] = (uint8_t)(crc >> 8);
    f->p[at + 20] = (uint8_t)crc;
    free(one.p);
    free(recs.p);
    free(v);
}

/* Produce v3 of one batch (n records of vsize) to partition part of t with
 * acks; the partition's error code. */
static int16_t produce_to(int fd, const char *t, int32_t part, int64_t first, int n, size_t vsize,
                          int16_t acks)
{
    static int32_t corr = 5000;
    fb f = {0}, bt = {0};
    kbatch(&bt, first, n, vsize);
    req(&f, 0, 3, ++corr);
    bstr(&f, NULL);
    b16(&f, (uint16_t)acks);
    b32(&f, 10000);
    b32(&f, 1);
    bstr(&f, t);
    b32(&f, 1);
    b32(&f, (uint32_t)part);
    b32(&f, (uint32_t)bt.n);
    bmem(&f, bt.p, bt.n);
    send_frame(fd, &f);
    free(f.p);
    free(bt.p);
    size_t len;
    uint8_t *r = response(fd, corr, &len);
    int16_t e = g16(r + 4 + 4 + 2 + strlen(t) + 4 + 4);
    free(r);
    return e;
}

static int16_t produce(int fd, const char *t, int64_t first, int n, size_t vsize, int16_t acks)
{
    return produce_to(fd, t, 0, first, n, vsize, acks);
}

static void test_fetch_survives_retention(void **state)
{
    (void)state;
    /* 8 MiB segments (8 batches of 1 MB), 20 MiB retained: 20 batches
     * written keep everything, the roll after 32 deletes the first
     * segment */
    topic("r", 1, 0, 8 << 20, 20 << 20);
    start_server();
    int wfd = connect_srv();
    for (int i = 0; i < 20; i++) assert_int_equal(produce(wfd, "r", i * 1000, 1000, 1000, 1), 0);
    /* a reader with a small receive buffer asks for all of it and reads
     * nothing yet: most of the response waits in the server's output */
    int fd = connect_port(sl_server_port(srv), 4096);
    static int32_t corr = 9000;
    fb f = {0};
    req(&f, 1, 5, ++corr);
    b32(&f, 0xffffffff);
    b32(&f, 0);
    b32(&f, 0);
    b32(&f, 64 << 20);
    b8(&f, 0);
    b32(&f, 1);
    bstr(&f, "r");
    b32(&f, 1);
    b32(&f, 0);
    b64(&f, 0);
    b64(&f, 0);
    b32(&f, 64 << 20);
    send_frame(fd, &f);
    free(f.p);
    /* the next request on the writing connection is answered after the
     * fetch was: retention then deletes the first segment */
    for (int i = 20; i < 34; i++) assert_int_equal(produce(wfd, "r", i * 1000, 1000, 1000, 1), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/r/0/%020d.log", dir, 0);
    struct stat st;
    assert_int_equal(stat(path, &st), -1); /* deleted by retention */
    size_t len;
    uint8_t *r = response(fd, corr, &len);
    const uint8_t *p = r + 4 + 4 + 4 + 2 + 1 + 4;
    assert_int_equal(g16(p + 4), 0);
    int32_t rlen = g32(p + 34);
    static rec many[40000];
    int nr;
    parse_records(p + 38, rlen, bs, 4096, many, 40000, &nr);
    assert_true(nr >= 20000); /* (the fetch may have come after an append or two) */
    uint8_t v[1000];
    for (int i = 0; i < nr; i++) {
        assert_int_equal(many[i].offset, i);
        value_of(i, v, 1000);
        assert_int_equal(many[i].vlen, 1000);
        assert_memory_equal(many[i].value, v, 1000);
    }
    free(r);
    close(fd);
    close(wfd);
}

/* ---- ListOffsets ---- */

/* ListOffsets at version ver of x/0 for timestamp ts: the offset, and the
 * timestamp in *fts (v1+). */
static int64_t list_offset(int fd, int16_t ver, int64_t ts, int64_t *fts)
{
    static int32_t corr = 3000;
    fb f = {0};
    req(&f, 2, ver, ++corr);
    b32(&f, 0xffffffff);
    if (ver >= 2) b8(&f, 0);
    b32(&f, 1);
    bstr(&f, "ts");
    b32(&f, 1);
    b32(&f, 0);
    if (ver >= 4) b32(&f, 0xffffffff);
    b64(&f, (uint64_t)ts);
    if (ver == 0) b32(&f, 1);
    send_frame(fd, &f);
    free(f.p);
    size_t len;
    uint8_t *r = response(fd, corr, &len);
    const uint8_t *p = r + 4 + (ver >= 2 ? 4 : 0) + 4 + 2 + 2 + 4;
    assert_int_equal(g32(p), 0);
    assert_int_equal(g16(p + 4), 0);
    int64_t off;
    if (ver == 0) {
        int32_t n = g32(p + 6);
        off = n == 0 ? -1 : g64(p + 10);
        *fts = -1;
    } else {
        *fts = g64(p + 6);
        off = g64(p + 14);
    }
    free(r);
    return off;
}

static void test_list_offsets_by_time(void **state)
{
    (void)state;
    topic("ts", 1, 0, 1024, -1);
    for (int i = 0; i < 100; i++) append("ts", 0, i * 3, 3, 50, 100000); /* ts 100000+10*o */
    start_server();
    int fd = connect_srv();
    char path[256];
    snprintf(path, sizeof path, "%s/ts/0/%020d.log", dir, 0);
    int64_t fts;
    for (int16_t ver = 0; ver <= 5; ver += 1) {
        assert_int_equal(list_offset(fd, ver, -2, &fts), 0);
        assert_int_equal(list_offset(fd, ver, -1, &fts), 300);
        const int64_t q[][2] = {{0, 0},        {100000, 0},   {100001, 1},   {100025, 3},
                                {101500, 150}, {102985, 299}, {102990, 299}, {102991, -1}};
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
            int64_t off = list_offset(fd, ver, q[i][0], &fts);
            assert_int_equal(off, q[i][1]);
            if (ver >= 1) assert_int_equal(fts, q[i][1] < 0 ? -1 : 100000 + 10 * q[i][1]);
        }
    }
    close(fd);
}

/* ---- CreateTopics, DeleteTopics ---- */

typedef struct cfg {
    const char *name, *value;
} cfg;

/* CreateTopics at ver of one topic; the error code (message in msg). */
static int16_t create(int fd, int16_t ver, const char *t, int32_t np, int16_t rf,
                      const int32_t *assign, int na, const cfg *cs, int nc, bool validate,
                      char *msg)
{
    static int32_t corr = 7000;
    fb f = {0};
    req(&f, 19, ver, ++corr);
    b32(&f, 1);
    bstr(&f, t);
    b32(&f, (uint32_t)np);
    b16(&f, (uint16_t)rf);
    b32(&f, (uint32_t)na);
    for (int i = 0; i < na; i++) {
        b32(&f, (uint32_t)i);
        b32(&f, 1);
        b32(&f, (uint32_t)assign[i]);
    }
    b32(&f, (uint32_t)nc);
    for (int i = 0; i < nc; i++) {
        bstr(&f, cs[i].name);
        bstr(&f, cs[i].value);
    }
    b32(&f, 1000);
    if (ver >= 1) b8(&f, validate);
    send_frame(fd, &f);
    free(f.p);
    size_t len;
    uint8_t *r = response(fd, corr, &len);
    const uint8_t *p = r + 4 + (ver >= 2 ? 4 : 0);
    assert_int_equal(g32(p), 1);
    p += 4 + 2 + strlen(t);
    int16_t e = g16(p);
    msg[0] = 0;
    if (ver >= 1) {
        int16_t ml = g16(p + 2);
        assert_true(e ? ml > 0 : ml == -1);
        if (ml > 0) snprintf(msg, 256, "%.*s", ml, (const char *)p + 4);
    }
    free(r);
    return e;
}

static int16_t delete_topic(int fd, int16_t ver, const char *t)
{
    static int32_t corr = 8000;
    fb f = {0};
    req(&f, 20, ver, ++corr);
    b32(&f, 1);
    bstr(&f, t);
    b32(&f, 1000);
    send_frame(fd, &f);
    free(f.p);
    size_t len;
    uint8_t *r = response(fd, corr, &len);
    const uint8_t *p = r + 4 + (ver >= 1 ? 4 : 0);
    assert_int_equal(g32(p), 1);
    int16_t e = g16(p + 4 + 2 + strlen(t));
    free(r);
    return e;
}

static void test_create_delete_topics(void **state)
{
    (void)state;
    start_server();
    int fd = connect_srv();
    char msg[256];
    const cfg good[] = {{"retention.ms", "60000"},    {"retention.bytes", "1000000"},
                        {"segment.bytes", "2048"},    {"cleanup.policy", "compact"},
                        {"flush.messages", "1"},      {"delete.retention.ms", "5"},
                        {"max.message.bytes", "4096"}};
    assert_int_equal(create(fd, 4, "m", 3, -1, NULL, 0, good, 7, false, msg), 0);
    assert_int_equal(create(fd, 0, "v0", 1, 1, NULL, 0, NULL, 0, false, msg), 0);
    const cfg interval[] = {{"flush.ms", "500"}, {"retention.ms", NULL}};
    assert_int_equal(create(fd, 2, "iv", -1, 1, NULL, 0, interval, 2, false, msg), 0);
    const int32_t a0[] = {0, 0};
    assert_int_equal(create(fd, 3, "as", -1, -1, a0, 2, NULL, 0, false, msg), 0);
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, dir, 0), 0);
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(b2, "m", &ti), 0);
    assert_int_equal(ti->partition_count, 3);
    assert_int_equal(ti->conf.retention_ms, 60000);
    assert_int_equal(ti->conf.retention_bytes, 1000000);
    assert_int_equal(ti->conf.segment_bytes, 2048);
    assert_int_equal(ti->conf.compact, 1);
    assert_int_equal(ti->conf.fsync, SL_FSYNC_ALWAYS);
    assert_int_equal(ti->conf.tombstone_retention_ms, 5);
    assert_int_equal(ti->conf.max_record_bytes, 4096);
    sl_topic_info_free(ti);
    assert_int_equal(sl_topic_describe(b2, "iv", &ti), 0);
    assert_int_equal(ti->partition_count, 1);
    assert_int_equal(ti->conf.fsync, SL_FSYNC_INTERVAL);
    assert_int_equal(ti->conf.fsync_interval_ms, 500);
    sl_topic_info_free(ti);
    assert_int_equal(sl_topic_describe(b2, "as", &ti), 0);
    assert_int_equal(ti->partition_count, 2);
    sl_topic_info_free(ti);

    /* errors */
    assert_int_equal(create(fd, 4, "m", 1, 1, NULL, 0, NULL, 0, false, msg), 36);
    assert_non_null(strstr(msg, "already exists"));
    assert_int_equal(create(fd, 4, "p0", 0, 1, NULL, 0, NULL, 0, false, msg), 37);
    assert_int_equal(create(fd, 4, "rf", 1, 3, NULL, 0, NULL, 0, false, msg), 38);
    const int32_t a1[] = {1};
    assert_int_equal(create(fd, 4, "as1", -1, -1, a1, 1, NULL, 0, false, msg), 39);
    const cfg bad[][1] = {{{"bogus.config", "1"}},
                          {{"retention.ms", "soon"}},
                          {{"flush.messages", "5"}},
                          {{"cleanup.policy", "compact,delete"}},
                          {{"segment.bytes", "100"}}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(create(fd, 4, "bad", 1, 1, NULL, 0, bad[i], 1, false, msg), 40);
        assert_non_null(strstr(msg, bad[i][0].name));
    }
    assert_int_equal(create(fd, 4, "__internal", 1, 1, NULL, 0, NULL, 0, false, msg), 17);
    assert_int_equal(create(fd, 4, "a/b", 1, 1, NULL, 0, NULL, 0, false, msg), 17);
    assert_int_equal(create(fd, 1, "vo", 2, 1, NULL, 0, good, 2, true, msg), 0);
    assert_int_equal(create(fd, 1, "m", 2, 1, NULL, 0, NULL, 0, true, msg), 36);
    assert_int_equal(sl_topic_describe(b2, "vo", &ti), SL_ENOENT); /* validate_only */
    assert_int_equal(sl_topic_describe(b2, "bad", &ti), SL_ENOENT);

    /* DeleteTopics: a topic this server has written and fetched from */
    assert_int_equal(produce(fd, "v0", 0, 3, 10, 1), 0);
    fpart p = {.part = 0, .offset = 0, .pmax = 1 << 20};
    free(fetch(fd, "v0", &p, 1, 1 << 20, 0));
    assert_int_equal(delete_topic(fd, 0, "v0"), 0);
    assert_int_equal(sl_topic_describe(b2, "v0", &ti), SL_ENOENT);
    free(fetch(fd, "v0", &p, 1, 1 << 20, 0));
    assert_int_equal(p.err, 3); /* nothing cached of it */
    assert_int_equal(delete_topic(fd, 3, "v0"), 3);
    assert_int_equal(delete_topic(fd, 1, "__consumer_offsets"), 17);
    /* created again with another partition count: seen as new */
    assert_int_equal(create(fd, 4, "v0", 2, 1, NULL, 0, NULL, 0, false, msg), 0);
    fpart p1 = {.part = 1, .offset = 0, .pmax = 1 << 20};
    free(fetch(fd, "v0", &p1, 1, 1 << 20, 0));
    assert_int_equal(p1.err, 0);
    assert_int_equal(p1.hw, 0);
    sl_broker_close(b2);
    close(fd);
}

/* ---- acks ---- */

static void test_acks_all_waits_for_fsync(void **state)
{
    (void)state;
    start_server();
    int fd = connect_srv();
    char msg[256];
    const cfg always[] = {{"flush.messages", "1"}};
    assert_int_equal(create(fd, 4, "dur", 1, 1, NULL, 0, always, 1, false, msg), 0);
    assert_int_equal(create(fd, 4, "lazy", 1, 1, NULL, 0, NULL, 0, false, msg), 0);
    assert_int_equal(produce(fd, "dur", 0, 5, 10, -1), 0);
    assert_int_equal(produce(fd, "lazy", 0, 5, 10, -1), 0);
    /* every fdatasync fails from now on: fsync=never does not sync (and
     * says so: acks=all is answered after the append), fsync=always does
     * before answering, so its answer is the failure */
    sli_fsio_fail_after(SLI_FSIO_FSYNC, 0, EIO, true);
    assert_int_equal(produce(fd, "lazy", 5, 5, 10, -1), 0);
    assert_int_not_equal(produce(fd, "dur", 5, 5, 10, -1), 0);
    assert_int_not_equal(produce(fd, "dur", 5, 5, 10, 1), 0); /* acks=1 too: same append */
    sli_fsio_fail_reset();
    close(fd);
}

/* A partition whose writer lock another handle holds (another process, in
 * life) is served by the old path: decoded and sent as one Kafka batch. */
static void test_fetch_other_writer(void **state)
{
    (void)state;
    topic("o", 1, 0, 0, -1);
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, dir, 0), 0);
    sl_record r[3] = {{.key = "a", .key_len = 1, .value = "1", .value_len = 1},
                      {.key = "b", .key_len = 1, .value = "2", .value_len = 1},
                      {.key = "c", .key_len = 1, .value = "3", .value_len = 1}};
    assert_int_equal(sl_log_append(b2, "o", 0, r, 2, NULL), 0);
    assert_int_equal(sl_log_append(b2, "o", 0, r + 2, 1, NULL), 0); /* b2 keeps the lock */
    start_server();
    int fd = connect_srv();
    fpart p = {.part = 0, .offset = 1, .pmax = 1 << 20};
    uint8_t *resp = fetch(fd, "o", &p, 1, 1 << 20, 0);
    assert_int_equal(p.err, 0);
    assert_int_equal(p.hw, 3);
    int nr;
    assert_int_equal(parse_records(p.records, p.rlen, bs, 4096, rs, 20000, &nr), 1);
    assert_int_equal(nr, 2);
    assert_int_equal(rs[0].offset, 1);
    assert_memory_equal(rs[1].value, "3", 1);
    free(resp);
    close(fd);
    sl_broker_close(b2);
}

/* ---- sl_log_reader (the fallback path of Fetch) ---- */

/* Opening a reader at an offset deep in a sealed segment (the offset index
 * puts it megabytes into the file): it used to read outside its buffer
 * (fill() after open_segment with pos beyond the empty buffer). */
static void test_reader_seek_deep(void **state)
{
    (void)state;
    topic("s", 1, 0, 24 << 20, -1);
    for (int i = 0; i < 300; i++) append("s", 0, i * 100, 100, 1000, 1);
    const int64_t offs[] = {23210, 22999, 14000, 27654, 29999, 0, 50};
    uint8_t v[1000];
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        sl_log_reader *lr;
        assert_int_equal(sl_log_reader_open(&lr, broker, "s", 0, offs[i]), 0);
        sl_message m;
        assert_int_equal(sl_log_reader_next(lr, &m, 0), 0);
        assert_int_equal(m.offset, offs[i]);
        value_of(offs[i], v, 1000);
        assert_int_equal(m.value_len, 1000);
        assert_memory_equal(m.value, v, 1000);
        sl_log_reader_close(lr);
    }
}

/* A Fetch that waits (min_bytes not met) waits at most its max_wait_ms in
 * all: appends to another partition wake it to look again, but must not
 * start its wait over. Before the fix, appends every 50 ms kept a 300 ms
 * Fetch waiting for as long as they came (a consumer then starved until its
 * request timed out, 60 s). The check is the order of events, not a time:
 * the answer must come while the appends still go on (200 of them, 10 s at
 * the pace they are sent, against a wait of 300 ms). */
static void test_fetch_wait_is_bounded_under_appends(void **state)
{
    topic("wt", 2, 0, 0, -1);
    start_server();
    int fa = connect_srv(), fp = connect_srv();
    fb f = {0};
    req(&f, 1, 5, 77);
    b32(&f, 0xffffffff);
    b32(&f, 300); /* max_wait */
    b32(&f, 1);   /* min_bytes */
    b32(&f, 1 << 20);
    b8(&f, 0);
    b32(&f, 1);
    bstr(&f, "wt");
    b32(&f, 1);
    b32(&f, 0); /* partition 0: empty, so the Fetch waits */
    b64(&f, 0); /* offset */
    b64(&f, 0); /* log start */
    b32(&f, 1 << 20);
    send_frame(fa, &f);
    free(f.p);
    int answered_at = -1;
    for (int i = 0; i < 200 && answered_at < 0; i++) {
        assert_int_equal(produce_to(fp, "wt", 1, i, 1, 10, 1), 0); /* wakes the Fetch */
        struct pollfd pf = {.fd = fa, .events = POLLIN};
        if (poll(&pf, 1, 50) == 1) answered_at = i;
    }
    assert_true(answered_at >= 0);
    size_t len;
    uint8_t *r = response(fa, 77, &len);
    free(r);
    close(fa);
    close(fp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fetch_batches_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_compacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_read_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_survives_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_offsets_by_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_delete_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acks_all_waits_for_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_other_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_seek_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_wait_is_bounded_under_appends, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
