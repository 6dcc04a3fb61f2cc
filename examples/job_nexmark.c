/*
 * examples/job_nexmark.c - the bundled job `nexmark`: NEXMark queries over
 * the NEXMark generator (examples/jobs_nexmark_gen.c) or a dump of its events.
 *
 *   sluice run nexmark --query Q [--events N] [--seed S] [--rate R]
 *                      [--input FILE] [--out FILE] [--dump-events FILE]
 *
 * Events come from the engine's generator source (one shard per source
 * instance; event n is a pure function of (seed, n), so any parallelism
 * makes the same events) or, with --input, from the lines source reading a
 * dump (one instance, so that a malformed line is reported with its line
 * number). Event time is the event's dateTime; the watermark follows the
 * events (delay 0: the generator's times never decrease, and a dump is
 * written in event order). Results are CSV with a header line, in any order.
 *
 *   q0   bids -> filter -> out                      auction,bidder,price,dateTime
 *   q1   the same, price * 0.908 (exact: price * 908 thousandths, 3 decimals)
 *   q2   bids with auction % 123 == 0 -> out       auction,price
 *   q5   bids -> key_by auction -> sliding 10 s / 2 s count (P instances)
 *           -> key_by window -> "hot" (P): the auctions with the window's
 *           highest count                           window_start,window_end,auction,num
 *   q7   bids -> key_by 10 s window -> "highest" (P): the bids with the
 *           window's highest price                  window_start,auction,price,bidder,dateTime
 *   q11  bids -> key_by bidder -> session window (gap 10 s) count
 *                                                   bidder,bid_count,session_start,session_end
 *   q3, q4, q8   joins: examples/jobs_nexmark_joins.c
 *                                                   name,city,state,auction
 *                                                   category,avg_price
 *                                                   person,name,window_start
 *
 * "Every X whose value equals the window's highest" (q5, q7) is the window
 * operator `top` below: per open window the highest value so far and the
 * records that have it (a growable array, reset when a higher value comes,
 * so memory is per window and per tie, never per record); a window is
 * written when the watermark reaches its end - 1, as the engine's windows
 * fire. Its input is keyed by window start, so a window's records meet in
 * one instance and windows spread over P instances. A record whose window
 * has fired already (input out of event order) fails the job: the result
 * could not be right. Its state is the operator's own memory, which its
 * snapshot / restore hooks carry through checkpoints.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "jobs.h"
#include "jobs_nexmark.h"
#include "jobs_window.h"

#define Q7_WINDOW 10000
#define Q5_SIZE   10000
#define Q5_SLIDE  2000
#define Q11_GAP   10000

/* A record of the `top` operator: its window, the value compared, and what
 * is printed (q5: auction; q7: auction, bidder, dateTime). */
typedef struct top_rec {
    int64_t start, end, value;
    int64_t a, b, c;
} top_rec;

/* --- the `top` window operator --------------------------------------------------------- */

typedef struct top_win {
    int64_t start, end, max;
    top_rec *recs;
    size_t n, cap;
} top_win;

typedef struct top_self {
    top_win *w;
    size_t n, cap;
} top_self;

static int top_open(sl_ctx *ctx, void **self)
{
    top_self *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    *self = s;
    return 0;
}

static void top_close(void *self)
{
    top_self *s = self;
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->w[i].recs);
    free(s->w);
    free(s);
}

static top_win *top_find(sl_ctx *ctx, top_self *s, const top_rec *r)
{
    for (size_t i = s->n; i-- > 0;)
        if (s->w[i].start == r->start) return &s->w[i];
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        top_win *w = realloc(s->w, cap * sizeof(*w));
        if (!w) return NULL;
        s->w = w;
        s->cap = cap;
    }
    top_win *w = &s->w[s->n++];
    memset(w, 0, sizeof(*w));
    w->start = r->start;
    w->end = r->end;
    w->max = INT64_MIN;
    return w;
}

