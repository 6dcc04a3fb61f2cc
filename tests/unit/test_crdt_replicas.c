/*
 * tests/unit/test_crdt_replicas.c - CRDT replicas (sluice/crdt.h, section
 * "Replicas"): three replicas update the same keys of every type in a
 * seeded random interleaving; each take of deltas is "published" to an
 * in-memory topic and delivered to every replica (the sender included) in
 * random order, some records twice, some late (held until the end); mid-way
 * one replica is restarted from a snapshot taken earlier (with changes not
 * yet sent), and re-reads the topic from its start, shuffled, before it
 * updates again. At the end all replicas hold equal states (and equal
 * snapshots but for the replica id), the counters are the true totals of
 * every update made, the LWW registers hold the largest write. Also: the
 * snapshot and delta-record decoders against bad bytes, and the exchange id.
 * And the replica operator in a pipeline: stopped mid-way with a savepoint,
 * a fresh replica restarted from that checkpoint (the operator's restore
 * hook, the generator rewound) ends equal to a replica that ran once over
 * every event, and so does one that merges only the deltas of both runs.
 * End markers (a delta record of type 0): made, read back, skipped by
 * apply(), refused when malformed. Merging into existing states allocates
 * nothing once the replica's scratch objects have grown: malloc, calloc and
 * realloc are wrapped (the link gives -Wl,--wrap=..., tests/CMakeLists.txt)
 * and counted around apply(); a sketch joined straight from its bytes
 * equals sl_crdt_hll_merge of the decoded sketch, dense and sparse, ranks
 * up to 65 - p, and bad sketch bytes leave the state as it was.
 * Seeded; a failure prints its seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>

#include "sluice/sluice.h"
#include "tests/unit/crdt_test.h"

#define NR    3
#define NKEYS 6
#define EXCH  0x5eed5eedull

/* Allocation counting: the link wraps malloc, calloc and realloc (of the
 * library's objects and this file's alike). */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t k);
void *__real_realloc(void *p, size_t n);
static long n_allocs;
static int counting;
void *__wrap_malloc(size_t n)
{
    n_allocs += counting;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t k)
{
    n_allocs += counting;
    return __real_calloc(n, k);
}
void *__wrap_realloc(void *p, size_t n)
{
    n_allocs += counting;
    return __real_realloc(p, n);
}

typedef struct topic {
    sl_buf *rec;
    size_t n, cap;
} topic;

static int publish(void *ud, sl_bytes key, const void *rec, size_t len)
{
    (void)key;
    topic *t = ud;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->rec = realloc(t->rec, t->cap * sizeof(*t->rec));
        assert_non_null(t->rec);
    }
    t->rec[t->n] = (sl_buf){0};
    assert_int_equal(sl_buf_append(&t->rec[t->n], rec, len), 0);
    t->n++;
    return 0;
}

static void topic_free(topic *t)
{
    for (size_t i = 0; i < t->n; i++) sl_buf_free(&t->rec[i]);
    free(t->rec);
}

/* A replica's queue of topic records not yet delivered (indices). */
typedef struct queue {
    size_t *i;
    size_t n, cap;
} queue;

static void q_push(queue *q, size_t i)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->i = realloc(q->i, q->cap * sizeof(*q->i));
        assert_non_null(q->i);
    }
    q->i[q->n++] = i;
}

/* Take r's deltas into the topic and queue each new record for every
 * replica, some twice. */
static void take(sl_crdt_replica *r, topic *t, queue *q, rng *g)
{
    size_t from = t->n;
    assert_int_equal(sl_crdt_replica_take_deltas(r, publish, t), 0);
    for (size_t i = from; i < t->n; i++)
        for (int j = 0; j < NR; j++) {
            q_push(&q[j], i);
            if (rng_below(g, 5) == 0) q_push(&q[j], i); /* a duplicate */
        }
}

/* Deliver one random queued record to replica j (out of order). With late,
 * a record may stay queued (delivered again later: a duplicate). */
static void deliver_one(sl_crdt_replica *r, const topic *t, queue *q, rng *g, int late)
{
    if (!q->n) return;
    size_t k = rng_below(g, (uint32_t)q->n);
    size_t i = q->i[k];
    assert_int_equal(sl_crdt_replica_apply(r, t->rec[i].ptr, t->rec[i].len), 0);
    if (late && rng_below(g, 4) == 0) return;
    q->i[k] = q->i[--q->n];
}

typedef struct lwwmax {
    int64_t ts;
    uint32_t id;
    char v[8];
    int set;
} lwwmax;

