/*
 * tests/unit/test_cli_kafka.c - `sluice produce|consume|topic -b HOST:PORT`
 * against librdkafka's mock cluster (rd_kafka_mock_cluster_new: a Kafka
 * server in this process, over TCP on loopback), run as a user would
 * (SLUICE_BIN through /bin/sh):
 *   - keyed lines (-K) land in the partition Kafka's murmur2 gives
 *     (sl_partition_for_key), offsets per partition are 0, 1, 2, ... and
 *     the order per partition is the input order (-f '%p %o %k %s\n');
 *   - -p on produce and consume, -c, -o -N, -o OFFSET;
 *   - -G commits what was printed: a second run of the group prints only
 *     what came after;
 *   - topic list / describe (partitions, leaders, offsets);
 *   - a delivery the broker refuses (an error pushed into the mock): one
 *     line naming the input line, exit 1; topic create, which the mock
 *     cannot serve (no controller): one line, exit 1;
 *   - usage errors (bad -b, -b with --dir, a partition the topic lacks) and
 *     an unreachable broker (refused; listening but silent): one line naming
 *     it, exit 1, nothing on stdout.
 * The mock keeps its topics in memory; each test uses its own topic.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "tests/unit/test_broker_util.h"

static char *dir;
static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mock;
static const char *boot;

/* Run "SLUICE_BIN args" with stdin from input; capture stdout and stderr. */
static int run(const char *input, char *out, size_t outcap, char *err, size_t errcap,
               const char *fmt, ...)
{
    char args[4096], cmd[20000], ofile[1024], efile[1024], ifile[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(ofile, sizeof ofile, "%s/out", dir);
    snprintf(efile, sizeof efile, "%s/err", dir);
    snprintf(ifile, sizeof ifile, "%s/in", dir);
    FILE *f = fopen(ifile, "w");
    assert_non_null(f);
    if (input) fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' %s <'%s' >'%s' 2>'%s'", SLUICE_BIN, args, ifile, ofile, efile);
    int st = system(cmd);
    const char *files[2] = {ofile, efile};
    char *bufs[2] = {out, err};
    size_t caps[2] = {outcap, errcap};
    for (int i = 0; i < 2; i++) {
        f = fopen(files[i], "r");
        assert_non_null(f);
        size_t n = fread(bufs[i], 1, caps[i] - 1, f);
        bufs[i][n] = '\0';
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void new_topic(const char *name, int partitions)
{
    assert_int_equal(rd_kafka_mock_topic_create(mock, name, partitions, 1), 0);
}

static int setup(void **state)
{
    (void)state;
    dir = tb_tmpdir();
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* the mock's own client handle: never used, only its thread and logs */
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!dir || !mock_rk) return -1;
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    if (!mock) return -1;
    boot = rd_kafka_mock_cluster_bootstraps(mock);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (mock) rd_kafka_mock_cluster_destroy(mock);
    if (mock_rk) rd_kafka_destroy(mock_rk);
    tb_rmrf(dir);
    free(dir);
    return 0;
}

/* Keyed lines: the partition of each is murmur2's, offsets contiguous per
 * partition, input order kept per partition. */
static void test_keyed_roundtrip(void **state)
{
    (void)state;
    enum { N = 200, P = 4 };
    static char in[N * 32], out[1 << 16], err[4096];
    size_t at = 0;
    for (int i = 0; i < N; i++)
        at += (size_t)snprintf(in + at, sizeof in - at, "key%d=v%d\n", i % 37, i);
    new_topic("keyed", P);
    int rc = run(in, out, sizeof out, err, sizeof err, "produce keyed -K = -b %s", boot);
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
    rc = run(NULL, out, sizeof out, err, sizeof err,
             "consume keyed -e -f '%%p %%o %%k %%s\\n' -b %s", boot);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(out), N);
    int64_t next[P] = {0};
    int last_i[P] = {-1, -1, -1, -1};
    int seen = 0;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int p, i;
        long long off;
        char key[32];
        assert_int_equal(sscanf(l, "%d %lld %31s v%d", &p, &off, key, &i), 4);
        assert_true(p >= 0 && p < P);
        assert_int_equal(p, sl_partition_for_key(key, strlen(key), P));
        assert_int_equal(off, next[p]); /* contiguous from 0 */
        next[p]++;
        assert_true(i > last_i[p]); /* input order per partition */
        last_i[p] = i;
        char want[32];
        snprintf(want, sizeof want, "key%d", i % 37);
        assert_string_equal(key, want);
        seen++;
    }
    assert_int_equal(seen, N);
}

