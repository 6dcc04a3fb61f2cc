/*
 * tests/unit/test_server_group.c - consumer groups over the Kafka protocol
 * (connectors/broker/kapi_group.c, kgroup.c), driven with hand-built frames
 * over sockets for the edge cases, and with librdkafka's high-level consumer
 * for the whole:
 *
 *   - JoinGroup v4+: MEMBER_ID_REQUIRED first, then a join with that id;
 *     v0: a new member joins at once; bad requests get their errors
 *     (INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT, UNKNOWN_MEMBER_ID,
 *     INCONSISTENT_GROUP_PROTOCOL, GROUP_MAX_SIZE_REACHED beyond 1000
 *     members and ids handed out), unknown groups too (Heartbeat,
 *     SyncGroup, LeaveGroup: UNKNOWN_MEMBER_ID; DescribeGroups: Dead;
 *     OffsetFetch: -1);
 *   - a rebalance: a second member's join waits until the first learns
 *     it from Heartbeat (REBALANCE_IN_PROGRESS) and rejoins; the leader
 *     gets the members, a follower's SyncGroup waits for the leader's and
 *     gets its assignment; protocol selection;
 *   - fencing: OffsetCommit of the old generation (ILLEGAL_GENERATION), of
 *     an unknown member, a simple commit (generation -1) to an active group
 *     (UNKNOWN_MEMBER_ID) and to a group without members (accepted);
 *     OffsetFetch returns the offsets and their metadata, all of them for a
 *     null topic list;
 *   - session expiry (a small session timeout; the test polls DescribeGroups
 *     until the group is Empty, it never asserts on time) and LeaveGroup v3
 *     (batched, one unknown member), each followed by a rebalance;
 *   - ListGroups and DescribeGroups output;
 *   - librdkafka: two rd_kafka_subscribe consumers of one group share a
 *     4-partition topic, every message is read once, and the commits are
 *     what sl_group_fetch (and so `sluice consume -G` over the directory)
 *     sees.
 *
 * The server runs sl_server_run on a thread of its own over a temporary
 * broker directory.
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
#include <librdkafka/rdkafka.h>

#include "sluice/broker.h"
#include "sluice/server.h"
#include "kafka_raw.h"

static char dir[] = "/tmp/sluice_test_server_group_XXXXXX";

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    if (sl_broker_open(&broker, dir, 0) < 0) return -1;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = 3;
    if (sl_topic_create(broker, "t", &c) < 0) return -1;
    c.partitions = 4;
    if (sl_topic_create(broker, "t4", &c) < 0) return -1;
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

/* ---- frames ---- */

static void bbytes(fb *f, const char *s)
{
    b32(f, (uint32_t)strlen(s));
    bmem(f, s, strlen(s));
}

static uint8_t rb[1 << 20];

/* A response's body (after the correlation id, which is checked). */
typedef struct cur {
    const uint8_t *p, *end;
} cur;

static cur response(int fd, int32_t corr)
{
    long n = read_response(fd, corr, rb, sizeof rb);
    assert_true(n >= 4); /* not closed */
    return (cur){rb + 4, rb + n};
}

static const uint8_t *take(cur *c, size_t n)
{
    assert_true((size_t)(c->end - c->p) >= n);
    const uint8_t *q = c->p;
    c->p += n;
    return q;
}
static int16_t r16(cur *c)
{
    const uint8_t *p = take(c, 2);
    return (int16_t)(p[0] << 8 | p[1]);
}
static int32_t r32(cur *c)
{
    const uint8_t *p = take(c, 4);
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}
static int64_t r64(cur *c)
{
    int64_t hi = r32(c);
    return (int64_t)((uint64_t)hi << 32 | (uint32_t)r32(c));
}
/* A string into out (cap bytes); returns its length, -1 for null. */
static int rstr(cur *c, char *out, size_t cap)
{
    int16_t n = r16(c);
    out[0] = 0;
    if (n < 0) return -1;
    const uint8_t *p = take(c, (size_t)n);
    assert_true((size_t)n < cap);
    memcpy(out, p, (size_t)n);
    out[n] = 0;
    return n;
}
static int32_t rbytes(cur *c, char *out, size_t cap)
{
    int32_t n = r32(c);
    out[0] = 0;
    if (n < 0) return -1;
    const uint8_t *p = take(c, (size_t)n);
    assert_true((size_t)n < cap);
    memcpy(out, p, (size_t)n);
    out[n] = 0;
    return n;
}

