/*
 * tests/unit/test_server_fuzz_corpus.c - replays the committed corpus of the
 * server's request fuzz target (tests/fuzz/corpus/server_request/) through
 * the target's own run function, fuzz_server_run (which checks the
 * invariants: well-formed answers with the correlation id echoed, a parked
 * request answered at its deadline, a malformed frame never changes the
 * log), and checks each seed's verdict, named by its file:
 *
 *   ok-*       every frame answered (Produce acks=0: silently), the
 *              connection stays open; ok-partial-*: the stream ends inside
 *              a frame (nothing more answered, still open); a name with
 *              "-park" parked at least once (a Fetch below min_bytes);
 *   closed-*   the server closes the connection (malformed frame or length
 *              prefix), with the log as it was before that frame;
 *   any-*      no verdict: only the invariants (bit-flipped seeds, and what
 *              the fuzzer found);
 *   ...-nN     the stream added exactly N records to the log.
 *
 * Every file goes through LLVMFuzzerTestOneInput too (which aborts on a
 * broken invariant). `test_server_fuzz_corpus --generate DIR` writes the
 * seeds: one valid frame per api and version the server serves today
 * (ApiVersions 0-2, Metadata 0-8, FindCoordinator 0-2, Produce 3-7, Fetch
 * 4-10, ListOffsets 1-5, and the group apis that landed after the target
 * with no change to it: JoinGroup 0-5, SyncGroup, Heartbeat and LeaveGroup
 * 0-3, OffsetCommit 0-7, OffsetFetch 1-5, DescribeGroups 0-4, ListGroups
 * 0-2), whole sessions, truncated and bit-flipped variants, bad length
 * prefixes, unknown apis and versions.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/base/crc32c.h"
#include "tests/fuzz/fuzz_server_request.c"

#define CORPUS SLUICE_SOURCE_DIR "/tests/fuzz/corpus/server_request"

/* ---- frames (kafka_raw.h; req_at/fin_at: several frames in one buffer) ---- */

#define KRAW_FRAMES_ONLY
#define KRAW_FB_CAP    16384
#define KRAW_CLIENT_ID "fuzz-seed"
#include "kafka_raw.h"

/* A Kafka v2 record batch of n records (layout: kapi_produce.c). */
static void kbatch(fb *f, int n, int64_t pid, int32_t seq)
{
    fb r = {.n = 0};
    for (int i = 0; i < n; i++) {
        fb one = {.n = 0};
        char k[16], v[32];
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "value-%d", i);
        b8(&one, 0);
        bvar(&one, i);
        bvar(&one, i);
        bvar(&one, (int64_t)strlen(k));
        bmem(&one, k, strlen(k));
        bvar(&one, (int64_t)strlen(v));
        bmem(&one, v, strlen(v));
        bvar(&one, i == 0 ? 1 : 0); /* one header on the first record */
        if (i == 0) {
            bvar(&one, 2);
            bmem(&one, "hk", 2);
            bvar(&one, 2);
            bmem(&one, "hv", 2);
        }
        bvar(&r, (int64_t)one.n);
        bmem(&r, one.p, one.n);
    }
    size_t at = f->n;
    b64(f, 0);     /* base_offset */
    b32(f, 0);     /* batch_length, below */
    b32(f, 0);     /* partition_leader_epoch */
    b8(f, 2);      /* magic */
    b32(f, 0);     /* crc, below */
    b16(f, 0);     /* attributes */
    b32(f, n - 1); /* last_offset_delta */
    b64(f, 1700000000000LL);
    b64(f, 1700000000000LL + n - 1);
    b64(f, pid);
    b16(f, pid >= 0 ? 0 : -1);
    b32(f, pid >= 0 ? seq : -1);
    b32(f, n);
    bmem(f, r.p, r.n);
    kput32(f->p + at + 8, (uint32_t)(f->n - at - 12));
    kput32(f->p + at + 17, sli_crc32c(0, f->p + at + 21, f->n - at - 21));
}

/* ---- one frame per api and version ---- */

static void f_versions(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_VERSIONS, ver, corr);
    fin_at(f, at);
}

static void f_metadata(fb *f, int ver, int corr, bool all)
{
    size_t at = req_at(f, KAPI_METADATA, ver, corr);
    if (all && ver >= 1) {
        b32(f, -1);
    } else if (all) {
        b32(f, 0);
    } else {
        b32(f, 2);
        bstr(f, "t");
        bstr(f, "u");
    }
    if (ver >= 4) b8(f, 0);
    if (ver >= 8) b8(f, 0), b8(f, 0);
    fin_at(f, at);
}

