/*
 * tests/unit/test_broker.c - the built-in broker through its public API:
 * partitioner vectors, CRC-32C, batch round trip, topics, appends and reads,
 * producer, segment roll and index lookup, retention, compaction, consumer
 * groups, one writer per partition, bad input (each a clear error that
 * changes nothing) and I/O failures injected through engine/base/fsio.
 */
#include <errno.h>
#include <time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "connectors/broker/batch.h"
#include "engine/base/crc32c.h"
#include "engine/base/clock.h"
#include "engine/base/fsio.h"
#include "sluice/broker.h"
#include "tests/unit/test_broker_util.h"

typedef struct fx {
    char *dir;
    sl_broker *b;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tb_tmpdir();
    assert_non_null(f->dir);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sli_fsio_fail_reset();
    sl_broker_close(f->b);
    tb_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void make_topic(sl_broker *b, const char *name, int parts, int compact, int64_t seg_bytes)
{
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = parts;
    c.compact = compact;
    if (seg_bytes) c.segment_bytes = seg_bytes;
    int rc = sl_topic_create(b, name, &c);
    if (rc) fprintf(stderr, "create: %s\n", sl_broker_errmsg(b));
    assert_int_equal(rc, 0);
}

/* A record stamped with the time of the append. */
static sl_record rec_kv(const char *k, const char *v)
{
    sl_record r = {.timestamp = SL_TIMESTAMP_NONE};
    r.key = k;
    r.key_len = k ? strlen(k) : 0;
    r.value = v;
    r.value_len = v ? strlen(v) : 0;
    return r;
}

/* Read partition p from offset 0 to the end; returns count, fills arrays. */
static int read_all(sl_broker *b, const char *topic, int p, int64_t *offs, char (*vals)[64],
                    int max)
{
    sl_log_reader *r;
    int rc = sl_log_reader_open(&r, b, topic, p, SL_OFFSET_BEGINNING);
    if (rc) fprintf(stderr, "reader: %s\n", sl_broker_errmsg(b));
    assert_int_equal(rc, 0);
    int n = 0;
    sl_message m;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        if (n < max) {
            if (offs) offs[n] = m.offset;
            if (vals) {
                size_t l = m.value_len < 63 ? m.value_len : 63;
                if (m.value) memcpy(vals[n], m.value, l);
                vals[n][m.value ? l : 0] = '\0';
                if (!m.value) strcpy(vals[n], "<null>");
            }
        }
        n++;
    }
    if (rc != SL_EAGAIN) fprintf(stderr, "next: %s\n", sl_log_reader_errmsg(r));
    assert_int_equal(rc, SL_EAGAIN);
    sl_log_reader_close(r);
    return n;
}

/* ---- partitioner ------------------------------------------------------------ */

static void test_murmur2_kafka_vectors(void **state)
{
    (void)state;
    /* Kafka's UtilsTest.testMurmur2. */
    static const struct {
        const char *key;
        int32_t h;
    } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(sl_murmur2(v[i].key, strlen(v[i].key)), v[i].h);
    /* Partitions of 1000 as the Java DefaultPartitioner gives them (the table
     * kafka-python checks its Murmur2Partitioner against). */
    static const struct {
        const char *key;
        size_t len;
        int32_t p;
    } p[] = {
        {"", 0, 681},    {"a", 1, 524},         {"ab", 2, 434},
        {"abc", 3, 107}, {"123456789", 9, 566}, {"\x00 ", 2, 742},
    };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        assert_int_equal(sl_partition_for_key(p[i].key, p[i].len, 1000), p[i].p);
    /* toPositive, not abs: a negative hash maps through & 0x7fffffff. */
    assert_int_equal(sl_partition_for_key("21", 2, 7), (-973932308 & 0x7fffffff) % 7);
}

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(sli_crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(sli_crc32c_sw(0, "123456789", 9), 0xe3069283u);
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 9; off++)
        for (size_t len = 0; len < 200; len += 13) {
            uint32_t a = sli_crc32c(0, buf + off, len), b = sli_crc32c_sw(0, buf + off, len);
            assert_int_equal(a, b);
            /* incremental == one shot */
            assert_int_equal(
                sli_crc32c(sli_crc32c(0, buf + off, len / 2), buf + off + len / 2, len - len / 2),
                a);
        }
    /* The hardware path splits long buffers into three interleaved chains
     * (256-byte and 8 KiB blocks) and combines them: check around those
     * boundaries and at odd offsets against the byte-wise software CRC. */
    static const size_t lens[] = {255,  256,  257,   767,   768,   769,   1000,  8191,
                                  8192, 8193, 24575, 24576, 24577, 49153, 65536, 100003};
    size_t big = 100016;
    uint8_t *p = malloc(big);
    assert_non_null(p);
    for (size_t i = 0; i < big; i++) p[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
        for (size_t off = 0; off < 9; off += 3) {
            uint32_t a = sli_crc32c(0, p + off, lens[k]), b = sli_crc32c_sw(0, p + off, lens[k]);
            assert_int_equal(a, b);
            size_t cut = lens[k] / 3;
            assert_int_equal(sli_crc32c(sli_crc32c(0, p + off, cut), p + off + cut, lens[k] - cut),
                             a);
        }
    free(p);
}