static void run_seed(uint64_t seed)
{
    rng g = {seed};
    sl_crdt_replica *r[NR];
    for (int i = 0; i < NR; i++) r[i] = sl_crdt_replica_new(10 + (uint32_t)i, EXCH, 10);
    topic t = {0};
    queue q[NR] = {{0}};
    int64_t pn[NKEYS] = {0};
    uint64_t gc[NKEYS] = {0};
    lwwmax lw[NKEYS] = {{0}};
    sl_buf snap = {0};
    int snapped = 0, restarted = 0;
    const int steps = 600, victim = 1;
    for (int s = 0; s < steps; s++) {
        int i = (int)rng_below(&g, NR);
        char kb[8];
        snprintf(kb, sizeof(kb), "k%u", rng_below(&g, NKEYS));
        sl_bytes key = {kb, (uint32_t)strlen(kb)};
        int k = kb[1] - '0';
        unsigned op = rng_below(&g, 10);
        if (op < 4) { /* a local update of one type */
            char v[8];
            snprintf(v, sizeof(v), "v%u", rng_below(&g, 4));
            sl_bytes vb = {v, (uint32_t)strlen(v)};
            switch (rng_below(&g, 6)) {
            case 0: {
                int64_t d = (int64_t)rng_below(&g, 11) - 4;
                assert_int_equal(
                    sl_crdt_pncounter_add(
                        sl_crdt_replica_pncounter(r[i], key, SL_CRDT_REPLICA_UPDATE), d),
                    0);
                pn[k] += d;
                break;
            }
            case 1: {
                uint64_t d = rng_below(&g, 5);
                assert_int_equal(
                    sl_crdt_gcounter_increment(
                        sl_crdt_replica_gcounter(r[i], key, SL_CRDT_REPLICA_UPDATE), d),
                    0);
                gc[k] += d;
                break;
            }
            case 2: {
                int64_t ts = rng_below(&g, 50);
                sl_crdt_lww *w = sl_crdt_replica_lww(r[i], key, SL_CRDT_REPLICA_UPDATE);
                int rc = sl_crdt_lww_set(w, ts, vb);
                assert_true(rc == 0 || rc == 1);
                uint32_t id = sl_crdt_replica_id(r[i]);
                lwwmax *m = &lw[k];
                if (!m->set || ts > m->ts || (ts == m->ts && id > m->id) ||
                    (ts == m->ts && id == m->id && strcmp(v, m->v) > 0)) {
                    m->set = 1;
                    m->ts = ts;
                    m->id = id;
                    strcpy(m->v, v);
                }
                break;
            }
            case 3:
                assert_int_equal(
                    sl_crdt_orset_add(sl_crdt_replica_orset(r[i], key, SL_CRDT_REPLICA_UPDATE), vb),
                    0);
                break;
            case 4:
                assert_int_equal(sl_crdt_orset_remove(
                                     sl_crdt_replica_orset(r[i], key, SL_CRDT_REPLICA_UPDATE), vb),
                                 0);
                break;
            default:
                sl_crdt_hll_add(sl_crdt_replica_hll(r[i], key, SL_CRDT_REPLICA_UPDATE), v,
                                strlen(v));
                break;
            }
            if (rng_below(&g, 3) == 0) take(r[i], &t, q, &g); /* batches of updates */
        } else if (op < 9) {
            deliver_one(r[i], &t, &q[i], &g, 1);
        } else {
            take(r[i], &t, q, &g);
        }
        if (!snapped && s == steps / 4) { /* the checkpoint: possibly with unsent changes */
            assert_int_equal(sl_crdt_replica_snapshot(r[victim], &snap), 0);
            snapped = 1;
        }
        if (!restarted && s == steps / 2) {
            /* the victim crashes right after publishing; it restarts from
             * the checkpoint and re-reads the whole topic (shuffled, some
             * twice) before it updates again */
            take(r[victim], &t, q, &g);
            sl_crdt_replica_free(r[victim]);
            r[victim] = sl_crdt_replica_new(10 + victim, EXCH, 10);
            assert_int_equal(sl_crdt_replica_restore(r[victim], snap.ptr, snap.len), 0);
            q[victim].n = 0;
            for (size_t x = 0; x < t.n; x++) {
                q_push(&q[victim], x);
                if (rng_below(&g, 3) == 0) q_push(&q[victim], x);
            }
            while (q[victim].n) deliver_one(r[victim], &t, &q[victim], &g, 0);
            restarted = 1;
        }
    }
    /* quiesce: take what is left, deliver everything, until nothing moves */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < NR; i++) take(r[i], &t, q, &g);
        for (int i = 0; i < NR; i++)
            while (q[i].n) deliver_one(r[i], &t, &q[i], &g, 0);
    }
    for (int i = 1; i < NR; i++)
        CHECK_SEED(sl_crdt_replica_equal(r[0], r[i]), seed, "replica %d differs from replica 0", i);
    sl_buf a = {0}, b = {0};
    assert_int_equal(sl_crdt_replica_snapshot(r[0], &a), 0);
    for (int i = 1; i < NR; i++) {
        b.len = 0;
        assert_int_equal(sl_crdt_replica_snapshot(r[i], &b), 0);
        CHECK_SEED(a.len == b.len && memcmp(a.ptr, b.ptr, 8) == 0 &&
                       memcmp(a.ptr + 12, b.ptr + 12, a.len - 12) == 0,
                   seed, "snapshot of replica %d differs", i);
    }
    for (int k = 0; k < NKEYS; k++) {
        char kb[8];
        snprintf(kb, sizeof(kb), "k%d", k);
        sl_bytes key = {kb, (uint32_t)strlen(kb)};
        for (int i = 0; i < NR; i++) {
            sl_crdt_pncounter *c = sl_crdt_replica_pncounter(r[i], key, 0);
            CHECK_SEED((c ? sl_crdt_pncounter_value(c) : 0) == pn[k], seed,
                       "replica %d: pn %s is %lld, not %lld", i, kb,
                       (long long)(c ? sl_crdt_pncounter_value(c) : 0), (long long)pn[k]);
            sl_crdt_gcounter *gk = sl_crdt_replica_gcounter(r[i], key, 0);
            CHECK_SEED((gk ? sl_crdt_gcounter_value(gk) : 0) == gc[k], seed,
                       "replica %d: g-counter %s wrong", i, kb);
            sl_crdt_lww *w = sl_crdt_replica_lww(r[i], key, 0);
            sl_bytes v;
            int64_t ts;
            uint32_t id;
            if (lw[k].set) {
                CHECK_SEED(w && sl_crdt_lww_get(w, &v, &ts, &id), seed, "lww %s empty", kb);
                CHECK_SEED(ts == lw[k].ts && id == lw[k].id && v.len == strlen(lw[k].v) &&
                               memcmp(v.ptr, lw[k].v, v.len) == 0,
                           seed, "replica %d: lww %s is not the largest write", i, kb);
            }
        }
    }
    sl_buf_free(&a);
    sl_buf_free(&b);
    sl_buf_free(&snap);
    for (int i = 0; i < NR; i++) {
        sl_crdt_replica_free(r[i]);
        free(q[i].i);
    }
    topic_free(&t);
}