static int32_t corr_seq = 1000;

/* ---- requests ---- */

#define JOIN_VER 5

/* JoinGroup v5 (or ver) with one protocol, or two when proto2. */
static int32_t send_join(int fd, int16_t ver, const char *group, const char *member,
                         int32_t session, const char *proto, const char *proto2)
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 11, ver, corr);
    bstr(&f, group);
    b32(&f, (uint32_t)session);
    if (ver >= 1) b32(&f, 20000); /* rebalance timeout */
    bstr(&f, member);
    if (ver >= 5) bstr(&f, NULL);
    bstr(&f, "consumer");
    b32(&f, proto2 ? 2 : 1);
    bstr(&f, proto);
    bbytes(&f, "meta-1");
    if (proto2) {
        bstr(&f, proto2);
        bbytes(&f, "meta-2");
    }
    send_frame(fd, &f);
    return corr;
}

typedef struct jres {
    int16_t err;
    int32_t gen;
    char proto[64], leader[256], member[256];
    int32_t n;
    char members[4][256], metas[4][64];
} jres;

static jres recv_join(int fd, int16_t ver, int32_t corr)
{
    jres j;
    memset(&j, 0, sizeof j);
    cur c = response(fd, corr);
    if (ver >= 2) assert_int_equal(r32(&c), 0);
    j.err = r16(&c);
    j.gen = r32(&c);
    rstr(&c, j.proto, sizeof j.proto);
    rstr(&c, j.leader, sizeof j.leader);
    rstr(&c, j.member, sizeof j.member);
    j.n = r32(&c);
    assert_true(j.n >= 0 && j.n <= 4);
    for (int32_t i = 0; i < j.n; i++) {
        char inst[8];
        rstr(&c, j.members[i], sizeof j.members[i]);
        if (ver >= 5) assert_int_equal(rstr(&c, inst, sizeof inst), -1);
        rbytes(&c, j.metas[i], sizeof j.metas[i]);
    }
    assert_true(c.p == c.end);
    return j;
}

static jres join(int fd, int16_t ver, const char *group, const char *member, int32_t session,
                 const char *proto)
{
    return recv_join(fd, ver, send_join(fd, ver, group, member, session, proto, NULL));
}

/* A new member, the v4+ way: MEMBER_ID_REQUIRED, then the join with it
 * (sent only: it may wait). Returns the join's correlation id. */
static int32_t new_member(int fd, const char *group, int32_t session, const char *proto,
                          const char *proto2, char id[256])
{
    jres j = recv_join(fd, JOIN_VER, send_join(fd, JOIN_VER, group, "", session, proto, proto2));
    assert_int_equal(j.err, 79); /* MEMBER_ID_REQUIRED */
    assert_int_equal(j.gen, -1);
    assert_true(strncmp(j.member, "test-", 5) == 0); /* the client id, then unique */
    strcpy(id, j.member);
    return send_join(fd, JOIN_VER, group, id, session, proto, proto2);
}

/* SyncGroup v3; the leader passes n assignments (ids[i] -> as[i]). */
static int32_t send_sync(int fd, const char *group, int32_t gen, const char *member, int n,
                         const char **ids, const char **as)
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 14, 3, corr);
    bstr(&f, group);
    b32(&f, (uint32_t)gen);
    bstr(&f, member);
    bstr(&f, NULL);
    b32(&f, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        bstr(&f, ids[i]);
        bbytes(&f, as[i]);
    }
    send_frame(fd, &f);
    return corr;
}

static int16_t recv_sync(int fd, int32_t corr, char *assign, size_t cap)
{
    cur c = response(fd, corr);
    assert_int_equal(r32(&c), 0);
    int16_t err = r16(&c);
    rbytes(&c, assign, cap);
    assert_true(c.p == c.end);
    return err;
}

