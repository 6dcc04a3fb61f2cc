/*
 * sluice/kafka.h - Apache Kafka as a pipeline source and sink, on
 * librdkafka (public API). Works with any Kafka cluster and with sluice's
 * own server (`sluice broker serve`).
 *
 * Records are the built-in broker's (sluice/connectors.h): a source emits
 * key length, key, value, with the message timestamp as event time, so a
 * job can switch between sl_pipeline_broker() and sl_pipeline_kafka()
 * without touching its operators; sl_broker_rec_key() / _value() read them.
 *
 * Source. Each partition of the topic is a split (partition k goes to
 * instance k % P), so the engine owns each partition's watermark (bounded
 * out-of-orderness from the message timestamps), idleness and position
 * (the next offset; checkpoints store it and a restore seeks there).
 * Reads are read_committed unless the conf says otherwise. With a group id
 * the offsets of every completed checkpoint are committed to that group
 * (for lag tools; where a job resumes is the checkpoint's business), unless
 * a Kafka sink of the same pipeline sends them in its transaction
 * (consume-transform-produce, below).
 *
 * Sink. An idempotent producer (enable.idempotence); the partition of a
 * key is Kafka's murmur2 (as the Java client and sl_sink_broker place it),
 * unkeyed records go round-robin. By the job's guarantee:
 *
 *   none            records are produced as they come; the job fails on
 *                   the first record Kafka refuses; flushed at the end
 *   at-least-once   the same, flushed (every record acknowledged) at every
 *                   checkpoint barrier before the barrier passes
 *   exactly-once    one Kafka transaction per sink instance per checkpoint:
 *                   the records of a checkpoint are staged (in memory and in
 *                   the checkpoint), and produced and committed in one
 *                   transaction when the checkpoint completes, together with
 *                   a commit marker (the checkpoint id, as the offset of a
 *                   group named after the transactional id) and, when
 *                   `offsets_group` names the group of a Kafka source of
 *                   the same pipeline, that source's offsets at the
 *                   checkpoint (send_offsets_to_transaction). A restart
 *                   reads the marker to learn whether the checkpoint it
 *                   resumes from was committed, and commits its staged
 *                   records if not. The transactional id is
 *                   `transactional_id` + "-" + instance, so a restarted job
 *                   fences its predecessor (PRODUCER_FENCED stops it).
 *
 * Timestamps: the event time, as the record's timestamp. SL_TIME_NONE
 * lets the producer stamp it; a negative time fails the job. librdkafka
 * takes timestamp 0 for "now", so event time 0 goes out as the produce
 * time (the sink warns once). connectors/kafka/sink.c draws its snapshot.
 *
 * Properties: `props` is a NULL-terminated array of "key=value" strings
 * given to librdkafka after sluice's own settings (as kcat's -X), so they
 * win; an unknown key or bad value fails the job naming it. The builders
 * copy their conf, strings and arrays included; callbacks' ud are borrowed.
 *
 * Threads: librdkafka runs its own threads; every callback the confs name
 * runs on the instance's worker.
 */
#ifndef SLUICE_KAFKA_H
#define SLUICE_KAFKA_H

#include "sluice/export.h"
#include <stdint.h>
#include "sluice/connectors.h"
#include "sluice/operator.h"
#include "sluice/pipeline.h"
#include "sluice/source.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Source start: the group's committed offset of each partition, or the
 * beginning where it has none (needs group_id). SL_OFFSET_BEGINNING and
 * SL_OFFSET_END (sluice/broker.h) work as for the broker source. */
#define SL_KAFKA_OFFSET_COMMITTED (-1000)

/* A pipeline that owns one partition in a consumer group (below): of the
 * input topic, or of the group's repartition topic; opaque, valid while that
 * pipeline exists. */
typedef struct sl_kafka_task sl_kafka_task;
SL_API int32_t sl_kafka_task_partition(const sl_kafka_task *t);
/* The topic the task reads (the input, or the repartition topic). */
SL_API const char *sl_kafka_task_topic(const sl_kafka_task *t);
/* For a task of the input topic in a group that repartitions: the
 * repartition topic its sink writes; else NULL. */
