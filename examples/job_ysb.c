/*
 * examples/job_ysb.c - the bundled job `ysb`, the Yahoo Streaming Benchmark:
 * keep the view events, join ad_id to campaign_id, count views per campaign
 * per 10-second tumbling event-time window.
 *
 *   events: in-memory generator (parallelism P, periodic watermarks
 *           max - delay - 1 per instance) or, with --input, JSON lines as
 *           the original benchmark writes them (one reader, event_time a
 *           string of milliseconds; malformed lines are dead letters), or,
 *           with --topic, the same JSON lines as the values of a broker
 *           topic (one reader; every partition a split with its own
 *           punctuated watermark, read to the end it had at the start)
 *     -> "views": keeps event_type "view" and joins ad_id -> campaign index
 *        (a 1,000-entry array); unknown ads go to its dead-letter port
 *     -> key_by campaign -> window "count" (10 s tumbling, count)
 *     -> "campaign_id,window_start,count" lines (--out, default stdout), or
 *        rows (campaign_id, window_start, window_end, count) upserted into
 *        an SQLite table keyed by (campaign_id, window_start) (--sqlite DB
 *        --table T): a result written again overwrites itself, or the
 *        values of --out-topic
 *
 * With --group (a consumer group of processes sharing the input's
 * partitions) the graph is cut in two at the key: views into a repartition
 * topic keyed by campaign, and the count from it ("--group" below).
 *
 * --emit-json prints the generator's events as JSON lines instead of running
 * anything, so that `ysb --emit-json | sluice produce T` fills a topic that
 * `ysb --topic T` reads back to the very events the generator makes.
 *
 * Join output record (8 bytes): the campaign index, int64; its event time is
 * the event's. Campaign ids are strings (from --campaigns, or the decimal
 * index of the default 100 campaigns); ad ids of generated events are their
 * decimal number 0..999, so a --campaigns file maps them too.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "jobs.h"
#include "jobs_window.h"

/* --- campaigns ------------------------------------------------------------------------ */

static int32_t intern(ysb_job *j, const char *name, size_t len)
{
    for (int i = 0; i < j->n_names; i++)
        if (strlen(j->names[i]) == len && memcmp(j->names[i], name, len) == 0) return i;
    char **n = realloc(j->names, (size_t)(j->n_names + 1) * sizeof(char *));
    if (!n) return -1;
    j->names = n;
    if (!(n[j->n_names] = strndup(name, len))) return -1;
    return j->n_names++;
}

static int set_ad(ysb_job *j, const char *ad, size_t len, int32_t camp)
{
    int32_t *v = sl_state_get(j->ads, sl_hash(ad, len), ad, (uint32_t)len, NULL);
    if (!v) return -1;
    *v = camp;
    return 0;
}

static int32_t find_ad(const ysb_job *j, const char *ad, size_t len)
{
    const int32_t *v = sl_state_find(j->ads, sl_hash(ad, len), ad, (uint32_t)len);
    return v ? *v : -1;
}