static void test_converge(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++) run_seed(seed);
}

/* A replica with a bit of everything, and its deltas. */
static sl_crdt_replica *sample(uint32_t id, topic *t)
{
    sl_crdt_replica *r = sl_crdt_replica_new(id, EXCH, 8);
    sl_bytes k1 = {"page-1", 6}, k2 = {"", 0}, v = {"alice", 5};
    assert_int_equal(
        sl_crdt_pncounter_add(sl_crdt_replica_pncounter(r, k1, SL_CRDT_REPLICA_UPDATE), -3), 0);
    assert_int_equal(sl_crdt_lww_set(sl_crdt_replica_lww(r, k1, SL_CRDT_REPLICA_UPDATE), 5, v), 0);
    assert_int_equal(sl_crdt_orset_add(sl_crdt_replica_orset(r, k2, SL_CRDT_REPLICA_UPDATE), v), 0);
    assert_int_equal(sl_crdt_mvreg_set(sl_crdt_replica_mvreg(r, k2, SL_CRDT_REPLICA_UPDATE), v), 0);
    sl_crdt_hll_add(sl_crdt_replica_hll(r, k1, SL_CRDT_REPLICA_UPDATE), "u1", 2);
    if (t) assert_int_equal(sl_crdt_replica_take_deltas(r, publish, t), 0);
    return r;
}

