/*
 * examples/job_crdt_replicas.c - the bundled job `crdt-replicas`: N regions
 * keep CRDT state for the same pages, each from its own share of the
 * events, exchange deltas through one topic and converge without any
 * coordination (sluice/crdt.h, section "Replicas").
 *
 * Per page, every region keeps
 *   views   PN-Counter   +1 per view, -1 per retraction (a view taken back)
 *   editor  LWW-Register the user of the latest edit (event time, then the
 *                        region's replica id, breaks ties)
 *   tags    OR-Set       tags added and removed (add-wins on concurrency)
 *   users   HyperLogLog  distinct users who viewed the page (p = 14)
 *
 * Two phases per region, each a pipeline of this process (region r has
 * replica id r + 1):
 *
 *   1. generator (region r's events) -> replica operator (local updates;
 *      emits one delta record per changed (page, type) per batch) -> topic
 *      sink (keyed by page)
 *   2. topic source (every region's deltas, its own included; order across
 *      partitions arbitrary) -> replica operator as sink (merges them)
 *
 * so every delta reaches every region late, and the sender's own deltas
 * twice. The topic is the built-in broker's in --dir (made with 4
 * partitions if missing), or a Kafka cluster's with --kafka (it must exist:
 * `sluice topic create crdt-replicas -b HOST:PORT`). Records of another
 * run on the same topic are skipped: the exchange id is a hash of
 * (--seed, --replicas, --events, --pages), and a rerun with the same
 * options only re-merges equal deltas, which changes nothing.
 *
 * Events are made from the seed: event g (0 <= g < E) belongs to region
 * g mod N, happens at event time g ms, on page mix(g) mod K. The job
 * computes the true totals from the events too, and prints, per page, the
 * merged values of region 0, then `state: <16 hex digits>` (a hash of the
 * replica's snapshot without its replica id: equal states, equal digests),
 * then `replicas: N, keys: K, converged: yes|no`: yes when every region
 * holds equal states for every page and the view counts and editors are
 * the true ones. Exit 1 when not.
 *
 * One region per process (--region R, with --kafka: the built-in broker
 * takes one writer process per partition, so processes share a topic only
 * through `sluice broker serve` or a real Kafka). The process runs two
 * pipelines at once:
 *
 *   merge    Kafka source following the topic from its start -> "merge"
 *            (applies every delta record to a replica of its own; counts
 *            the end markers) - started first: it tells the partition
 *            count P (the source's splits);
 *   publish  generator (region R's events) -> replica operator (replica
 *            id R + 1) -> "end-markers" (passes records on; when the input
 *            has ended, one end marker per partition, keyed so that the
 *            partitioner puts marker p on partition p) -> Kafka sink.
 *
 * No coordination: merge cancels its own pipeline once it has read, on
 * every partition, the markers of all N regions of the exchange (crdt.h,
 * "End marker"); a region's markers come after all its deltas on each
 * partition, so by then it has merged everything. It prints the same lines
 * from the merged replica; `converged: yes` there means the counts and
 * editors are the true totals, and equality with the other processes shows
 * in the `state:` digests. A region that never ends (killed) keeps the
 * others waiting until it is rerun.
 *
 * Checkpoints (--checkpoint-dir, region mode only): the publish pipeline
 * checkpoints the generator's position, the replica (the operator's
 * snapshot hook) and the sink, exactly-once: the deltas of a checkpoint
 * become visible with it, in one Kafka transaction per region (the
 * transactional id names the topic, the exchange and the region, so a
 * rerun fences its killed predecessor and the regions never fence each
 * other). A rerun of the same command resumes from the last checkpoint;
 * the merge pipeline always reads the topic from its start (merging is
 * idempotent), so it needs no checkpoint. crdt.h warns that a replica
 * restarted from an older state than it published reuses counter values
 * and dots; here that is harmless twice over: the sink is exactly-once, so
 * nothing published is newer than the checkpoint restored (deltas staged
 * after it were never committed, or are aborted when the rerun fences the
 * old producer), and the events are a function of the seed, so the
 * replayed events are the very same increments, edits and adds: the
 * counter values and dots (R + 1, n) they make again carry what they
 * carried before, and joining a delta with itself changes nothing. Until
 * it merges, the publishing replica holds only its own region's updates.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jobs.h"

#define MAX_REPLICAS 64
#define N_USERS      5000
#define N_TAGS       8

typedef struct event {
    int64_t ts;
    uint32_t page, user;
    uint8_t kind, tag;
    uint8_t pad[6];
} event;

enum { EV_VIEW, EV_RETRACT, EV_EDIT, EV_TAG_ADD, EV_TAG_REMOVE };

typedef struct cr_opts {
    long long replicas, events, seed, pages;
    long long region; /* -1: every region in this process */
} cr_opts;