int ysb_campaigns(ysb_job *j, const char *path)
{
    j->ads = sl_state_new(4);
    if (!j->ads) goto oom;
    if (!path) {
        for (int c = 0; c < YSB_CAMPAIGNS; c++) {
            char nm[16];
            int n = snprintf(nm, sizeof(nm), "%d", c);
            if (intern(j, nm, (size_t)n) < 0) goto oom;
        }
        for (int a = 0; a < YSB_ADS; a++) {
            char ad[16];
            int n = snprintf(ad, sizeof(ad), "%d", a);
            if (set_ad(j, ad, (size_t)n, a / (YSB_ADS / YSB_CAMPAIGNS))) goto oom;
        }
    } else {
        FILE *f = fopen(path, "r");
        if (!f) {
            fprintf(stderr, "sluice %s: cannot open '%s': %s\n", j->cmd, path, strerror(errno));
            return 1;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0;
        while ((n = getline(&line, &cap, f)) >= 0) {
            lineno++;
            size_t len = (size_t)n;
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            if (len == 0) continue;
            char *comma = memchr(line, ',', len);
            if (!comma || comma == line || comma + 1 == line + len ||
                memchr(comma + 1, ',', len - (size_t)(comma + 1 - line))) {
                fprintf(stderr, "sluice %s: %s:%ld: expected ad_id,campaign_id\n", j->cmd, path,
                        lineno);
                free(line);
                fclose(f);
                return 2;
            }
            int32_t c = intern(j, comma + 1, len - (size_t)(comma + 1 - line));
            if (c < 0 || set_ad(j, line, (size_t)(comma - line), c)) {
                free(line);
                fclose(f);
                goto oom;
            }
        }
        free(line);
        fclose(f);
    }
    for (int a = 0; a < YSB_ADS; a++) {
        char ad[16];
        int n = snprintf(ad, sizeof(ad), "%d", a);
        j->camp_of[a] = find_ad(j, ad, (size_t)n);
    }
    return 0;
oom:
    fprintf(stderr, "sluice %s: out of memory\n", j->cmd);
    return 1;
}

void ysb_free(ysb_job *j)
{
    for (int i = 0; i < j->n_names; i++) free(j->names[i]);
    free(j->names);
    sl_state_free(j->ads);
    j->names = NULL;
    j->ads = NULL;
}

/* --- JSON lines ------------------------------------------------------------------------- */

/* Find "name": VALUE in a flat JSON object; *v and *vl get the value without
 * its quotes. 0 if found. Not a general JSON parser: the benchmark's lines
 * are flat objects of strings. */
static int json_field(const char *p, size_t len, const char *name, const char **v, size_t *vl)
{
    size_t nl = strlen(name);
    const char *end = p + len;
    for (const char *q = p; q + nl + 2 < end; q++) {
        if (*q != '"' || memcmp(q + 1, name, nl) != 0 || q[nl + 1] != '"') continue;
        const char *r = q + nl + 2;
        while (r < end && (*r == ' ' || *r == '\t')) r++;
        if (r >= end || *r != ':') continue;
        r++;
        while (r < end && (*r == ' ' || *r == '\t')) r++;
        if (r >= end) return -1;
        if (*r == '"') {
            const char *s = ++r;
            while (r < end && *r != '"') r++;
            if (r >= end) return -1;
            *v = s;
            *vl = (size_t)(r - s);
            return 0;
        }
        const char *s = r;
        while (r < end && *r != ',' && *r != '}' && *r != ' ') r++;
        *v = s;
        *vl = (size_t)(r - s);
        return 0;
    }
    return -1;
}

static int parse_json(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                      const char **reason, void *ud)
{
    ysb_job *j = ud;
    const char *v;
    size_t vl;
    if (len < 2 || line[0] != '{' || line[len - 1] != '}') {
        *reason = "not a JSON object";
        return -1;
    }
    ysb_event e;
    memset(&e, 0, sizeof(e));
    if (json_field(line, len, "event_type", &v, &vl)) {
        *reason = "no event_type";
        return -1;
    }
    if (vl == 4 && memcmp(v, "view", 4) == 0)
        e.event_type = 0;
    else if (vl == 5 && memcmp(v, "click", 5) == 0)
        e.event_type = 1;
    else if (vl == 8 && memcmp(v, "purchase", 8) == 0)
        e.event_type = 2;
    else {
        *reason = "unknown event_type";
        return -1;
    }
    if (json_field(line, len, "event_time", &v, &vl) || vl == 0 || vl > 19) {
        *reason = "no event_time";
        return -1;
    }
    char buf[24];
    memcpy(buf, v, vl);
    buf[vl] = 0;
    char *endp;
    errno = 0;
    long long t = strtoll(buf, &endp, 10);
    if (*endp || errno || buf[0] == ' ' || buf[0] == '+') {
        *reason = "bad event_time";
        return -1;
    }
    e.event_time = t;
    if (json_field(line, len, "ad_id", &v, &vl) || vl == 0) {
        *reason = "no ad_id";
        return -1;
    }
    int32_t c = find_ad(j, v, vl);
    if (c < 0 && e.event_type == YSB_VIEW) {
        *reason = "unknown ad_id";
        return -1;
    }
    /* ad_id carries the campaign index + 1 here (0: unknown, not a view). */
    e.ad_id = (uint32_t)(c + 1);
    e.pad[0] = 1; /* joined already */
    memcpy(out, &e, sizeof(e));
    *ts = t;
    return (int)sizeof(e);
}

/* --- the event generator ------------------------------------------------------------ */

/* Events per poll: three batches, so that the views that survive the filter
 * (one event in three) fill one batch downstream before the watermark that
 * the poll announces flushes it. */
/* The generator's events, a run at a time through the cursor (no call per
 * event): the generator source hands each poll's records seq, seq + step, ... */
static int ysb_fill(void *out, int64_t *ts, uint32_t n, uint64_t seq, uint64_t step, void *ud)
{
    const ysb_job *j = ud;
    ysb_cursor cur;
    ysb_cursor_init(&cur, seq, step, j->events_per_s);
    ysb_event *ev = out;
    for (uint32_t i = 0; i < n; i++) {
        ysb_next(&cur, &ev[i]);
        ts[i] = ev[i].event_time;
    }
    if (j->made && n) j->made(ev, n, j->made_ud);
    return 0;
}

static const char *const ad_types[] = {"banner", "modal", "sponsored-search", "mail", "mobile"};
static const char *const event_types[] = {"view", "click", "purchase"};

int ysb_emit_json(const ysb_job *j, FILE *out)
{
    ysb_cursor cur;
    ysb_cursor_init(&cur, 0, 1, j->events_per_s);
    for (uint64_t i = 0; i < j->events; i++) {
        ysb_event e;
        ysb_next(&cur, &e);
        if (fprintf(out,
                    "{\"user_id\": \"%016" PRIx64 "\", \"page_id\": \"%016" PRIx64
                    "\", \"ad_id\": \"%" PRIu32 "\", \"ad_type\": \"%s\", \"event_type\": "
                    "\"%s\", \"event_time\": \"%" PRId64 "\", \"ip_address\": \"%u.%u.%u.%u\"}\n",
                    e.user_id, e.page_id, e.ad_id, ad_types[e.ad_type], event_types[e.event_type],
                    e.event_time, e.ip >> 24, (e.ip >> 16) & 255, (e.ip >> 8) & 255,
                    e.ip & 255) < 0)
            return errno ? -errno : -EIO;
    }
    if (fflush(out)) return errno ? -errno : -EIO;
    return 0;
}

/* --- views + join ------------------------------------------------------------------------ */

static int views_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    const ysb_job *j = sl_ctx_conf(ctx);
    const ysb_event *ev = (const ysb_event *)(const void *)in->data;
    uint32_t n = in->count, i = 0;
    while (i < n) {
        sl_batch *o = sl_out_batch(ctx, 0);
        if (!o) return sl_ctx_error(ctx);
        int64_t *od = (int64_t *)(void *)o->data;
        uint32_t k = o->count;
        for (; i < n && k < SL_BATCH_CAPACITY; i++) {
            const ysb_event *e = &ev[i];
            if (e->event_type != YSB_VIEW) continue;
            uint32_t ad = e->ad_id;
            int32_t c = e->pad[0] ? (int32_t)ad - 1 : ad < YSB_ADS ? j->camp_of[ad] : -1;
            if (c < 0) {
                o->count = k;
                char msg[64];
                int m = snprintf(msg, sizeof(msg), "unknown ad_id %u at event time %" PRId64,
                                 e->ad_id, e->event_time);
                void *d = sl_emit_port(ctx, 1, in->ts[i], 0, (uint32_t)m);
                if (!d) return sl_ctx_error(ctx);
                memcpy(d, msg, (size_t)m);
                i++;
                break; /* the out batch may have changed: fetch it again */
            }
            od[k] = c;
            o->ts[k] = in->ts[i];
            o->hash[k] = 0;
            k++;
        }
        o->count = k;
    }
    return 0;
}