static int16_t heartbeat(int fd, int16_t ver, const char *group, int32_t gen, const char *member)
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 12, ver, corr);
    bstr(&f, group);
    b32(&f, (uint32_t)gen);
    bstr(&f, member);
    if (ver >= 3) bstr(&f, NULL);
    send_frame(fd, &f);
    cur c = response(fd, corr);
    if (ver >= 1) assert_int_equal(r32(&c), 0);
    int16_t err = r16(&c);
    assert_true(c.p == c.end);
    return err;
}

static int16_t leave_v1(int fd, const char *group, const char *member)
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 13, 1, corr);
    bstr(&f, group);
    bstr(&f, member);
    send_frame(fd, &f);
    cur c = response(fd, corr);
    assert_int_equal(r32(&c), 0);
    return r16(&c);
}

/* OffsetCommit v7 (or v2) of one partition of "t"; returns its error. */
static int16_t commit(int fd, int16_t ver, const char *group, int32_t gen, const char *member,
                      const char *topic, int32_t part, int64_t off, const char *meta)
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 8, ver, corr);
    bstr(&f, group);
    if (ver >= 1) {
        b32(&f, (uint32_t)gen);
        bstr(&f, member);
    }
    if (ver >= 7) bstr(&f, NULL);
    if (ver >= 2 && ver <= 4) b64(&f, (uint64_t)-1);
    b32(&f, 1);
    bstr(&f, topic);
    b32(&f, 1);
    b32(&f, (uint32_t)part);
    b64(&f, (uint64_t)off);
    if (ver >= 6) b32(&f, 0xffffffffu);
    if (ver == 1) b64(&f, (uint64_t)-1);
    bstr(&f, meta);
    send_frame(fd, &f);
    cur c = response(fd, corr);
    if (ver >= 3) assert_int_equal(r32(&c), 0);
    assert_int_equal(r32(&c), 1);
    char name[64];
    rstr(&c, name, sizeof name);
    assert_string_equal(name, topic);
    assert_int_equal(r32(&c), 1);
    assert_int_equal(r32(&c), part);
    int16_t err = r16(&c);
    assert_true(c.p == c.end);
    return err;
}

/* OffsetFetch v5 of "t" partitions 0..2 (all committed ones when all):
 * offsets[p] and metas[p] (p < 3), -1 and "" when none; returns the
 * top-level error. */
static int16_t fetch_offsets(int fd, const char *group, bool all, int64_t offsets[3],
                             char metas[3][64])
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 9, 5, corr);
    bstr(&f, group);
    if (all) {
        b32(&f, 0xffffffffu);
    } else {
        b32(&f, 1);
        bstr(&f, "t");
        b32(&f, 3);
        for (int p = 0; p < 3; p++) b32(&f, (uint32_t)p);
    }
    send_frame(fd, &f);
    for (int p = 0; p < 3; p++) {
        offsets[p] = -2; /* not in the answer */
        metas[p][0] = 0;
    }
    cur c = response(fd, corr);
    assert_int_equal(r32(&c), 0);
    int32_t nt = r32(&c);
    for (int32_t t = 0; t < nt; t++) {
        char name[64];
        rstr(&c, name, sizeof name);
        assert_string_equal(name, "t");
        int32_t np = r32(&c);
        for (int32_t i = 0; i < np; i++) {
            int32_t p = r32(&c);
            assert_true(p >= 0 && p < 3);
            offsets[p] = r64(&c);
            assert_int_equal(r32(&c), -1); /* leader epoch */
            rstr(&c, metas[p], sizeof metas[p]);
            assert_int_equal(r16(&c), 0);
        }
    }
    int16_t err = r16(&c);
    assert_true(c.p == c.end);
    return err;
}

typedef struct dres {
    int16_t err;
    char state[32], ptype[32], pdata[32];
    int32_t n;
    char member[4][256], client[4][64], host[4][64], meta[4][64], assign[4][64];
} dres;