/* ---- batch format ---------------------------------------------------------------- */

static void test_batch_roundtrip(void **state)
{
    (void)state;
    slb_builder b;
    slb_builder_init(&b);
    slb_builder_reset(&b, 100);
    sl_record_header hs[2] = {{"h1", 2, "v1", 2}, {"h2", 2, NULL, 0}};
    sl_record r1 = rec_kv("k", "value-1");
    r1.headers = hs;
    r1.header_count = 2;
    sl_record r2 = rec_kv(NULL, "v2");
    sl_record r3 = rec_kv("k3", NULL);
    assert_int_equal(slb_builder_add(&b, &r1, 1000, 0), 0);
    assert_int_equal(slb_builder_add(&b, &r2, 990, 1), 0);
    assert_int_equal(slb_builder_add(&b, &r3, 1010, 5), 0);
    size_t len = slb_builder_finish(&b, 7);
    slb_batch_hdr h;
    assert_int_equal(slb_batch_check(b.buf, len, &h, true), 0);
    assert_int_equal(h.base_offset, 100);
    assert_int_equal(h.record_count, 3);
    assert_int_equal(slb_next_offset(&h), 108);
    assert_int_equal(h.first_ts, 1000);
    assert_int_equal(h.max_ts, 1010);
    slb_iter it;
    slb_rec r;
    slb_iter_init(&it, b.buf, &h);
    assert_int_equal(slb_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 100);
    assert_int_equal(r.key_len, 1);
    assert_memory_equal(r.value, "value-1", 7);
    assert_int_equal(r.header_count, 2);
    sl_record_header out[2];
    assert_int_equal(slb_headers_decode(&r, out), 0);
    assert_memory_equal(out[0].value, "v1", 2);
    assert_null(out[1].value);
    assert_int_equal(slb_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 101);
    assert_int_equal(r.timestamp, 990);
    assert_int_equal(r.key_len, -1);
    assert_int_equal(slb_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 105);
    assert_int_equal(r.value_len, -1);
    assert_null(r.value);
    assert_int_equal(slb_iter_next(&it, &r), 0);
    assert_int_equal(slb_decode_all(b.buf, len, true), 3);
    /* Any single bit flip is caught by the CRC. */
    for (size_t i = 0; i < len; i++) {
        if (i >= 12 && i < 16) continue; /* the CRC itself: also caught, see below */
        b.buf[i] ^= 0x10;
        assert_true(slb_batch_check(b.buf, len, &h, true) < 0 ||
                    (i >= 8 && i < 12)); /* a changed length may read as incomplete */
        b.buf[i] ^= 0x10;
    }
    b.buf[13] ^= 1;
    assert_int_equal(slb_batch_check(b.buf, len, &h, true), SL_ECORRUPT);
    b.buf[13] ^= 1;
    /* Every truncation is incomplete, never accepted. */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(slb_batch_check(b.buf, i, &h, true), SL_EAGAIN);
    slb_builder_free(&b);
}

/* ---- topics --------------------------------------------------------------------------- */