/* One region: its share of the events and its replica. */
typedef struct region {
    const cr_opts *o;
    int index;
    sl_crdt_replica *rep;
    sl_crdt_replica_conf conf;
} region;

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Event g of the whole stream. */
static void make_event(const cr_opts *o, uint64_t g, event *e)
{
    uint64_t h = mix(g ^ mix((uint64_t)o->seed));
    memset(e, 0, sizeof(*e));
    e->ts = (int64_t)g;
    e->page = (uint32_t)(h % (uint64_t)o->pages);
    e->user = (uint32_t)((h >> 20) % N_USERS);
    e->tag = (uint8_t)((h >> 40) % N_TAGS);
    unsigned k = (unsigned)((h >> 50) % 20);
    e->kind = k < 12   ? EV_VIEW
              : k < 14 ? EV_RETRACT
              : k < 16 ? EV_EDIT
              : k < 18 ? EV_TAG_ADD
                       : EV_TAG_REMOVE;
}

/* Region r's record seq is event seq * N + r. */
static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    const region *rg = ud;
    make_event(rg->o, seq * (uint64_t)rg->o->replicas + (uint64_t)rg->index, out);
    *ts = ((event *)out)->ts;
    return 0;
}

static int page_key(char *buf, size_t n, uint32_t page)
{
    return snprintf(buf, n, "page-%03" PRIu32, page);
}

/* A local event, as CRDT updates (the replica operator's update()). */
static int update(sl_crdt_replica *r, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)ud;
    (void)len;
    const event *e = rec;
    char kb[32], v[32];
    sl_bytes key = {kb, (uint32_t)page_key(kb, sizeof(kb), e->page)};
    switch (e->kind) {
    case EV_VIEW: {
        sl_crdt_pncounter *c = sl_crdt_replica_pncounter(r, key, SL_CRDT_REPLICA_UPDATE);
        sl_crdt_hll *h = sl_crdt_replica_hll(r, key, SL_CRDT_REPLICA_UPDATE);
        if (!c || !h) return SL_ENOMEM;
        int n = snprintf(v, sizeof(v), "u%" PRIu32, e->user);
        sl_crdt_hll_add(h, v, (size_t)n);
        return sl_crdt_pncounter_increment(c, 1);
    }
    case EV_RETRACT: {
        sl_crdt_pncounter *c = sl_crdt_replica_pncounter(r, key, SL_CRDT_REPLICA_UPDATE);
        return c ? sl_crdt_pncounter_decrement(c, 1) : SL_ENOMEM;
    }
    case EV_EDIT: {
        sl_crdt_lww *w = sl_crdt_replica_lww(r, key, SL_CRDT_REPLICA_UPDATE);
        if (!w) return SL_ENOMEM;
        int n = snprintf(v, sizeof(v), "u%" PRIu32, e->user);
        int rc = sl_crdt_lww_set(w, ts, (sl_bytes){v, (uint32_t)n});
        return rc == 1 ? 0 : rc;
    }
    default: {
        sl_crdt_orset *s = sl_crdt_replica_orset(r, key, SL_CRDT_REPLICA_UPDATE);
        if (!s) return SL_ENOMEM;
        int n = snprintf(v, sizeof(v), "t%u", (unsigned)e->tag);
        sl_bytes t = {v, (uint32_t)n};
        return e->kind == EV_TAG_ADD ? sl_crdt_orset_add(s, t) : sl_crdt_orset_remove(s, t);
    }
    }
}

