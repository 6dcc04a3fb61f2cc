/*
 * examples/jobs_nexmark_joins.c - the NEXMark queries that join two kinds
 * of events (q3, q4, q8). q8 is a window join of the engine (sluice/join.h);
 * q3 (an unbounded join: a person is kept for good) and q4 (each auction
 * open until its own expiry) fit none of the engine's joins, so each is a
 * keyed two-input operator of its own (sl_stream_apply_n) over engine keyed
 * state and event-time timers, written against the public operator API.
 *
 * Every operator takes input 0 and input 1 keyed by the same int64 id, so
 * that the events to be joined meet in one instance; state is engine keyed
 * state (snapshotted and restored by the engine, one table per name), with
 * the record's routing hash as the hash of every entry keyed by the id
 * alone, and for an entry whose key adds a second part (pend_hash) that hash
 * with the part mixed into its low half, so that an entry's key group is
 * its id's.
 *
 *   q3  persons in OR, ID, CA by id  |  auctions of category 10 by seller
 *       "person": id -> name, city, state (kept for ever, as an unbounded
 *       join keeps its inputs); an auction whose seller has not come yet
 *       waits in the pending list of its seller (below)
 *   q4  auctions by id  |  bids by auction
 *       "auction": id -> expires, category, best price (the highest bid with
 *       auction time <= bid time < expires); a timer at expires - 1 closes
 *       it: (category, best) goes on, and the entry stays as a closed mark
 *       (40 bytes) so that later bids for it are dropped, not kept. Bids that
 *       come before their auction (another generator shard) wait in its
 *       pending list. Then key_by category -> keyed aggregate (sum and count
 *       of the winning prices, final) -> category,avg_price.
 *   q8  auctions by seller -> a 10 s tumbling count ("sellers": one result
 *       per seller and window) -> key_by seller, joined with persons by id
 *       in a 10 s tumbling window join (sluice/join.h): a person comes out
 *       once per window in which they also sold, when the window fires.
 *
 * Pending lists: "pending-n": id -> count, "pending": (id, index) -> 16
 * bytes; appended to in arrival order and emptied when the id's event comes.
 *
 * An event whose window or auction was closed already (the input is out of
 * event-time order by more than the watermark allows) fails the job with a
 * message, as the q5 / q7 operator does: the result could not be right.
 */
#include <inttypes.h>
#include <string.h>
#include "jobs.h"
#include "jobs_nexmark.h"

#define Q8_WINDOW 10000

/* --- pending lists ------------------------------------------------------------------- */

typedef struct pend_key {
    int64_t id, index;
} pend_key;

/* The hash of pending item (id, index): the id's hash in its high half,
 * which decides the key group (sluice/state.h), so the item stays with its
 * id on a rescale, and the index mixed into its low half, which the table
 * probes by. With the id's hash alone, an id's items all probed one chain:
 * q4 at parallelism 2, where one generator shard runs ahead of the other
 * and bids wait for their auction by the thousand, spent most of its time
 * walking it. */
static uint64_t pend_hash(uint64_t h, int64_t index)
{
    uint64_t x = (uint64_t)index * 0x9E3779B97F4A7C15ull;
    return (h & 0xFFFFFFFF00000000ull) | ((uint32_t)h ^ (uint32_t)(x >> 32));
}

static int pend_add(sl_ctx *ctx, uint64_t h, int64_t id, const void *v16)
{
    sl_state *cnt = sl_ctx_state(ctx, "pending-n", 8);
    sl_state *items = sl_ctx_state(ctx, "pending", 16);
    if (!cnt || !items) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    int64_t *n = sl_state_get(cnt, h, &id, 8, NULL);
    if (!n) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    pend_key k = {id, (*n)++};
    void *v = sl_state_get(items, pend_hash(h, k.index), &k, sizeof(k), NULL);
    if (!v) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    memcpy(v, v16, 16);
    return 0;
}

