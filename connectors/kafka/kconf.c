/*
 * connectors/kafka/kconf.c - librdkafka confs and the offsets registry
 * shared by the Kafka source and sink (kafka_int.h explains both).
 *
 * The registry is a small array of entries (pipeline, group, topic,
 * partition, checkpoint, offset) under one mutex: a few entries per
 * partition and checkpoint, taken and dropped by the sink at every
 * checkpoint, so it never grows past partitions x pipelines. Claims are a
 * second small array of (pipeline, group, count).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "connectors/kafka/kafka_int.h"
#include "engine/base/le.h"
#include "sluice/error.h"

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level;
    /* Errors reach the connectors through their own paths (each one line
     * naming topic and partition); librdkafka's own lines, connection
     * attempts included, only with SLUICE_KAFKA_DEBUG, as for the CLI. */
    if (getenv("SLUICE_KAFKA_DEBUG")) fprintf(stderr, "librdkafka %s: %s\n", fac, buf);
}

rd_kafka_conf_t *slk_conf_new(const char *bootstrap, const char *const *props, char *err,
                              size_t errlen)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof why)) goto fail;
    const char *debug = getenv("SLUICE_KAFKA_DEBUG");
    if (debug && *debug && rd_kafka_conf_set(conf, "debug", debug, why, sizeof why)) goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    for (; props && *props; props++) {
        const char *eq = strchr(*props, '=');
        if (!eq || eq == *props) {
            snprintf(err, errlen, "property '%s' is not key=value", *props);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        char key[256];
        size_t kl = (size_t)(eq - *props);
        if (kl >= sizeof key) kl = sizeof key - 1;
        memcpy(key, *props, kl);
        key[kl] = 0;
        if (rd_kafka_conf_set(conf, key, eq + 1, why, sizeof why)) goto fail;
    }
    return conf;
fail:
    snprintf(err, errlen, "librdkafka configuration: %s", why);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

char **slk_props_dup(const char *const *props)
{
    size_t n = 0, bytes = 0;
    for (const char *const *p = props; p && *p; p++, n++) bytes += strlen(*p) + 1;
    char **v = malloc((n + 1) * sizeof(*v) + bytes);
    if (!v) return NULL;
    char *s = (char *)(v + n + 1);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(props[i]) + 1;
        memcpy(s, props[i], l);
        v[i] = s;
        s += l;
    }
    v[n] = NULL;
    return v;
}

/* --- the offsets registry --------------------------------------------------------- */

typedef struct entry {
    const void *pipeline;
    char *group, *topic;
    int32_t partition;
    uint64_t chk;
    int64_t offset;
} entry;

typedef struct claim {
    const void *pipeline;
    char *group;
    int n;
} claim;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *entries;
static size_t n_entries, cap_entries;
static claim *claims;
static size_t n_claims, cap_claims;

static int same(const void *pa, const char *ga, const void *pb, const char *gb)
{
    return pa == pb && strcmp(ga, gb) == 0;
}