/* The true values, from the events. */
typedef struct truth {
    int64_t views;
    int64_t edit_ts; /* -1: never edited */
    uint32_t edit_replica, editor;
    uint8_t *seen; /* N_USERS flags: users who viewed */
    uint32_t distinct;
} truth;

static int compute_truth(const cr_opts *o, truth *t)
{
    for (long long p = 0; p < o->pages; p++) {
        t[p].edit_ts = -1;
        if (!(t[p].seen = calloc(N_USERS, 1))) return -1;
    }
    for (uint64_t g = 0; g < (uint64_t)o->events; g++) {
        event e;
        make_event(o, g, &e);
        truth *x = &t[e.page];
        uint32_t rid = (uint32_t)(g % (uint64_t)o->replicas) + 1;
        if (e.kind == EV_VIEW) {
            x->views++;
            if (!x->seen[e.user]) x->distinct++;
            x->seen[e.user] = 1;
        } else if (e.kind == EV_RETRACT) {
            x->views--;
        } else if (e.kind == EV_EDIT) {
            /* ts grows with g: a later event always wins */
            x->edit_ts = e.ts;
            x->edit_replica = rid;
            x->editor = e.user;
        }
    }
    return 0;
}

static int by_bytes(const void *a, const void *b)
{
    const sl_bytes *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Print page p of replica r; returns 1 if its counters and editor are
 * true. *present: whether r has any state for the page. */
static int print_page(sl_crdt_replica *r, long long p, const truth *t, int *present)
{
    char kb[32];
    sl_bytes key = {kb, (uint32_t)page_key(kb, sizeof(kb), (uint32_t)p)};
    sl_crdt_pncounter *c = sl_crdt_replica_pncounter(r, key, 0);
    sl_crdt_lww *w = sl_crdt_replica_lww(r, key, 0);
    sl_crdt_orset *s = sl_crdt_replica_orset(r, key, 0);
    sl_crdt_hll *h = sl_crdt_replica_hll(r, key, 0);
    *present = c || w || s || h;
    int64_t views = c ? sl_crdt_pncounter_value(c) : 0;
    int ok = views == t->views;
    printf("%s views=%" PRId64 " editor=", kb, views);
    sl_bytes v;
    int64_t ts;
    uint32_t rid;
    if (w && sl_crdt_lww_get(w, &v, &ts, &rid)) {
        printf("%.*s", (int)v.len, (const char *)v.ptr);
        char want[32];
        int n = snprintf(want, sizeof(want), "u%" PRIu32, t->editor);
        ok &= ts == t->edit_ts && rid == t->edit_replica && v.len == (uint32_t)n &&
              memcmp(v.ptr, want, (size_t)n) == 0;
    } else {
        printf("-");
        ok &= t->edit_ts < 0;
    }
    printf(" tags=");
    sl_bytes tags[N_TAGS + 1];
    size_t nt = 0, cur = 0;
    while (s && nt < N_TAGS + 1 && sl_crdt_orset_next(s, &cur, &tags[nt])) nt++;
    qsort(tags, nt, sizeof(tags[0]), by_bytes);
    for (size_t i = 0; i < nt; i++)
        printf("%s%.*s", i ? "," : "", (int)tags[i].len, (const char *)tags[i].ptr);
    if (!nt) printf("-");
    printf(" users~%.0f (exact %" PRIu32 ")\n", h ? sl_crdt_hll_estimate(h) : 0.0, t->distinct);
    return ok;
}

/* A hash of r's snapshot with the replica id and the entries' pending
 * flags zeroed (crdt.h draws the snapshot): replicas holding equal states
 * give equal digests, whatever their ids. */
static int state_digest(const sl_crdt_replica *r, uint64_t *out)
{
    sl_buf b = {0};
    int rc = sl_crdt_replica_snapshot(r, &b);
    if (rc) return rc;
    uint8_t *p = b.ptr;
    memset(p + 8, 0, 4);
    size_t off = 24;
    while (off + 6 <= b.len) { /* type, flags, key length, key, state length, state */
        p[off + 1] = 0;
        uint32_t klen = (uint32_t)p[off + 2] | (uint32_t)p[off + 3] << 8 |
                        (uint32_t)p[off + 4] << 16 | (uint32_t)p[off + 5] << 24;
        off += 6 + klen;
        if (off + 4 > b.len) break;
        uint32_t slen = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
                        (uint32_t)p[off + 3] << 24;
        off += 4 + slen;
    }
    *out = sl_hash(b.ptr, b.len);
    sl_buf_free(&b);
    return 0;
}

/* --- one region per process (--region) ----------------------------------------------- */

/* The merge pipeline's operator: merges every delta record, counts end
 * markers (one per region and partition), and cancels its pipeline when
 * it has them all. */
typedef struct merge_conf {
    sl_crdt_replica *rep;
    int regions;
    int parts;     /* the topic's partitions (the source's splits), once known */
    uint8_t *seen; /* regions x parts: marker read */
    int nseen;
    int complete;
} merge_conf;

static int merge_open(sl_ctx *ctx, void **self)
{
    *self = sl_ctx_conf(ctx);
    return 0;
}

static int merge_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    merge_conf *m = self;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes v = sl_broker_rec_value(sl_batch_bytes(in, i));
        int rc = sl_crdt_replica_apply(m->rep, v.ptr, v.len);
        if (rc < 0) return sl_ctx_fail(ctx, rc, "delta record: %s", sl_strerror(rc));
        if (rc != 2) continue;
        sl_crdt_end_marker em;
        if (sl_crdt_replica_end_marker_read(v.ptr, v.len, &em) != 1)
            return sl_ctx_fail(ctx, SL_ECORRUPT, "an end marker that does not read back");
        if (!m->seen) {
            int n = sl_pipeline_source_splits(sl_ctx_pipeline(ctx), "deltas-in");
            if (n <= 0) return sl_ctx_fail(ctx, SL_ESTATE, "the topic's partitions are unknown");
            if (!(m->seen = calloc((size_t)m->regions * (size_t)n, 1)))
                return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
            m->parts = n;
        }
        if (em.sender < 1 || em.sender > (uint32_t)m->regions)
            return sl_ctx_fail(ctx, SL_ECORRUPT,
                               "an end marker of replica id %" PRIu32
                               ", which is no region of this exchange (1..%d)",
                               em.sender, m->regions);
        if (em.partitions != (uint32_t)m->parts)
            return sl_ctx_fail(ctx, SL_EINVAL,
                               "region %" PRIu32 " wrote end markers for %" PRIu32
                               " partitions, but the topic has %d",
                               em.sender - 1, em.partitions, m->parts);
        uint8_t *x = &m->seen[(size_t)(em.sender - 1) * (size_t)m->parts + em.partition];
        if (!*x) {
            *x = 1;
            if (++m->nseen == m->regions * m->parts && !m->complete) {
                m->complete = 1;
                sl_pipeline_cancel(sl_ctx_pipeline(ctx));
            }
        }
    }
    return 0;
}

