/*
 * tests/unit/test_server_many_conns.c - `sluice broker serve` under many
 * connections (issue 10: "1,000 idle connections and 50 active producers at
 * once are served; memory stays bounded"). A C driver with raw sockets and
 * epoll, against the real CLI started as a child process over a temporary
 * directory (topic "load", 4 partitions):
 *
 *   1. the server starts with a soft RLIMIT_NOFILE of 256 (set in the child
 *      before exec): it must raise its own soft limit to the hard one, or
 *      it could not hold what follows (checked in /proc/PID/limits too);
 *   2. IDLE (1,000) connections each send ApiVersions, get the answer and
 *      stay open;
 *   3. PRODUCERS (50) connections each pipeline BATCHES Produce requests of
 *      PER_BATCH records (100-byte values, acks=1) at once, all producers
 *      together, driven by one epoll loop: every request is answered, with
 *      no error;
 *   4. every idle connection is still served (ApiVersions again);
 *   5. the server's VmRSS (/proc/PID/status) is below RSS_BOUND: the
 *      records are on disk, not in the server, so the bound does not grow
 *      with them; what it holds per connection is a few KiB;
 *   6. CHURN rounds open CHURN_CONNS connections that each send one 60 KB
 *      frame (an unknown api key: answered with an error, the body never
 *      parsed) and close: after the first round (the allocator's high-water
 *      mark: 500 such frames held at once), VmRSS may grow by at most
 *      CHURN_SLACK, while a per-connection buffer leaked at close would add
 *      64 KiB for each of the (CHURN - 1) * CHURN_CONNS connections (90+
 *      MiB);
 *   7. SIGTERM: the server stops with status 0; then every record is in the
 *      log exactly once, read back in process, each producer's in the order
 *      it sent them.
 *
 * A second test runs the server at a hard limit of 64 descriptors: the
 * clients it cannot hold wait (not refused, not dropped) and are answered,
 * in order, as earlier connections close.
 *
 * The figures (VmRSS, VmHWM) are printed; the memory bounds are checked in
 * builds without a sanitizer only. Nothing asserts on time; the
 * socket timeouts are a safety net against a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"
#include "sluice/broker.h"

#define IDLE        1000
#define PRODUCERS   50
#define BATCHES     20
#define PER_BATCH   100 /* PRODUCERS * BATCHES * PER_BATCH = 100,000 records */
#define VALUE_LEN   100
#define PARTITIONS  4
#define CHURN       4
#define CHURN_CONNS 500
#define CHURN_FRAME (60 * 1024)
#define RSS_BOUND   (64L << 20)
#define CHURN_SLACK (16L << 20)

/* Under a sanitizer the server runs on its allocator, which holds freed
 * memory in quarantine: the figures are printed, not checked. */
#ifdef SLUICE_SANITIZED
#define MEMORY_BOUNDS 0
#else
#define MEMORY_BOUNDS 1
#endif

static char dir[] = "/tmp/sluice_test_many_conns_XXXXXX";
static char errpath[512];
static pid_t srv = -1;
static int port;

/* ---- frames (kafka_raw.h; req_at/fin_at) ---- */

#define KRAW_FRAMES_ONLY
#define KRAW_FB_GROW
#define KRAW_CLIENT_ID "many"
#include "kafka_raw.h"

static void value_of(char *v, int producer, int seq)
{
    memset(v, '.', VALUE_LEN);
    char head[32];
    int n = snprintf(head, sizeof head, "p%02d-r%05d-", producer, seq);
    memcpy(v, head, (size_t)n);
}