static int top_add(sl_ctx *ctx, top_self *s, const top_rec *r)
{
    top_win *w = top_find(ctx, s, r);
    if (!w) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    if (r->value < w->max) return 0;
    if (r->value > w->max) {
        w->max = r->value;
        w->n = 0;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 4;
        top_rec *a = realloc(w->recs, cap * sizeof(*a));
        if (!a) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
        w->recs = a;
        w->cap = cap;
    }
    w->recs[w->n++] = *r;
    return 0;
}

static int top_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    top_self *s = self;
    int64_t wm = sl_ctx_current_watermark(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        top_rec r;
        memcpy(&r, sl_batch_bytes(in, i).ptr, sizeof(r));
        if (r.end - 1 <= wm)
            return sl_ctx_fail(ctx, SL_EINVAL,
                               "a record of window [%" PRId64 ", %" PRId64
                               ") came after the window was written (the input is not in "
                               "event-time order)",
                               r.start, r.end);
        int rc = top_add(ctx, s, &r);
        if (rc) return rc;
    }
    return 0;
}

/* Write and drop the windows whose end - 1 <= wm (all of them: wm INT64_MAX). */
static int top_fire(sl_ctx *ctx, top_self *s, int64_t wm)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->n; i++) {
        top_win *w = &s->w[i];
        if (w->end - 1 > wm) {
            s->w[keep++] = *w;
            continue;
        }
        for (size_t k = 0; k < w->n; k++) {
            int rc = sl_emit_copy(ctx, w->end - 1, 0, &w->recs[k], sizeof(top_rec));
            if (rc) return rc;
        }
        free(w->recs);
    }
    s->n = keep;
    return 0;
}

static int top_watermark(sl_ctx *ctx, void *self, int64_t wm)
{
    return top_fire(ctx, self, wm);
}

static int top_end(sl_ctx *ctx, void *self)
{
    if (sl_ctx_end_canceled(ctx)) return 0;
    return top_fire(ctx, self, INT64_MAX);
}

/* Snapshot: the open windows, each as drawn (host order, for a restart on
 * the same machine type):
 *
 *   offset  size       field
 *   0       8          open windows W (uint64), then W times:
 *           8 x 4      start, end, max, n (int64)
 *           48 x n     the n records that have the max (top_rec)
 *
 * A window with no record yet is never open, so n >= 1 and max is the
 * records' value: restoring adds the records again, which also merges a
 * window that two old instances held (after a change of parallelism). */
static int top_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    top_self *s = self;
    uint64_t n = s->n;
    int rc = sl_buf_append(out, &n, 8);
    for (size_t i = 0; i < s->n && !rc; i++) {
        const top_win *w = &s->w[i];
        int64_t h[4] = {w->start, w->end, w->max, (int64_t)w->n};
        rc = sl_buf_append(out, h, sizeof(h));
        if (!rc && w->n) rc = sl_buf_append(out, w->recs, w->n * sizeof(top_rec));
    }
    return rc;
}

static int top_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    top_self *s = self;
    const uint8_t *p = data, *e = p + len;
    uint64_t n;
    if (len < 8) goto bad;
    memcpy(&n, p, 8);
    p += 8;
    for (uint64_t i = 0; i < n; i++) {
        int64_t h[4];
        if ((size_t)(e - p) < sizeof(h)) goto bad;
        memcpy(h, p, sizeof(h));
        p += sizeof(h);
        if (h[3] < 0 || (uint64_t)h[3] > (size_t)(e - p) / sizeof(top_rec)) goto bad;
        const uint8_t *recs = p;
        p += (size_t)h[3] * sizeof(top_rec);
        /* every old instance's snapshot comes to every new instance (the
         * input is keyed): keep the windows whose key group is ours */
        uint64_t hash = sl_hash(&h[0], 8);
        if (sl_key_group_owner(sl_key_group(hash), (uint32_t)sl_ctx_parallelism(ctx)) !=
            (uint32_t)sl_ctx_instance(ctx))
            continue;
        for (int64_t k = 0; k < h[3]; k++) { /* as if the records came again */
            top_rec r;
            memcpy(&r, recs + (size_t)k * sizeof(top_rec), sizeof(r));
            int rc = top_add(ctx, s, &r);
            if (rc) return rc;
        }
    }
    if (p != e) goto bad;
    return 0;