static const sl_operator merge_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "crdt-merge",
                                     .open = merge_open,
                                     .process = merge_process};

/* The publish pipeline's last operator: passes the deltas on, and once the
 * whole input has been seen appends an end marker to every partition. */
typedef struct markers_conf {
    sl_crdt_replica *rep;
    int region, parts;
    int64_t ts;
} markers_conf;

static int markers_open(sl_ctx *ctx, void **self)
{
    *self = sl_ctx_conf(ctx);
    return 0;
}

static int markers_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    return sl_forward(ctx, in);
}

static int markers_end(sl_ctx *ctx, void *self)
{
    markers_conf *m = self;
    if (sl_ctx_end_canceled(ctx)) return 0; /* not done: no markers */
    sl_buf b = {0};
    int rc = 0;
    for (int p = 0; !rc && p < m->parts; p++) {
        /* a key the partitioner puts on partition p (murmur2, as Kafka's) */
        char key[64];
        int n = 0;
        for (unsigned i = 0;; i++) {
            n = snprintf(key, sizeof(key), "end-%d-%d-%u", m->region, p, i);
            if (sl_partition_for_key(key, (size_t)n, m->parts) == p) break;
        }
        b.len = 0;
        rc = sl_crdt_replica_end_marker(m->rep, (sl_bytes){key, (uint32_t)n}, (uint32_t)p,
                                        (uint32_t)m->parts, &b);
        if (!rc) rc = sl_emit_copy(ctx, m->ts, 0, b.ptr, (uint32_t)b.len);
    }
    sl_buf_free(&b);
    return rc ? sl_ctx_fail(ctx, rc, "end markers: %s", sl_strerror(rc)) : 0;
}