static dres describe(int fd, const char *group)
{
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 15, 4, corr);
    b32(&f, 1);
    bstr(&f, group);
    b8(&f, 0);
    send_frame(fd, &f);
    dres d;
    memset(&d, 0, sizeof d);
    cur c = response(fd, corr);
    assert_int_equal(r32(&c), 0);
    assert_int_equal(r32(&c), 1);
    d.err = r16(&c);
    char id[256];
    rstr(&c, id, sizeof id);
    assert_string_equal(id, group);
    rstr(&c, d.state, sizeof d.state);
    rstr(&c, d.ptype, sizeof d.ptype);
    rstr(&c, d.pdata, sizeof d.pdata);
    d.n = r32(&c);
    assert_true(d.n >= 0 && d.n <= 4);
    for (int32_t i = 0; i < d.n; i++) {
        char inst[8];
        rstr(&c, d.member[i], sizeof d.member[i]);
        assert_int_equal(rstr(&c, inst, sizeof inst), -1);
        rstr(&c, d.client[i], sizeof d.client[i]);
        rstr(&c, d.host[i], sizeof d.host[i]);
        rbytes(&c, d.meta[i], sizeof d.meta[i]);
        rbytes(&c, d.assign[i], sizeof d.assign[i]);
    }
    assert_int_equal(r32(&c), INT32_MIN); /* authorized operations: not asked */
    assert_true(c.p == c.end);
    return d;
}

/* Poll DescribeGroups until group is in state (a hang guard of many
 * rounds; never a time assertion). */
static dres await_state(int fd, const char *group, const char *state)
{
    for (int i = 0; i < 6000; i++) {
        dres d = describe(fd, group);
        if (!strcmp(d.state, state)) return d;
        usleep(10000);
    }
    fail_msg("group %s never reached state %s", group, state);
    return describe(fd, group);
}

/* One member's group, stable: returns its member id and generation. */
static int32_t solo_group(int fd, const char *group, int32_t session, char id[256])
{
    jres j = recv_join(fd, JOIN_VER, new_member(fd, group, session, "range", NULL, id));
    assert_int_equal(j.err, 0);
    assert_string_equal(j.leader, id);
    assert_string_equal(j.member, id);
    assert_int_equal(j.n, 1);
    const char *ids[] = {id}, *as[] = {"all-of-it"};
    char a[64];
    assert_int_equal(recv_sync(fd, send_sync(fd, group, j.gen, id, 1, ids, as), a, sizeof a), 0);
    assert_string_equal(a, "all-of-it");
    return j.gen;
}

/* ---- tests ---- */

static void test_join_errors(void **state)
{
    (void)state;
    int fd = connect_srv();
    jres j = join(fd, JOIN_VER, "", "", 10000, "range");
    assert_int_equal(j.err, 24); /* INVALID_GROUP_ID */
    j = join(fd, JOIN_VER, "bad/name", "", 10000, "range");
    assert_int_equal(j.err, 24);
    j = join(fd, JOIN_VER, "ge", "", 0, "range");
    assert_int_equal(j.err, 26); /* INVALID_SESSION_TIMEOUT */
    j = join(fd, JOIN_VER, "ge", "who-is-this", 10000, "range");
    assert_int_equal(j.err, 25); /* UNKNOWN_MEMBER_ID */
    assert_string_equal(j.member, "who-is-this");
    /* a failed first join leaves no group behind */
    dres d = describe(fd, "ge");
    assert_int_equal(d.err, 0);
    assert_string_equal(d.state, "Dead");

    /* unknown groups and members */
    assert_int_equal(heartbeat(fd, 3, "nogroup", 1, "m"), 25);
    assert_int_equal(heartbeat(fd, 0, "nogroup", 1, "m"), 25);
    char a[64];
    assert_int_equal(recv_sync(fd, send_sync(fd, "nogroup", 1, "m", 0, NULL, NULL), a, sizeof a),
                     25);
    assert_int_equal(leave_v1(fd, "nogroup", "m"), 25);
    assert_int_equal(heartbeat(fd, 3, "", 1, "m"), 24);
    int64_t offs[3];
    char metas[3][64];
    assert_int_equal(fetch_offsets(fd, "nogroup", false, offs, metas), 0);
    for (int p = 0; p < 3; p++) assert_int_equal(offs[p], -1);
    assert_int_equal(fetch_offsets(fd, "nogroup", true, offs, metas), 0);
    for (int p = 0; p < 3; p++) assert_int_equal(offs[p], -2); /* none listed */

    /* a group holds at most 1000 members, ids handed out included */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(join(fd, JOIN_VER, "gcap", "", 10000, "range").err, 79);
    assert_int_equal(join(fd, JOIN_VER, "gcap", "", 10000, "range").err, 81);
    assert_int_equal(join(fd, 0, "gcap", "", 10000, "range").err, 81);

    /* v0: a new member joins at once (no MEMBER_ID_REQUIRED) */
    j = join(fd, 0, "g0", "", 10000, "range");
    assert_int_equal(j.err, 0);
    assert_int_equal(j.gen, 1);
    assert_string_equal(j.proto, "range");
    assert_string_equal(j.leader, j.member);
    assert_int_equal(j.n, 1);
    assert_string_equal(j.metas[0], "meta-1");
    /* a member of another protocol family cannot join it */
    j = join(fd, 0, "g0", "", 10000, "roundrobin");
    assert_int_equal(j.err, 23); /* INCONSISTENT_GROUP_PROTOCOL */
    close(fd);
}