static void f_findcoord(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_FIND_COORDINATOR, ver, corr);
    bstr(f, "group-1");
    if (ver >= 1) b8(f, 0);
    fin_at(f, at);
}

/* Produce n records to t/part (pid >= 0: idempotent, sequence seq). */
static void f_produce(fb *f, int ver, int corr, int acks, int part, int n, int64_t pid, int seq)
{
    size_t at = req_at(f, KAPI_PRODUCE, ver, corr);
    bstr(f, NULL); /* transactional_id */
    b16(f, acks);
    b32(f, 5000);
    b32(f, 1);
    bstr(f, "t");
    b32(f, 1);
    b32(f, part);
    size_t lat = f->n;
    b32(f, 0);
    kbatch(f, n, pid, seq);
    kput32(f->p + lat, (uint32_t)(f->n - lat - 4));
    fin_at(f, at);
}

static void f_fetch(fb *f, int ver, int corr, const char *topic, int part, int64_t off,
                    int max_wait)
{
    size_t at = req_at(f, KAPI_FETCH, ver, corr);
    b32(f, -1);       /* replica_id */
    b32(f, max_wait); /* max_wait_ms */
    b32(f, 1);        /* min_bytes */
    b32(f, 1 << 20);  /* max_bytes */
    b8(f, 0);         /* isolation_level */
    if (ver >= 7) b32(f, 0), b32(f, -1);
    b32(f, 1);
    bstr(f, topic);
    b32(f, 1);
    b32(f, part);
    if (ver >= 9) b32(f, -1);
    b64(f, off);
    if (ver >= 5) b64(f, -1);
    b32(f, 1 << 20);
    if (ver >= 7) b32(f, 0); /* forgotten_topics_data */
    fin_at(f, at);
}

static void f_listoffsets(fb *f, int ver, int corr, int64_t ts)
{
    size_t at = req_at(f, KAPI_LIST_OFFSETS, ver, corr);
    b32(f, -1);
    if (ver >= 2) b8(f, 0);
    b32(f, 1);
    bstr(f, "u");
    b32(f, 1);
    b32(f, 0);
    if (ver >= 4) b32(f, -1);
    b64(f, ts);
    fin_at(f, at);
}

/* Consumer groups (kapi_group.c): one frame of each at version ver. */
static void f_joingroup(fb *f, int ver, int corr, const char *member)
{
    size_t at = req_at(f, KAPI_JOIN_GROUP, ver, corr);
    bstr(f, "g1");
    b32(f, 10000); /* session_timeout_ms */
    if (ver >= 1) b32(f, 10000);
    bstr(f, member);
    if (ver >= 5) bstr(f, NULL); /* group_instance_id */
    bstr(f, "consumer");
    b32(f, 1);
    bstr(f, "range");
    b32(f, 4);
    bmem(f, "meta", 4);
    fin_at(f, at);
}

static void f_syncgroup(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_SYNC_GROUP, ver, corr);
    bstr(f, "g1");
    b32(f, 1);
    bstr(f, "m1");
    if (ver >= 3) bstr(f, NULL);
    b32(f, 1);
    bstr(f, "m1");
    b32(f, 2);
    bmem(f, "as", 2);
    fin_at(f, at);
}

static void f_heartbeat(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_HEARTBEAT, ver, corr);
    bstr(f, "g1");
    b32(f, 1);
    bstr(f, "m1");
    if (ver >= 3) bstr(f, NULL);
    fin_at(f, at);
}

static void f_leavegroup(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_LEAVE_GROUP, ver, corr);
    bstr(f, "g1");
    if (ver >= 3) {
        b32(f, 1);
        bstr(f, "m1");
        bstr(f, NULL);
    } else {
        bstr(f, "m1");
    }
    fin_at(f, at);
}

/* A simple commit (generation -1, no member) of t/0 at offset 5. */
static void f_offsetcommit(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_OFFSET_COMMIT, ver, corr);
    bstr(f, "g2");
    if (ver >= 1) {
        b32(f, -1);
        bstr(f, "");
    }
    if (ver >= 7) bstr(f, NULL);
    if (ver >= 2 && ver <= 4) b64(f, -1); /* retention_time_ms */
    b32(f, 1);
    bstr(f, "t");
    b32(f, 1);
    b32(f, 0);
    b64(f, 5);
    if (ver == 1) b64(f, -1); /* commit_timestamp */
    if (ver >= 6) b32(f, -1);
    bstr(f, "meta");
    fin_at(f, at);
}