bad:
    return sl_ctx_fail(ctx, SL_ECORRUPT, "a malformed snapshot of %zu bytes", len);
}

static const sl_operator top_op = {.version = SL_OPERATOR_VERSION,
                                   .snapshot = top_snapshot,
                                   .restore = top_restore,
                                   .kind = "top",
                                   .open = top_open,
                                   .process = top_process,
                                   .watermark = top_watermark,
                                   .end = top_end,
                                   .close = top_close};

/* Late bids of an engine window (q5, q11): the input is out of event-time
 * order beyond what the watermark allows, so the result would be wrong. */
static int late_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    if (!in->count) return 0;
    return sl_ctx_fail(ctx, SL_EINVAL,
                       "a bid at %" PRId64 " came after its window was written (the input is "
                       "not in event-time order)",
                       in->ts[0]);
}

static const sl_operator late_op = {
    .version = SL_OPERATOR_VERSION, .kind = "late", .process = late_process};

/* --- sources ---------------------------------------------------------------------------- */

static int gen_event(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    nex_event *e = out;
    nex_event_make(ud, seq, e);
    *ts = e->time;
    return 0;
}

static int parse_event(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                       const char **reason, void *ud)
{
    nex_event e;
    if (nex_parse_line(line, len, &e, reason)) return -1;
    memcpy(out, &e, sizeof(e));
    *ts = e.time;
    return (int)sizeof(e);
}

/* --- per-record functions ---------------------------------------------------------------- */

static int is_bid(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const nex_event *e = rec;
    return e->kind == NEX_BID;
}

static int is_q2_bid(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const nex_event *e = rec;
    return e->kind == NEX_BID && e->bid.auction % 123 == 0;
}

static sl_bytes key_auction(const void *rec, uint32_t len, void *ud)
{
    const nex_event *e = rec;
    sl_bytes k = {(const uint8_t *)&e->bid.auction, 8};
    return k;
}

static sl_bytes key_bidder(const void *rec, uint32_t len, void *ud)
{
    const nex_event *e = rec;
    sl_bytes k = {(const uint8_t *)&e->bid.bidder, 8};
    return k;
}

