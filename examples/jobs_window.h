/*
 * examples/jobs_window.h - what the event-time jobs (window-agg, ysb) share
 * with each other and with the benchmarks that run them (bench ysb, bench
 * windows): dead-letter sinks; the Yahoo Streaming Benchmark's events,
 * generator cursor and pipeline builder. Their entry points are in jobs.h.
 *
 * Public API only: this header and its users include <sluice/sluice.h>, not
 * the engine's headers. Application names carry no `sl_` prefix (that prefix
 * is the library's): jobs_, ysb_, YSB_.
 */
#ifndef SLUICE_EXAMPLES_JOBS_WINDOW_H
#define SLUICE_EXAMPLES_JOBS_WINDOW_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sluice/sluice.h>
#include "jobs.h"

/* --- shared by the jobs (examples/job_window_agg.c) ------------------------------- */

/* Sinks (parallelism 1) for dead letters: count them and print the first
 * ten on stderr as "sluice CMD: TEXT". jobs_deadletter_sink reads a
 * source's dead letters (sluice/source.h: "REASON: RAW INPUT");
 * jobs_deadletter_text_sink records that are text already. */
typedef struct jobs_deadletters {
    const char *cmd;
    _Atomic uint64_t count;
} jobs_deadletters;
/* The same for records that are not text: conf is a jobs_deadletters_fmt,
 * whose format makes the text of a record. */
typedef struct jobs_deadletters_fmt {
    jobs_deadletters *dl;
    sl_format_fn format;
    void *ud;
} jobs_deadletters_fmt;
extern const sl_operator jobs_deadletter_fmt_sink;
extern const sl_operator jobs_deadletter_sink;
extern const sl_operator jobs_deadletter_text_sink;
/* A sink writing records as text to standard error (already open), whole
 * batches per write(2): conf is an sl_write_conf whose path is NULL. */
extern const sl_operator jobs_stderr_sink;

/* The exact number of distinct values per key and window (window-agg's
 * --agg distinct-exact), with two windows (examples/job_window_agg.c draws
 * how): `in` carries records [int64 value | key bytes]; wc is a tumbling or
 * sliding window with lateness 0 (its agg is ignored). Returns a stream of
 * window result records (sluice/window.h: start, end, int64 count, key),
 * the window's windows; *first (if not NULL) is the first window node, whose
 * late and unassigned ports carry the input records it did not count. The
 * windows and the rewrite run at `parallelism` (0: the pipeline's). NULL on
 * error (recorded in the pipeline), or if wc is not supported: then *why
 * says so. */
sl_stream *jobs_distinct_exact(sl_stream *in, const sl_window_conf *wc, int parallelism,
                               sl_stream **first, const char **why);

/* --- the Yahoo Streaming Benchmark (examples/job_ysb.c) ----------------------------- */

/* One ad event of the in-memory generator (40 bytes):
 *
 *   offset  size  field
 *   0       8     user_id
 *   8       8     page_id
 *   16      4     ad_id (0 .. 999)
 *   20      4     ip_address (IPv4, host order)
 *   24      8     event_time (ms)
 *   32      1     ad_type (0 .. 4: banner, modal, sponsored-search, mail, mobile)
 *   33      1     event_type (0 view, 1 click, 2 purchase)
 *   34      6     unused (0)
 */
typedef struct ysb_event {
    uint64_t user_id;
    uint64_t page_id;
    uint32_t ad_id;
    uint32_t ip;
    int64_t event_time;
    uint8_t ad_type;
    uint8_t event_type;
    uint8_t pad[6];
} ysb_event;

#define YSB_ADS       1000
#define YSB_CAMPAIGNS 100
#define YSB_WINDOW_MS 10000
#define YSB_VIEW      0

static inline uint64_t ysb_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The generator's events, made one after another: event seq has type
 * seq % 3 (view, click, purchase: spread evenly), a pseudo-random ad and
 * other fields from ysb_mix(seq), and event time seq * 1000 /
 * events_per_s ms (the event-time pace). A cursor walks seq = first,
 * first + step, ... and keeps seq % 3 and the event time incrementally
 * (quotient and remainder of seq * 1000 by events_per_s, advanced by those
 * of step * 1000): a 64-bit division by a run-time divisor costs 25-40
 * cycles, more than the rest of an event. Exact while seq * 1000 < 2^64.
 * The job's source and the benchmark's hand-written loop both make their
 * events with this cursor. */
typedef struct ysb_cursor {
    uint64_t seq, step;
    uint64_t eps;     /* events per second of event time, >= 1 */
    uint64_t t, r;    /* seq * 1000 = t * eps + r, r < eps */
    uint64_t dt, dr;  /* step * 1000 = dt * eps + dr, dr < eps */
    uint32_t ty, dty; /* seq % 3, step % 3 */
} ysb_cursor;