static const sl_operator views_op = {
    .version = SL_OPERATOR_VERSION, .kind = "ysb-views", .process = views_process};

/* The join's records keyed by campaign: the record's 8 bytes (the int64
 * index), which are also the repartition topic's key. */
static sl_bytes campaign_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {rec, 8};
    return k;
}

static int fmt_late(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const ysb_job *j = ud;
    int64_t c;
    memcpy(&c, rec, 8);
    return sl_buf_printf(out, "late view: campaign %s at event time %" PRId64, j->names[c], ts);
}

/* What the graph pieces below share, made once before any is built (a group
 * builds its tasks while other tasks run and read these). */
static void ysb_prepare(ysb_job *j)
{
    atomic_init(&j->dl.count, 0);
    j->dl.cmd = j->cmd;
    j->wc = sl_window_tumbling(YSB_WINDOW_MS, 0);
    j->wc.agg = &sl_agg_count;
    j->dl_late = (jobs_deadletters_fmt){.dl = &j->dl, .format = fmt_late, .ud = j};
}

/* The JSON lines of --topic (of the task's partition only, in a group), at
 * parallelism 1, malformed lines to the dead letters. Every partition is a
 * split with its own punctuated watermark (j->wm): a record later than
 * --delay within its partition is late, whatever the other partitions hold,
 * so the output does not depend on how the partitions' records interleave. */