/* Call fn on each pending item of id, in order, and forget them. */
typedef int (*pend_fn)(sl_ctx *ctx, const void *v16, void *ud);
static int pend_take(sl_ctx *ctx, uint64_t h, int64_t id, pend_fn fn, void *ud)
{
    sl_state *cnt = sl_ctx_state(ctx, "pending-n", 8);
    sl_state *items = sl_ctx_state(ctx, "pending", 16);
    if (!cnt || !items) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    int64_t *np = sl_state_find(cnt, h, &id, 8);
    if (!np) return 0;
    int64_t n = *np;
    sl_state_remove(cnt, h, &id, 8);
    for (int64_t i = 0; i < n; i++) {
        pend_key k = {id, i};
        const void *v = sl_state_find(items, pend_hash(h, i), &k, sizeof(k));
        if (!v) continue;
        uint8_t copy[16];
        memcpy(copy, v, 16);
        sl_state_remove(items, pend_hash(h, i), &k, sizeof(k));
        int rc = fn(ctx, copy, ud);
        if (rc) return rc;
    }
    return 0;
}

static const nex_event *rec_at(const sl_batch *in, uint32_t i)
{
    return (const nex_event *)sl_batch_bytes(in, i).ptr;
}

/* --- q3 ----------------------------------------------------------------------------- */

typedef struct q3_person {
    char name[NEX_NAME_MAX];
    char city[NEX_CITY_MAX];
    char state[NEX_STATE_MAX];
} q3_person;

static int q3_emit(sl_ctx *ctx, int64_t ts, uint64_t h, const q3_person *p, int64_t auction)
{
    nex_q3_out *o = sl_emit(ctx, ts, h, sizeof(*o));
    if (!o) return sl_ctx_error(ctx);
    memset(o, 0, sizeof(*o));
    o->auction = auction;
    memcpy(o->name, p->name, sizeof(o->name));
    memcpy(o->city, p->city, sizeof(o->city));
    memcpy(o->state, p->state, sizeof(o->state));
    return 0;
}

typedef struct q3_take {
    q3_person p;
    uint64_t h;
} q3_take;

static int q3_pending(sl_ctx *ctx, const void *v16, void *ud)
{
    const q3_take *t = ud;
    int64_t a[2];
    memcpy(a, v16, 16); /* auction id, time */
    return q3_emit(ctx, a[1], t->h, &t->p, a[0]);
}

static int q3_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sl_state *people = sl_ctx_state(ctx, "person", sizeof(q3_person));
    if (!people) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    int input = sl_ctx_input(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        const nex_event *e = rec_at(in, i);
        uint64_t h = in->hash[i];
        int rc = 0;
        if (input == 0) {
            int64_t id = e->person.id;
            q3_person *p = sl_state_get(people, h, &id, 8, NULL);
            if (!p) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
            memcpy(p->name, e->person.name, sizeof(p->name));
            memcpy(p->city, e->person.city, sizeof(p->city));
            memcpy(p->state, e->person.state, sizeof(p->state));
            q3_take t = {*p, h};
            rc = pend_take(ctx, h, id, q3_pending, &t);
        } else {
            int64_t seller = e->auction.seller;
            const q3_person *p = sl_state_find(people, h, &seller, 8);
            if (p) {
                q3_person copy = *p;
                rc = q3_emit(ctx, e->time, h, &copy, e->auction.id);
            } else {
                int64_t v[2] = {e->auction.id, e->time};
                rc = pend_add(ctx, h, seller, v);
            }
        }
        if (rc) return rc;
    }
    return 0;
}

static const sl_operator q3_op = {
    .version = SL_OPERATOR_VERSION, .kind = "q3-join", .process = q3_process};

static int q3_person_ok(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const nex_event *e = rec;
    return e->kind == NEX_PERSON &&
           (!strcmp(e->person.state, "OR") || !strcmp(e->person.state, "ID") ||
            !strcmp(e->person.state, "CA"));
}

static int q3_auction_ok(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const nex_event *e = rec;
    return e->kind == NEX_AUCTION && e->auction.category == 10;
}

/* --- q4 ----------------------------------------------------------------------------- */

typedef struct q4_auction {
    int64_t time, expires, category, best;
    int32_t known, closed;
} q4_auction;

typedef struct q4_take {
    q4_auction *a;
} q4_take;

static void q4_bid(q4_auction *a, int64_t t, int64_t price)
{
    if (t >= a->time && t < a->expires && price > a->best) a->best = price;
}

static int q4_pending(sl_ctx *ctx, const void *v16, void *ud)
{
    q4_take *t = ud;
    int64_t b[2];
    memcpy(b, v16, 16); /* time, price */
    q4_bid(t->a, b[0], b[1]);
    return 0;
}