static const sl_operator markers_op = {.version = SL_OPERATOR_VERSION,
                                       .kind = "crdt-end-markers",
                                       .open = markers_open,
                                       .process = markers_process,
                                       .end = markers_end};

static void help(void)
{
    printf("usage: sluice run crdt-replicas [--replicas N] [--events E] [--seed S] [--pages K]\n"
           "                                [--topic NAME] [--dir DIR | --kafka BOOTSTRAP\n"
           "                                [-X KEY=VALUE]...] [--threads N]\n"
           "                                [--region R [--checkpoint-dir DIR ...]]\n"
           "N regions (default 3), each a pipeline with its own replica id, count page views\n"
           "(PN-Counter, with retractions), keep the last editor (LWW-Register), the tags\n"
           "(OR-Set, with removals) and the distinct users (HyperLogLog) of K pages (default\n"
           "20), from their shares of E events (default 100000) made from seed S (default 1).\n"
           "They exchange deltas through topic NAME (default crdt-replicas): the built-in\n"
           "broker's in --dir (made if missing), or a Kafka cluster's with --kafka (create it\n"
           "first). Prints the merged values per page, then\n"
           "`state: DIGEST` (a hash of the merged state) and `replicas: N, keys: K,\n"
           "converged: yes|no` (yes: every region holds equal states and the counts are the\n"
           "true ones); exits 1 when not converged.\n"
           "  --region R       run region R (0..N-1) only, in this process, against --kafka:\n"
           "                   start one process per region; each publishes its deltas and\n"
           "                   end markers, merges everybody's until it has read every\n"
           "                   region's markers, and prints the merged values (converged:\n"
           "                   yes when they are the true totals; equal states print equal\n"
           "                   digests). With --checkpoint-dir (and --checkpoint-interval,\n"
           "                   ...), a rerun of the same command resumes from the last\n"
           "                   checkpoint\n");
    fputs(jobs_topics_help, stdout);
    fputs(jobs_trace_help, stdout);
}

/* Make the topic on the built-in broker if it is missing. */
static int ensure_topic(const char *cmd, const char *dir, const char *topic)
{
    sl_broker *b = NULL;
    int rc = sl_broker_open(&b, dir, SL_BROKER_CREATE);
    if (!rc) {
        sl_topic_conf tc;
        sl_topic_conf_init(&tc);
        tc.partitions = 4;
        rc = sl_topic_create(b, topic, &tc);
        if (rc == SL_EEXIST) rc = 0;
    }
    if (rc)
        fprintf(stderr, "sluice %s: topic '%s' in %s: %s\n", cmd, topic, dir,
                b && *sl_broker_errmsg(b) ? sl_broker_errmsg(b) : sl_strerror(rc));
    sl_broker_close(b);
    return rc ? 1 : 0;
}

/* Run p to its end, shown as `name` by the job's endpoint (http: NULL
 * without --http) while it runs. */
static int run_pipeline(const char *cmd, sl_pipeline *p, const jobs_common *c, sl_http *http,
                        const char *name)
{
    if (c->threads) sl_pipeline_set_threads(p, c->threads);
    if (http && sl_http_add_pipeline(http, name, p)) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    int rc = jobs_run(NULL, p, cmd, c);
    sl_http_remove_pipeline(http, p);
    return rc;
}

/* Print the pages of r, its digest and the last line; returns the exit
 * status (0 converged, 1 not). */