static void test_topic_lifecycle(void **state)
{
    fx *f = *state;
    make_topic(f->b, "orders", 3, 0, 0);
    make_topic(f->b, "alpha", 1, 1, 0);
    assert_int_equal(sl_topic_create(f->b, "orders", NULL), SL_EEXIST);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "orders"));
    char **names;
    size_t n;
    assert_int_equal(sl_topic_list(f->b, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "alpha");
    assert_string_equal(names[1], "orders");
    sl_topic_list_free(names, n);

    sl_record r = rec_kv(NULL, "x");
    int64_t base;
    for (int i = 0; i < 5; i++) assert_int_equal(sl_log_append(f->b, "orders", 2, &r, 1, &base), 0);
    assert_int_equal(base, 4);
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(f->b, "orders", &ti), 0);
    assert_int_equal(ti->partition_count, 3);
    assert_int_equal(ti->partitions[2].next_offset, 5);
    assert_int_equal(ti->partitions[2].first_offset, 0);
    assert_int_equal(ti->partitions[0].next_offset, 0);
    assert_int_equal(ti->partitions[2].segments, 1);
    assert_true(ti->partitions[2].size_bytes > 0);
    sl_topic_info_free(ti);

    /* Described from another handle (no writer): same figures. */
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, f->dir, 0), 0);
    assert_int_equal(sl_topic_describe(b2, "orders", &ti), 0);
    assert_int_equal(ti->partitions[2].next_offset, 5);
    sl_topic_info_free(ti);
    /* b2 cannot delete while f->b writes partition 2. */
    assert_int_equal(sl_topic_delete(b2, "orders"), SL_EBUSY);
    assert_non_null(strstr(sl_broker_errmsg(b2), "partition 2"));
    sl_broker_close(b2);

    assert_int_equal(sl_topic_delete(f->b, "orders"), 0);
    assert_int_equal(sl_topic_delete(f->b, "orders"), SL_ENOENT);
    assert_int_equal(sl_topic_list(f->b, &names, &n), 0);
    assert_int_equal(n, 1);
    sl_topic_list_free(names, n);
}

static void test_append_read_follow(void **state)
{
    fx *f = *state;
    make_topic(f->b, "t", 1, 0, 0);
    sl_record rs[3] = {rec_kv("a", "one"), rec_kv("b", "two"), rec_kv(NULL, "three")};
    int64_t base;
    assert_int_equal(sl_log_append(f->b, "t", 0, rs, 3, &base), 0);
    assert_int_equal(base, 0);
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, f->b, "t", 0, SL_OFFSET_BEGINNING), 0);
    sl_message m;
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, 0);
    assert_memory_equal(m.key, "a", 1);
    assert_memory_equal(m.value, "one", 3);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_null(m.key);
    assert_int_equal(m.offset, 2);
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    assert_int_equal(sl_log_reader_next(r, &m, 5), SL_EAGAIN); /* waits, then times out */
    /* The reader follows new appends. */
    assert_int_equal(sl_log_append(f->b, "t", 0, &rs[0], 1, &base), 0);
    assert_int_equal(sl_log_reader_next(r, &m, -1), 0);
    assert_int_equal(m.offset, 3);
    assert_int_equal(sl_log_reader_position(r), 4);
    /* Seek */
    assert_int_equal(sl_log_reader_seek(r, 1), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, 1);
    assert_int_equal(sl_log_reader_seek(r, SL_OFFSET_END), 0);
    assert_int_equal(sl_log_reader_position(r), 4);
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    sl_log_reader_close(r);
    /* A reader opened at END sees only later records. */
    assert_int_equal(sl_log_reader_open(&r, f->b, "t", 0, SL_OFFSET_END), 0);
    assert_int_equal(sl_log_append(f->b, "t", 0, &rs[1], 1, &base), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, 4);
    sl_log_reader_close(r);
}

