/*
 * tests/unit/test_server_limits.c - the Kafka-protocol server's limits
 * (connectors/broker/server.c) over raw sockets: a huge length prefix,
 * garbage (an HTTP request, a frame too short for a header), a frame cut
 * mid-way then silence and a length prefix cut mid-way then silence (with
 * an idle timeout of 100 ms: the test waits for the disconnect, it never
 * measures time), a request one byte above --max-request-bytes, and one
 * connection above --max-connections; a request exactly at the limit is
 * answered. Each disconnects that client only:
 * a well-behaved client on its own connection produces a batch after each,
 * and at the end a Fetch from offset 0 returns every record it produced,
 * offsets contiguous and CRCs good. The log (level info) has exactly one line
 * per disconnected client. The server runs sl_server_run on a thread of its
 * own over a temporary broker directory with topic "t".
 */
#include <arpa/inet.h>
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
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"
#include "sluice/broker.h"
#include "sluice/server.h"

#define KRAW_FB_CAP    16384
#define KRAW_CLIENT_ID "limits"
#include "kafka_raw.h"

#define MAX_REQ   8192
#define MAX_CONNS 6

static char dir[] = "/tmp/sluice_test_server_limits_XXXXXX";
static FILE *slog;
static int good = -1;   /* the well-behaved client */
static int produced;    /* batches it produced */
static int disconnects; /* clients the server must have logged */

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    if (sl_broker_open(&broker, dir, 0) < 0) return -1;
    if (sl_topic_create(broker, "t", NULL) < 0) return -1;
    if (!(slog = tmpfile())) return -1;
    sl_server_conf c;
    sl_server_conf_init(&c);
    if (c.max_request_bytes != 100 * 1024 * 1024 || c.max_connections != 10000 ||
        c.log_level != SL_SERVER_LOG_WARN)
        return -1;
    c.listen = "127.0.0.1:0";
    c.max_request_bytes = MAX_REQ;
    c.max_connections = MAX_CONNS;
    c.idle_timeout_ms = 100;
    c.log_level = SL_SERVER_LOG_INFO;
    c.log = slog;
    if (sl_server_open_conf(&srv, broker, &c) < 0) return -1;
    return server_thread_start();
}

static int teardown(void **state)
{
    (void)state;
    server_thread_stop();
    sl_broker_close(broker);
    fclose(slog);
    return rm_dir(dir) == 0 && run_rc == 0 ? 0 : -1;
}

static uint8_t rb[1 << 20];

/* One response into rb (see read_response). */
static long response(int fd, int32_t corr)
{
    return read_response(fd, corr, rb, sizeof rb);
}

/* A v2 batch of 3 records "k<i>" -> "v<i>" (after its bytes length). */
static void kbatch(fb *f)
{
    kv_batch(f, 3, 2, 0, false);
}

static void produce_frame(fb *f, int32_t corr)
{
    req(f, 0, 3, corr);
    b16(f, 0xffff);
    b16(f, 1);
    b32(f, 5000);
    b32(f, 1);
    bstr(f, "t");
    b32(f, 1);
    b32(f, 0);
    kbatch(f);
    fin(f);
}

/* The well-behaved client produces one batch of 3: it lands right after the
 * ones before. */
static void good_produces(void)
{
    if (good < 0) good = connect_srv();
    fb f;
    produce_frame(&f, 100 + produced);
    send_all(good, f.p, f.n);
    assert_int_equal(response(good, 100 + produced), 4 + 4 + 3 + 4 + 4 + 2 + 8 + 8 + 4);
    assert_int_equal(g16(rb + 19), 0);
    assert_int_equal(g64(rb + 21), 3 * produced);
    produced++;
}

/* fd is closed by the server (after answering nothing more). */
static void is_closed(int fd)
{
    uint8_t x[256];
    ssize_t k;
    while ((k = recv(fd, x, sizeof x, 0)) > 0) {}
    assert_int_equal(k, 0); /* EOF, not the safety timeout */
    close(fd);
    disconnects++;
}

static void bad_client(const void *p, size_t n)
{
    good_produces();
    int fd = connect_srv();
    send_all(fd, p, n);
    is_closed(fd);
    good_produces();
}

static void test_huge_and_garbage(void **state)
{
    (void)state;
    const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 3};
    bad_client(huge, sizeof huge);
    const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    bad_client(http, sizeof http - 1);
    const uint8_t tiny[] = {0, 0, 0, 3, 0xde, 0xad, 0xbe};
    bad_client(tiny, sizeof tiny);
    uint8_t junk[512];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rand();
    junk[0] = 0x80; /* a negative length */
    bad_client(junk, sizeof junk);
}