static void test_rebalance_and_fencing(void **state)
{
    (void)state;
    int a = connect_srv(), b = connect_srv();
    char ida[256], idb[256], x[64];
    int32_t gen = solo_group(a, "gf", 10000, ida);
    assert_int_equal(gen, 1);
    assert_int_equal(heartbeat(a, 3, "gf", gen, ida), 0);
    assert_int_equal(commit(a, 7, "gf", gen, ida, "t", 0, 5, "five"), 0);

    /* b joins: it waits until a rejoined, which a learns from Heartbeat */
    int32_t cb = new_member(b, "gf", 10000, "roundrobin", "range", idb);
    for (int i = 0; i < 6000 && heartbeat(a, 3, "gf", gen, ida) != 27; i++) usleep(10000);
    assert_int_equal(heartbeat(a, 3, "gf", gen, ida), 27); /* REBALANCE_IN_PROGRESS */
    assert_string_equal(describe(a, "gf").state, "PreparingRebalance");
    /* the current generation still commits while the group rebalances (as Kafka) */
    assert_int_equal(commit(a, 7, "gf", gen, ida, "t", 0, 6, "six"), 0);
    jres ja = join(a, JOIN_VER, "gf", ida, 10000, "range"); /* a rejoins: both answered */
    jres jb = recv_join(b, JOIN_VER, cb);
    assert_int_equal(ja.err, 0);
    assert_int_equal(jb.err, 0);
    assert_int_equal(ja.gen, gen + 1);
    assert_int_equal(jb.gen, gen + 1);
    assert_string_equal(ja.leader, ida); /* the leader stays */
    assert_string_equal(jb.leader, ida);
    assert_string_equal(ja.proto, "range"); /* the one both support, in the leader's order */
    assert_int_equal(ja.n, 2);
    assert_int_equal(jb.n, 0); /* only the leader gets the members */
    assert_string_equal(ja.members[0], ida);
    assert_string_equal(ja.members[1], idb);
    assert_string_equal(ja.metas[1], "meta-2"); /* b's metadata for "range" */
    assert_string_equal(describe(a, "gf").state, "CompletingRebalance");

    /* the old generation is fenced; mid-sync commits wait for the sync */
    assert_int_equal(commit(a, 7, "gf", gen + 1, ida, "t", 0, 7, ""), 27);
    int32_t sb = send_sync(b, "gf", gen + 1, idb, 0, NULL, NULL); /* the follower waits */
    assert_int_equal(heartbeat(a, 3, "gf", gen + 1, ida), 0);
    const char *ids[] = {ida, idb, "not-a-member"}, *as[] = {"for-a", "for-b", "x"};
    assert_int_equal(recv_sync(a, send_sync(a, "gf", gen + 1, ida, 3, ids, as), x, sizeof x), 0);
    assert_string_equal(x, "for-a");
    assert_int_equal(recv_sync(b, sb, x, sizeof x), 0);
    assert_string_equal(x, "for-b");
    gen++;
    assert_int_equal(commit(a, 7, "gf", gen - 1, ida, "t", 1, 9, ""), 22); /* ILLEGAL_GENERATION */
    assert_int_equal(commit(a, 2, "gf", gen - 1, ida, "t", 1, 9, ""), 22);
    assert_int_equal(heartbeat(a, 3, "gf", gen - 1, ida), 22);
    assert_int_equal(commit(a, 7, "gf", gen, "stranger", "t", 1, 9, ""), 25);
    assert_int_equal(commit(a, 7, "gf", -1, "", "t", 1, 9, ""), 25); /* simple, but active */
    assert_int_equal(commit(a, 0, "gf", -1, "", "t", 1, 9, ""), 25); /* v0 too */
    assert_int_equal(commit(a, 7, "gf", gen, idb, "t", 1, 11, "b"), 0);
    assert_int_equal(commit(a, 7, "gf", gen, idb, "t", 7, 11, ""), 3); /* no partition 7 */
    assert_int_equal(commit(a, 7, "gf", gen, idb, "nope", 0, 11, ""), 3);
    assert_int_equal(commit(a, 7, "gf", gen, idb, "t", 0, -5, ""), 42);
    int64_t offs[3];
    char metas[3][64];
    assert_int_equal(fetch_offsets(a, "gf", false, offs, metas), 0);
    assert_int_equal(offs[0], 6);
    assert_string_equal(metas[0], "six");
    assert_int_equal(offs[1], 11);
    assert_string_equal(metas[1], "b");
    assert_int_equal(offs[2], -1);
    assert_int_equal(fetch_offsets(a, "gf", true, offs, metas), 0);
    assert_int_equal(offs[0], 6);
    assert_int_equal(offs[1], 11);
    assert_int_equal(offs[2], -2);
    int64_t off;
    assert_int_equal(sl_group_fetch(broker, "gf", "t", 1, &off), 0); /* the directory's view */
    assert_int_equal(off, 11);

    /* Stable: both described with their metadata and assignments */
    dres d = describe(a, "gf");
    assert_int_equal(d.err, 0);
    assert_string_equal(d.state, "Stable");
    assert_string_equal(d.ptype, "consumer");
    assert_string_equal(d.pdata, "range");
    assert_int_equal(d.n, 2);
    assert_string_equal(d.member[0], ida);
    assert_string_equal(d.client[0], "test");
    assert_string_equal(d.host[0], "/127.0.0.1");
    assert_string_equal(d.meta[0], "meta-1");
    assert_string_equal(d.assign[0], "for-a");
    assert_string_equal(d.meta[1], "meta-2");
    assert_string_equal(d.assign[1], "for-b");

    /* LeaveGroup v3, batched: b and an unknown member */
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 13, 3, corr);
    bstr(&f, "gf");
    b32(&f, 2);
    bstr(&f, idb);
    bstr(&f, NULL);
    bstr(&f, "ghost");
    bstr(&f, NULL);
    send_frame(b, &f);
    cur c = response(b, corr);
    assert_int_equal(r32(&c), 0);
    assert_int_equal(r16(&c), 0);
    assert_int_equal(r32(&c), 2);
    char m[256];
    rstr(&c, m, sizeof m);
    assert_string_equal(m, idb);
    assert_int_equal(rstr(&c, m, sizeof m), -1);
    assert_int_equal(r16(&c), 0);
    rstr(&c, m, sizeof m);
    assert_string_equal(m, "ghost");
    assert_int_equal(rstr(&c, m, sizeof m), -1);
    assert_int_equal(r16(&c), 25);
    assert_true(c.p == c.end);
    /* a learns of the rebalance and goes on alone */
    assert_int_equal(heartbeat(a, 3, "gf", gen, ida), 27);
    ja = join(a, JOIN_VER, "gf", ida, 10000, "range");
    assert_int_equal(ja.err, 0);
    assert_int_equal(ja.gen, gen + 1);
    assert_int_equal(ja.n, 1);
    assert_int_equal(recv_sync(a, send_sync(a, "gf", gen + 1, ida, 1, ids, as), x, sizeof x), 0);
    assert_int_equal(describe(a, "gf").n, 1);
    /* the last member leaves: Empty; a simple commit is accepted then */
    assert_int_equal(leave_v1(a, "gf", ida), 0);
    d = describe(a, "gf");
    assert_string_equal(d.state, "Empty");
    assert_int_equal(d.n, 0);
    assert_int_equal(commit(a, 2, "gf", -1, "", "t", 2, 3, NULL), 0);
    assert_int_equal(commit(a, 7, "gf", gen + 1, ida, "t", 2, 3, NULL), 25);
    assert_int_equal(fetch_offsets(a, "gf", false, offs, metas), 0);
    assert_int_equal(offs[2], 3);
    assert_string_equal(metas[2], "");
    close(a);
    close(b);
}