static int report(const char *cmd, sl_crdt_replica *r, const cr_opts *o, const truth *t,
                  int converged)
{
    long long keys = 0;
    for (long long p = 0; p < o->pages; p++) {
        int present = 0;
        if (!print_page(r, p, &t[p], &present)) {
            fprintf(stderr, "sluice %s: page %lld: views or editor differ from the true ones\n",
                    cmd, p);
            converged = 0;
        }
        keys += present;
    }
    uint64_t digest = 0;
    int rc = state_digest(r, &digest);
    if (rc) {
        fprintf(stderr, "sluice %s: snapshot of the merged state: %s\n", cmd, sl_strerror(rc));
        return 1;
    }
    printf("state: %016" PRIx64 "\n", digest);
    printf("replicas: %lld, keys: %lld, converged: %s\n", o->replicas, keys,
           converged ? "yes" : "no");
    return converged ? 0 : 1;
}

/* --region: this process runs region o->region only (file comment). */
static int run_region(const char *cmd, const cr_opts *o, const char *topic, const jobs_topics *tp,
                      const jobs_common *common, sl_http *http, uint64_t exchange, const truth *t)
{
    int r = (int)o->region, n = (int)o->replicas, rc = 1;
    sl_crdt_replica *rep = sl_crdt_replica_new((uint32_t)r + 1, exchange, 0);
    sl_crdt_replica *merged = sl_crdt_replica_new((uint32_t)r + 1, exchange, 0);
    merge_conf mc = {.rep = merged, .regions = n};
    sl_pipeline *mp = sl_pipeline_new(), *pp = NULL;
    int started = 0;
    if (!rep || !merged || !mp) goto oom;

    /* merge: follows the topic from its start until every region's markers */
    sl_kafka_source_conf kc = {.bootstrap = tp->kafka,
                               .topic = topic,
                               .props = tp->props,
                               .start = SL_OFFSET_BEGINNING,
                               .until_end = 0};
    sl_stream *in = sl_pipeline_kafka(mp, "deltas-in", &kc, 0, NULL);
    sl_stream_sink(in, "merge", &merge_op, &mc);
    sl_pipeline_set_threads(mp, 1);
    if (sl_pipeline_start(mp)) {
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_pipeline_errmsg(mp));
        goto out;
    }
    started = 1;
    if (http && sl_http_add_pipeline(http, "merge", mp)) goto oom;
    int parts = sl_pipeline_source_splits(mp, "deltas-in");
    if (parts <= 0) {
        fprintf(stderr, "sluice %s: topic '%s': no partitions\n", cmd, topic);
        goto out;
    }

    /* publish: region r's events, its deltas, then its end markers */
    uint64_t count = ((uint64_t)o->events - (uint64_t)r + (uint64_t)n - 1) / (uint64_t)n;
    region rg = {.o = o, .index = r, .rep = rep};
    rg.conf = (sl_crdt_replica_conf){.replica = rep, .update = update, .deltas_input = -1};
    markers_conf mk = {.rep = rep, .region = r, .parts = parts, .ts = o->events};
    char txid[512];
    snprintf(txid, sizeof(txid), "sluice-crdt-replicas-%s-%016" PRIx64 "-r%d", topic, exchange, r);
    sl_kafka_sink_conf sc = {.bootstrap = tp->kafka,
                             .topic = topic,
                             .props = tp->props,
                             .key = sl_crdt_replica_delta_key,
                             .transactional_id = txid};
    sl_generator_conf gc = {.fn = gen, .ud = &rg, .count = count};
    if (!(pp = sl_pipeline_new())) goto oom;
    sl_stream *s = sl_pipeline_generator(pp, "events", &gc, sizeof(event), NULL);
    s = sl_stream_apply(s, "replica", &sl_crdt_replica_op, &rg.conf, 0);
    s = sl_stream_apply(s, "end-markers", &markers_op, &mk, 0);
    sl_stream_sink(s, "deltas-out", &sl_sink_kafka, &sc);
    if (run_pipeline(cmd, pp, common, http, "publish")) goto out; /* it said why */
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(pp, &cs);
    if (cs.restored_from)
        fprintf(stderr, "sluice %s: region %d resumed from checkpoint %" PRIu64 "\n", cmd, r,
                cs.restored_from);

    if (sl_pipeline_wait(mp, -1)) {
        started = 0;
        fprintf(stderr, "sluice %s: merging: %s\n", cmd, sl_pipeline_errmsg(mp));
        goto out;
    }
    started = 0;
    if (!mc.complete) {
        fprintf(stderr, "sluice %s: merging stopped before every region's end markers\n", cmd);
        goto out;
    }
    rc = report(cmd, merged, o, t, 1);
    goto out;