static void test_snapshot_roundtrip_and_bad_bytes(void **state)
{
    (void)state;
    sl_crdt_replica *r = sample(1, NULL); /* changes not taken: flagged in the snapshot */
    sl_buf s = {0}, s2 = {0};
    assert_int_equal(sl_crdt_replica_snapshot(r, &s), 0);
    sl_crdt_replica *c = sl_crdt_replica_new(2, EXCH, 8);
    assert_int_equal(sl_crdt_replica_restore(c, s.ptr, s.len), 0);
    assert_true(sl_crdt_replica_equal(r, c));
    assert_int_equal(sl_crdt_replica_size(c), 5);
    /* the restored copy re-sends its unsent changes: a third replica that
     * only hears it ends equal */
    topic t = {0};
    assert_int_equal(sl_crdt_replica_take_deltas(c, publish, &t), 0);
    assert_int_equal(t.n, 5);
    sl_crdt_replica *d = sl_crdt_replica_new(3, EXCH, 8);
    for (size_t i = 0; i < t.n; i++)
        assert_int_equal(sl_crdt_replica_apply(d, t.rec[i].ptr, t.rec[i].len), 0);
    assert_true(sl_crdt_replica_equal(r, d));
    /* nothing left to send */
    size_t before = t.n;
    assert_int_equal(sl_crdt_replica_take_deltas(c, publish, &t), 0);
    assert_int_equal(t.n, before);
    /* a snapshot restores into itself (same bytes again) */
    assert_int_equal(sl_crdt_replica_snapshot(d, &s2), 0);
    assert_int_equal(sl_crdt_replica_restore(d, s2.ptr, s2.len), 0);
    assert_true(sl_crdt_replica_equal(r, d));
    /* every truncation and a trailing byte are refused, the replica unchanged */
    uint8_t *cp = malloc(s.len + 1);
    for (size_t n = 0; n < s.len; n++) {
        uint8_t *x = malloc(n ? n : 1);
        memcpy(x, s.ptr, n);
        assert_true(sl_crdt_replica_restore(d, x, n) < 0);
        free(x);
    }
    memcpy(cp, s.ptr, s.len);
    cp[s.len] = 0;
    assert_int_equal(sl_crdt_replica_restore(d, cp, s.len + 1), SL_ECORRUPT);
    /* random byte flips: refused or accepted, never a crash */
    rng g = {7};
    for (int k = 0; k < 3000; k++) {
        memcpy(cp, s.ptr, s.len);
        for (int f = 0; f < 3; f++) cp[rng_below(&g, (uint32_t)s.len)] ^= (uint8_t)rng_next(&g);
        (void)sl_crdt_replica_restore(d, cp, s.len);
    }
    /* version and exchange */
    memcpy(cp, s.ptr, s.len);
    cp[4] = 2;
    assert_int_equal(sl_crdt_replica_restore(d, cp, s.len), SL_ENOTSUP);
    sl_crdt_replica *other = sl_crdt_replica_new(2, EXCH + 1, 8);
    assert_int_equal(sl_crdt_replica_restore(other, s.ptr, s.len), SL_EINVAL);
    sl_crdt_replica *p14 = sl_crdt_replica_new(2, EXCH, 14);
    assert_int_equal(sl_crdt_replica_restore(p14, s.ptr, s.len), SL_EINVAL);
    free(cp);
    sl_buf_free(&s);
    sl_buf_free(&s2);
    sl_crdt_replica_free(r);
    sl_crdt_replica_free(c);
    sl_crdt_replica_free(d);
    sl_crdt_replica_free(other);
    sl_crdt_replica_free(p14);
    topic_free(&t);
}

static void test_delta_records(void **state)
{
    (void)state;
    topic t = {0};
    sl_crdt_replica *r = sample(1, &t);
    assert_int_equal(t.n, 5);
    sl_crdt_replica *x = sl_crdt_replica_new(9, EXCH + 1, 8), *y = sl_crdt_replica_new(9, EXCH, 8),
                    *p14 = sl_crdt_replica_new(9, EXCH, 14);
    for (size_t i = 0; i < t.n; i++) {
        const sl_buf *b = &t.rec[i];
        assert_int_equal(sl_crdt_replica_apply(x, b->ptr, b->len), 1); /* another exchange */
        sl_bytes k = sl_crdt_replica_delta_key(b->ptr, (uint32_t)b->len, NULL);
        assert_true(k.len == 6 || k.len == 0);
        for (size_t n = 0; n < b->len; n++) {
            uint8_t *c = malloc(n ? n : 1);
            memcpy(c, b->ptr, n);
            assert_true(sl_crdt_replica_apply(y, c, n) < 0);
            free(c);
        }
        uint8_t *c = malloc(b->len);
        memcpy(c, b->ptr, b->len);
        c[1] = 9;
        assert_int_equal(sl_crdt_replica_apply(y, c, b->len), SL_ENOTSUP);
        c[1] = 1;
        c[2] = c[2] == SL_CRDT_LWW ? SL_CRDT_ORSET : SL_CRDT_LWW; /* header and body disagree */
        assert_int_equal(sl_crdt_replica_apply(y, c, b->len), SL_ECORRUPT);
        free(c);
    }
    assert_int_equal(sl_crdt_replica_size(y), 0);
    assert_int_equal(sl_crdt_replica_size(x), 0);
    /* a sketch of another precision */
    for (size_t i = 0; i < t.n; i++)
        if (t.rec[i].ptr[2] == SL_CRDT_HLL)
            assert_int_equal(sl_crdt_replica_apply(p14, t.rec[i].ptr, t.rec[i].len), SL_EINVAL);
    /* applied twice, in reverse: equal to the sender */
    for (size_t i = t.n; i-- > 0;) {
        assert_int_equal(sl_crdt_replica_apply(y, t.rec[i].ptr, t.rec[i].len), 0);
        assert_int_equal(sl_crdt_replica_apply(y, t.rec[i].ptr, t.rec[i].len), 0);
    }
    assert_true(sl_crdt_replica_equal(r, y));
    /* accessors: lookups do not make states; a key too long is refused */
    assert_null(sl_crdt_replica_gcounter(y, (sl_bytes){"nope", 4}, 0));
    assert_int_equal(sl_crdt_replica_size(y), 5);
    char *big = calloc(1, SL_CRDT_REPLICA_MAX_KEY + 1);
    assert_null(sl_crdt_replica_gcounter(y, (sl_bytes){big, SL_CRDT_REPLICA_MAX_KEY + 1},
                                         SL_CRDT_REPLICA_UPDATE));
    free(big);
    assert_null(sl_crdt_replica_new(1, 0, 3));
    sl_crdt_replica_free(NULL);
    sl_crdt_replica_free(r);
    sl_crdt_replica_free(x);
    sl_crdt_replica_free(y);
    sl_crdt_replica_free(p14);
    topic_free(&t);
}