static void f_offsetfetch(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_OFFSET_FETCH, ver, corr);
    bstr(f, "g2");
    b32(f, 1);
    bstr(f, "t");
    b32(f, 2);
    b32(f, 0);
    b32(f, 1);
    fin_at(f, at);
}

static void f_describegroups(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_DESCRIBE_GROUPS, ver, corr);
    b32(f, 2);
    bstr(f, "g1");
    bstr(f, "g2");
    if (ver >= 3) b8(f, 0);
    fin_at(f, at);
}

static void f_listgroups(fb *f, int ver, int corr)
{
    size_t at = req_at(f, KAPI_LIST_GROUPS, ver, corr);
    fin_at(f, at);
}

/* ---- writing the seeds ---- */

static const char *gen_dir;

static void put(const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", gen_dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(p, 1, n, fp) != n)) {
        perror(path);
        exit(1);
    }
    fclose(fp);
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A single-frame seed that adds nrec records, and its variants: the frame
 * truncated (length prefix fixed: malformed, adds nothing), the stream cut
 * inside the frame (waits, adds nothing), and two bit-flipped copies. */
static void seed1(const char *name, const fb *f, int nrec)
{
    char n2[256];
    snprintf(n2, sizeof n2, "ok-%s-n%d", name, nrec);
    put(n2, f->p, f->n);
    size_t body = f->n - 4;
    size_t hdr = 8 + 2 + strlen("fuzz-seed");
    fb t = *f;
    size_t cut = body > hdr ? hdr + (body - hdr) / 2 : hdr - 3;
    t.n = 4 + cut;
    kput32(t.p, (uint32_t)cut);
    snprintf(n2, sizeof n2, "closed-trunc-%s-n0", name);
    put(n2, t.p, t.n);
    snprintf(n2, sizeof n2, "ok-partial-%s-n0", name);
    put(n2, f->p, f->n - 1);
    for (int k = 0; k < 2; k++) {
        fb x = *f;
        int flips = 1 + (int)(xorshift() % 3);
        for (int i = 0; i < flips; i++) {
            size_t pos = 4 + (size_t)(xorshift() % body);
            x.p[pos] ^= (uint8_t)(1u << (xorshift() % 8));
        }
        snprintf(n2, sizeof n2, "any-flip%d-%s", k, name);
        put(n2, x.p, x.n);
    }
}