static void test_producer_partitions(void **state)
{
    fx *f = *state;
    make_topic(f->b, "p", 4, 0, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, f->b, "p"), 0);
    char key[32], val[32];
    int per_part[4] = {0};
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key-%d", i % 50);
        snprintf(val, sizeof val, "v%d", i);
        sl_record r = rec_kv(key, val);
        int64_t off;
        assert_int_equal(sl_producer_send(p, SL_PARTITION_ANY, &r, &off), 0);
        per_part[sl_partition_for_key(key, strlen(key), 4)]++;
    }
    for (int i = 0; i < 8; i++) { /* keyless: round robin */
        sl_record r = rec_kv(NULL, "rr");
        assert_int_equal(sl_producer_send(p, SL_PARTITION_ANY, &r, NULL), 0);
        per_part[i % 4]++;
    }
    assert_int_equal(sl_producer_close(p), 0);
    for (int q = 0; q < 4; q++)
        assert_int_equal(read_all(f->b, "p", q, NULL, NULL, 0), per_part[q]);
}

static void test_roll_index_retention(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 4096;
    c.retention_bytes = 3 * 4096;
    assert_int_equal(sl_topic_create(f->b, "r", &c), 0);
    char val[100];
    memset(val, 'x', sizeof val);
    for (int i = 0; i < 2000; i++) {
        sl_record r = {.value = val, .value_len = sizeof val};
        snprintf(val, sizeof val, "%06d", i);
        val[6] = 'x';
        assert_int_equal(sl_log_append(f->b, "r", 0, &r, 1, NULL), 0);
    }
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(f->b, "r", &ti), 0);
    assert_int_equal(ti->partitions[0].next_offset, 2000);
    assert_true(ti->partitions[0].first_offset > 0); /* retention removed old segments */
    assert_true(ti->partitions[0].segments <= 5);
    assert_true(ti->partitions[0].size_bytes >= 3 * 4096 - 4096);
    int64_t first = ti->partitions[0].first_offset;
    sl_topic_info_free(ti);
    /* Seek into the middle of a sealed segment via its index. */
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, f->b, "r", 0, 1990), 0);
    sl_message m;
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, 1990);
    assert_memory_equal(m.value, "001990", 6);
    /* Before the log start: starts at the first offset kept. */
    assert_int_equal(sl_log_reader_seek(r, 0), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, first);
    int n = 1;
    while (sl_log_reader_next(r, &m, 0) == 0) n++;
    assert_int_equal(n, 2000 - first);
    sl_log_reader_close(r);
    /* Reopened by another handle: indexes of sealed segments are loaded. */
    sl_broker_close(f->b);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    assert_int_equal(read_all(f->b, "r", 0, NULL, NULL, 0), 2000 - first);
    sl_record one = rec_kv(NULL, "again");
    int64_t base;
    assert_int_equal(sl_log_append(f->b, "r", 0, &one, 1, &base), 0);
    assert_int_equal(base, 2000);

    /* Retention by age: every sealed segment is older than 1 ms from now+1h. */
    sl_topic_conf c2 = c;
    c2.retention_bytes = -1;
    c2.retention_ms = 1;
    assert_int_equal(sl_topic_create(f->b, "old", &c2), 0);
    for (int i = 0; i < 500; i++) {
        sl_record r2 = {.value = val, .value_len = sizeof val, .timestamp = 1000 + i};
        assert_int_equal(sl_log_append(f->b, "old", 0, &r2, 1, NULL), 0);
    }
    assert_int_equal(sl_topic_clean(f->b, "old", 0), 0);
    assert_int_equal(sl_topic_describe(f->b, "old", &ti), 0);
    assert_int_equal(ti->partitions[0].segments, 1); /* only the active one remains */
    assert_int_equal(ti->partitions[0].next_offset, 500);
    sl_topic_info_free(ti);
}

