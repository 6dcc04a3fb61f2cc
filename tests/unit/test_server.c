/*
 * tests/unit/test_server.c - the Kafka-protocol server (connectors/broker/
 * server.c) over a socket, with hand-built frames: ApiVersions (served and
 * unsupported versions), Metadata (a known and an unknown topic), an unknown
 * api key and an unsupported version (answered, connection kept), Produce of
 * a v2 batch (good, bad CRC, old magic), ListOffsets and Fetch back, and
 * frames that close their connection (a malformed body, a length above the
 * limit, a negative length) while another connection goes on being served.
 * The server runs sl_server_run on a thread of its own over a temporary
 * broker directory with topic "t" of 3 partitions.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
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
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"
#include "sluice/broker.h"
#include "sluice/server.h"
#include "kafka_raw.h"

static char dir[] = "/tmp/sluice_test_server_XXXXXX";

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    if (sl_broker_open(&broker, dir, 0) < 0) return -1;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = 3;
    if (sl_topic_create(broker, "t", &c) < 0) return -1;
    if (sl_server_open(&srv, broker, "127.0.0.1:0") < 0) return -1;
    return server_thread_start();
}

static int teardown(void **state)
{
    (void)state;
    server_thread_stop();
    sl_broker_close(broker);
    return rm_dir(dir) == 0 && run_rc == 0 ? 0 : -1;
}

static uint8_t rb[1 << 20];
static int32_t produce_part = 1; /* the partition produce() writes */
static uint32_t count_claimed;   /* nonzero: the record count kbatch writes */
static bool bad_second;          /* kbatch adds a second batch, its CRC wrong */

/* ApiVersions at version ver: returns the error code; checks the table
 * names Produce, Fetch, ListOffsets, Metadata and ApiVersions. */
static int16_t api_versions(int fd, int16_t ver, int32_t corr)
{
    fb f;
    req(&f, 18, ver, corr);
    fin(&f);
    send_all(fd, f.p, f.n);
    long n = read_response(fd, corr, rb, sizeof rb);
    assert_true(n >= 10);
    int16_t err = g16(rb + 4);
    int32_t cnt = g32(rb + 6);
    assert_true(cnt >= 5 && 10 + (long)cnt * 6 <= n);
    int seen = 0;
    for (int32_t i = 0; i < cnt; i++) {
        int16_t k = g16(rb + 10 + 6 * i);
        if (k == 0 || k == 1 || k == 2 || k == 3 || k == 18) seen++;
        assert_true(g16(rb + 12 + 6 * i) <= g16(rb + 14 + 6 * i));
    }
    assert_int_equal(seen, 5);
    return err;
}

static void test_api_versions(void **state)
{
    (void)state;
    int fd = connect_srv();
    assert_int_equal(api_versions(fd, 0, 1), 0);
    assert_int_equal(api_versions(fd, 2, 2), 0);
    /* v3 is flexible (header v2): not served, answered in the v0 layout */
    assert_int_equal(api_versions(fd, 3, 3), 35);
    assert_int_equal(api_versions(fd, 1, 4), 0); /* the connection goes on */
    close(fd);
}