static sl_stream *ysb_topic_source(sl_pipeline *p, ysb_job *j, const sl_kafka_task *task)
{
    sl_stream *src = jobs_topic_source(p, &j->topics, task, "json", j->topic, parse_json, j,
                                       sizeof(ysb_event), sizeof(ysb_event), &j->wm);
    src = sl_stream_parallelism(src, 1);
    sl_stream_sink(sl_stream_dead_letters(src), "malformed", &jobs_deadletter_sink, &j->dl);
    return src;
}

/* events -> "views" (keeps the views, joins ad -> campaign; unknown ads to
 * the dead letters) at parallelism par: the 8-byte campaign records. */
static sl_stream *ysb_views(ysb_job *j, sl_stream *events, int par)
{
    sl_stream *v = sl_stream_parallelism(sl_stream_apply(events, "views", &views_op, j, 8), par);
    sl_stream_sink(sl_stream_side_as(v, 1, 0, SL_PORT_DEAD_LETTER), "unknown-ads",
                   &jobs_deadletter_text_sink, &j->dl);
    return v;
}

/* campaign records -> key_by campaign (parallelism kpar) -> window "count"
 * (10 s tumbling count, j->parallelism instances: --parallelism, else
 * --threads); late views (behind the watermark by more than --delay) to the
 * dead letters. Returns the window's results. */
static sl_stream *ysb_count(ysb_job *j, sl_stream *campaigns, int kpar)
{
    int par = j->parallelism > 0 ? j->parallelism : 1;
    sl_stream *k =
        sl_stream_parallelism(sl_stream_key_by(campaigns, "campaign", campaign_key, NULL), kpar);
    sl_stream *w = sl_stream_parallelism(sl_stream_window(k, "count", &j->wc), par);
    sl_stream_sink(sl_stream_window_late(w), "late-views", &jobs_deadletter_fmt_sink, &j->dl_late);
    return w;
}

sl_stream *ysb_build(sl_pipeline *p, ysb_job *j)
{
    int par = j->parallelism > 0 ? j->parallelism : 1;
    sl_stream *src;
    ysb_prepare(j);
    if (j->input) {
        sl_lines_conf lc = {
            .path = j->input, .parse = parse_json, .ud = j, .max_len = sizeof(ysb_event)};
        j->wm = (sl_watermark_conf){.delay = j->delay, .punctuated = 1};
        src = sl_pipeline_lines(p, "json", &lc, sizeof(ysb_event), &j->wm);
        src = sl_stream_parallelism(src, 1);
        sl_stream_sink(sl_stream_dead_letters(src), "malformed", &jobs_deadletter_sink, &j->dl);
    } else if (j->topic) {
        j->wm = (sl_watermark_conf){.delay = j->delay, .punctuated = 1};
        src = ysb_topic_source(p, j, NULL);
    } else {
        /* Each shard's event times grow with seq: monotonous. */
        j->wm = (sl_watermark_conf){.delay = j->delay, .monotonous = 1};
        j->gen =
            (sl_generator_conf){.fill = ysb_fill, .ud = j, .count = j->events, .rate = j->rate};
        src = sl_pipeline_generator(p, "events", &j->gen, sizeof(ysb_event), &j->wm);
        src = sl_stream_parallelism(src, par);
    }
    /* With one reader, views and key_by stay chained to it (parallelism 1):
     * a rebalance would let a record overtake the watermark that preceded it
     * on another path, and the late records would depend on scheduling. The
     * hash edge into the window keeps each key's order with the watermarks. */
    int vpar = j->input || j->topic ? 1 : par;
    return ysb_count(j, ysb_views(j, src, vpar), vpar);
}

/* --- --group: through a repartition topic ------------------------------------------- */