static void test_compaction(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.compact = 1;
    c.segment_bytes = 2048;
    c.tombstone_retention_ms = 3600 * 1000;
    assert_int_equal(sl_topic_create(f->b, "cmp", &c), 0);
    /* keys k0..k9, 30 rounds; k3 deleted (tombstone) in the last round. */
    char k[8], v[32];
    int64_t latest[10];
    int64_t off;
    /* Real time: compaction also runs by itself at segment rolls, with the
     * clock's time. */
    int64_t now = sli_clock_wall_ms();
    for (int round = 0; round < 30; round++)
        for (int i = 0; i < 10; i++) {
            snprintf(k, sizeof k, "k%d", i);
            snprintf(v, sizeof v, "r%d-k%d", round, i);
            sl_record r = rec_kv(k, (round == 29 && i == 3) ? NULL : v);
            r.timestamp = now + round;
            assert_int_equal(sl_log_append(f->b, "cmp", 0, &r, 1, &off), 0);
            latest[i] = off;
        }
    /* Roll so that everything is in sealed segments: append fillers. */
    for (int i = 0; i < 40; i++) {
        sl_record r = rec_kv("filler", "f");
        r.timestamp = now + 100;
        assert_int_equal(sl_log_append(f->b, "cmp", 0, &r, 1, &off), 0);
    }
    int64_t next = off + 1;
    /* Tombstones are young (kept for an hour): kept. */
    assert_int_equal(sl_topic_clean(f->b, "cmp", now + 500), 0);
    int64_t offs[400];
    char vals[400][64];
    int n = read_all(f->b, "cmp", 0, offs, vals, 400);
    assert_true(n < 300 + 40);
    for (int i = 1; i < n; i++) assert_true(offs[i] > offs[i - 1]);
    for (int i = 0; i < 10; i++) {
        int found = 0;
        for (int j = 0; j < n; j++)
            if (offs[j] == latest[i]) {
                found = 1;
                if (i == 3)
                    assert_string_equal(vals[j], "<null>");
                else {
                    snprintf(v, sizeof v, "r29-k%d", i);
                    assert_string_equal(vals[j], v);
                }
            }
        if (!found)
            for (int j = 0; j < n; j++) fprintf(stderr, "%lld %s\n", (long long)offs[j], vals[j]);
        assert_true(found);
    }
    /* Old tombstones go: cleaning two hours later drops the k3 tombstone. */
    assert_int_equal(sl_topic_clean(f->b, "cmp", now + 2 * 3600 * 1000), 0);
    int n2 = read_all(f->b, "cmp", 0, offs, vals, 400);
    assert_true(n2 <= n);
    for (int j = 0; j < n2; j++) assert_true(offs[j] != latest[3] || !"tombstone kept");
    /* Offsets continue where they were. */
    sl_record r = rec_kv("k1", "after");
    assert_int_equal(sl_log_append(f->b, "cmp", 0, &r, 1, &off), 0);
    assert_int_equal(off, next);
    /* A compacted topic refuses a record without a key. */
    sl_record nk = rec_kv(NULL, "x");
    assert_int_equal(sl_log_append(f->b, "cmp", 0, &nk, 1, &off), SL_EINVAL);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "key"));
}

static void test_groups(void **state)
{
    fx *f = *state;
    make_topic(f->b, "g", 5, 0, 0);
    int64_t off;
    assert_int_equal(sl_group_fetch(f->b, "grp", "g", 0, &off), SL_ENOENT);
    assert_int_equal(sl_group_commit(f->b, "grp", "g", 0, 42), 0);
    assert_int_equal(sl_group_commit(f->b, "grp", "g", 1, 7), 0);
    assert_int_equal(sl_group_commit(f->b, "grp", "g", 0, 43), 0);
    assert_int_equal(sl_group_commit(f->b, "other", "g", 0, 1), 0);
    assert_int_equal(sl_group_fetch(f->b, "grp", "g", 0, &off), 0);
    assert_int_equal(off, 43);
    assert_int_equal(sl_group_fetch(f->b, "grp", "g", 1, &off), 0);
    assert_int_equal(off, 7);
    /* Durable: visible from a fresh handle. */
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, f->dir, 0), 0);
    assert_int_equal(sl_group_fetch(b2, "other", "g", 0, &off), 0);
    assert_int_equal(off, 1);
    /* Membership: two members split 5 partitions 3 + 2, then one leaves. */
    sl_group_member *m1, *m2;
    assert_int_equal(sl_group_join(&m1, f->b, "grp", "g"), 0);
    assert_int_equal(sl_group_join(&m2, b2, "grp", "g"), 0);
    int32_t p1[8], p2[8];
    size_t n1, n2;
    assert_int_equal(sl_group_member_assignment(m1, p1, 8, &n1), 0);
    assert_int_equal(sl_group_member_assignment(m2, p2, 8, &n2), 0);
    assert_int_equal(n1 + n2, 5);
    assert_int_equal(n1, 3);
    assert_int_equal(p1[0], 0);
    assert_int_equal(p2[0], 1);
    sl_group_leave(m1);
    assert_int_equal(sl_group_member_assignment(m2, p2, 8, &n2), 0);
    assert_int_equal(n2, 5);
    sl_group_leave(m2);
    sl_broker_close(b2);
    /* The internal topic cannot be produced to or deleted by users. */
    assert_int_equal(sl_topic_delete(f->b, "__consumer_offsets"), SL_EINVAL);
}