static void test_metadata(void **state)
{
    (void)state;
    int fd = connect_srv();
    fb f;
    req(&f, 3, 1, 7);
    b32(&f, 2);
    bstr(&f, "t");
    bstr(&f, "nope");
    fin(&f);
    send_all(fd, f.p, f.n);
    long n = read_response(fd, 7, rb, sizeof rb);
    uint8_t *p = rb + 4;
    assert_int_equal(g32(p), 1); /* one broker */
    assert_int_equal(g32(p + 4), 0);
    int16_t hl = g16(p + 8);
    assert_memory_equal(p + 10, "127.0.0.1", 9);
    p += 10 + hl;
    assert_int_equal(g32(p), sl_server_port(srv));
    p += 4;
    assert_int_equal(g16(p), -1); /* rack */
    p += 2;
    assert_int_equal(g32(p), 0); /* controller */
    p += 4;
    assert_int_equal(g32(p), 2); /* topics */
    p += 4;
    assert_int_equal(g16(p), 0);
    assert_int_equal(g16(p + 2), 1);
    assert_int_equal(p[4], 't');
    assert_int_equal(p[5], 0); /* is_internal */
    assert_int_equal(g32(p + 6), 3);
    p += 10;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g16(p), 0);
        assert_int_equal(g32(p + 2), i);
        assert_int_equal(g32(p + 6), 0); /* leader: node 0 */
        p += 10 + 8 + 8;
    }
    assert_int_equal(g16(p), 3); /* nope: UNKNOWN_TOPIC_OR_PARTITION */
    assert_int_equal(g16(p + 2), 4);
    assert_memory_equal(p + 4, "nope", 4);
    assert_int_equal(g32(p + 9), 0);
    assert_int_equal(p + 13 - rb, n);

    /* v1: an empty list asks for no topics, a null one for all ("t") */
    for (int all = 0; all <= 1; all++) {
        req(&f, 3, 1, 8 + all);
        b32(&f, all ? 0xffffffffu : 0);
        fin(&f);
        send_all(fd, f.p, f.n);
        n = read_response(fd, 8 + all, rb, sizeof rb);
        p = rb + 4 + 4 + 4 + 2 + 9 + 4 + 2 + 4; /* brokers, as above */
        assert_int_equal(g32(p), all);
        if (all) assert_int_equal(g32(p + 10), 3);
    }
    close(fd);
}

static void test_unknown_key_and_version(void **state)
{
    (void)state;
    int fd = connect_srv();
    fb f;
    req(&f, 99, 0, 11); /* no such api */
    b32(&f, 12345);
    fin(&f);
    send_all(fd, f.p, f.n);
    long n = read_response(fd, 11, rb, sizeof rb);
    assert_int_equal(n, 6);
    assert_int_equal(g16(rb + 4), 35);
    req(&f, 3, 12, 12); /* Metadata v12: flexible, not served */
    fin(&f);
    send_all(fd, f.p, f.n);
    n = read_response(fd, 12, rb, sizeof rb);
    assert_int_equal(n, 6);
    assert_int_equal(g16(rb + 4), 35);
    assert_int_equal(api_versions(fd, 0, 13), 0);
    close(fd);
}

/* A frame that must close its connection, while `other` stays served. */
static void closes(const uint8_t *frame, size_t n)
{
    int other = connect_srv();
    assert_int_equal(api_versions(other, 0, 20), 0);
    int fd = connect_srv();
    send_all(fd, frame, n);
    uint8_t x;
    assert_true(recv(fd, &x, 1, 0) <= 0); /* closed, nothing answered */
    close(fd);
    assert_int_equal(api_versions(other, 1, 21), 0);
    close(other);
}

static void test_bad_frames(void **state)
{
    (void)state;
    fb f;
    req(&f, 3, 1, 30); /* Metadata: 5 topics announced, none there */
    b32(&f, 5);
    fin(&f);
    closes(f.p, f.n);
    const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0, 18, 0, 0};
    closes(huge, sizeof huge);
    const uint8_t above[] = {0x06, 0x40, 0x00, 0x01, 0, 18, 0, 0}; /* 100 MiB + 1 */
    closes(above, sizeof above);
    const uint8_t neg[] = {0xff, 0xff, 0xff, 0xfe, 0, 18, 0, 0};
    closes(neg, sizeof neg);
    const uint8_t tiny[] = {0, 0, 0, 3, 0, 18, 0};
    closes(tiny, sizeof tiny);
}

/* A Kafka v2 batch of records "kI" -> "vI", I < n, in f (after bytes
 * length prefix); magic and a CRC flip as asked. */
static void kbatch(fb *f, int n, uint8_t magic, bool bad_crc)
{
    size_t s1 = f->n;
    kv_batch(f, n, magic, count_claimed, bad_crc);
    if (!bad_second) return;
    size_t s2 = f->n; /* a second batch in the same record set: drop its prefix */
    kv_batch(f, 1, 2, 0, true);
    memmove(f->p + s2, f->p + s2 + 4, f->n - s2 - 4);
    f->n -= 4;
    put32(f->p + s1, (uint32_t)(f->n - s1 - 4));
}