static void test_session_expiry(void **state)
{
    (void)state;
    int a = connect_srv(), b = connect_srv();
    char ida[256], idb[256];
    /* a: a long session; b: 200 ms, and then silent (b joins as v3 does:
     * no MEMBER_ID_REQUIRED round) */
    int32_t gen = solo_group(a, "gs", 30000, ida);
    int32_t cb = send_join(b, 3, "gs", "", 200, "range", NULL);
    while (heartbeat(a, 3, "gs", gen, ida) != 27) usleep(10000);
    jres ja = join(a, JOIN_VER, "gs", ida, 30000, "range");
    jres jb = recv_join(b, 3, cb);
    assert_int_equal(jb.err, 0);
    strcpy(idb, jb.member);
    assert_int_equal(ja.n, 2);
    const char *ids[] = {ida, idb}, *as[] = {"p0", "p1"};
    char x[64];
    /* 0, or 27 when b's session already ran out: both are right */
    int16_t e = recv_sync(a, send_sync(a, "gs", ja.gen, ida, 2, ids, as), x, sizeof x);
    assert_true(e == 0 || e == 27);
    /* b never syncs nor heartbeats: its session expires, a rebalance follows */
    dres d = await_state(a, "gs", "PreparingRebalance");
    assert_int_equal(d.n, 1);
    assert_string_equal(d.member[0], ida);
    assert_int_equal(heartbeat(a, 3, "gs", ja.gen, ida), 27);
    assert_int_equal(heartbeat(b, 3, "gs", ja.gen, idb), 25); /* b is gone */
    jres j2 = join(a, JOIN_VER, "gs", ida, 30000, "range");
    assert_int_equal(j2.gen, ja.gen + 1);
    assert_int_equal(j2.n, 1);

    /* a lone member expires too: the group ends Empty */
    int c = connect_srv();
    jres jc = join(c, 0, "gs2", "", 150, "range");
    assert_int_equal(jc.err, 0);
    assert_int_equal(jc.n, 1);
    d = await_state(c, "gs2", "Empty");
    assert_int_equal(d.n, 0);
    close(a);
    close(b);
    close(c);
}