static inline void ysb_cursor_init(ysb_cursor *c, uint64_t first, uint64_t step,
                                   uint64_t events_per_s)
{
    c->seq = first;
    c->step = step;
    c->eps = events_per_s ? events_per_s : 1;
    c->t = first * 1000 / c->eps;
    c->r = first * 1000 % c->eps;
    c->dt = step * 1000 / c->eps;
    c->dr = step * 1000 % c->eps;
    c->ty = (uint32_t)(first % 3);
    c->dty = (uint32_t)(step % 3);
}

/* Write event c->seq into *e and move to the next one. */
static inline void ysb_next(ysb_cursor *c, ysb_event *e)
{
    uint64_t x = ysb_mix(c->seq);
    e->user_id = x;
    e->page_id = x * 0x2545F4914F6CDD1Dull;
    e->ad_id = (uint32_t)((x >> 32) % YSB_ADS);
    e->ip = (uint32_t)x;
    e->event_time = (int64_t)c->t;
    e->ad_type = (uint8_t)(((x >> 8) & 0xFFFFFFFFu) * 5 >> 32); /* 0..4, evenly */
    e->event_type = (uint8_t)c->ty;
    memset(e->pad, 0, sizeof(e->pad));
    c->seq += c->step;
    c->t += c->dt;
    c->r += c->dr;
    if (c->r >= c->eps) {
        c->r -= c->eps;
        c->t++;
    }
    c->ty += c->dty;
    if (c->ty >= 3) c->ty -= 3;
}

/* A YSB job: the campaigns, where events come from, where results go. */
typedef struct ysb_job {
    uint64_t events;       /* generator: events in all */
    double rate;           /* generator: events per second, 0 = as fast as possible */
    uint64_t events_per_s; /* generator: event-time pace */
    int64_t delay;         /* watermark out-of-orderness */
    int parallelism;
    const char *input;  /* JSON lines instead of the generator */
    const char *topic;  /* or JSON lines from the values of a topic */
    jobs_topics topics; /* where --topic lives (broker directory or Kafka) */
    /* generator: if set, called after each run of n events is made, on the
     * source instance's thread, before they are emitted (bench ysb stamps
     * the wall time of each window's newest event with it) */
    void (*made)(const ysb_event *ev, uint32_t n, void *ud);
    void *made_ud;
    int32_t camp_of[YSB_ADS]; /* generator ads -> campaign index, -1 unknown */
    sl_state *ads;            /* JSON ad_id string -> int32 campaign index */
    char **names;             /* campaign index -> campaign_id */
    int n_names;
    const char *cmd;
    /* made by ysb_build */
    sl_watermark_conf wm;
    sl_generator_conf gen;
    sl_window_conf wc;
    jobs_deadletters dl;
    jobs_deadletters_fmt dl_late;
} ysb_job;

/* Campaigns: from a CSV file of ad_id,campaign_id lines, or (path NULL) the
 * default 1,000 ads -> 100 campaigns (ad a -> campaign a / 10). 0, or 2/1 after
 * printing the problem. */
int ysb_campaigns(ysb_job *j, const char *path);
void ysb_free(ysb_job *j);
/* Print the JSON line of each of the generator's events (seq 0 ..
 * j->events - 1, event time at j->events_per_s) to out, as the original
 * benchmark writes them: `ysb --input` and `ysb --topic` read them back to
 * the same events (ad ids are the decimal 0..999 the campaigns map). Returns
 * 0 or -errno of the failed write. */
int ysb_emit_json(const ysb_job *j, FILE *out);
/* --out-topic's records: key the campaign id, value "campaign_id,window_start,count"
 * (ud: the job). */
sl_bytes ysb_out_key(const void *rec, uint32_t len, void *ud);
int ysb_out_value(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud);
/* Build source -> views + join -> key_by -> 10 s tumbling count into p;
 * returns the window's result stream (sl_window_conf layout, key = int64
 * campaign index, result = int64 count), or NULL (error in p). Dead letters
 * go to a jobs_deadletter_sink. */
sl_stream *ysb_build(sl_pipeline *p, ysb_job *j);

/* --group (sluice/kafka.h, "Repartitioning"): ysb_group_init prepares j
 * (topic, topics and campaigns set) for a group writing out_topic; then
 * ysb_input_task is the group conf's `repartition` and ysb_count_task its
 * `build`, both with ud = g (which must outlive the group). */
typedef struct ysb_group {
    ysb_job *j;
    const char *out_topic;
} ysb_group;
void ysb_group_init(ysb_group *g, ysb_job *j, const char *out_topic);
int ysb_input_task(sl_pipeline *p, const sl_kafka_task *task, void *ud);
int ysb_count_task(sl_pipeline *p, const sl_kafka_task *task, void *ud);

#endif