/* --- the operator's snapshot / restore hooks, through the engine ---------------------- */

typedef struct gen_ud {
    sl_pipeline *p;
    uint64_t cancel_at; /* cancel the run (a stop with a savepoint) at this record; 0: never */
} gen_ud;

typedef struct ev {
    uint32_t page, user;
    int32_t delta;
    uint32_t tag;
} ev;

static int gen_ev(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    gen_ud *g = ud;
    rng r = {seq * 2654435761u + 1};
    ev *e = out;
    e->page = rng_below(&r, 7);
    e->user = rng_below(&r, 300);
    e->delta = (int32_t)rng_below(&r, 5) - 1;
    e->tag = rng_below(&r, 10);
    *ts = (int64_t)seq;
    if (g->cancel_at && seq == g->cancel_at) sl_pipeline_cancel(g->p);
    return 0;
}

static int upd_ev(sl_crdt_replica *r, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len;
    (void)ud;
    const ev *e = rec;
    char kb[16], v[16];
    sl_bytes key = {kb, (uint32_t)snprintf(kb, sizeof(kb), "p%u", e->page)};
    int n = snprintf(v, sizeof(v), "u%u", e->user);
    sl_crdt_hll_add(sl_crdt_replica_hll(r, key, SL_CRDT_REPLICA_UPDATE), v, (size_t)n);
    int rc =
        sl_crdt_pncounter_add(sl_crdt_replica_pncounter(r, key, SL_CRDT_REPLICA_UPDATE), e->delta);
    if (rc) return rc;
    if (sl_crdt_lww_set(sl_crdt_replica_lww(r, key, SL_CRDT_REPLICA_UPDATE), ts,
                        (sl_bytes){v, (uint32_t)n}) < 0)
        return SL_EINVAL;
    n = snprintf(v, sizeof(v), "t%u", e->tag % 5);
    sl_crdt_orset *s = sl_crdt_replica_orset(r, key, SL_CRDT_REPLICA_UPDATE);
    return e->tag < 5 ? sl_crdt_orset_add(s, (sl_bytes){v, (uint32_t)n})
                      : sl_crdt_orset_remove(s, (sl_bytes){v, (uint32_t)n});
}

/* generator -> replica operator -> collector; with dir, checkpointed there
 * (a start resumes from its latest checkpoint). */
static void run_op(sl_crdt_replica *r, sl_collector *col, const char *dir, uint64_t cancel_at,
                   uint64_t count)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    gen_ud g = {p, cancel_at};
    sl_generator_conf gc = {.fn = gen_ev, .ud = &g, .count = count};
    sl_crdt_replica_conf rc = {.replica = r, .update = upd_ev, .deltas_input = -1};
    sl_pipeline_set_threads(p, 2);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(ev), NULL);
    s = sl_stream_apply(s, "replica", &sl_crdt_replica_op, &rc, 0);
    assert_int_equal(sl_stream_sink(s, "deltas", &sl_sink_collect, col), 0);
    if (dir) {
        sl_checkpoint_conf cc = {.dir = dir, .interval_ms = 3600000};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    }
    int rcode = sl_pipeline_run(p);
    if (rcode) fail_msg("run: %s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
}

