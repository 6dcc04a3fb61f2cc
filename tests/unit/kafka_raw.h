/*
 * tests/unit/kafka_raw.h - raw-socket Kafka helpers shared by the protocol
 * server's tests (tests/unit/test_server*.c); a header, not a test (CMake
 * globs tests/unit/test_*.c). All functions are static inline, all data
 * static: each test gets its own copy and uses what it needs.
 *
 * Always offered:
 *   - fb, a request frame being built: a fixed buffer of KRAW_FB_CAP bytes
 *     (default 8192; overflowing it aborts), or, with KRAW_FB_GROW defined,
 *     a malloc'ed one that grows (p, n, cap; start it as {0}, free f.p);
 *   - big-endian writers b8/b16/b32/b64, bmem (raw bytes), bstr (an int16
 *     length and the bytes; NULL: a null string), bvar (a zigzag varint),
 *     put32 (into a buffer);
 *   - req (restart f with a request header v1: length placeholder, api key,
 *     version, correlation id, client id KRAW_CLIENT_ID, default "test") and
 *     fin (fill in the length); req_at / fin_at do the same for a frame
 *     appended at f->n (several frames in one buffer);
 *   - kv_batch: a Kafka v2 record batch of records "k<i>" -> "v<i>" (i < n,
 *     at most 10) after its bytes length, its CRC good or flipped;
 *   - big-endian readers g16/g32/g64 (signed).
 *
 * Unless KRAW_FRAMES_ONLY is defined, also:
 *   - sockets: connect_port (loopback, a 60 s receive timeout as a safety
 *     net against a hang; rcvbuf: SO_RCVBUF when nonzero), send_all (one
 *     send, all of it), send_frame (fin, then send until all is sent),
 *     recv_all (0, or -1 when the connection closed or failed),
 *     read_response (one response after its length into r, correlation id
 *     checked; its length, or -1 when the server closed the connection);
 *   - a server over a temporary broker directory, run by sl_server_run on
 *     a thread of its own: broker, srv, thr, run_rc; server_thread_start,
 *     server_thread_stop (stop, join, close), connect_srv (to srv), and
 *     rm_dir (rm -rf).
 */
#ifndef SLUICE_TESTS_UNIT_KAFKA_RAW_H
#define SLUICE_TESTS_UNIT_KAFKA_RAW_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"

#ifndef KRAW_FB_CAP
#define KRAW_FB_CAP 8192
#endif
#ifndef KRAW_CLIENT_ID
#define KRAW_CLIENT_ID "test"
#endif

/* ---- frames ---- */

#ifdef KRAW_FB_GROW
typedef struct fb {
    uint8_t *p;
    size_t n, cap;
} fb;
#else
typedef struct fb {
    uint8_t p[KRAW_FB_CAP];
    size_t n;
} fb;
#endif

/* Room for more bytes at f->n. */
static inline void fb_room(fb *f, size_t more)
{
#ifdef KRAW_FB_GROW
    if (f->n + more <= f->cap) return;
    f->cap = (f->n + more) * 2;
    f->p = realloc(f->p, f->cap);
    assert_non_null(f->p);
#else
    if (f->n + more > sizeof f->p) abort();
#endif
}
static inline void b8(fb *f, uint8_t v)
{
    fb_room(f, 1);
    f->p[f->n++] = v;
}
static inline void b16(fb *f, uint16_t v)
{
    b8(f, (uint8_t)(v >> 8));
    b8(f, (uint8_t)v);
}
static inline void b32(fb *f, uint32_t v)
{
    b16(f, (uint16_t)(v >> 16));
    b16(f, (uint16_t)v);
}
static inline void b64(fb *f, uint64_t v)
{
    b32(f, (uint32_t)(v >> 32));
    b32(f, (uint32_t)v);
}
static inline void bmem(fb *f, const void *p, size_t n)
{
    fb_room(f, n);
    memcpy(f->p + f->n, p, n);
    f->n += n;
}
static inline void bstr(fb *f, const char *s) /* NULL: a null string */
{
    if (!s) {
        b16(f, 0xffff);
        return;
    }
    b16(f, (uint16_t)strlen(s));
    bmem(f, s, strlen(s));
}
static inline void bvar(fb *f, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        b8(f, (uint8_t)(z | 0x80));
        z >>= 7;
    }
    b8(f, (uint8_t)z);
}
static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Append a request header v1 (after a length placeholder) at f->n; returns
 * where the frame starts, for fin_at. */