/* produce -p, consume -p, -c, -o -N and -o OFFSET. */
static void test_partition_count_offsets(void **state)
{
    (void)state;
    static char out[1 << 16], err[4096];
    new_topic("parts", 3);
    int rc =
        run("a\nb\nc\nd\ne\n", out, sizeof out, err, sizeof err, "produce parts -p 2 -b %s", boot);
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
    rc = run(NULL, out, sizeof out, err, sizeof err,
             "consume parts -p 2 -e -f '%%p:%%o:%%s\\n' -b %s", boot);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "2:0:a\n2:1:b\n2:2:c\n2:3:d\n2:4:e\n");
    rc = run(NULL, out, sizeof out, err, sizeof err, "consume parts -p 1 -e -b %s", boot);
    assert_int_equal(rc, 0);
    assert_string_equal(out, ""); /* nothing went elsewhere */
    rc = run(NULL, out, sizeof out, err, sizeof err, "consume parts -c 2 -b %s", boot);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "a\nb\n");
    rc = run(NULL, out, sizeof out, err, sizeof err,
             "consume parts -p 2 -o -2 -e -f '%%o %%s\\n' -b %s", boot);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "3 d\n4 e\n");
    rc = run(NULL, out, sizeof out, err, sizeof err, "consume parts -p 2 -o 1 -c 2 --bootstrap %s",
             boot);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "b\nc\n");
}

/* -G: a second run of the group prints only what was produced after the
 * first. */
static void test_group_commits(void **state)
{
    (void)state;
    static char out[1 << 16], err[4096];
    new_topic("grouped", 2);
    int rc = run("k1=a\nk2=b\nk3=c\nk4=d\n", out, sizeof out, err, sizeof err,
                 "produce grouped -K = -b %s", boot);
    assert_int_equal(rc, 0);
    rc = run(NULL, out, sizeof out, err, sizeof err, "consume grouped -G g1 -e -b %s", boot);
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(out), 4);
    rc = run("k5=e\nk6=f\n", out, sizeof out, err, sizeof err, "produce grouped -K = -b %s", boot);
    assert_int_equal(rc, 0);
    rc = run(NULL, out, sizeof out, err, sizeof err,
             "consume grouped -G g1 -e -f '%%k=%%s\\n' -b %s", boot);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "k5=e\n"));
    assert_non_null(strstr(out, "k6=f\n"));
    /* -G with -p: the committed offset of that partition wins over -o. */
    rc = run(NULL, out, sizeof out, err, sizeof err, "consume grouped -G g2 -p 0 -c 1 -b %s", boot);
    assert_int_equal(rc, 0);
    assert_int_equal(count_lines(out), 1);
    char first[64];
    assert_true(strlen(out) < sizeof first);
    memcpy(first, out, strlen(out) + 1);
    rc = run(NULL, out, sizeof out, err, sizeof err,
             "consume grouped -G g2 -p 0 -e -o beginning -b %s", boot);
    assert_int_equal(rc, 0);
    assert_null(strstr(out, first)); /* not read again */
}

static void test_topic_list_describe(void **state)
{
    (void)state;
    static char out[1 << 16], err[4096];
    new_topic("described", 3);
    int rc = run(NULL, out, sizeof out, err, sizeof err, "topic list -b %s", boot);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "described\n"));
    rc = run("x\ny\n", out, sizeof out, err, sizeof err, "produce described -p 1 -b %s", boot);
    assert_int_equal(rc, 0);
    rc = run(NULL, out, sizeof out, err, sizeof err, "topic describe described -b %s", boot);
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "topic described: 3 partitions\n"));
    assert_int_equal(count_lines(out), 5); /* title, header, 3 partitions */
    /* partition 1: first offset 0, next offset 2 */
    const char *p1 = strstr(out, "\n        1 ");
    assert_non_null(p1);
    int part, leader, replicas, isr;
    long long lo, hi;
    assert_int_equal(sscanf(p1, "%d %d %d %d %lld %lld", &part, &leader, &replicas, &isr, &lo, &hi),
                     6);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 2);
    assert_true(leader >= 1);
    rc = run(NULL, out, sizeof out, err, sizeof err, "topic describe nosuch -b %s", boot);
    assert_int_equal(rc, 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "nosuch"));
}

