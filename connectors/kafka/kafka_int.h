/*
 * connectors/kafka/kafka_int.h - what the Kafka source and sink share
 * (private to connectors/kafka/).
 *
 * 1. slk_conf_new(): a librdkafka conf with sluice's settings, then the
 *    user's "key=value" properties (they win). librdkafka's log lines are
 *    dropped (errors come back through the connectors' own one-line
 *    messages); SLUICE_KAFKA_DEBUG=ctx,ctx prints them and turns on
 *    librdkafka's debug contexts, as for the CLI's -b commands.
 *
 * 2. The offsets registry, for consume-transform-produce. A Kafka source
 *    with a group id records, at each checkpoint barrier (its position()
 *    with sl_ctx_checkpoint_id() != 0), the next offset of each partition
 *    it reads; a Kafka sink of the same pipeline with that group as its
 *    offsets_group takes them in its snapshot of the same checkpoint (the
 *    barrier passed every source before it reached the sink) and sends
 *    them in the checkpoint's transaction. Entries are keyed by (pipeline,
 *    group), so several pipelines of one process (one per partition, say)
 *    never see each other's offsets. A sink "claims" the group at open, and
 *    the source then leaves committing to it. Process-wide, one mutex; a
 *    handful of calls per checkpoint, never per record.
 */
#ifndef SLUICE_KAFKA_INT_H
#define SLUICE_KAFKA_INT_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include "sluice/kafka.h"

/* A conf with bootstrap.servers = bootstrap, sluice's defaults and props
 * (NULL-terminated "key=value") applied last. NULL with a one-line err
 * naming the bad property. The caller owns the conf (rd_kafka_new takes it). */
rd_kafka_conf_t *slk_conf_new(const char *bootstrap, const char *const *props, char *err,
                              size_t errlen);

/* A NULL-terminated copy of props in one allocation (free() it), or NULL
 * when out of memory; NULL props give an empty array. */
char **slk_props_dup(const char *const *props);

/* Errors that no retry heals (the topic is gone, the offset is out of
 * range, not authorized, a fatal client error): every other error of a
 * call is retried while the caller's time lasts (kconf.c). */
int slk_err_fatal(rd_kafka_resp_err_t e);

/* Record partition's next offset at checkpoint chk. Returns 0 or SL_ENOMEM. */
int slk_offsets_put(const void *pipeline, const char *group, uint64_t chk, const char *topic,
                    int32_t partition, int64_t next_offset);
/* The offsets recorded for (pipeline, group) at checkpoints <= chk, newest
 * per partition, as a new list (the caller destroys it); entries <= chk are
 * dropped. NULL when there are none (or out of memory: *oom set). */
rd_kafka_topic_partition_list_t *slk_offsets_take(const void *pipeline, const char *group,
                                                  uint64_t chk, int *oom);
/* A sink sends (pipeline, group)'s offsets in its transactions: claim 1 at
 * open, 0 at close. */
void slk_offsets_claim(const void *pipeline, const char *group, int claim);
int slk_offsets_claimed(const void *pipeline, const char *group);

/* 3. Tasks of a consumer group (group.c). A task is one input partition
 *    run as a pipeline of its own; its source and sink read these fields. */
struct sl_kafka_task {
    int32_t partition;
    const char *bootstrap, *topic, *group_id, *state_topic;
    const char *const *props;
    const char *chk_dir; /* the task's checkpoint directory */
    char txid[320];      /* the sink's transactional id (group.c names it) */
    char state_key[320]; /* the key of its records in the state topic */
    int32_t state_partition;
    /* a task of the input in a repartitioning group: the topic its sink
     * sends watermark markers to; else NULL */
    const char *repartition;
    /* in a repartitioning group: the input's partition count (the input
     * tasks, which send markers); else 0 */
    int32_t upstreams;
    int reads_repartition; /* a task of the repartition topic */
    sl_kafka_group *g;
};

/* The group's current member id and generation, for
 * send_offsets_to_transaction (a zombie of an older generation is then
 * refused by the coordinator). A new object the caller destroys. */
rd_kafka_consumer_group_metadata_t *slk_task_group_metadata(const sl_kafka_task *t);

/* 1 when the task's group took its partitions away (its session expired):
 * its sink must not commit anything more. */
int slk_task_lost(const sl_kafka_task *t);

/* The state record of checkpoint id of a task: every file of
 * chk_dir/chk-<id>/, packed (group.c draws the layout). Appends to out;
 * 0, or a negative code with err set. */
int slk_state_pack(const char *chk_dir, uint64_t id, sl_buf *out, char *err, size_t errlen);

/* 4. Watermark markers (repartitioning, sluice/kafka.h). At each
 *    checkpoint an input task's sink appends to every partition of the
 *    repartition topic a record with no key, an empty value and the header
 *    SLK_WM_HEADER, whose value is (little-endian):
 *
 *      offset  size  field
 *      0       4     magic "SLWM"
 *      4       4     upstream task: the input partition it reads
 *      8       4     upstream tasks: the input's partition count
 *      12      8     its input watermark (SL_TIME_MIN: none yet, SL_TIME_MAX:
 *                    its input ended)
 *      20      1     1: its input is idle (the watermark holds no promise), else 0
 *
 *    A repartition task's source keeps the last marker of each upstream
 *    task (the watermarks in its position too) and announces the minimum
 *    over those not idle as its split's watermark (source.c: marker()). */
#define SLK_WM_HEADER "sluice.watermark"
#define SLK_WM_LEN    21
typedef struct slk_wm {
    int32_t upstream, upstreams;
    int64_t wm;
    int idle;
} slk_wm;
void slk_wm_pack(uint8_t out[SLK_WM_LEN], const slk_wm *m);
/* 0, or SL_ECORRUPT for bytes that are not a marker. */
int slk_wm_unpack(const void *in, size_t len, slk_wm *m);

/* The Kafka sources' consumer handles alive in the process (one per source
 * instance that has splits): for tests. */
int slk_source_handles(void);

#endif