SL_API const char *sl_kafka_task_repartition_topic(const sl_kafka_task *t);

typedef struct sl_kafka_source_conf {
    const char *bootstrap;     /* "host:port[,host:port...]"; required */
    const char *topic;         /* required */
    const char *group_id;      /* optional: commit checkpoints' offsets here */
    const char *const *props;  /* NULL-terminated "key=value" librdkafka properties */
    int64_t start;             /* offset, SL_OFFSET_BEGINNING (0 here means offset 0),
                                  SL_OFFSET_END or SL_KAFKA_OFFSET_COMMITTED */
    int until_end;             /* bounded: each partition ends where it ended when
                                  the job started (the last stable offset under
                                  read_committed), as kcat -e */
    const int32_t *partitions; /* optional: read only these partitions */
    int n_partitions;
    sl_line_parse_fn parse; /* optional, as sl_broker_source_conf's */
    void *ud;
    uint32_t max_len;
    int isolation; /* SL_READ_COMMITTED (0, default) or SL_READ_UNCOMMITTED */
    /* In a consumer group (sl_kafka_group): the task the pipeline was built
     * for. The source then reads the task's partition only, of the task's
     * topic, from the checkpoint the task restored (else the group's
     * committed offset, else the beginning), and follows it. Reading the
     * repartition topic, its watermark is the one its upstream tasks sent
     * through the topic (see repartition below): `wm` is not used. */
    const sl_kafka_task *task;

    /* The job fails when no broker has been reachable for this long (ms);
     * shorter outages (a broker restarting) are retried. 0: 60000; < 0:
     * never. Needs librdkafka's statistics (statistics.interval.ms, which
     * the source sets to 1000 unless props set it; 0 there disables this). */
    int64_t down_ms;
} sl_kafka_source_conf;

SL_API extern const sl_source sl_source_kafka;
/* width: 0 (the broker record layout) unless parse makes fixed-width records. */
SL_API sl_stream *sl_pipeline_kafka(sl_pipeline *p, const char *name,
                                    const sl_kafka_source_conf *conf, uint32_t width,
                                    const sl_watermark_conf *wm);

typedef struct sl_kafka_sink_conf {
    const char *bootstrap; /* required */
    const char *topic;     /* required; must exist */
    const char *const *props;
    sl_key_fn key; /* NULL: no key */
    void *key_ud;
    sl_format_fn format; /* NULL: the payload is the value */
    void *format_ud;
    /* Exactly-once: the base of the transactional ids (instance i uses
     * "ID-i"); NULL: "sluice-TOPIC-NODE". Two jobs writing one topic need
     * two ids; a job restarted with the same id fences the older run. */
    const char *transactional_id;
    /* Exactly-once: the group id of a Kafka source of the same pipeline;
     * its offsets at each checkpoint are committed in that checkpoint's
     * transaction (instance 0's), and the source then leaves them alone. */
    const char *offsets_group;
    /* In a consumer group: the task the pipeline was built for. The sink
     * then runs exactly-once with the task's transactional id, sends the
     * task's offsets with the group's generation, and puts the task's
     * checkpoint (its state) into the same transaction, in the group's
     * state topic: output, offsets and state commit together or not at all.
     * Writing the repartition topic, it also sends its input watermark to
     * every partition of it at each checkpoint (see repartition below). */
    const sl_kafka_task *task;
} sl_kafka_sink_conf;

/* conf: sl_kafka_sink_conf*, borrowed: it must outlive the pipeline. */
SL_API extern const sl_operator sl_sink_kafka;

/* --- scale-out: a consumer group of sluice processes ------------------------------ */