/* A port nobody listens on: bound, never listened to. */
static int dead_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static void test_unreachable(void **state)
{
    (void)state;
    static char out[4096], err[4096];
    int fd;
    int port = dead_port(&fd);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    const char *cmds[] = {"produce t -b %s", "consume t -e -b %s", "topic list -b %s"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        int rc = run("a\n", out, sizeof out, err, sizeof err, cmds[i], where);
        assert_int_equal(rc, 1);
        assert_string_equal(out, "");
        assert_int_equal(count_lines(err), 1);
        assert_non_null(strstr(err, where));
    }
    /* Listening but never answering: given up after the bound (10 s). */
    assert_int_equal(listen(fd, 16), 0);
    int rc = run(NULL, out, sizeof out, err, sizeof err, "topic list -b %s", where);
    assert_int_equal(rc, 1);
    assert_string_equal(out, "");
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, where));
    /* "no answer ... within 10 s", or librdkafka's own ApiVersion timeout
     * (also 10 s) as the reason: either names the broker. */
    close(fd);
}

/* A delivery the broker refuses: one line naming the input line, exit 1;
 * and an admin request the mock cannot serve (it names no controller): one
 * line, exit 1, within the bound. */
static void test_refused(void **state)
{
    (void)state;
    static char out[4096], err[4096];
    new_topic("refused", 1);
    rd_kafka_mock_push_request_errors(mock, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    int rc = run("a\n", out, sizeof out, err, sizeof err, "produce refused -b %s", boot);
    assert_int_equal(rc, 1);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "line 1: not delivered"));
    assert_non_null(strstr(err, "1 record not delivered"));
    rc = run(NULL, out, sizeof out, err, sizeof err, "consume refused -e -b %s", boot);
    assert_int_equal(rc, 0);
    assert_string_equal(out, ""); /* and nothing was appended */
    rc = run(NULL, out, sizeof out, err, sizeof err, "topic create other --partitions 2 -b %s",
             boot);
    assert_int_equal(rc, 1);
    assert_int_equal(count_lines(err), 1);
}

static void test_usage_errors(void **state)
{
    (void)state;
    static char out[4096], err[4096];
    new_topic("small", 2);
    struct {
        const char *args;
        int status;
        const char *says;
    } cases[] = {
        {"produce small -b nohostport", 2, "HOST:PORT"},
        {"produce small -b %s --dir /tmp/x", 2, "--dir"},
        {"produce small -b %s --transactional-id t", 2, "--transactional-id"},
        {"produce small -p 5 -b %s", 2, "no partition 5"},
        {"consume small -p 2 -b %s", 2, "no partition 2"},
        {"consume nosuch -e -b %s", 1, "nosuch"},
        {"produce nosuch -b %s", 1, "nosuch"},
        {"topic clean small -b %s", 2, "directory"},
        {"topic create small --fsync always -b %s", 2, "--fsync"},
        {"topic create small --replication-factor 1", 2, "-b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run("a\n", out, sizeof out, err, sizeof err, cases[i].args, boot);
        if (rc != cases[i].status || count_lines(err) != 1 || !strstr(err, cases[i].says))
            fail_msg("'%s': status %d, stderr '%s'", cases[i].args, rc, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyed_roundtrip), cmocka_unit_test(test_partition_count_offsets),
        cmocka_unit_test(test_group_commits),   cmocka_unit_test(test_topic_list_describe),
        cmocka_unit_test(test_unreachable),     cmocka_unit_test(test_refused),
        cmocka_unit_test(test_usage_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