oom:
    fprintf(stderr, "sluice %s: out of memory\n", cmd);
    rc = 1;
out:
    if (started) {
        sl_pipeline_cancel(mp);
        sl_pipeline_wait(mp, -1);
    }
    sl_http_remove_pipeline(http, mp);
    sl_pipeline_free(pp);
    sl_pipeline_free(mp);
    free(mc.seen);
    sl_crdt_replica_free(rep);
    sl_crdt_replica_free(merged);
    return rc;
}

int job_crdt_replicas(int argc, char **argv, const jobs_runner *run)
{
    (void)run; /* 2N pipelines, each run plainly: one progress line would say little */
    const char *cmd = "run crdt-replicas";
    enum { O_REPLICAS = JOBS_OPT_FIRST_FREE, O_EVENTS, O_SEED, O_PAGES, O_TOPIC, O_REGION };
    static const struct option opts[] = {{"replicas", required_argument, NULL, O_REPLICAS},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"pages", required_argument, NULL, O_PAGES},
                                         {"topic", required_argument, NULL, O_TOPIC},
                                         {"region", required_argument, NULL, O_REGION},
                                         JOBS_TOPIC_OPTIONS,
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    cr_opts o = {.replicas = 3, .events = 100000, .seed = 1, .pages = 20, .region = -1};
    const char *topic = "crdt-replicas";
    jobs_topics tp = {.job = "crdt-replicas"};
    jobs_common common = {0};
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hX:", opts)) != -1) {
        if ((ret = jobs_topics_opt(cmd, opt, optarg, &tp)) != 1) {
            if (ret) return ret;
            continue;
        }
        ret = 0;
        switch (opt) {
        case O_REPLICAS:
            ret = jobs_int(cmd, "--replicas", optarg, 1, MAX_REPLICAS, &o.replicas);
            break;
        case O_EVENTS: ret = jobs_int(cmd, "--events", optarg, 1, 1LL << 32, &o.events); break;
        case O_SEED: ret = jobs_int(cmd, "--seed", optarg, 0, INT64_MAX, &o.seed); break;
        case O_PAGES: ret = jobs_int(cmd, "--pages", optarg, 1, 100000, &o.pages); break;
        case O_REGION:
            ret = jobs_int(cmd, "--region", optarg, 0, MAX_REPLICAS - 1, &o.region);
            break;
        case O_TOPIC:
            if (!*optarg) {
                fprintf(stderr, "sluice %s: --topic needs a topic name\n", cmd);
                ret = 2;
            }
            topic = optarg;
            break;
        default: ret = jobs_opt(cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            help();
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    if (tp.follow || tp.group) {
        fprintf(stderr, "sluice %s: %s: the regions read the delta topic to its end\n", cmd,
                tp.follow ? "--follow" : "--group");
        return 2;
    }
    if (common.parallelism > 1 || common.explain || common.guarantee_set) {
        fprintf(stderr,
                "sluice %s: %s is not supported (each region is one replica, run as one "
                "pipeline per phase)\n",
                cmd,
                common.parallelism > 1 ? "--parallelism"
                : common.explain       ? "--explain"
                                       : "--guarantee");
        return 2;
    }
    if (o.region < 0 && (common.checkpoint_dir || common.chk_opt_given)) {
        fprintf(stderr,
                "sluice %s: %s is for --region (a region process checkpoints its own "
                "pipeline)\n",
                cmd, common.checkpoint_dir ? "--checkpoint-dir" : common.chk_opt_given);
        return 2;
    }
    if (o.region >= o.replicas) {
        fprintf(stderr,
                "sluice %s: --region needs a region from 0 to %lld (--replicas %lld), not %lld\n",
                cmd, o.replicas - 1, o.replicas, o.region);
        return 2;
    }
    if (o.region >= 0 && !tp.kafka) {
        fprintf(stderr,
                "sluice %s: --region needs --kafka: the region processes share one topic, and "
                "a built-in broker partition takes one writer process (serve the directory "
                "with `sluice broker serve` and give --kafka HOST:PORT)\n",
                cmd);
        return 2;
    }
    if (o.region >= 0 && o.events < o.replicas) {
        fprintf(stderr,
                "sluice %s: --region needs --events >= --replicas (every region gets events)\n",
                cmd);
        return 2;
    }
    if (jobs_topics_check(cmd, &tp, topic, topic)) return 2;
    if (!tp.kafka && ensure_topic(cmd, jobs_broker_dir(tp.dir), topic)) return 1;

    /* one endpoint for the whole job: it shows the pipelines that run */
    sl_http *http = NULL;
    int n = (int)o.replicas, rc = jobs_http_open(cmd, &common, &http);
    if (rc) return rc;
    common.http = common.http_token = NULL;
    rc = 1;
    uint64_t exchange =
        mix(mix(mix(mix((uint64_t)o.seed) ^ (uint64_t)o.replicas) ^ (uint64_t)o.events) ^
            (uint64_t)o.pages);
    region *rg = calloc((size_t)n, sizeof(*rg));
    truth *t = calloc((size_t)o.pages, sizeof(*t));
    if (!rg || !t) goto oom;
    for (int r = 0; r < n; r++) {
        rg[r].o = &o;
        rg[r].index = r;
        if (!(rg[r].rep = sl_crdt_replica_new((uint32_t)r + 1, exchange, 0))) goto oom;
    }
    if (compute_truth(&o, t)) goto oom;
    if (o.region >= 0) {
        rc = run_region(cmd, &o, topic, &tp, &common, http, exchange, t);
        goto out;
    }

    /* phase 1: each region applies its events and publishes its deltas */
    for (int r = 0; r < n; r++) {
        uint64_t count = ((uint64_t)o.events - (uint64_t)r + (uint64_t)n - 1) / (uint64_t)n;
        if (count == 0) continue;
        sl_generator_conf gc = {.fn = gen, .ud = &rg[r], .count = count};
        rg[r].conf =
            (sl_crdt_replica_conf){.replica = rg[r].rep, .update = update, .deltas_input = -1};
        sl_pipeline *p = sl_pipeline_new();
        if (!p) goto oom;
        sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(event), NULL);
        s = sl_stream_apply(s, "replica", &sl_crdt_replica_op, &rg[r].conf, 0);
        jobs_topic_sink(p, s, &tp, NULL, "deltas-out", topic, sl_crdt_replica_delta_key, NULL,
                        NULL);
        char name[32];
        snprintf(name, sizeof(name), "region-%d-publish", r);
        int prc = run_pipeline(cmd, p, &common, http, name);
        sl_pipeline_free(p);
        if (prc) goto out;
    }
    /* phase 2: each region merges everybody's deltas, its own included */
    for (int r = 0; r < n; r++) {
        rg[r].conf = (sl_crdt_replica_conf){.replica = rg[r].rep, .deltas_input = 0};
        sl_pipeline *p = sl_pipeline_new();
        if (!p) goto oom;
        sl_stream *s = jobs_topic_source(p, &tp, NULL, "deltas-in", topic, NULL, NULL, 0, 0, NULL);
        sl_stream_sink(s, "replica", &sl_crdt_replica_op, &rg[r].conf);
        char name[32];
        snprintf(name, sizeof(name), "region-%d-merge", r);
        int prc = run_pipeline(cmd, p, &common, http, name);
        sl_pipeline_free(p);
        if (prc) goto out;
    }

    int converged = 1;
    for (int r = 1; r < n; r++)
        if (!sl_crdt_replica_equal(rg[0].rep, rg[r].rep)) {
            fprintf(stderr, "sluice %s: region %d's state differs from region 0's\n", cmd, r);
            converged = 0;
        }
    rc = report(cmd, rg[0].rep, &o, t, converged);
    goto out;
oom:
    fprintf(stderr, "sluice %s: out of memory\n", cmd);
    rc = 1;
out:
    if (rg)
        for (int r = 0; r < n; r++) sl_crdt_replica_free(rg[r].rep);
    if (t)
        for (long long p = 0; p < o.pages; p++) free(t[p].seen);
    free(rg);
    free(t);
    sl_http_stop(http);
    return rc;
}