/* Produce v3, acks=1: batch b of producer pr (records PER_BATCH*b ...). */
static void produce_frame(fb *f, int pr, int b)
{
    size_t at = req_at(f, 0, 3, b);
    b16(f, -1); /* transactional_id: null */
    b16(f, 1);  /* acks */
    b32(f, 30000);
    b32(f, 1);
    b16(f, 4);
    bmem(f, "load", 4);
    b32(f, 1);
    b32(f, pr % PARTITIONS);
    size_t lat = f->n;
    b32(f, 0);
    size_t bat = f->n;
    b64(f, 0);
    b32(f, 0);
    b32(f, 0);
    b8(f, 2);
    b32(f, 0);
    b16(f, 0);
    b32(f, PER_BATCH - 1);
    b64(f, 1700000000000LL);
    b64(f, 1700000000000LL);
    b64(f, -1);
    b16(f, -1);
    b32(f, -1);
    b32(f, PER_BATCH);
    for (int i = 0; i < PER_BATCH; i++) {
        char v[VALUE_LEN];
        value_of(v, pr, b * PER_BATCH + i);
        fb r = {0};
        b8(&r, 0);
        bvar(&r, 0);
        bvar(&r, i);
        bvar(&r, -1); /* no key */
        bvar(&r, VALUE_LEN);
        bmem(&r, v, VALUE_LEN);
        bvar(&r, 0);
        bvar(f, (int64_t)r.n);
        bmem(f, r.p, r.n);
        free(r.p);
    }
    put32(f->p + bat + 8, (uint32_t)(f->n - bat - 12));
    put32(f->p + bat + 17, sli_crc32c(0, f->p + bat + 21, f->n - bat - 21));
    put32(f->p + lat, (uint32_t)(f->n - lat - 4));
    fin_at(f, at);
}

/* ---- sockets ---- */

static int connect_srv(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect: %s (after %d fds)", strerror(errno), fd);
    struct timeval tv = {.tv_sec = 120}; /* a safety net against a hang, not a time assertion */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n) {
        ssize_t k = send(fd, q, n, MSG_NOSIGNAL);
        if (k <= 0) fail_msg("send: %s", k < 0 ? strerror(errno) : "closed");
        q += k, n -= (size_t)k;
    }
}

static void recv_all(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0) fail_msg("recv: %s", k < 0 ? strerror(errno) : "closed by the server");
        p += k, n -= (size_t)k;
    }
}

/* Send frame f on fd and check that one answer with corr comes back. */
static void round_trip(int fd, const fb *f, int32_t corr)
{
    static uint8_t r[1 << 16];
    send_all(fd, f->p, f->n);
    recv_all(fd, r, 4);
    uint32_t n = (uint32_t)g32(r);
    assert_true(n >= 4 && n <= sizeof r);
    recv_all(fd, r, n);
    assert_int_equal(g32(r), (uint32_t)corr);
}

static void api_versions(int fd, int32_t corr)
{
    fb f = {0};
    size_t at = req_at(&f, 18, 2, corr);
    fin_at(&f, at);
    round_trip(fd, &f, corr);
    free(f.p);
}

/* ---- the server process ---- */

static long status_kib(const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)srv);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, fp))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = strtol(line + fl + 1, NULL, 10);
    fclose(fp);
    assert_true(v >= 0);
    return v;
}

/* Start the server with RLIMIT_NOFILE soft limit soft (and hard limit hard,
 * 0: as ours). */
static void start_server(rlim_t soft, rlim_t hard)
{
    assert_non_null(mkdtemp(dir));
    sl_broker *b = NULL;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = PARTITIONS;
    assert_int_equal(sl_topic_create(b, "load", &c), 0);
    assert_int_equal(sl_broker_close(b), 0);
    snprintf(errpath, sizeof errpath, "%s.serve.err", dir);
    srv = fork();
    assert_true(srv >= 0);
    if (srv == 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        for (int fd = 3; fd < 65536; fd++) close(fd); /* below the limit set next */
        rl.rlim_cur = soft;
        if (hard) rl.rlim_max = hard;
        setrlimit(RLIMIT_NOFILE, &rl);
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0) _exit(126);
        execl(SLUICE_BIN, "sluice", "broker", "serve", "--dir", dir, "--listen", "127.0.0.1:0",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1200 && !port; i++) { /* readiness: the start line names the port */
        FILE *fp = fopen(errpath, "r");
        char line[1024];
        while (fp && fgets(line, sizeof line, fp)) {
            const char *q = strstr(line, " on port ");
            if (q) port = atoi(q + 9);
        }
        if (fp) fclose(fp);
        int st;
        if (!port && waitpid(srv, &st, WNOHANG) == srv) fail_msg("the server exited at start");
        if (!port) usleep(50000);
    }
    assert_true(port > 0);
}