static void test_one_writer(void **state)
{
    fx *f = *state;
    make_topic(f->b, "w", 2, 0, 0);
    sl_record r = rec_kv(NULL, "x");
    assert_int_equal(sl_log_append(f->b, "w", 0, &r, 1, NULL), 0);
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, f->dir, 0), 0);
    assert_int_equal(sl_log_append(b2, "w", 0, &r, 1, NULL), SL_EBUSY);
    assert_non_null(strstr(sl_broker_errmsg(b2), "already has a writer"));
    assert_int_equal(sl_log_append(b2, "w", 1, &r, 1, NULL), 0); /* other partition: fine */
    sl_broker_close(b2);
}

/* ---- bad input: a clear error, nothing changed ----------------------------------- */

static void test_bad_input(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.max_record_bytes = 1000;
    assert_int_equal(sl_topic_create(f->b, "bad", &c), 0);
    c.compact = 1;
    assert_int_equal(sl_topic_create(f->b, "bad-c", &c), 0);
    sl_record ok = rec_kv("k", "v");
    assert_int_equal(sl_log_append(f->b, "bad", 0, &ok, 1, NULL), 0);
    char *before = tb_snapshot(f->dir);
    char big[1001];
    memset(big, 'b', sizeof big);
    sl_record r = {.value = big, .value_len = sizeof big};
    assert_int_equal(sl_log_append(f->b, "bad", 0, &r, 1, NULL), SL_ETOOBIG);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "1001 bytes"));
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, f->b, "bad"), 0);
    assert_int_equal(sl_producer_send(p, 0, &r, NULL), SL_ETOOBIG);
    assert_int_equal(sl_producer_send(p, -5, &ok, NULL), SL_ERANGE);
    assert_non_null(strstr(sl_producer_errmsg(p), "partition -5"));
    assert_int_equal(sl_producer_send(p, 1, &ok, NULL), SL_ERANGE);
    sl_producer_close(p);
    assert_int_equal(sl_log_append(f->b, "nope", 0, &ok, 1, NULL), SL_ENOENT);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "unknown topic 'nope'"));
    assert_int_equal(sl_producer_open(&p, f->b, "nope"), SL_ENOENT);
    assert_null(p);
    sl_log_reader *rd;
    assert_int_equal(sl_log_reader_open(&rd, f->b, "nope", 0, 0), SL_ENOENT);
    assert_int_equal(sl_log_reader_open(&rd, f->b, "bad", -1, 0), SL_ERANGE);
    assert_int_equal(sl_log_reader_open(&rd, f->b, "bad", 0, -7), SL_EINVAL);
    sl_record nokey = rec_kv(NULL, "v");
    assert_int_equal(sl_log_append(f->b, "bad-c", 0, &nokey, 1, NULL), SL_EINVAL);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "compacted"));
    assert_int_equal(sl_log_append(f->b, "bad", -1, &ok, 1, NULL), SL_ERANGE);
    assert_int_equal(sl_topic_create(f->b, "../evil", NULL), SL_EINVAL);
    assert_int_equal(sl_topic_create(f->b, "__mine", NULL), SL_EINVAL);
    assert_int_equal(sl_topic_create(f->b, "", NULL), SL_EINVAL);
    c.partitions = 0;
    assert_int_equal(sl_topic_create(f->b, "zero", &c), SL_EINVAL);
    assert_int_equal(sl_group_commit(f->b, "g", "bad", -1, 0), SL_EINVAL);
    char *after = tb_snapshot(f->dir);
    assert_string_equal(before, after);
    free(after);

    /* A directory we may not write: simulated (tests run as root) by making
     * mkdir fail with EACCES, and by a path under a regular file. */
    sli_fsio_fail_after(SLI_FSIO_MKDIR, 0, EACCES, true);
    assert_int_equal(sl_topic_create(f->b, "denied", NULL), SL_EPERM);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "denied"));
    assert_non_null(strstr(sl_broker_errmsg(f->b), "Permission denied"));
    sli_fsio_fail_reset();
    after = tb_snapshot(f->dir);
    assert_string_equal(before, after);
    free(after);
    char path[4200];
    snprintf(path, sizeof path, "%s/bad/topic.meta/sub", f->dir);
    sl_broker *b2;
    assert_true(sl_broker_open(&b2, path, SL_BROKER_CREATE) < 0);
    assert_non_null(strstr(sl_broker_errmsg(b2), "topic.meta"));
    sl_broker_close(b2);
    after = tb_snapshot(f->dir);
    assert_string_equal(before, after);
    free(after);
    free(before);
}