/* Produce v3 of one batch to t/1; returns (error, base offset). */
static int16_t produce(int fd, int n, uint8_t magic, bool bad_crc, int64_t *base)
{
    fb f;
    req(&f, 0, 3, 40);
    b16(&f, 0xffff); /* transactional id: null */
    b16(&f, 1);      /* acks */
    b32(&f, 5000);
    b32(&f, 1);
    bstr(&f, "t");
    b32(&f, 1);
    b32(&f, (uint32_t)produce_part);
    kbatch(&f, n, magic, bad_crc);
    fin(&f);
    send_all(fd, f.p, f.n);
    long rn = read_response(fd, 40, rb, sizeof rb);
    assert_int_equal(rn, 4 + 4 + 3 + 4 + 4 + 2 + 8 + 8 + 4);
    assert_int_equal(g32(rb + 4), 1);
    assert_int_equal(g32(rb + 15), produce_part);
    *base = g64(rb + 21);
    return g16(rb + 19);
}

/* ListOffsets v1 of t/part at ts (-1 latest, -2 earliest). */
static int64_t list_offset_of(int fd, int32_t part, int64_t ts)
{
    fb f;
    req(&f, 2, 1, 50);
    b32(&f, 0xffffffff);
    b32(&f, 1);
    bstr(&f, "t");
    b32(&f, 1);
    b32(&f, (uint32_t)part);
    b64(&f, (uint64_t)ts);
    fin(&f);
    send_all(fd, f.p, f.n);
    read_response(fd, 50, rb, sizeof rb);
    assert_int_equal(g16(rb + 19), 0);
    return g64(rb + 29);
}

static int64_t list_offset(int fd, int64_t ts)
{
    return list_offset_of(fd, 1, ts);
}

/* A record set of two batches whose second is bad (its CRC) is refused
 * whole: the first is not appended either (as Kafka validates a set). */
static void test_produce_set_whole(void **state)
{
    (void)state;
    int fd = connect_srv();
    int64_t base;
    produce_part = 0;
    int64_t before = list_offset_of(fd, 0, -1);
    bad_second = true;
    assert_int_equal(produce(fd, 3, 2, false, &base), 2); /* CORRUPT_MESSAGE */
    bad_second = false;
    assert_int_equal(list_offset_of(fd, 0, -1), before);
    assert_int_equal(produce(fd, 3, 2, false, &base), 0); /* the good batch alone */
    assert_int_equal(base, before);
    assert_int_equal(list_offset_of(fd, 0, -1), before + 3);
    produce_part = 1;
    close(fd);
}

static void test_produce_fetch(void **state)
{
    (void)state;
    int fd = connect_srv();
    int64_t base;
    assert_int_equal(produce(fd, 3, 2, false, &base), 0);
    assert_int_equal(base, 0);
    assert_int_equal(produce(fd, 2, 2, true, &base), 2);   /* CORRUPT_MESSAGE */
    assert_int_equal(produce(fd, 2, 1, false, &base), 35); /* old message format */
    count_claimed = 0x7fffffff; /* more records than the batch can hold */
    assert_int_equal(produce(fd, 2, 2, false, &base), 2);
    count_claimed = 4; /* one more than there are */
    assert_int_equal(produce(fd, 3, 2, false, &base), 2);
    count_claimed = 0;
    assert_int_equal(produce(fd, 2, 2, false, &base), 0);
    assert_int_equal(base, 3);
    assert_int_equal(list_offset(fd, -2), 0);
    assert_int_equal(list_offset(fd, -1), 5);

    fb f; /* Fetch v4 of t/1 from offset 1 */
    req(&f, 1, 4, 60);
    b32(&f, 0xffffffff);
    b32(&f, 0);
    b32(&f, 1);
    b32(&f, 1 << 20);
    b8(&f, 0);
    b32(&f, 1);
    bstr(&f, "t");
    b32(&f, 1);
    b32(&f, 1);
    b64(&f, 1);
    b32(&f, 1 << 20);
    fin(&f);
    send_all(fd, f.p, f.n);
    long n = read_response(fd, 60, rb, sizeof rb);
    uint8_t *p = rb + 4 + 4 + 4 + 3 + 4; /* corr, throttle, topics, "t", partitions */
    assert_int_equal(g32(p), 1);
    assert_int_equal(g16(p + 4), 0);
    assert_int_equal(g64(p + 6), 5);   /* high watermark */
    assert_int_equal(g32(p + 22), -1); /* aborted: null */
    int32_t rl = g32(p + 26);
    uint8_t *bt = p + 30;
    assert_int_equal(bt + rl - rb, n);
    /* The stored batches as they are: the one holding offset 1 (0..2) and
     * the next (3..4), each a valid Kafka batch. */
    assert_int_equal(g64(bt), 0);      /* base offset */
    assert_int_equal(bt[16], 2);       /* magic */
    assert_int_equal(g32(bt + 23), 2); /* last offset delta: 0..2 */
    assert_int_equal(g32(bt + 57), 3); /* records */
    int32_t b1 = g32(bt + 8) + 12;
    assert_int_equal((uint32_t)g32(bt + 17), sli_crc32c(0, bt + 21, (size_t)b1 - 21));
    uint8_t *bt2 = bt + b1;
    assert_int_equal(g64(bt2), 3);
    assert_int_equal(g32(bt2 + 57), 2);
    assert_int_equal(b1 + g32(bt2 + 8) + 12, rl);
    assert_int_equal((uint32_t)g32(bt2 + 17), sli_crc32c(0, bt2 + 21, (size_t)(rl - b1) - 21));
    assert_non_null(memmem(bt, (size_t)rl, "k1\x04v1", 5));
    assert_non_null(memmem(bt, (size_t)rl, "k2\x04v2", 5));
    assert_non_null(memmem(bt2, (size_t)(rl - b1), "k0\x04v0", 5)); /* of the second batch */
    close(fd);
}