/* ---- the test ---- */

typedef struct producer {
    int fd;
    fb out;
    size_t sent;
    uint8_t in[1 << 16];
    size_t inlen;
    int answered;
} producer;

static void drive_producers(producer *ps)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    for (int i = 0; i < PRODUCERS; i++) {
        producer *p = &ps[i];
        p->fd = connect_srv();
        fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
        for (int b = 0; b < BATCHES; b++) produce_frame(&p->out, i, b);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = p};
        assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev), 0);
    }
    int done = 0;
    while (done < PRODUCERS) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 120000); /* a safety net, not a time assertion */
        if (n == 0) fail_msg("no progress: %d of %d producers done", done, PRODUCERS);
        if (n < 0 && errno == EINTR) continue;
        assert_true(n > 0);
        for (int e = 0; e < n; e++) {
            producer *p = evs[e].data.ptr;
            if ((evs[e].events & EPOLLOUT) && p->sent < p->out.n) {
                ssize_t k = send(p->fd, p->out.p + p->sent, p->out.n - p->sent, MSG_NOSIGNAL);
                if (k < 0 && errno != EAGAIN) fail_msg("producer send: %s", strerror(errno));
                if (k > 0) p->sent += (size_t)k;
                if (p->sent == p->out.n) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
                    epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
                }
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t k = recv(p->fd, p->in + p->inlen, sizeof p->in - p->inlen, 0);
            if (k < 0 && errno == EAGAIN) continue;
            if (k <= 0) fail_msg("producer %d: the server closed the connection", (int)(p - ps));
            p->inlen += (size_t)k;
            while (p->inlen >= 4 && p->inlen >= 4 + (uint32_t)g32(p->in)) {
                uint32_t l = (uint32_t)g32(p->in);
                /* corr | topics 1 | "load" | partitions 1 | partition | error | base | ... */
                assert_true(l >= 4 + 4 + 6 + 4 + 4 + 2 + 8);
                assert_int_equal(g32(p->in + 4), (uint32_t)p->answered); /* in order */
                const uint8_t *q = p->in + 4 + 4 + 4 + 6 + 4;
                assert_int_equal(g32(q), (uint32_t)((p - ps) % PARTITIONS));
                if (q[4] || q[5])
                    fail_msg("producer %d: error %d", (int)(p - ps), q[4] << 8 | q[5]);
                p->answered++;
                memmove(p->in, p->in + 4 + l, p->inlen - 4 - l);
                p->inlen -= 4 + l;
            }
            if (p->answered == BATCHES) {
                epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
                done++;
            }
        }
    }
    close(ep);
}

static void churn(void)
{
    fb f = {0};
    size_t at = req_at(&f, 999, 0, 42); /* unknown api key: answered, body not parsed */
    while (f.n < CHURN_FRAME) b8(&f, 'x');
    fin_at(&f, at);
    int fds[CHURN_CONNS];
    for (int i = 0; i < CHURN_CONNS; i++) {
        fds[i] = connect_srv();
        round_trip(fds[i], &f, 42);
    }
    for (int i = 0; i < CHURN_CONNS; i++) close(fds[i]);
    free(f.p);
    /* The server has seen every close once it answers a new connection. */
    for (int i = 0; i < 4; i++) {
        int fd = connect_srv();
        api_versions(fd, 7);
        close(fd);
    }
}