/* A group's task keeps the state of its partition's keys, and ysb's input is
 * not partitioned by campaign: the group runs two kinds of task
 * (sluice/kafka.h, "Repartitioning").
 *
 *   input task (a partition of --topic):
 *     JSON lines (the --topic source, its punctuated watermark) -> views
 *     -> the repartition topic, keyed by the campaign index (8 bytes)
 *   repartition task (a partition of "<group>.repartition"):
 *     campaign records (watermark: the minimum of the input tasks', sent
 *     through the topic) -> key_by -> window "count" -> --out-topic
 *
 * A repartition record's value (16 bytes, little-endian):
 *
 *   offset  size  field
 *   0       8     campaign index (int64)
 *   8       8     event time (int64, ms)
 *
 * The event time is in the value because the message timestamp cannot carry
 * every event time (librdkafka sends timestamp 0 as "now"). The key is the
 * record's 8 bytes (the same index in the host's order: every member of a
 * group must share its byte order, as they share the job). The index is the
 * campaign's place in the campaign table, so every member must be given the
 * same --campaigns file; an index out of the table is a dead letter. */
void ysb_group_init(ysb_group *g, ysb_job *j, const char *out_topic)
{
    ysb_prepare(j);
    j->wm = (sl_watermark_conf){.delay = j->delay, .punctuated = 1};
    *g = (ysb_group){.j = j, .out_topic = out_topic};
}

static void put_le64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static int fmt_repart(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    int64_t c;
    uint8_t b[16];
    memcpy(&c, rec, 8);
    put_le64(b, (uint64_t)c);
    put_le64(b + 8, (uint64_t)ts);
    return sl_buf_append(out, b, sizeof(b));
}

static int parse_repart(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                        const char **reason, void *ud)
{
    const ysb_job *j = ud;
    if (len != 16) {
        *reason = "not a repartition record (16 bytes: campaign index, event time)";
        return -1;
    }
    int64_t c = (int64_t)get_le64((const uint8_t *)line);
    if (c < 0 || c >= j->n_names) {
        *reason = "campaign index out of range (another --campaigns file?)";
        return -1;
    }
    memcpy(out, &c, 8);
    *ts = (int64_t)get_le64((const uint8_t *)line + 8);
    return 8;
}

/* The graph of an input partition: JSON lines -> views -> repartition topic. */
int ysb_input_task(sl_pipeline *p, const sl_kafka_task *task, void *ud)
{
    ysb_job *j = ((const ysb_group *)ud)->j;
    sl_stream *v = ysb_views(j, ysb_topic_source(p, j, task), 1);
    jobs_topic_sink(p, v, &j->topics, task, "repartition", sl_kafka_task_repartition_topic(task),
                    campaign_key, fmt_repart, j);
    return 0; /* a building error is recorded in p: starting it reports the error */
}

/* The graph of a repartition partition: campaign records -> count -> --out-topic. */
int ysb_count_task(sl_pipeline *p, const sl_kafka_task *task, void *ud)
{
    const ysb_group *g = ud;
    ysb_job *j = g->j;
    /* The watermark conf is not used: watermarks come through the topic. */
    sl_stream *src = jobs_topic_source(p, &j->topics, task, "repartitioned",
                                       sl_kafka_task_topic(task), parse_repart, j, 8, 8, &j->wm);
    src = sl_stream_parallelism(src, 1);
    sl_stream_sink(sl_stream_dead_letters(src), "malformed", &jobs_deadletter_sink, &j->dl);
    sl_stream *w = ysb_count(j, src, 1);
    jobs_topic_sink(p, w, &j->topics, task, "out", g->out_topic, ysb_out_key, ysb_out_value, j);
    return 0;
}

/* --- the job -------------------------------------------------------------------------------- */

static int fmt_out(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const ysb_job *j = ud;
    sl_bytes b = {rec, len};
    sl_window_result r = sl_window_out(b);
    int64_t c, n;
    memcpy(&c, r.key.ptr, 8);
    memcpy(&n, r.result, 8);
    return sl_buf_printf(out, "%s,%" PRId64 ",%" PRId64 "\n", j->names[c], r.start, n);
}

/* --out-topic: the campaign id as the key, the line without its newline as
 * the value. */
sl_bytes ysb_out_key(const void *rec, uint32_t len, void *ud)
{
    const ysb_job *j = ud;
    sl_window_result r = sl_window_out((sl_bytes){rec, len});
    int64_t c;
    memcpy(&c, r.key.ptr, 8);
    return (sl_bytes){j->names[c], (uint32_t)strlen(j->names[c])};
}