static void test_operator_restart(void **state)
{
    (void)state;
    const uint64_t count = 20000;
    /* reference: one run over every event */
    sl_crdt_replica *ref = sl_crdt_replica_new(1, EXCH, 10);
    sl_collector *c0 = sl_collector_new();
    run_op(ref, c0, NULL, 0, count);
    /* the same replica, stopped mid-way (a savepoint), then a new process's
     * replica restored from it by the operator's restore hook */
    char dir[] = "/tmp/test_crdt_replicas.XXXXXX";
    assert_non_null(mkdtemp(dir));
    sl_crdt_replica *a = sl_crdt_replica_new(1, EXCH, 10);
    sl_collector *c1 = sl_collector_new();
    run_op(a, c1, dir, 5000, count);
    assert_false(sl_crdt_replica_equal(ref, a)); /* it did stop early */
    sl_crdt_replica *b = sl_crdt_replica_new(1, EXCH, 10);
    run_op(b, c1, dir, 0, count);
    assert_true(sl_crdt_replica_equal(ref, b));
    /* a replica that hears only the deltas of both runs converges too, and
     * the reference's own deltas re-merged change nothing */
    sl_crdt_replica *o = sl_crdt_replica_new(2, EXCH, 10);
    for (size_t i = 0; i < sl_collector_count(c1); i++) {
        sl_bytes d = sl_collector_get(c1, i, NULL);
        assert_int_equal(sl_crdt_replica_apply(o, d.ptr, d.len), 0);
    }
    assert_true(sl_crdt_replica_equal(ref, o));
    for (size_t i = 0; i < sl_collector_count(c0); i++) {
        sl_bytes d = sl_collector_get(c0, i, NULL);
        assert_int_equal(sl_crdt_replica_apply(b, d.ptr, d.len), 0);
    }
    assert_true(sl_crdt_replica_equal(ref, b));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    sl_collector_free(c0);
    sl_collector_free(c1);
    sl_crdt_replica_free(ref);
    sl_crdt_replica_free(a);
    sl_crdt_replica_free(b);
    sl_crdt_replica_free(o);
}

/* --- end markers -------------------------------------------------------------------- */

static void test_end_markers(void **state)
{
    (void)state;
    sl_crdt_replica *r = sl_crdt_replica_new(3, EXCH, 8), *y = sl_crdt_replica_new(7, EXCH, 8),
                    *x = sl_crdt_replica_new(7, EXCH + 1, 8);
    sl_buf b = {0};
    assert_int_equal(sl_crdt_replica_end_marker(r, (sl_bytes){"end-k", 5}, 2, 4, &b), 0);
    assert_int_equal(b.len, 20 + 5 + 12);
    assert_int_equal(b.ptr[0], 0xCE);
    assert_int_equal(b.ptr[2], 0); /* type 0: end marker */
    sl_crdt_end_marker m;
    assert_int_equal(sl_crdt_replica_end_marker_read(b.ptr, b.len, &m), 1);
    assert_int_equal(m.sender, 3);
    assert_true(m.exchange == EXCH);
    assert_int_equal(m.partition, 2);
    assert_int_equal(m.partitions, 4);
    sl_bytes k = sl_crdt_replica_delta_key(b.ptr, (uint32_t)b.len, NULL);
    assert_int_equal(k.len, 5);
    assert_memory_equal(k.ptr, "end-k", 5);
    assert_int_equal(sl_crdt_replica_apply(y, b.ptr, b.len), 2);
    assert_int_equal(sl_crdt_replica_apply(x, b.ptr, b.len), 1); /* another exchange */
    assert_int_equal(sl_crdt_replica_size(y), 0);
    /* a delta record reads as "not a marker" */
    topic t = {0};
    sl_crdt_replica *s1 = sample(1, &t);
    assert_int_equal(sl_crdt_replica_end_marker_read(t.rec[0].ptr, t.rec[0].len, NULL), 0);
    /* bad markers: every truncation, a marker version, a partition past the count */
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, b.ptr, n);
        assert_true(sl_crdt_replica_apply(y, c, n) < 0);
        assert_true(sl_crdt_replica_end_marker_read(c, n, NULL) < 0);
        free(c);
    }
    uint8_t *c = malloc(b.len);
    memcpy(c, b.ptr, b.len);
    c[25] = 2;
    assert_int_equal(sl_crdt_replica_apply(y, c, b.len), SL_ENOTSUP);
    c[25] = 1;
    c[26] = 1;
    assert_int_equal(sl_crdt_replica_apply(y, c, b.len), SL_ECORRUPT);
    c[26] = 0;
    c[29] = 4; /* partition 4 of 4 */
    assert_int_equal(sl_crdt_replica_apply(y, c, b.len), SL_ECORRUPT);
    assert_int_equal(sl_crdt_replica_end_marker_read(c, b.len, NULL), SL_ECORRUPT);
    free(c);
    assert_int_equal(sl_crdt_replica_end_marker(r, (sl_bytes){"k", 1}, 4, 4, &b), SL_EINVAL);
    assert_int_equal(sl_crdt_replica_size(y), 0);
    sl_buf_free(&b);
    topic_free(&t);
    sl_crdt_replica_free(s1);
    sl_crdt_replica_free(r);
    sl_crdt_replica_free(x);
    sl_crdt_replica_free(y);
}

/* --- merging without allocating ------------------------------------------------------ */