/* ---- injected I/O failures ---------------------------------------------------------- */

static void test_io_faults(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.fsync = SL_FSYNC_ALWAYS;
    assert_int_equal(sl_topic_create(f->b, "io", &c), 0);
    sl_record r = rec_kv(NULL, "durable");
    assert_int_equal(sl_log_append(f->b, "io", 0, &r, 1, NULL), 0);
    /* A failed write: error, nothing appended, and the next append works. */
    sli_fsio_fail_after(SLI_FSIO_WRITE, 0, ENOSPC, false);
    assert_int_equal(sl_log_append(f->b, "io", 0, &r, 1, NULL), SL_EFULL);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "write failed"));
    sli_fsio_fail_reset();
    assert_int_equal(read_all(f->b, "io", 0, NULL, NULL, 0), 1);
    int64_t off;
    assert_int_equal(sl_log_append(f->b, "io", 0, &r, 1, &off), 0);
    assert_int_equal(off, 1);
    /* A failed fsync: error, the batch is taken back, appends refused. */
    sli_fsio_fail_after(SLI_FSIO_FSYNC, 0, EIO, false);
    assert_int_equal(sl_log_append(f->b, "io", 0, &r, 1, NULL), SL_EIO);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "fdatasync"));
    sli_fsio_fail_reset();
    assert_int_equal(read_all(f->b, "io", 0, NULL, NULL, 0), 2);
    assert_int_equal(sl_log_append(f->b, "io", 0, &r, 1, NULL), SL_EIO);
    /* Reopening recovers. */
    sl_broker_close(f->b);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    assert_int_equal(sl_log_append(f->b, "io", 0, &r, 1, &off), 0);
    assert_int_equal(off, 2);
    /* Topic creation failing at every step leaves nothing behind. */
    char *before = tb_snapshot(f->dir);
    for (long n = 0;; n++) {
        sli_fsio_fail_after(SLI_FSIO_ALL, n, EIO, false);
        int rc = sl_topic_create(f->b, "fragile", &c);
        long failures = sli_fsio_failures();
        sli_fsio_fail_reset();
        if (failures == 0) {
            assert_int_equal(rc, 0);
            break;
        }
        /* Only the final directory fsync may fail after the rename. */
        if (rc == 0 || strstr(sl_broker_errmsg(f->b), "created, but")) {
            assert_int_equal(sl_topic_delete(f->b, "fragile"), 0);
            continue;
        }
        char *after = tb_snapshot(f->dir);
        assert_string_equal(before, after);
        free(after);
        assert_true(n < 100);
    }
    free(before);
}

/* fsync=interval: the broker's flusher thread syncs a dirty partition within
 * the interval, waiting on the monotonic clock. Seen through fault
 * injection: its fdatasync fails, which marks the partition failed, and the
 * next append is refused. The wait below is for that event (a guard against
 * a hang, not a measure of speed). */