static void test_above_max_request(void **state)
{
    (void)state;
    fb f;
    produce_frame(&f, 7);
    while (f.n < MAX_REQ + 4 + 1) b8(&f, 0); /* one byte above the limit */
    fin(&f);
    bad_client(f.p, f.n);
    /* a request exactly at the limit is read whole and answered (ApiVersions
     * v0 ignores its body) */
    req(&f, 18, 0, 8);
    while (f.n < MAX_REQ + 4) b8(&f, 0);
    fin(&f);
    send_all(good, f.p, f.n);
    assert_true(response(good, 8) > 0);
    good_produces();
}

static void test_cut_then_silence(void **state)
{
    (void)state;
    fb f;
    produce_frame(&f, 9);
    bad_client(f.p, f.n / 2); /* half a frame, then nothing: the idle timeout */
    bad_client(f.p, 2);       /* half a length prefix */
    good_produces();
}

static void test_max_connections(void **state)
{
    (void)state;
    good_produces(); /* good is one of the MAX_CONNS */
    int fds[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS - 1; i++) fds[i] = connect_srv();
    /* each is served: one ApiVersions each (also makes sure all are accepted) */
    for (int i = 0; i < MAX_CONNS - 1; i++) {
        fb f;
        req(&f, 18, 0, 200 + i);
        fin(&f);
        send_all(fds[i], f.p, f.n);
        assert_true(response(fds[i], 200 + i) > 0);
    }
    int extra = connect_srv(); /* the TCP handshake completes; the server closes it */
    is_closed(extra);
    good_produces();
    for (int i = 0; i < MAX_CONNS - 1; i++) close(fds[i]);
    /* once the server has seen the closes, a new client is served again */
    bool served = false;
    for (int tries = 0; tries < 1000 && !served; tries++) {
        int fd = connect_srv();
        fb f;
        req(&f, 18, 0, 300);
        fin(&f);
        send_all(fd, f.p, f.n);
        served = response(fd, 300) > 0;
        close(fd);
        if (!served) {
            disconnects++;
            poll(NULL, 0, 10);
        }
    }
    assert_true(served);
    good_produces();
}

/* Everything the well-behaved client produced is there, in order. */
static void test_data_intact(void **state)
{
    (void)state;
    fb f;
    req(&f, 1, 4, 400); /* Fetch v4 of t/0 from 0 */
    b32(&f, 0xffffffff);
    b32(&f, 0);
    b32(&f, 1);
    b32(&f, 1 << 20);
    b8(&f, 0);
    b32(&f, 1);
    bstr(&f, "t");
    b32(&f, 1);
    b32(&f, 0);
    b64(&f, 0);
    b32(&f, 1 << 20);
    fin(&f);
    send_all(good, f.p, f.n);
    long n = response(good, 400);
    uint8_t *p = rb + 4 + 4 + 4 + 3 + 4;
    assert_int_equal(g16(p + 4), 0);
    assert_int_equal(g64(p + 6), 3 * produced); /* high watermark */
    int32_t rl = g32(p + 26);
    uint8_t *bt = p + 30, *end = bt + rl;
    assert_int_equal(end - rb, n);
    int64_t records = 0; /* the log may hold them in batches of its own */
    while (bt + 61 <= end) {
        int32_t bl = g32(bt + 8);
        assert_true(bt + 12 + bl <= end);
        assert_int_equal(g64(bt), records);
        assert_int_equal((uint32_t)g32(bt + 17), sli_crc32c(0, bt + 21, (size_t)bl + 12 - 21));
        records += g32(bt + 57);
        bt += 12 + bl;
    }
    assert_int_equal(records, 3 * produced);
    close(good);
    good = -1;
    /* the log: one line per disconnected client, nothing else but refusals */
    fflush(slog);
    rewind(slog);
    char line[512];
    int lines = 0, disc = 0;
    while (fgets(line, sizeof line, slog)) {
        lines++;
        if (strstr(line, "disconnected") || strstr(line, "refused"))
            disc++;
        else
            print_message("unexpected log line: %s", line);
    }
    assert_int_equal(disc, disconnects);
    assert_int_equal(lines, disconnects);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_and_garbage), cmocka_unit_test(test_above_max_request),
        cmocka_unit_test(test_cut_then_silence), cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_data_intact),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