static void test_list_groups(void **state)
{
    (void)state;
    int fd = connect_srv();
    char id[256];
    solo_group(fd, "gl", 10000, id);
    assert_int_equal(commit(fd, 2, "simple-only", -1, "", "t", 0, 1, "x"), 0);
    int32_t corr = ++corr_seq;
    fb f;
    req(&f, 16, 2, corr);
    send_frame(fd, &f);
    cur c = response(fd, corr);
    assert_int_equal(r32(&c), 0);
    assert_int_equal(r16(&c), 0);
    int32_t n = r32(&c);
    bool gl = false, simple = false;
    for (int32_t i = 0; i < n; i++) {
        char g[256], t[64];
        rstr(&c, g, sizeof g);
        rstr(&c, t, sizeof t);
        if (!strcmp(g, "gl")) {
            gl = true;
            assert_string_equal(t, "consumer");
        }
        if (!strcmp(g, "simple-only")) {
            simple = true;
            assert_string_equal(t, "");
        }
    }
    assert_true(c.p == c.end);
    assert_true(gl && simple);
    dres d = describe(fd, "simple-only"); /* only offsets: Empty, as Kafka loads it */
    assert_string_equal(d.state, "Empty");
    assert_int_equal(d.n, 0);
    d = describe(fd, "gl");
    assert_string_equal(d.state, "Stable");
    assert_int_equal(d.n, 1);
    close(fd);
}