static inline size_t req_at(fb *f, int16_t key, int16_t ver, int32_t corr)
{
    size_t at = f->n;
    b32(f, 0);
    b16(f, (uint16_t)key);
    b16(f, (uint16_t)ver);
    b32(f, (uint32_t)corr);
    bstr(f, KRAW_CLIENT_ID);
    return at;
}
static inline void fin_at(fb *f, size_t at)
{
    put32(f->p + at, (uint32_t)(f->n - at - 4));
}
/* Start f over with a request header; fin fills in its length. */
static inline void req(fb *f, int16_t key, int16_t ver, int32_t corr)
{
    f->n = 0;
    req_at(f, key, ver, corr);
}
static inline void fin(fb *f)
{
    fin_at(f, 0);
}

/* A v2 batch of n records "k<i>" -> "v<i>" in f, after its bytes length:
 * magic as given, the record count field count (0: n), the CRC flipped when
 * bad_crc. */
static inline void kv_batch(fb *f, int n, uint8_t magic, uint32_t count, bool bad_crc)
{
    size_t start = f->n;
    b32(f, 0); /* bytes length, patched */
    size_t b = f->n;
    b64(f, 0);
    b32(f, 0); /* batch length, patched */
    b32(f, 0); /* leader epoch */
    b8(f, magic);
    b32(f, 0); /* crc, patched */
    b16(f, 0);
    b32(f, (uint32_t)(n - 1));
    b64(f, 1000);
    b64(f, 1000 + (uint64_t)n - 1);
    b64(f, (uint64_t)-1);
    b16(f, 0xffff);
    b32(f, 0xffffffff);
    b32(f, count ? count : (uint32_t)n);
    for (int i = 0; i < n; i++) {
        /* length, attrs, ts delta i, offset delta i, key "k<i>", value "v<i>", 0 headers */
        b8(f, 2 * 10);
        b8(f, 0);
        b8(f, (uint8_t)(2 * i));
        b8(f, (uint8_t)(2 * i));
        b8(f, 2 * 2);
        b8(f, 'k');
        b8(f, (uint8_t)('0' + i));
        b8(f, 2 * 2);
        b8(f, 'v');
        b8(f, (uint8_t)('0' + i));
        b8(f, 0);
    }
    size_t len = f->n - b;
    uint8_t *p = f->p + b;
    put32(p + 8, (uint32_t)len - 12);
    put32(p + 17, sli_crc32c(0, p + 21, len - 21) ^ (bad_crc ? 1u : 0u));
    put32(f->p + start, (uint32_t)len);
}

static inline int16_t g16(const uint8_t *p)
{
    return (int16_t)(p[0] << 8 | p[1]);
}
static inline int32_t g32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}
static inline int64_t g64(const uint8_t *p)
{
    return (int64_t)((uint64_t)(uint32_t)g32(p) << 32 | (uint32_t)g32(p + 4));
}

#ifndef KRAW_FRAMES_ONLY

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sluice/broker.h"
#include "sluice/server.h"

/* ---- sockets ---- */

static inline int connect_port(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 60}; /* a safety net against a hang, not a time assertion */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static inline void send_all(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static inline void send_frame(int fd, fb *f)
{
    fin(f);
    size_t off = 0;
    while (off < f->n) {
        ssize_t k = send(fd, f->p + off, f->n - off, MSG_NOSIGNAL);
        assert_true(k > 0);
        off += (size_t)k;
    }
}

static inline int recv_all(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = recv(fd, p + got, n - got, 0);
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

/* Read one response into r (after its length); returns its length, or -1
 * when the server closed the connection. Checks the correlation id. */
static inline long read_response(int fd, int32_t corr, uint8_t *r, size_t cap)
{
    uint8_t l[4];
    if (recv_all(fd, l, 4) < 0) return -1;
    uint32_t n = (uint32_t)g32(l);
    assert_true(n >= 4 && n <= cap);
    assert_int_equal(recv_all(fd, r, n), 0);
    assert_int_equal((uint32_t)g32(r), (uint32_t)corr);
    return (long)n;
}

/* ---- the server ---- */

static sl_broker *broker;
static sl_server *srv;
static pthread_t thr;
static int run_rc;

static inline void *run_main(void *arg)
{
    (void)arg;
    run_rc = sl_server_run(srv);
    return NULL;
}

/* Run srv (opened) on a thread: 0, or -1. */
static inline int server_thread_start(void)
{
    return pthread_create(&thr, NULL, run_main, NULL) ? -1 : 0;
}
static inline void server_thread_stop(void)
{
    sl_server_stop(srv);
    pthread_join(thr, NULL);
    sl_server_close(srv);
}

static inline int connect_srv(void)
{
    return connect_port(sl_server_port(srv), 0);
}

/* rm -rf dir: 0, or -1. */
static inline int rm_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif /* KRAW_FRAMES_ONLY */
#endif