/* N processes started with the same conf share the topic's partitions
 * through Kafka's group protocol, as Kafka Streams' instances do. Each
 * input partition is a task: a pipeline of its own (built by `build` for
 * that partition, with its own checkpoints), so its keyed state is the
 * state of that partition's keys, which is correct when the job's key is
 * the input's partitioning key. At every checkpoint the task's sink commits,
 * in one Kafka transaction, its output, the partition's offset and the
 * task's checkpoint (one record, key the partition, in the compacted state
 * topic). A process that is given a partition (a member died, left, or
 * joined) restores the partition's latest committed checkpoint from the
 * state topic (never a local file: another process may have moved it on)
 * and resumes from it; the partition's transactional id fences the older
 * owner, whose next commit fails. Rebalances are eager: every task stops
 * with a final checkpoint, then the new assignment starts.
 *
 * State records are limited by the topic's and the client's message size
 * (the state topic is created with max.message.bytes 64 MiB).
 *
 * Repartitioning. A task's state is its partition's keys, so a job whose
 * key is not the input's partitioning key first sends its records through
 * a repartition topic keyed by the job's key, as Kafka Streams does. With
 * `repartition` set, the group runs two kinds of task over one membership:
 * each input partition runs a pipeline built by `repartition` (a source on
 * the input, stateless operators, a sink into the repartition topic keyed
 * by the job's key), and each repartition partition a pipeline built by
 * `build` (its source on the repartition topic, the stateful part, the
 * output). Both commit exactly-once, so every record crosses the topic
 * once. Watermarks cross it too: at each checkpoint an input task's sink
 * appends to every repartition partition a marker record (header
 * "sluice.watermark", connectors/kafka/sink.c draws it) with its input
 * watermark, or that its input is idle; a repartition task's watermark is
 * the minimum over the input tasks that are not idle (when the last one
 * goes idle, the largest of them, as Flink's valve), so a window closes
 * only when every active input partition has passed it, whichever member
 * ran it and however their records interleaved. The topic is created (as many
 * partitions as the input unless said) if missing; its records are not
 * purged after they were read. */
typedef struct sl_kafka_group sl_kafka_group;

/* Build the pipeline of task t: a source sl_pipeline_kafka() and a sink
 * sl_sink_kafka, both with .task = t, and any operators between. Return 0,
 * or a negative code (with sl_pipeline_error for a message). */
typedef int (*sl_kafka_build_fn)(sl_pipeline *p, const sl_kafka_task *t, void *ud);

typedef struct sl_kafka_group_conf {
    const char *bootstrap; /* required */
    const char *topic;     /* the input topic; required */
    const char *group_id;  /* required */
    const char *const *props;
    const char *state_topic;        /* NULL: "<group_id>.state"; made if missing */
    const char *work_dir;           /* local checkpoints; NULL: $TMPDIR/sluice-<group>-<pid> */
    int64_t checkpoint_interval_ms; /* 0: 1000 */
    int threads;                    /* per task; 0: 1 */
    int session_timeout_ms;         /* 0: 10000 */
    sl_kafka_build_fn build;
    void *ud;
    /* Lines about membership ("took partitions 0,3", "gave up ..."): NULL
     * writes them to stderr after `log_prefix`. */
    const char *log_prefix;
    /* Repartitioning (above): builds the tasks of the input's partitions;
     * `build` then builds those of the repartition topic's. */
    sl_kafka_build_fn repartition;
    const char *repartition_topic; /* NULL: "<group_id>.repartition" */
    int repartition_partitions;    /* made with this many; 0: the input's count */
    /* Told on the group's thread when a task's pipeline has started (up = 1)
     * and before it is freed (up = 0), with a name for it ("partition-3",
     * "repartition-3"): e.g. to show it on the job's endpoint
     * (sl_http_add_pipeline). NULL: not told. */
    void (*on_pipeline)(void *ud, const char *name, sl_pipeline *p, int up);
    void *on_pipeline_ud;
} sl_kafka_group_conf;

/* Copies conf (strings included). 0 or a negative code; *out is NULL on error. */
SL_API int sl_kafka_group_new(sl_kafka_group **out, const sl_kafka_group_conf *conf);
/* Join the group and run tasks until sl_kafka_group_stop() or a failure:
 * 0 after a stop (every task ended with a final checkpoint, committed),
 * else a negative code with sl_kafka_group_errmsg(). */
SL_API int sl_kafka_group_run(sl_kafka_group *g);
/* Ask a running group to stop (async-signal-safe). */
SL_API void sl_kafka_group_stop(sl_kafka_group *g);
SL_API const char *sl_kafka_group_errmsg(const sl_kafka_group *g);
SL_API void sl_kafka_group_free(sl_kafka_group *g);

#ifdef __cplusplus
}
#endif
#endif