static int q4_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sl_state *auctions = sl_ctx_state(ctx, "auction", sizeof(q4_auction));
    if (!auctions) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    int input = sl_ctx_input(ctx);
    int64_t wm = sl_ctx_current_watermark(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        const nex_event *e = rec_at(in, i);
        uint64_t h = in->hash[i];
        int rc = 0;
        if (input == 0) {
            int64_t id = e->auction.id;
            if (e->auction.expires - 1 <= wm)
                return sl_ctx_fail(ctx, SL_EINVAL,
                                   "auction %" PRId64 " came after its expiry (the input is not "
                                   "in event-time order)",
                                   id);
            q4_auction a = {.time = e->time,
                            .expires = e->auction.expires,
                            .category = e->auction.category,
                            .best = -1,
                            .known = 1};
            q4_take t = {&a};
            if ((rc = pend_take(ctx, h, id, q4_pending, &t))) return rc;
            q4_auction *s = sl_state_get(auctions, h, &id, 8, NULL);
            if (!s) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
            if (s->known) return sl_ctx_fail(ctx, SL_EINVAL, "auction %" PRId64 " came twice", id);
            *s = a;
            rc = sl_ctx_timer(ctx, a.expires - 1, h, &id, 8);
        } else {
            int64_t id = e->bid.auction;
            q4_auction *s = sl_state_find(auctions, h, &id, 8);
            if (s) {
                if (!s->closed) q4_bid(s, e->time, e->bid.price);
            } else {
                int64_t v[2] = {e->time, e->bid.price};
                rc = pend_add(ctx, h, id, v);
            }
        }
        if (rc) return rc;
    }
    return 0;
}

static int q4_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    sl_state *auctions = sl_ctx_state(ctx, "auction", sizeof(q4_auction));
    if (!auctions) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    q4_auction *s = sl_state_find(auctions, t->hash, t->key, t->key_len);
    if (!s || s->closed) return 0;
    s->closed = 1;
    if (s->best < 0) return 0; /* no bid: not sold */
    nex_q4_closed c = {s->category, s->best};
    return sl_emit_copy(ctx, t->ts, t->hash, &c, sizeof(c));
}

static const sl_operator q4_op = {.version = SL_OPERATOR_VERSION,
                                  .kind = "q4-winning-bids",
                                  .process = q4_process,
                                  .timer = q4_timer};

/* sum and count of the winning prices of a category */
static void avg_init(void *acc, const void *ud)
{
    memset(acc, 0, 16);
}
static void avg_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    int64_t a[2];
    nex_q4_closed c;
    memcpy(a, acc, 16);
    memcpy(&c, rec, sizeof(c));
    a[0] += c.price;
    a[1]++;
    memcpy(acc, a, 16);
}
static void avg_merge(void *acc, const void *other, const void *ud)
{
    int64_t a[2], b[2];
    memcpy(a, acc, 16);
    memcpy(b, other, 16);
    a[0] += b[0];
    a[1] += b[1];
    memcpy(acc, a, 16);
}
static void avg_result(const void *acc, void *out, const void *ud)
{
    memcpy(out, acc, 16);
}
static const sl_aggregate q4_sum_count = {
    SL_AGGREGATE_VERSION, "sum-count", 16, 16, avg_init, avg_add, avg_merge, avg_result, 0, NULL};

static sl_bytes key_category(const void *rec, uint32_t len, void *ud)
{
    const nex_q4_closed *c = rec;
    sl_bytes k = {(const uint8_t *)&c->category, 8};
    return k;
}

/* --- q8 ----------------------------------------------------------------------------- */

/* q8 is built of engine operators: the sellers of each 10 s window (a
 * tumbling count of auctions per seller: one result per seller and window,
 * at end - 1) joined with the persons of the same window by a window join
 * (sluice/join.h), so that each person comes out once per window. */

/* A seller window's result is keyed by its key bytes: the seller id, the
 * same 8 bytes as a person's id. */
static sl_bytes key_window_seller(const void *rec, uint32_t len, void *ud)
{
    return sl_window_out((sl_bytes){rec, len}).key;
}

static int q8_pair(sl_ctx *ctx, const sl_join_match *m, void *ud)
{
    const nex_event *p = (const void *)m->left.ptr;
    nex_q8_out *o = sl_emit(ctx, m->ts, m->hash, sizeof(*o));
    if (!o) return sl_ctx_error(ctx);
    memset(o, 0, sizeof(*o));
    o->person = p->person.id;
    o->window = m->window_start;
    memcpy(o->name, p->person.name, sizeof(o->name));
    return 0;
}