static void test_interval_flusher(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.fsync = SL_FSYNC_INTERVAL;
    c.fsync_interval_ms = 1000; /* far longer than open + append: no inline sync */
    assert_int_equal(sl_topic_create(f->b, "iv", &c), 0);
    sli_fsio_fail_after(SLI_FSIO_FSYNC, 0, EIO, true);
    sl_record r = rec_kv(NULL, "dirty");
    assert_int_equal(sl_log_append(f->b, "iv", 0, &r, 1, NULL), 0);
    for (int i = 0; i < 60 * 100 && sli_fsio_failures() == 0; i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(sli_fsio_failures() > 0);
    sli_fsio_fail_reset();
    assert_int_equal(sl_log_append(f->b, "iv", 0, &r, 1, NULL), SL_EIO);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "earlier fsync failed"));
}

/* ---- timestamps ---------------------------------------------------------------- */

/* Event time 0 is a time (stored as 0); SL_TIMESTAMP_NONE asks for the time
 * of the append; any other negative time is refused. Through sl_log_append
 * (one batch mixing all three kinds) and through the producer. */
static void test_timestamps(void **state)
{
    fx *f = *state;
    make_topic(f->b, "ts", 1, 0, 0);
    static const int64_t want[] = {0, SL_TIMESTAMP_NONE, 1, 0, SL_TIMESTAMP_NONE, 1700000000000};
    enum { N = sizeof want / sizeof want[0] };
    sl_record rs[N];
    for (int i = 0; i < N; i++) {
        rs[i] = rec_kv(NULL, "v");
        rs[i].timestamp = want[i];
    }
    int64_t before = sli_clock_wall_ms();
    int64_t base;
    assert_int_equal(sl_log_append(f->b, "ts", 0, rs, N, &base), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, f->b, "ts"), 0);
    for (int i = 0; i < N; i++) assert_int_equal(sl_producer_send(p, 0, &rs[i], NULL), 0);
    assert_int_equal(sl_producer_close(p), 0);
    int64_t after = sli_clock_wall_ms();

    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, f->b, "ts", 0, SL_OFFSET_BEGINNING), 0);
    sl_message m;
    for (int i = 0; i < 2 * N; i++) {
        assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
        assert_int_equal(m.offset, base + i);
        int64_t w = want[i % N];
        if (w == SL_TIMESTAMP_NONE) {
            assert_true(m.timestamp >= before);
            assert_true(m.timestamp <= after);
        } else {
            assert_int_equal(m.timestamp, w);
        }
    }
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    sl_log_reader_close(r);

    /* Negative times other than SL_TIMESTAMP_NONE: a clear error, nothing written. */
    sl_record neg = rec_kv(NULL, "v");
    neg.timestamp = -1;
    assert_int_equal(sl_log_append(f->b, "ts", 0, &neg, 1, NULL), SL_EINVAL);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "timestamp -1 is negative"));
    assert_int_equal(sl_producer_open(&p, f->b, "ts"), 0);
    neg.timestamp = INT64_MIN + 1;
    assert_int_equal(sl_producer_send(p, 0, &neg, NULL), SL_EINVAL);
    assert_non_null(strstr(sl_producer_errmsg(p), "is negative"));
    assert_int_equal(sl_producer_close(p), 0);
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(f->b, "ts", &ti), 0);
    assert_int_equal(ti->partitions[0].next_offset, base + 2 * N);
    assert_int_equal(ti->partitions[0].segments, 1);
    sl_topic_info_free(ti);

    /* Old event times do not make the segment old: reopened, the partition
     * appends to the same segment (segment_ms counts from the append). */
    make_topic(f->b, "old", 1, 0, 0);
    sl_record old = rec_kv(NULL, "v");
    old.timestamp = 5;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(sl_log_append(f->b, "old", 0, &old, 1, NULL), 0);
        sl_broker_close(f->b);
        assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    }
    assert_int_equal(sl_topic_describe(f->b, "old", &ti), 0);
    assert_int_equal(ti->partitions[0].segments, 1);
    assert_int_equal(ti->partitions[0].next_offset, 2);
    sl_topic_info_free(ti);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_kafka_vectors),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_batch_roundtrip),
        cmocka_unit_test_setup_teardown(test_topic_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_read_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roll_index_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interval_flusher, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