int ysb_out_value(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    size_t before = out->len;
    int rc = fmt_out(out, rec, len, ts, ud);
    if (!rc && out->len > before && out->ptr[out->len - 1] == '\n') out->len--;
    return rc;
}

/* Rows of --sqlite: key (campaign_id, window_start), values (window_end, count). */
static const sl_sqlite_column sq_keys[] = {{"campaign_id", SL_SQLITE_TEXT},
                                           {"window_start", SL_SQLITE_INTEGER}};
static const sl_sqlite_column sq_values[] = {{"window_end", SL_SQLITE_INTEGER},
                                             {"count", SL_SQLITE_INTEGER}};

static int sq_row(const void *rec, uint32_t len, int64_t ts, sl_sqlite_value *out, void *ud)
{
    const ysb_job *j = ud;
    sl_window_result r = sl_window_out((sl_bytes){rec, len});
    int64_t c;
    memcpy(&c, r.key.ptr, 8);
    out[0].text = j->names[c];
    out[0].text_len = (uint32_t)strlen(j->names[c]);
    out[1].integer = r.start;
    out[2].integer = r.end;
    memcpy(&out[3].integer, r.result, 8);
    return 0;
}

static void ysb_help(void)
{
    printf(
        "usage: sluice run ysb [--events N] [--rate R] [--input FILE | --topic NAME]\n"
        "           [--campaigns FILE] [--delay D] [--out FILE | --sqlite DB [--table T] |\n"
        "            --out-topic NAME] [--dir DIR | --kafka BOOTSTRAP [-X KEY=VALUE]...]\n"
        "           [--follow | --group G [--session-timeout D]]\n"
        "           [--emit-json] [--threads N] [--parallelism P] [--explain]\n"
        "           [--checkpoint-dir DIR [--checkpoint-interval D] [--checkpoint-timeout D]\n"
        "            [--checkpoint-keep K] [--from-checkpoint PATH]\n"
        "            [--checkpoint-capture auto|sync|fork]\n"
        "            [--guarantee exactly-once|at-least-once|none]]\n"
        "The Yahoo Streaming Benchmark: keeps the view events, joins ad_id to campaign_id\n"
        "and counts views per campaign per 10-second tumbling event-time window, writing\n"
        "campaign_id,window_start,count lines.\n"
        "  --events N       generated events (default 1000000)\n"
        "  --rate R         generated events per second (default: as fast as possible);\n"
        "                   event time advances 1000/R ms per event (default 0.1 ms)\n"
        "  --input FILE     read JSON lines of the original benchmark instead (event_time\n"
        "                   a string of milliseconds; '-' for standard input)\n"
        "  --topic NAME     read the same JSON lines from the values of a broker topic, to\n"
        "                   the end it has at the start; every partition has its own\n"
        "                   watermark, punctuated: max event time seen in it - delay - 1.\n"
        "                   When no event is later than --delay within its partition, the\n"
        "                   output is that of --input, for any partitions, threads and\n"
        "                   parallelism\n"
        "  --campaigns FILE ad_id,campaign_id lines (default: ads 0..999 -> campaigns\n"
        "                   0..99, ad a in campaign a/10)\n"
        "  --delay D        watermark out-of-orderness (250ms, 10s, 1m or ms; default 0)\n"
        "  --out FILE       results (default standard output)\n"
        "  --sqlite DB      upsert results into table T of the SQLite database DB instead:\n"
        "                   rows (campaign_id TEXT, window_start INTEGER, window_end\n"
        "                   INTEGER, count INTEGER), primary key (campaign_id, window_start)\n"
        "  --table T        the table for --sqlite (default ysb)\n"
        "  --out-topic NAME results as the values of a topic (campaign_id,window_start,count),\n"
        "                   keyed by campaign; with exactly-once, one transaction per checkpoint\n"
        "  --emit-json      run nothing: print the JSON lines of the events the generator\n"
        "                   would make (--events, --rate) to --out or standard output, e.g.\n"
        "                   sluice run ysb --emit-json | sluice produce events\n"
        "  --group G        (with --kafka, --topic and --out-topic) run as a member of\n"
        "                   consumer group G: the input's partitions are shared by the\n"
        "                   members, and the views go through the repartition topic\n"
        "                   G.repartition (made if missing, as many partitions as the\n"
        "                   input), keyed by campaign, to the counts, whose partitions are\n"
        "                   shared too; a window closes when every input partition has\n"
        "                   passed it. Output, offsets and state commit together\n"
        "Malformed lines, unknown ads and views later than --delay are dead letters:\n"
        "counted, the first ten reported on standard error.\n");
    fputs(jobs_topics_help, stdout);
    fputs(jobs_trace_help, stdout);
}