/* Late events of q8's window and join: the input is out of event-time
 * order beyond what the watermark allows, so the result would be wrong. */
static int q8_late_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    if (!in->count) return 0;
    return sl_ctx_fail(ctx, SL_EINVAL,
                       "an event at %" PRId64 " came after its window was closed (the input is "
                       "not in event-time order)",
                       in->ts[0]);
}

static const sl_operator q8_late_op = {
    .version = SL_OPERATOR_VERSION, .kind = "late", .process = q8_late_process};

/* --- building ----------------------------------------------------------------------- */

static int is_person(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return ((const nex_event *)rec)->kind == NEX_PERSON;
}
static int is_auction(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return ((const nex_event *)rec)->kind == NEX_AUCTION;
}
static int is_bid(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return ((const nex_event *)rec)->kind == NEX_BID;
}
static sl_bytes key_person_id(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {(const uint8_t *)&((const nex_event *)rec)->person.id, 8};
    return k;
}
static sl_bytes key_auction_id(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {(const uint8_t *)&((const nex_event *)rec)->auction.id, 8};
    return k;
}
static sl_bytes key_seller(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {(const uint8_t *)&((const nex_event *)rec)->auction.seller, 8};
    return k;
}
static sl_bytes key_bid_auction(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {(const uint8_t *)&((const nex_event *)rec)->bid.auction, 8};
    return k;
}

static sl_stream *side(sl_stream *src, const char *name, sl_filter_fn ok, const char *kname,
                       sl_key_fn key, int src_p)
{
    sl_stream *f = sl_stream_parallelism(sl_stream_filter(src, name, ok, NULL), src_p);
    return sl_stream_key_by(f, kname, key, NULL);
}

sl_stream *nex_join_query(sl_stream *src, int query, int src_p, int p)
{
    sl_stream *in[2];
    if (query == 3) {
        in[0] = side(src, "persons", q3_person_ok, "person-id", key_person_id, src_p);
        in[1] = side(src, "auctions", q3_auction_ok, "seller", key_seller, src_p);
        return sl_stream_parallelism(
            sl_stream_apply_n(in, 2, "join", &q3_op, NULL, sizeof(nex_q3_out)), p);
    }
    if (query == 4) {
        in[0] = side(src, "auctions", is_auction, "auction-id", key_auction_id, src_p);
        in[1] = side(src, "bids", is_bid, "bid-auction", key_bid_auction, src_p);
        sl_stream *won = sl_stream_parallelism(
            sl_stream_apply_n(in, 2, "winning-bids", &q4_op, NULL, sizeof(nex_q4_closed)), p);
        sl_agg_conf ac = {.agg = &q4_sum_count, .emit = SL_AGG_EMIT_FINAL};
        return sl_stream_parallelism(
            sl_stream_aggregate(sl_stream_key_by(won, "category", key_category, NULL), "avg-price",
                                &ac),
            p);
    }
    sl_stream *persons = side(src, "persons", is_person, "person-id", key_person_id, src_p);
    sl_stream *auctions = side(src, "auctions", is_auction, "seller", key_seller, src_p);
    sl_window_conf wc = sl_window_tumbling(Q8_WINDOW, 0);
    wc.agg = &sl_agg_count;
    sl_stream *sellers = sl_stream_parallelism(sl_stream_window(auctions, "sellers", &wc), p);
    sl_stream_sink(sl_stream_window_late(sellers), "sellers-late", &q8_late_op, NULL);
    sl_join_conf jc = sl_join_window(sl_window_tumbling(Q8_WINDOW, 0));
    jc.fn = q8_pair;
    jc.out_width = sizeof(nex_q8_out);
    sl_stream *j = sl_stream_parallelism(
        sl_stream_join(persons, sl_stream_key_by(sellers, "seller-window", key_window_seller, NULL),
                       "join", &jc),
        p);
    sl_stream_sink(sl_stream_join_late(j, 0), "persons-late", &q8_late_op, NULL);
    sl_stream_sink(sl_stream_join_late(j, 1), "sellers-late-join", &q8_late_op, NULL);
    return j;
}