static sl_bytes key_start(const void *rec, uint32_t len, void *ud)
{
    const top_rec *r = rec;
    sl_bytes k = {(const uint8_t *)&r->start, 8};
    return k;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* q7: a bid as a `top` record of its 10 s tumbling window. */
static int q7_rec(const void *in, uint32_t in_len, void *out, int64_t *ts, void *ud)
{
    const nex_event *e = in;
    top_rec *r = out;
    r->start = floor_div(e->time, Q7_WINDOW) * Q7_WINDOW;
    r->end = r->start + Q7_WINDOW;
    r->value = e->bid.price;
    r->a = e->bid.auction;
    r->b = e->bid.bidder;
    r->c = e->time;
    return 0;
}

/* q5: a window count (key auction, result int64 count) as a `top` record. */
static int q5_rec(const void *in, uint32_t in_len, void *out, int64_t *ts, void *ud)
{
    sl_bytes b = {in, in_len};
    sl_window_result w = sl_window_out(b);
    top_rec *r = out;
    memset(r, 0, sizeof(*r));
    if (w.result_size != 8 || w.key.len != 8) return SL_ECORRUPT;
    r->start = w.start;
    r->end = w.end;
    memcpy(&r->value, w.result, 8);
    memcpy(&r->a, w.key.ptr, 8);
    return 0;
}

/* --- output -------------------------------------------------------------------------- */

typedef struct out_fmt {
    int query;
    const char *header;
    int header_done; /* the sink runs as one instance: one thread */
    /* --from-checkpoint with --out FILE: the sink has cut FILE back to what
     * the checkpoint committed; if that is anything, it starts with the
     * header already */
    const char *resumed_path;
} out_fmt;

/* Does the header still have to be written? */
static int header_due(out_fmt *f)
{
    struct stat st;
    if (f->header_done) return 0;
    f->header_done = 1;
    return !(f->resumed_path && stat(f->resumed_path, &st) == 0 && st.st_size > 0);
}

/* Decimal digits of v at p (at most 20 bytes); returns the end. */
static char *put_dec(char *p, int64_t v)
{
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char tmp[20];
    int n = 0;
    do tmp[n++] = (char)('0' + a % 10);
    while ((a /= 10) != 0);
    if (v < 0) *p++ = '-';
    while (n) *p++ = tmp[--n];
    return p;
}

/* The line "v[0],v[1],...\n" (a result line of integers; printf costs
 * several times as much, and q0 and q1 write a line per bid). */
static int put_ints(sl_buf *o, const int64_t *v, int n)
{
    int rc = sl_buf_reserve(o, (size_t)n * 21 + 1);
    if (rc) return rc;
    char *p = (char *)o->ptr + o->len;
    for (int i = 0; i < n; i++) {
        p = put_dec(p, v[i]);
        *p++ = i + 1 < n ? ',' : '\n';
    }
    o->len = (size_t)(p - (char *)o->ptr);
    return 0;
}

static int fmt_out(sl_buf *o, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    out_fmt *f = ud;
    int rc = 0;
    if (header_due(f) && (rc = sl_buf_printf(o, "%s\n", f->header))) return rc;
    const nex_event *e = rec;
    const top_rec *t = rec;
    switch (f->query) {
    case 0:
        return put_ints(o, (int64_t[]){e->bid.auction, e->bid.bidder, e->bid.price, e->time}, 4);
    case 1:
        if ((rc = sl_buf_reserve(o, 4 * 21 + 5))) return rc;
        {
            char *p = (char *)o->ptr + o->len;
            int64_t m = e->bid.price * 908; /* thousandths */
            p = put_dec(p, e->bid.auction);
            *p++ = ',';
            p = put_dec(p, e->bid.bidder);
            *p++ = ',';
            if (m < 0) *p++ = '-';
            uint64_t a = m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
            p = put_dec(p, (int64_t)(a / 1000));
            *p++ = '.';
            *p++ = (char)('0' + a / 100 % 10);
            *p++ = (char)('0' + a / 10 % 10);
            *p++ = (char)('0' + a % 10);
            *p++ = ',';
            p = put_dec(p, e->time);
            *p++ = '\n';
            o->len = (size_t)(p - (char *)o->ptr);
        }
        return 0;
    case 2: return put_ints(o, (int64_t[]){e->bid.auction, e->bid.price}, 2);
    case 3: {
        const nex_q3_out *r = rec;
        return sl_buf_printf(o, "%s,%s,%s,%" PRId64 "\n", r->name, r->city, r->state, r->auction);
    }
    case 4: {
        /* the average, rounded half up to hundredths in integers */
        sl_bytes b = {rec, len};
        sl_agg_result a = sl_agg_out(b);
        int64_t sc[2] = {0, 1}, cat = 0;
        if (a.result_size == 16) memcpy(sc, a.result, 16);
        if (a.key.len == 8) memcpy(&cat, a.key.ptr, 8);
        if (sc[1] <= 0) return SL_ECORRUPT;
        int64_t h = (200 * sc[0] + sc[1]) / (2 * sc[1]);
        return sl_buf_printf(o, "%" PRId64 ",%" PRId64 ".%02" PRId64 "\n", cat, h / 100, h % 100);
    }
    case 8: {
        const nex_q8_out *r = rec;
        return sl_buf_printf(o, "%" PRId64 ",%s,%" PRId64 "\n", r->person, r->name, r->window);
    }
    case 5: return put_ints(o, (int64_t[]){t->start, t->end, t->a, t->value}, 4);
    case 7: return put_ints(o, (int64_t[]){t->start, t->a, t->value, t->b, t->c}, 5);
    case 11: {
        sl_bytes b = {rec, len};
        sl_window_result w = sl_window_out(b);
        int64_t bidder = 0, n = 0;
        if (w.key.len == 8) memcpy(&bidder, w.key.ptr, 8);
        if (w.result_size == 8) memcpy(&n, w.result, 8);
        return put_ints(o, (int64_t[]){bidder, n, w.start, w.end}, 4);
    }
    }
    return SL_EINVAL;
}

/* --- the job ------------------------------------------------------------------------- */

static void help(void)
{
    printf("usage: sluice run nexmark --query Q [--events N] [--seed S] [--rate R]\n"
           "           [--input FILE] [--out FILE] [--threads N] [--parallelism P] [--explain]\n"
           "       sluice run nexmark --dump-events FILE [--events N] [--seed S] [--rate R]\n"
           "Runs NEXMark query Q on the NEXMark generator's events (people, auctions and\n"
           "bids, 1 : 3 : 46, as Beam's generator makes them), or on a dump of them, and\n"
           "writes its results as CSV with a header line, in no particular order.\n"
           "  --query Q        q0 (bids), q1 (price in euros), q2 (auction %% 123 == 0),\n"
           "                   q3 (local item suggestion), q4 (average closing price per\n"
           "                   category), q5 (hot items: sliding 10 s windows every 2 s),\n"
           "                   q7 (highest bid per 10 s window), q8 (new users: a window\n"
           "                   join), q11 (bid sessions per bidder, 10 s gap)\n"
           "  --events N       events to generate (default 100000)\n"
           "  --seed S         generator seed (default 0); the same seed, the same events\n"
           "  --rate R         events per second of event time (default %d)\n"
           "  --input FILE     read events from a dump instead of generating them\n"
           "  --out FILE       results (default standard output)\n"
           "  --dump-events FILE  write the generated events as CSV lines and exit:\n"
           "      person,id,name,emailAddress,creditCard,city,state,dateTime,extra\n"
           "      auction,id,itemName,description,initialBid,reserve,dateTime,expires,seller,"
           "category,extra\n"
           "      bid,auction,bidder,price,channel,url,dateTime,extra\n",
           NEX_DEFAULT_RATE);
    fputs(jobs_trace_help, stdout);
}

static int parse_query(const char *cmd, const char *s, int *q)
{
    static const int known[] = {0, 1, 2, 3, 4, 5, 7, 8, 11};
    const char *d = (s[0] == 'q' || s[0] == 'Q') ? s + 1 : s;
    char *end;
    errno = 0;
    long v = *d >= '0' && *d <= '9' ? strtol(d, &end, 10) : -1;
    if (v >= 0 && !errno && !*end)
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (known[i] == v) {
                *q = (int)v;
                return 0;
            }
    fprintf(stderr, "sluice %s: unknown query '%s' (q0, q1, q2, q3, q4, q5, q7, q8 or q11)\n", cmd,
            s);
    return 2;
}

static int dump(const char *cmd, const nex_conf *c, uint64_t events, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    if (!f) {
        fprintf(stderr, "sluice %s: cannot open '%s' for writing: %s\n", cmd, path,
                strerror(errno));
        return 1;
    }
    static char buf[1 << 16];
    setvbuf(f, buf, _IOFBF, sizeof(buf));
    int bad = 0;
    for (uint64_t n = 0; n < events && !bad; n++) bad = nex_dump_event(c, n, f);
    if (fflush(f)) bad = 1;
    int e = errno;
    if (f != stdout && fclose(f)) bad = 1;
    if (bad) {
        fprintf(stderr, "sluice %s: cannot write '%s': %s\n", cmd, path, strerror(e));
        return 1;
    }
    return 0;
}

int job_nexmark(int argc, char **argv, const jobs_runner *run)
{
    const char *cmd = "run nexmark";
    enum { O_QUERY = JOBS_OPT_FIRST_FREE, O_EVENTS, O_SEED, O_RATE, O_INPUT, O_OUT, O_DUMP };
    static const struct option opts[] = {{"query", required_argument, NULL, O_QUERY},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"rate", required_argument, NULL, O_RATE},
                                         {"input", required_argument, NULL, O_INPUT},
                                         {"out", required_argument, NULL, O_OUT},
                                         {"dump-events", required_argument, NULL, O_DUMP},
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    long long events = 100000, seed = 0, rate = NEX_DEFAULT_RATE;
    const char *input = NULL, *out = NULL, *dump_path = NULL;
    int query = -1, opt, ret = 0, gen_opt = 0;
    jobs_common common = {0};
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        ret = 0;
        switch (opt) {
        case O_QUERY: ret = parse_query(cmd, optarg, &query); break;
        case O_EVENTS:
            ret = jobs_int(cmd, "--events", optarg, 1, 1LL << 50, &events);
            gen_opt = 1;
            break;
        case O_SEED:
            ret = jobs_int(cmd, "--seed", optarg, 0, INT64_MAX, &seed);
            gen_opt = 1;
            break;
        case O_RATE:
            ret = jobs_int(cmd, "--rate", optarg, 1, 1000000000, &rate);
            gen_opt = 1;
            break;
        case O_INPUT: input = optarg; break;
        case O_OUT: out = optarg; break;
        case O_DUMP: dump_path = optarg; break;
        default: ret = jobs_opt(cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            help();
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    nex_conf nc = {.seed = (uint64_t)seed, .rate = (uint64_t)rate, .base_time = NEX_BASE_TIME};
    if (dump_path) {
        if (input || query >= 0 || out) {
            fprintf(stderr,
                    "sluice %s: --dump-events writes the generated events; it takes no %s\n", cmd,
                    input        ? "--input"
                    : query >= 0 ? "--query"
                                 : "--out");
            return 2;
        }
        return dump(cmd, &nc, (uint64_t)events, dump_path);
    }
    if (query < 0) {
        fprintf(stderr,
                "sluice %s: give --query Q (q0, q1, q2, q3, q4, q5, q7, q8, q11) or --dump-events "
                "FILE\n",
                cmd);
        return 2;
    }
    if (input && gen_opt) {
        fprintf(stderr,
                "sluice %s: --events, --seed and --rate are for the generator, not --input\n", cmd);
        return 2;
    }
    if (input && strcmp(input, "-") != 0 && access(input, R_OK) != 0) {
        fprintf(stderr, "sluice %s: cannot read '%s': %s\n", cmd, input, strerror(errno));
        return 1;
    }
    static const char *const headers[] = {[0] = "auction,bidder,price,dateTime",
                                          [1] = "auction,bidder,price,dateTime",
                                          [2] = "auction,price",
                                          [3] = "name,city,state,auction",
                                          [4] = "category,avg_price",
                                          [8] = "person,name,window_start",
                                          [5] = "window_start,window_end,auction,num",
                                          [7] = "window_start,auction,price,bidder,dateTime",
                                          [11] = "bidder,bid_count,session_start,session_end"};
    out_fmt of = {.query = query,
                  .header = headers[query],
                  .resumed_path =
                      common.from_checkpoint && out && strcmp(out, "-") != 0 ? out : NULL};
    sl_write_conf oc = {.path = out, .format = fmt_out, .ud = &of};
    jobs_deadletters dl = {.cmd = cmd};
    atomic_init(&dl.count, 0);
    const int P = jobs_parallelism(&common); /* --threads N alone: N */

    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    if (common.threads) sl_pipeline_set_threads(p, common.threads);
    /* Every event carries its dateTime. A dump is read with punctuated
     * watermarks, so that a line out of event-time order is judged against
     * the lines before it (and fails q5, q7, q11). The generator's times
     * never decrease within a split, so none of its records can be behind
     * its watermark: there the watermark is announced once per batch (not
     * after every record that raises it, which cuts a batch every 10
     * events at the default rate), and the results are the same. */
    sl_watermark_conf wm = {.delay = 0, .punctuated = input != NULL};
    sl_stream *src;
    if (input) {
        sl_lines_conf lc = {.path = input, .parse = parse_event, .max_len = sizeof(nex_event)};
        src = sl_stream_parallelism(sl_pipeline_lines(p, "events", &lc, sizeof(nex_event), &wm), 1);
        sl_stream_sink(sl_stream_dead_letters(src), "dead-letters", &jobs_deadletter_sink, &dl);
    } else {
        sl_generator_conf gc = {.fn = gen_event, .ud = &nc, .count = (uint64_t)events};
        src = sl_stream_parallelism(sl_pipeline_generator(p, "events", &gc, sizeof(nex_event), &wm),
                                    P);
    }
    sl_stream *res = NULL, *bids = NULL;
    if (query == 3 || query == 4 || query == 8)
        res = nex_join_query(src, query, input ? 1 : P, P);
    else
        bids = sl_stream_parallelism(
            sl_stream_filter(src, "bids", query == 2 ? is_q2_bid : is_bid, NULL), input ? 1 : P);
    if (query <= 2) {
        res = bids;
    } else if (query == 5) {
        sl_window_conf wc = sl_window_sliding(Q5_SIZE, Q5_SLIDE);
        wc.agg = &sl_agg_count;
        sl_stream *w = sl_stream_parallelism(
            sl_stream_window(sl_stream_key_by(bids, "auction", key_auction, NULL), "counts", &wc),
            P);
        sl_stream_sink(sl_stream_window_late(w), "late", &late_op, NULL);
        sl_stream *r =
            sl_stream_parallelism(sl_stream_map(w, "count-rec", q5_rec, NULL, sizeof(top_rec)), P);
        res = sl_stream_parallelism(sl_stream_apply(sl_stream_key_by(r, "window", key_start, NULL),
                                                    "hot", &top_op, NULL, sizeof(top_rec)),
                                    P);
    } else if (query == 7) {
        sl_stream *r = sl_stream_parallelism(
            sl_stream_map(bids, "bid-rec", q7_rec, NULL, sizeof(top_rec)), input ? 1 : P);
        res = sl_stream_parallelism(sl_stream_apply(sl_stream_key_by(r, "window", key_start, NULL),
                                                    "highest", &top_op, NULL, sizeof(top_rec)),
                                    P);
    } else if (query == 11) {
        sl_window_conf wc = sl_window_session(Q11_GAP);
        wc.agg = &sl_agg_count;
        res = sl_stream_parallelism(
            sl_stream_window(sl_stream_key_by(bids, "bidder", key_bidder, NULL), "sessions", &wc),
            P);
        sl_stream_sink(sl_stream_window_late(res), "late", &late_op, NULL);
    }
    sl_stream_sink(res, "out", &sl_sink_write, &oc); /* one instance: the header */
    int rc = jobs_run(run, p, cmd, &common);
    sl_pipeline_free(p);
    if (rc == 0 && !common.explain && header_due(&of)) {
        /* no result at all: the header alone */
        FILE *f = out && strcmp(out, "-") != 0 ? fopen(out, "a") : stdout;
        if (!f || fprintf(f, "%s\n", of.header) < 0 || (f != stdout && fclose(f))) {
            fprintf(stderr, "sluice %s: cannot write '%s'\n", cmd, out);
            rc = 1;
        }
        if (f == stdout) fflush(stdout);
    }
    uint64_t nbad = atomic_load(&dl.count);
    if (nbad) {
        fprintf(stderr, "sluice %s: %" PRIu64 " malformed line%s in '%s' skipped\n", cmd, nbad,
                nbad == 1 ? "" : "s", input);
        if (rc == 0) rc = 1;
    }
    return rc;
}