/* --emit-json: the events as JSON lines to path (NULL or "-": stdout). A
 * reader that closed standard output ends it quietly, as other commands. */
static int emit(ysb_job *j, const char *path)
{
    int to_stdout = !path || strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        fprintf(stderr, "sluice %s: cannot open '%s' for writing: %s\n", j->cmd, path,
                strerror(errno));
        return 1;
    }
    errno = 0;
    int rc = ysb_emit_json(j, f);
    if (!to_stdout && fclose(f) && !rc) rc = errno ? -errno : -EIO;
    if (rc == -EPIPE) return 0;
    if (rc) {
        fprintf(stderr, "sluice %s: cannot write %s: %s\n", j->cmd,
                to_stdout ? "standard output" : path, strerror(-rc));
        return 1;
    }
    return 0;
}

int job_ysb(int argc, char **argv, const jobs_runner *run)
{
    static ysb_job j; /* large (ad table); one job per process */
    memset(&j, 0, sizeof(j));
    j.cmd = "run ysb";
    j.events = 1000000;
    enum {
        O_EVENTS = JOBS_OPT_FIRST_FREE,
        O_RATE,
        O_INPUT,
        O_CAMPAIGNS,
        O_DELAY,
        O_OUT,
        O_TOPIC,
        O_OUT_TOPIC,
        O_SQLITE,
        O_TABLE,
        O_EMIT_JSON
    };
    static const struct option opts[] = {{"events", required_argument, NULL, O_EVENTS},
                                         {"rate", required_argument, NULL, O_RATE},
                                         {"input", required_argument, NULL, O_INPUT},
                                         {"campaigns", required_argument, NULL, O_CAMPAIGNS},
                                         {"delay", required_argument, NULL, O_DELAY},
                                         {"out", required_argument, NULL, O_OUT},
                                         {"topic", required_argument, NULL, O_TOPIC},
                                         {"out-topic", required_argument, NULL, O_OUT_TOPIC},
                                         {"sqlite", required_argument, NULL, O_SQLITE},
                                         {"table", required_argument, NULL, O_TABLE},
                                         {"emit-json", no_argument, NULL, O_EMIT_JSON},
                                         JOBS_TOPIC_OPTIONS,
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    const char *campaigns = NULL, *out = NULL, *sqlite = NULL, *table = NULL, *out_topic = NULL;
    j.topics.job = "ysb";
    int emit_json = 0;
    jobs_common common = {0};
    long long x;
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hX:", opts)) != -1) {
        if ((ret = jobs_topics_opt(j.cmd, opt, optarg, &j.topics)) != 1) {
            if (ret) return ret;
            continue;
        }
        ret = 0;
        switch (opt) {
        case O_EVENTS:
            if (!(ret = jobs_int(j.cmd, "--events", optarg, 1, (long long)1 << 50, &x)))
                j.events = (uint64_t)x;
            break;
        case O_RATE:
            if (!(ret = jobs_int(j.cmd, "--rate", optarg, 1, 1000000000LL, &x))) j.rate = (double)x;
            break;
        case O_INPUT: j.input = optarg; break;
        case O_CAMPAIGNS: campaigns = optarg; break;
        case O_OUT: out = optarg; break;
        case O_TOPIC: j.topic = optarg; break;
        case O_OUT_TOPIC: out_topic = optarg; break;
        case O_SQLITE: sqlite = optarg; break;
        case O_TABLE: table = optarg; break;
        case O_EMIT_JSON: emit_json = 1; break;
        case O_DELAY:
            if (jobs_duration(optarg, 1, &j.delay)) {
                fprintf(stderr,
                        "sluice %s: --delay needs a duration (250ms, 10s, 1m or ms), not '%s'\n",
                        j.cmd, optarg);
                ret = 2;
            }
            break;
        default: ret = jobs_opt(j.cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            ysb_help();
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(j.cmd, argc, argv)) return 2;
    if (j.input && j.topic) {
        fprintf(stderr, "sluice %s: give --input or --topic, not both\n", j.cmd);
        return 2;
    }
    if (!!out + !!sqlite + !!out_topic > 1) {
        fprintf(stderr, "sluice %s: give one of --out, --sqlite and --out-topic\n", j.cmd);
        return 2;
    }
    if (j.topics.group && j.input) {
        fprintf(stderr,
                "sluice %s: --group shares the partitions of a Kafka topic: give --topic, not "
                "--input\n",
                j.cmd);
        return 2;
    }
    if (jobs_topics_check(j.cmd, &j.topics, j.topic, out_topic)) return 2;
    if (table && !sqlite) {
        fprintf(stderr, "sluice %s: --table names a table of --sqlite, which is missing\n", j.cmd);
        return 2;
    }
    if (sqlite && !*sqlite) {
        fprintf(stderr, "sluice %s: --sqlite needs a database path, not an empty string\n", j.cmd);
        return 2;
    }
    if (table && !*table) {
        fprintf(stderr, "sluice %s: --table needs a table name, not an empty string\n", j.cmd);
        return 2;
    }
    if (emit_json && (j.input || j.topic || sqlite || out_topic)) {
        fprintf(stderr, "sluice %s: --emit-json prints generated events; it takes no %s\n", j.cmd,
                j.input   ? "--input"
                : j.topic ? "--topic"
                : sqlite  ? "--sqlite"
                          : "--out-topic");
        return 2;
    }
    if (j.topics.group && !out_topic) {
        fprintf(stderr,
                "sluice %s: --group writes its results to --out-topic (committed with the state "
                "in one Kafka transaction)%s\n",
                j.cmd,
                out      ? ", not to --out"
                : sqlite ? ", not to --sqlite"
                         : "; give --out-topic");
        return 2;
    }
    j.events_per_s = j.rate > 0 ? (uint64_t)j.rate : 10000;
    if (emit_json) return emit(&j, out);
    j.parallelism = jobs_parallelism(&common);
    int rc = ysb_campaigns(&j, campaigns);
    if (rc) {
        ysb_free(&j);
        return rc;
    }
    if (j.input && strcmp(j.input, "-") != 0 && access(j.input, R_OK) != 0) {
        fprintf(stderr, "sluice %s: cannot read '%s': %s\n", j.cmd, j.input, strerror(errno));
        ysb_free(&j);
        return 1;
    }
    if (j.topics.group) {
        ysb_group g;
        ysb_group_init(&g, &j, out_topic);
        rc = jobs_group_run(j.cmd, &j.topics, j.topic, &common, ysb_count_task, ysb_input_task, &g);
        uint64_t nbad = atomic_load(&j.dl.count);
        if (nbad)
            fprintf(stderr,
                    "sluice %s: %" PRIu64 " dead letters in this process (malformed, unknown ads, "
                    "late)\n",
                    j.cmd, nbad);
        ysb_free(&j);
        return rc;
    }
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        ysb_free(&j);
        fprintf(stderr, "sluice %s: out of memory\n", j.cmd);
        return 1;
    }
    if (common.threads) sl_pipeline_set_threads(p, common.threads);
    sl_write_conf oc = {.path = out, .format = fmt_out, .ud = &j};
    sl_sqlite_conf sc = {.path = sqlite,
                         .table = table ? table : "ysb",
                         .keys = sq_keys,
                         .n_keys = 2,
                         .values = sq_values,
                         .n_values = 2,
                         .row = sq_row,
                         .ud = &j};
    sl_stream *w = ysb_build(p, &j);
    if (sqlite)
        sl_stream_sink(w, "out", &sl_sink_sqlite, &sc);
    else if (out_topic)
        jobs_topic_sink(p, w, &j.topics, NULL, "out", out_topic, ysb_out_key, ysb_out_value, &j);
    else
        sl_stream_sink(w, "out", &sl_sink_write, &oc);
    rc = jobs_run(run, p, j.cmd, &common);
    sl_pipeline_free(p);
    uint64_t nbad = atomic_load(&j.dl.count);
    if (nbad)
        fprintf(stderr, "sluice %s: %" PRIu64 " dead letters (malformed, unknown ads, late)\n",
                j.cmd, nbad);
    ysb_free(&j);
    return rc;
}