/* One round of updates on a: every key's counters, register, set and sketch. */
static void round_of_updates(sl_crdt_replica *a, rng *g, int round)
{
    for (int k = 0; k < 4; k++) {
        char kb[8], v[16];
        snprintf(kb, sizeof(kb), "p%d", k);
        sl_bytes key = {kb, 2};
        assert_int_equal(
            sl_crdt_gcounter_increment(sl_crdt_replica_gcounter(a, key, SL_CRDT_REPLICA_UPDATE),
                                       1 + rng_below(g, 5)),
            0);
        assert_int_equal(
            sl_crdt_pncounter_add(sl_crdt_replica_pncounter(a, key, SL_CRDT_REPLICA_UPDATE),
                                  (int64_t)rng_below(g, 9) - 4),
            0);
        snprintf(v, sizeof(v), "v%04u", rng_below(g, 10000)); /* one length: the buffer fits */
        assert_true(sl_crdt_lww_set(sl_crdt_replica_lww(a, key, SL_CRDT_REPLICA_UPDATE),
                                    round * 10 + k, (sl_bytes){v, 5}) >= 0);
        sl_crdt_orset *o = sl_crdt_replica_orset(a, key, SL_CRDT_REPLICA_UPDATE);
        for (int e = 0; e < 3; e++) {
            snprintf(v, sizeof(v), "t%u", rng_below(g, 4)); /* elements the states hold */
            if (rng_below(g, 4) == 0)
                assert_int_equal(sl_crdt_orset_remove(o, (sl_bytes){v, 2}), 0);
            else
                assert_int_equal(sl_crdt_orset_add(o, (sl_bytes){v, 2}), 0);
        }
        sl_crdt_hll *h = sl_crdt_replica_hll(a, key, SL_CRDT_REPLICA_UPDATE);
        for (int e = 0; e < 20; e++) sl_crdt_hll_add_hash(h, rng_next(g));
    }
}

static void test_apply_allocates_nothing(void **state)
{
    (void)state;
    uint64_t seed = 42;
    rng g = {seed};
    sl_crdt_replica *a = sl_crdt_replica_new(1, EXCH, 8), *b = sl_crdt_replica_new(2, EXCH, 8);
    /* warm-up: b makes its states and its scratch objects grow */
    for (int round = 0; round < 12; round++) {
        topic t = {0};
        round_of_updates(a, &g, round);
        assert_int_equal(sl_crdt_replica_take_deltas(a, publish, &t), 0);
        for (size_t i = 0; i < t.n; i++)
            assert_int_equal(sl_crdt_replica_apply(b, t.rec[i].ptr, t.rec[i].len), 0);
        topic_free(&t);
    }
    long merged = 0, allocs = 0;
    for (int round = 12; round < 36; round++) {
        topic t = {0};
        round_of_updates(a, &g, round);
        assert_int_equal(sl_crdt_replica_take_deltas(a, publish, &t), 0);
        /* OR-Set elements b holds (or removed and keeps for reuse), the rest in
         * place: no allocation once the warm-up has grown every buffer */
        n_allocs = 0;
        counting = 1;
        for (size_t i = 0; i < t.n; i++) {
            int rc = sl_crdt_replica_apply(b, t.rec[i].ptr, t.rec[i].len);
            CHECK_SEED(rc == 0, seed, "apply: %d", rc);
            merged++;
        }
        counting = 0;
        allocs += n_allocs;
        topic_free(&t);
    }
    CHECK_SEED(allocs == 0, seed, "%ld allocations in %ld merges into existing states", allocs,
               merged);
    assert_true(merged >= 24 * 4 * 4); /* every type but mvreg, every key, every round */
    assert_true(sl_crdt_replica_equal(a, b));
    /* the counter works: a merge that makes a new state allocates */
    topic t = {0};
    sl_crdt_gcounter_increment(
        sl_crdt_replica_gcounter(a, (sl_bytes){"new", 3}, SL_CRDT_REPLICA_UPDATE), 1);
    assert_int_equal(sl_crdt_replica_take_deltas(a, publish, &t), 0);
    n_allocs = 0;
    counting = 1;
    for (size_t i = 0; i < t.n; i++)
        assert_int_equal(sl_crdt_replica_apply(b, t.rec[i].ptr, t.rec[i].len), 0);
    counting = 0;
    assert_true(n_allocs > 0);
    assert_true(sl_crdt_replica_equal(a, b));
    topic_free(&t);
    sl_crdt_replica_free(a);
    sl_crdt_replica_free(b);
}

/* A delta record of a sketch, by hand: the header, key "h", the encoding. */
static void hll_rec(sl_buf *out, const sl_crdt_hll *h)
{
    uint8_t hd[20] = {0xCE, 1, SL_CRDT_HLL, 0, 9, 0, 0, 0};
    for (int i = 0; i < 8; i++) hd[8 + i] = (uint8_t)(EXCH >> (8 * i));
    hd[16] = 1;
    out->len = 0;
    assert_int_equal(sl_buf_append(out, hd, sizeof(hd)), 0);
    assert_int_equal(sl_buf_append(out, "h", 1), 0);
    assert_int_equal(sl_crdt_hll_encode(h, out), 0);
}