static int generate(const char *dir)
{
    gen_dir = dir;
    fb f;
    char name[128];
    int corr = 1;
    for (int v = 0; v <= 2; v++) {
        f.n = 0;
        f_versions(&f, v, corr++);
        snprintf(name, sizeof name, "apiversions-v%d", v);
        seed1(name, &f, 0);
    }
    for (int v = 0; v <= 8; v++) {
        f.n = 0;
        f_metadata(&f, v, corr++, false);
        snprintf(name, sizeof name, "metadata-v%d", v);
        seed1(name, &f, 0);
    }
    f.n = 0;
    f_metadata(&f, 0, corr++, true);
    seed1("metadata-v0-all", &f, 0);
    f.n = 0;
    f_metadata(&f, 1, corr++, true);
    seed1("metadata-v1-all-null", &f, 0);
    for (int v = 0; v <= 2; v++) {
        f.n = 0;
        f_findcoord(&f, v, corr++);
        snprintf(name, sizeof name, "findcoordinator-v%d", v);
        seed1(name, &f, 0);
    }
    for (int v = 3; v <= 7; v++) {
        f.n = 0;
        f_produce(&f, v, corr++, -1, v % 3, 2, -1, 0);
        snprintf(name, sizeof name, "produce-v%d", v);
        seed1(name, &f, 2);
    }
    f.n = 0;
    f_produce(&f, 3, corr++, 0, 0, 1, -1, 0);
    seed1("produce-v3-acks0", &f, 1);
    f.n = 0;
    f_produce(&f, 7, corr++, -1, 1, 3, 1000, 0);
    seed1("produce-v7-idempotent", &f, 3);
    for (int v = 4; v <= 10; v++) {
        f.n = 0;
        f_fetch(&f, v, corr++, "u", 0, 0, 100);
        snprintf(name, sizeof name, "fetch-v%d", v);
        seed1(name, &f, 0);
    }
    f.n = 0;
    f_fetch(&f, 4, corr++, "t", 0, 0, 500); /* empty partition: parks */
    seed1("fetch-v4-park", &f, 0);
    f.n = 0;
    f_fetch(&f, 10, corr++, "u", 0, 99, 0); /* out of range */
    seed1("fetch-v10-out-of-range", &f, 0);
    for (int v = 1; v <= 5; v++) {
        f.n = 0;
        f_listoffsets(&f, v, corr++, v % 2 ? -1 : -2);
        snprintf(name, sizeof name, "listoffsets-v%d", v);
        seed1(name, &f, 0);
    }

    /* Consumer groups (served since i10-group; the target needed no change). */
    for (int v = 0; v <= 5; v++) {
        f.n = 0;
        f_joingroup(&f, v, corr++, "");
        snprintf(name, sizeof name, "joingroup-v%d", v);
        seed1(name, &f, 0);
    }
    for (int v = 0; v <= 3; v++) {
        f.n = 0;
        f_syncgroup(&f, v, corr++);
        snprintf(name, sizeof name, "syncgroup-v%d", v);
        seed1(name, &f, 0);
        f.n = 0;
        f_heartbeat(&f, v, corr++);
        snprintf(name, sizeof name, "heartbeat-v%d", v);
        seed1(name, &f, 0);
        f.n = 0;
        f_leavegroup(&f, v, corr++);
        snprintf(name, sizeof name, "leavegroup-v%d", v);
        seed1(name, &f, 0);
    }
    for (int v = 0; v <= 7; v++) {
        f.n = 0;
        f_offsetcommit(&f, v, corr++);
        snprintf(name, sizeof name, "offsetcommit-v%d", v);
        seed1(name, &f, 1);
    }
    for (int v = 1; v <= 5; v++) {
        f.n = 0;
        f_offsetfetch(&f, v, corr++);
        snprintf(name, sizeof name, "offsetfetch-v%d", v);
        seed1(name, &f, 0);
    }
    for (int v = 0; v <= 4; v++) {
        f.n = 0;
        f_describegroups(&f, v, corr++);
        snprintf(name, sizeof name, "describegroups-v%d", v);
        seed1(name, &f, 0);
    }
    for (int v = 0; v <= 2; v++) {
        f.n = 0;
        f_listgroups(&f, v, corr++);
        snprintf(name, sizeof name, "listgroups-v%d", v);
        seed1(name, &f, 0);
    }
    f.n = 0; /* a member's life: join (v4: id required, then again), sync, heartbeat, leave */
    f_joingroup(&f, 5, 1, "");
    put("ok-group-joingroup-v5-first-n0", f.p, f.n);

    /* Sessions: several frames on one connection. */
    f.n = 0;
    f_versions(&f, 2, 1);
    f_metadata(&f, 4, 2, false);
    f_produce(&f, 7, 3, -1, 1, 3, -1, 0);
    f_listoffsets(&f, 5, 4, -1);
    f_fetch(&f, 10, 5, "t", 1, 0, 100);
    put("ok-session-produce-fetch-n3", f.p, f.n);
    f.n = 0; /* an idempotent producer's two batches, and the first again */
    f_produce(&f, 7, 1, -1, 2, 2, 77, 0);
    f_produce(&f, 7, 2, -1, 2, 2, 77, 2);
    f_produce(&f, 7, 3, -1, 2, 2, 77, 0);
    put("ok-session-idempotent-duplicate-n4", f.p, f.n);
    f.n = 0;
    f_versions(&f, 2, 1);
    size_t at = f.n;
    f_metadata(&f, 4, 2, false);
    kput32(f.p + at, 0xffffffffu);
    put("closed-session-negative-length-n0", f.p, f.n);
    f.n = 0;
    f_versions(&f, 2, 1);
    b32(&f, SLB_FRAME_MAX + 1);
    b16(&f, KAPI_VERSIONS);
    put("closed-session-huge-length-n0", f.p, f.n);

    /* A Produce whose second topic is malformed: nothing may be written. */
    f.n = 0;
    at = req_at(&f, KAPI_PRODUCE, 3, 9);
    bstr(&f, NULL);
    b16(&f, -1);
    b32(&f, 5000);
    b32(&f, 2);
    bstr(&f, "t");
    b32(&f, 1);
    b32(&f, 0);
    size_t lat = f.n;
    b32(&f, 0);
    kbatch(&f, 2, -1, 0);
    kput32(f.p + lat, (uint32_t)(f.n - lat - 4));
    bstr(&f, "u");
    b32(&f, 1);
    b32(&f, 0);
    b32(&f, 500); /* records: 500 bytes announced, none there */
    fin_at(&f, at);
    put("closed-produce-second-topic-malformed-n0", f.p, f.n);

    /* Requests the server does not serve: answered with an error, open. */
    f.n = 0;
    at = req_at(&f, 999, 0, 5);
    fin_at(&f, at);
    put("ok-unknown-api-key-n0", f.p, f.n);
    f.n = 0;
    f_produce(&f, 2, 6, -1, 0, 1, -1, 0);
    put("ok-produce-v2-unsupported-n0", f.p, f.n);
    f.n = 0; /* flexible ApiVersions v3: header v2 with tagged fields */
    at = req_at(&f, KAPI_VERSIONS, 3, 7);
    b8(&f, 0);
    b8(&f, 7), bmem(&f, "sluice", 6);
    b8(&f, 4), bmem(&f, "0.1", 3);
    b8(&f, 0);
    fin_at(&f, at);
    put("ok-apiversions-v3-flexible-n0", f.p, f.n);
    f.n = 0;
    f_metadata(&f, 9, 8, false);
    put("ok-metadata-v9-flexible-n0", f.p, f.n);

    /* Frames too short for a header. */
    f.n = 0;
    b32(&f, 0);
    put("closed-empty-frame-n0", f.p, f.n);
    f.n = 0;
    b32(&f, 8);
    b16(&f, KAPI_METADATA);
    b16(&f, 1);
    b32(&f, 11);
    put("closed-no-client-id-n0", f.p, f.n);
    put("ok-empty-stream-n0", f.p, 0);
    return 0;
}