/* ---- librdkafka's high-level consumer ---- */

static rd_kafka_t *rk_consumer(const char *bootstrap)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", bootstrap},
                           {"group.id", "rk"},
                           {"auto.offset.reset", "earliest"},
                           {"enable.auto.commit", "false"},
                           {"session.timeout.ms", "10000"},
                           {"heartbeat.interval.ms", "100"},
                           {"log_level", "3"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        assert_int_equal(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr),
                         RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, "t4", RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, t), 0);
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

static int assigned(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(rk, &l) != 0) return -1;
    int n = l->cnt;
    rd_kafka_topic_partition_list_destroy(l);
    return n;
}

#define RK_MSGS 400

static void test_librdkafka_group(void **state)
{
    (void)state;
    char bootstrap[64], errstr[512];
    snprintf(bootstrap, sizeof bootstrap, "127.0.0.1:%d", sl_server_port(srv));
    rd_kafka_t *c[2] = {rk_consumer(bootstrap), rk_consumer(bootstrap)};
    /* both members, 2 partitions each, before anything is produced */
    int rounds = 0;
    while (!(assigned(c[0]) == 2 && assigned(c[1]) == 2)) {
        for (int i = 0; i < 2; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(c[i], 50);
            if (m) rd_kafka_message_destroy(m);
        }
        assert_true(++rounds < 3000); /* a hang guard */
    }

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, errstr, sizeof errstr),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
    assert_non_null(p);
    for (int i = 0; i < RK_MSGS; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "k%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC("t4"), RD_KAFKA_V_PARTITION(i % 4),
                              RD_KAFKA_V_KEY(k, strlen(k)), RD_KAFKA_V_VALUE(v, strlen(v)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            0);
    }
    assert_int_equal(rd_kafka_flush(p, 60000), 0);
    rd_kafka_destroy(p);

    static int seen[RK_MSGS];
    int total = 0, by[2] = {0, 0};
    int64_t next[4] = {0, 0, 0, 0};
    rounds = 0;
    while (total < RK_MSGS) {
        for (int i = 0; i < 2; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(c[i], 50);
            if (!m) continue;
            if (m->err == 0) {
                int id = atoi((const char *)m->payload + 1);
                assert_true(id >= 0 && id < RK_MSGS);
                assert_int_equal(seen[id]++, 0); /* read once */
                assert_int_equal(m->partition, id % 4);
                assert_int_equal(m->offset, next[m->partition]++);
                total++;
                by[i]++;
                assert_int_equal(rd_kafka_commit_message(c[i], m, 0), 0); /* synchronous */
            }
            rd_kafka_message_destroy(m);
        }
        assert_true(++rounds < 20000);
    }
    assert_int_equal(by[0], RK_MSGS / 2); /* 2 partitions of 100 each */
    assert_int_equal(by[1], RK_MSGS / 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rd_kafka_consumer_close(c[i]), 0);
        rd_kafka_destroy(c[i]);
    }
    /* what the group committed is what the directory's readers see */
    for (int32_t part = 0; part < 4; part++) {
        int64_t off = -1;
        assert_int_equal(sl_group_fetch(broker, "rk", "t4", part, &off), 0);
        assert_int_equal(off, RK_MSGS / 4);
    }
    char cmd[1024], path[300];
    snprintf(path, sizeof path, "%s/rest.out", dir);
    snprintf(cmd, sizeof cmd, "SLUICE_DIR=%s %s consume t4 -G rk -e -f '%%p %%o\\n' > %s", dir,
             SLUICE_BIN, path);
    assert_int_equal(system(cmd), 0);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    assert_int_equal(ftell(fp), 0); /* `sluice consume -G rk`: nothing left to read */
    fclose(fp);
    int fd = connect_srv();
    await_state(fd, "rk", "Empty"); /* both left */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_errors),      cmocka_unit_test(test_rebalance_and_fencing),
        cmocka_unit_test(test_session_expiry),   cmocka_unit_test(test_list_groups),
        cmocka_unit_test(test_librdkafka_group),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