static void check_log(void)
{
    sl_broker *b = NULL;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    static int next_seq[PRODUCERS];
    long total = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        sl_log_reader *r = NULL;
        assert_int_equal(sl_log_reader_open(&r, b, "load", p, SL_OFFSET_BEGINNING), 0);
        sl_message m;
        int rc;
        while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
            int pr = -1, seq = -1;
            char v[VALUE_LEN + 1];
            assert_int_equal(m.value_len, VALUE_LEN);
            memcpy(v, m.value, VALUE_LEN);
            v[VALUE_LEN] = 0;
            assert_int_equal(sscanf(v, "p%d-r%d-", &pr, &seq), 2);
            assert_true(pr >= 0 && pr < PRODUCERS && pr % PARTITIONS == p);
            if (seq != next_seq[pr]) /* each record once, in the order sent */
                fail_msg("partition %d offset %lld: producer %d record %d, expected %d", p,
                         (long long)m.offset, pr, seq, next_seq[pr]);
            next_seq[pr]++;
            total++;
        }
        assert_int_equal(rc, SL_EAGAIN);
        sl_log_reader_close(r);
    }
    for (int pr = 0; pr < PRODUCERS; pr++) assert_int_equal(next_seq[pr], BATCHES * PER_BATCH);
    assert_int_equal(total, (long)PRODUCERS * BATCHES * PER_BATCH);
    assert_int_equal(sl_broker_close(b), 0);
}

static void test_many_connections(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < IDLE + PRODUCERS + CHURN_CONNS + 64) {
        fprintf(stderr, "hard RLIMIT_NOFILE %llu is too low for %d connections\n",
                (unsigned long long)rl.rlim_max, IDLE + PRODUCERS + CHURN_CONNS);
        skip();
    }
    rl.rlim_cur = rl.rlim_max; /* `ulimit -n` for this process */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    start_server(256, 0); /* the server must raise its soft limit itself */

    /* 1. the server raised its own limit */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)srv);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    bool seen = false;
    while (fgets(line, sizeof line, fp)) {
        char soft[32], hard[32];
        if (sscanf(line, "Max open files %31s %31s", soft, hard) == 2) {
            seen = true;
            if (strcmp(soft, hard))
                fail_msg("server's open files limit: soft %s, hard %s", soft, hard);
        }
    }
    fclose(fp);
    assert_true(seen);

    /* 2. idle connections */
    int *idle = calloc(IDLE, sizeof *idle);
    assert_non_null(idle);
    for (int i = 0; i < IDLE; i++) {
        idle[i] = connect_srv();
        api_versions(idle[i], i);
    }
    long rss_idle = status_kib("VmRSS");

    /* 3. producers, all at once */
    producer *ps = calloc(PRODUCERS, sizeof *ps);
    assert_non_null(ps);
    drive_producers(ps);

    /* 4. the idle connections are still served */
    for (int i = 0; i < IDLE; i++) api_versions(idle[i], IDLE + i);
    long rss = status_kib("VmRSS"), hwm = status_kib("VmHWM");
    printf("many_conns: %d idle + %d producers x %d records: server VmRSS %ld KiB after 1,000 "
           "idle connections, %ld KiB after the load (peak VmHWM %ld KiB; bound %ld KiB)\n",
           IDLE, PRODUCERS, BATCHES * PER_BATCH, rss_idle, rss, hwm, RSS_BOUND >> 10);
    if (rss * 1024 > RSS_BOUND && MEMORY_BOUNDS)
        fail_msg("server VmRSS %ld KiB above the bound", rss);

    /* 6. churn: no memory kept per closed connection. The first round sets
     * the allocator's high-water mark (its connections' frames are all
     * held at once, and freed pages are kept for reuse); the later rounds
     * must reuse it. */
    churn();
    long rss_first = status_kib("VmRSS");
    for (int r = 1; r < CHURN; r++) churn();
    long rss_churn = status_kib("VmRSS");
    printf("many_conns: rounds of %d connections sending one %d KiB frame each: VmRSS %ld KiB "
           "after the first, %ld KiB after %d (+%ld KiB; slack %ld KiB)\n",
           CHURN_CONNS, CHURN_FRAME >> 10, rss_first, rss_churn, CHURN, rss_churn - rss_first,
           CHURN_SLACK >> 10);
    if ((rss_churn - rss_first) * 1024 > CHURN_SLACK && MEMORY_BOUNDS)
        fail_msg("server VmRSS grew by %ld KiB over %d closed connections", rss_churn - rss_first,
                 (CHURN - 1) * CHURN_CONNS);

    /* 7. stop, then every record is in the log */
    for (int i = 0; i < IDLE; i++) close(idle[i]);
    for (int i = 0; i < PRODUCERS; i++) {
        close(ps[i].fd);
        free(ps[i].out.p);
    }
    free(idle);
    free(ps);
    kill(srv, SIGTERM);
    int st = 0;
    assert_int_equal(waitpid(srv, &st, 0), srv);
    srv = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("server exit status %d", st);
    check_log();
}