int slk_offsets_put(const void *pipeline, const char *group, uint64_t chk, const char *topic,
                    int32_t partition, int64_t next_offset)
{
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    /* The same partition at the same checkpoint: the newer position wins. */
    for (size_t i = 0; i < n_entries; i++) {
        entry *e = &entries[i];
        if (same(e->pipeline, e->group, pipeline, group) && e->chk == chk &&
            e->partition == partition && strcmp(e->topic, topic) == 0) {
            e->offset = next_offset;
            goto out;
        }
    }
    if (n_entries == cap_entries) {
        size_t cap = cap_entries ? cap_entries * 2 : 64;
        entry *v = realloc(entries, cap * sizeof(*v));
        if (!v) {
            rc = SL_ENOMEM;
            goto out;
        }
        entries = v;
        cap_entries = cap;
    }
    entry *e = &entries[n_entries];
    e->pipeline = pipeline;
    e->group = strdup(group);
    e->topic = strdup(topic);
    if (!e->group || !e->topic) {
        free(e->group);
        free(e->topic);
        rc = SL_ENOMEM;
        goto out;
    }
    e->partition = partition;
    e->chk = chk;
    e->offset = next_offset;
    n_entries++;
out:
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

rd_kafka_topic_partition_list_t *slk_offsets_take(const void *pipeline, const char *group,
                                                  uint64_t chk, int *oom)
{
    *oom = 0;
    rd_kafka_topic_partition_list_t *l = NULL;
    pthread_mutex_lock(&reg_lock);
    size_t keep = 0;
    for (size_t i = 0; i < n_entries; i++) {
        entry *e = &entries[i];
        if (!same(e->pipeline, e->group, pipeline, group) || e->chk > chk) {
            entries[keep++] = *e;
            continue;
        }
        if (!l && !(l = rd_kafka_topic_partition_list_new(16))) *oom = 1;
        if (l) {
            rd_kafka_topic_partition_t *t =
                rd_kafka_topic_partition_list_find(l, e->topic, e->partition);
            /* newest checkpoint per partition; the list keeps it in .opaque */
            if (!t) {
                t = rd_kafka_topic_partition_list_add(l, e->topic, e->partition);
                t->offset = e->offset;
                t->opaque = (void *)(uintptr_t)e->chk;
            } else if ((uintptr_t)t->opaque <= e->chk) {
                t->offset = e->offset;
                t->opaque = (void *)(uintptr_t)e->chk;
            }
        }
        free(e->group);
        free(e->topic);
    }
    n_entries = keep;
    pthread_mutex_unlock(&reg_lock);
    if (l)
        for (int i = 0; i < l->cnt; i++) l->elems[i].opaque = NULL;
    return l;
}

void slk_offsets_claim(const void *pipeline, const char *group, int on)
{
    pthread_mutex_lock(&reg_lock);
    size_t i = 0;
    while (i < n_claims && !same(claims[i].pipeline, claims[i].group, pipeline, group)) i++;
    if (i == n_claims && on) {
        if (n_claims == cap_claims) {
            size_t cap = cap_claims ? cap_claims * 2 : 8;
            claim *v = realloc(claims, cap * sizeof(*v));
            if (!v) goto out; /* the source then commits too: harmless */
            claims = v;
            cap_claims = cap;
        }
        char *g = strdup(group);
        if (!g) goto out;
        claims[n_claims++] = (claim){pipeline, g, 0};
    }
    if (i == n_claims) goto out;
    claims[i].n += on ? 1 : -1;
    if (claims[i].n <= 0) {
        free(claims[i].group);
        claims[i] = claims[--n_claims];
    }
out:
    pthread_mutex_unlock(&reg_lock);
}

int slk_offsets_claimed(const void *pipeline, const char *group)
{
    int r = 0;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < n_claims && !r; i++)
        if (same(claims[i].pipeline, claims[i].group, pipeline, group)) r = 1;
    pthread_mutex_unlock(&reg_lock);
    return r;
}

/* --- watermark markers (kafka_int.h draws the layout) ------------------------------- */

void slk_wm_pack(uint8_t out[SLK_WM_LEN], const slk_wm *m)
{
    memcpy(out, "SLWM", 4);
    sli_put_le(out + 4, (uint32_t)m->upstream, 4);
    sli_put_le(out + 8, (uint32_t)m->upstreams, 4);
    sli_put_le(out + 12, (uint64_t)m->wm, 8);
    out[20] = m->idle ? 1 : 0;
}

int slk_wm_unpack(const void *in, size_t len, slk_wm *m)
{
    const uint8_t *d = in;
    if (!d || len != SLK_WM_LEN || memcmp(d, "SLWM", 4) != 0 || d[20] > 1) return SL_ECORRUPT;
    m->upstream = (int32_t)sli_get_le(d + 4, 4);
    m->upstreams = (int32_t)sli_get_le(d + 8, 4);
    m->wm = (int64_t)sli_get_le(d + 12, 8);
    m->idle = d[20];
    if (m->upstreams <= 0 || m->upstream < 0 || m->upstream >= m->upstreams) return SL_ECORRUPT;
    return 0;
}

/* Errors that no retry heals (the topic is gone, the offset is out of
 * range, not authorized). */
int slk_err_fatal(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG: return 1;
    default: return 0;
    }
}