/* A Fetch v4 of t/part from offset, waiting up to max_wait ms for 1 byte. */
static void fetch_req(fb *f, int32_t corr, int32_t part, int64_t offset, int32_t max_wait)
{
    req(f, 1, 4, corr);
    b32(f, 0xffffffff);
    b32(f, (uint32_t)max_wait);
    b32(f, 1);
    b32(f, 1 << 20);
    b8(f, 0);
    b32(f, 1);
    bstr(f, "t");
    b32(f, 1);
    b32(f, (uint32_t)part);
    b64(f, (uint64_t)offset);
    b32(f, 1 << 20);
    fin(f);
}

/* A Fetch at the end of the log waits: an append through the server
 * answers it (its wait is ten minutes: only the append can), and the
 * request after it on the same connection is answered after it; a Fetch
 * with a short wait and nothing coming is answered empty at its deadline. */
static void test_fetch_waits(void **state)
{
    (void)state;
    int a = connect_srv(), b = connect_srv();
    fb f, g;
    fetch_req(&f, 70, 2, 0, 600000);
    req(&g, 18, 0, 71);
    fin(&g);
    memcpy(f.p + f.n, g.p, g.n);
    f.n += g.n;
    send_all(a, f.p, f.n);
    assert_int_equal(api_versions(b, 0, 72), 0); /* b is served meanwhile */
    int64_t base;
    produce_part = 2;
    assert_int_equal(produce(b, 3, 2, false, &base), 0);
    produce_part = 1;
    assert_int_equal(base, 0);
    long n = read_response(a, 70, rb, sizeof rb);
    uint8_t *p = rb + 19;
    assert_int_equal(g32(p), 2);
    assert_int_equal(g64(p + 6), 3); /* high watermark */
    assert_int_equal(g32(p + 26), n - 49);
    assert_int_equal(g32(p + 30 + 57), 3); /* all three records */
    assert_int_equal(read_response(a, 71, rb, sizeof rb) > 0, 1);

    fetch_req(&f, 73, 0, 0, 50); /* t/0 stays empty */
    send_all(a, f.p, f.n);
    n = read_response(a, 73, rb, sizeof rb);
    assert_int_equal(n, 49);
    assert_int_equal(g16(rb + 23), 0);
    assert_int_equal(g64(rb + 25), 0);
    assert_int_equal(g32(rb + 45), 0); /* no records */
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_versions),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_unknown_key_and_version),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_produce_fetch),
        cmocka_unit_test(test_fetch_waits),
        cmocka_unit_test(test_produce_set_whole), /* after: t/0 is empty until here */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