/* ---- replay ---- */

static long name_records(const char *name)
{
    const char *q = strrchr(name, '-');
    if (!q || q[1] != 'n' || q[2] < '0' || q[2] > '9') return -1;
    return strtol(q + 2, NULL, 10);
}

static void test_replay_corpus(void **state)
{
    (void)state;
    DIR *d = opendir(CORPUS);
    assert_non_null(d);
    struct dirent *e;
    int files = 0, ok = 0, closed = 0, any = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", CORPUS, e->d_name);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        uint8_t *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, 1 << 20, fp);
        fclose(fp);
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        free(buf);
        (void)LLVMFuzzerTestOneInput(exact, n); /* aborts on a broken invariant */
        fuzz_srv_result res;
        fuzz_server_run(exact, n, &res);
        free(exact);
        const char *nm = e->d_name;
        if (res.violation) fail_msg("%s: %s", nm, res.violation);
        if (!strncmp(nm, "ok-", 3)) {
            if (res.closed) fail_msg("%s: the connection was closed (%d)", nm, res.close_rc);
            if (res.answered + res.silent != res.frames)
                fail_msg("%s: %d frames, %d answered", nm, res.frames, res.answered + res.silent);
            if (!strncmp(nm, "ok-partial-", 11) && (!res.partial || res.frames != 0))
                fail_msg("%s: expected a partial frame and nothing handled", nm);
            if (strncmp(nm, "ok-partial-", 11) && strstr(nm, "-park") && res.parked == 0)
                fail_msg("%s: expected to park", nm);
            ok++;
        } else if (!strncmp(nm, "closed-", 7)) {
            if (!res.closed) fail_msg("%s: expected the connection closed", nm);
            closed++;
        } else if (!strncmp(nm, "any-", 4)) {
            any++;
        } else {
            fail_msg("%s: corpus files are named ok-*, closed-* or any-* (the verdict)", nm);
        }
        long want = name_records(nm);
        if (want >= 0 && res.appended != want)
            fail_msg("%s: %ld records added to the log, expected %ld", nm, res.appended, want);
        files++;
    }
    closedir(d);
    /* The seeds that --generate writes are all there (the corpus may grow). */
    assert_true(ok >= 80);
    assert_true(closed >= 40);
    assert_true(any >= 70);
    assert_int_equal(files, ok + closed + any);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--generate")) return generate(argv[2]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_replay_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