static void test_hll_merge_from_bytes(void **state)
{
    (void)state;
    uint64_t seed = 7;
    rng g = {seed};
    sl_buf rec = {0}, before = {0}, after = {0};
    int ps[] = {4, 8, 14};
    for (int pi = 0; pi < 3; pi++) {
        int p = ps[pi];
        sl_crdt_replica *r = sl_crdt_replica_new(1, EXCH, p);
        sl_crdt_hll *ref = sl_crdt_hll_new(p), *x = sl_crdt_hll_new(p);
        sl_crdt_hll_add_hash(ref, 12345);
        hll_rec(&rec, ref);
        assert_int_equal(sl_crdt_replica_apply(r, rec.ptr, rec.len), 0); /* the state exists */
        for (int round = 0; round < 40; round++) {
            sl_crdt_hll_free(x);
            x = sl_crdt_hll_new(p);
            /* few registers (sparse) in most rounds, many (dense) in some; ranks up to
             * 65 - p (all-zero low bits) */
            int n = round % 5 == 4 ? 3 << p : (int)rng_below(&g, 6);
            for (int i = 0; i < n; i++) {
                uint64_t hsh = rng_next(&g);
                if (rng_below(&g, 8) == 0) hsh &= ~0ull << (64 - p); /* the largest rank */
                sl_crdt_hll_add_hash(x, hsh);
            }
            hll_rec(&rec, x);
            assert_int_equal(sl_crdt_replica_apply(r, rec.ptr, rec.len), 0);
            assert_int_equal(sl_crdt_hll_merge(ref, x), 0);
            const sl_crdt_hll *got = sl_crdt_replica_hll(r, (sl_bytes){"h", 1}, 0);
            CHECK_SEED(sl_crdt_hll_equal(got, ref), seed,
                       "p %d round %d: joined from the bytes "
                       "differs from the decoded merge",
                       p, round);
        }
        /* bad sketch bytes: refused, the state as it was */
        const sl_crdt_hll *got = sl_crdt_replica_hll(r, (sl_bytes){"h", 1}, 0);
        before.len = 0;
        assert_int_equal(sl_crdt_hll_encode(got, &before), 0);
        hll_rec(&rec, x);
        size_t body = 21;
        for (size_t n = body; n < rec.len; n++)
            assert_true(sl_crdt_replica_apply(r, rec.ptr, n) < 0); /* truncated */
        uint8_t *c = malloc(rec.len + 1);
        memcpy(c, rec.ptr, rec.len);
        c[rec.len] = 0;
        assert_int_equal(sl_crdt_replica_apply(r, c, rec.len + 1), SL_ECORRUPT); /* trailing */
        c[body + 5] = 2;
        assert_int_equal(sl_crdt_replica_apply(r, c, rec.len), SL_ECORRUPT); /* form */
        c[body + 5] = rec.ptr[body + 5];
        c[body + 4] = (uint8_t)(p == 4 ? 5 : p - 1);
        assert_true(sl_crdt_replica_apply(r, c, rec.len) < 0); /* another precision's length */
        c[body + 4] = (uint8_t)p;
        if (c[body + 5] == 0) { /* dense: a register past 65 - p, at the end */
            c[rec.len - 1] = (uint8_t)(66 - p);
            assert_int_equal(sl_crdt_replica_apply(r, c, rec.len), SL_ECORRUPT);
        } else { /* sparse: the last entry's value past 65 - p */
            c[rec.len - 4] = (uint8_t)(66 - p);
            assert_int_equal(sl_crdt_replica_apply(r, c, rec.len), SL_ECORRUPT);
            c[rec.len - 4] = 0; /* value 0 */
            assert_int_equal(sl_crdt_replica_apply(r, c, rec.len), SL_ECORRUPT);
        }
        free(c);
        after.len = 0;
        assert_int_equal(sl_crdt_hll_encode(got, &after), 0);
        assert_int_equal(before.len, after.len);
        assert_memory_equal(before.ptr, after.ptr, before.len);
        /* a sketch of another precision, valid in itself */
        sl_crdt_hll *o = sl_crdt_hll_new(p == 4 ? 5 : 4);
        sl_crdt_hll_add_hash(o, 99);
        hll_rec(&rec, o);
        assert_int_equal(sl_crdt_replica_apply(r, rec.ptr, rec.len), SL_EINVAL);
        sl_crdt_hll_free(o);
        sl_crdt_hll_free(x);
        sl_crdt_hll_free(ref);
        sl_crdt_replica_free(r);
    }
    sl_buf_free(&rec);
    sl_buf_free(&before);
    sl_buf_free(&after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converge),
        cmocka_unit_test(test_snapshot_roundtrip_and_bad_bytes),
        cmocka_unit_test(test_delta_records),
        cmocka_unit_test(test_operator_restart),
        cmocka_unit_test(test_end_markers),
        cmocka_unit_test(test_apply_allocates_nothing),
        cmocka_unit_test(test_hll_merge_from_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