/* Out of descriptors (hard limit 64): the server stops accepting (the
 * clients beyond what it can hold wait in the listen backlog; it neither
 * refuses them nor spins on the ready listener) and takes them up, in
 * order, as connections close. 100 clients each send ApiVersions first;
 * once the server has said it ran out of descriptors, each answer is read
 * in order and its connection closed, which frees
 * the descriptor the next waiting client needs: every one is answered. A
 * server that refused or dropped the waiting clients fails here. */
static void test_out_of_descriptors(void **state)
{
    (void)state;
    start_server(64, 64);
    enum { N = 100 };
    int fds[N];
    fb f = {0};
    size_t at = req_at(&f, 18, 2, 5);
    fin_at(&f, at);
    for (int i = 0; i < N; i++) {
        fds[i] = connect_srv(); /* completes in the kernel's backlog */
        send_all(fds[i], f.p, f.n);
    }
    /* Nothing is closed until the server has run out: a slow server (a
     * sanitizer build) could otherwise take the connections up only as fast
     * as the loop below closes them, and never reach its limit. */
    bool out = false;
    for (int t = 0; t < 2400 && !out; t++) {
        FILE *fp = fopen(errpath, "r");
        char line[1024];
        while (fp && fgets(line, sizeof line, fp))
            if (strstr(line, "out of file descriptors")) out = true;
        if (fp) fclose(fp);
        if (!out) usleep(50000);
    }
    if (!out)
        fail_msg("the server never ran out of descriptors with %d clients at a limit of 64", N);
    for (int i = 0; i < N; i++) {
        uint8_t r[4];
        ssize_t k = recv(fds[i], r, 4, MSG_WAITALL);
        if (k != 4)
            fail_msg("connection %d: %s instead of an answer", i,
                     k == 0  ? "closed"
                     : k < 0 ? strerror(errno)
                             : "short");
        static uint8_t body[4096];
        assert_true((uint32_t)g32(r) <= sizeof body);
        recv_all(fds[i], body, (uint32_t)g32(r));
        assert_int_equal(g32(body), 5);
        close(fds[i]);
    }
    free(f.p);
    kill(srv, SIGTERM);
    int st = 0;
    assert_int_equal(waitpid(srv, &st, 0), srv);
    srv = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("server exit status %d", st);
    FILE *fp = fopen(errpath, "r");
    assert_non_null(fp);
    char line[1024];
    bool logged = false;
    while (fgets(line, sizeof line, fp))
        if (strstr(line, "out of file descriptors")) logged = true;
    fclose(fp);
    assert_true(logged); /* the limit was reached */
    printf("many_conns: at RLIMIT_NOFILE 64, %d clients answered in order as descriptors "
           "freed\n",
           N);
}

static int teardown(void **state)
{
    (void)state;
    if (srv > 0) {
        kill(srv, SIGKILL);
        waitpid(srv, NULL, 0);
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, errpath);
    int rc = system(cmd) == 0 ? 0 : -1;
    strcpy(dir, "/tmp/sluice_test_many_conns_XXXXXX"); /* for the next test */
    port = 0;
    return rc;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_many_connections, teardown),
        cmocka_unit_test_teardown(test_out_of_descriptors, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
