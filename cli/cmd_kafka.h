/*
 * cli/cmd_kafka.h - `sluice produce|consume|topic -b HOST:PORT`: the broker
 * commands against a Kafka server (a real Kafka, or sluice's own server)
 * through librdkafka (cli/cmd_kafka.c). cli/cmd_broker.c parses the flags as
 * for a directory and hands over here when -b (--bootstrap) was given; the
 * output is the same, printed by the same formatter (cli/msgfmt.h).
 *
 * Each returns the exit status: 0 ok, 1 runtime failure (one line
 * "sluice <cmd>: <problem>" on stderr), 2 usage error.
 */
#ifndef SLUICE_CLI_CMD_KAFKA_H
#define SLUICE_CLI_CMD_KAFKA_H

#include <stdbool.h>
#include <stdint.h>

#include <sluice/sluice.h>

/* Seconds within which an unreachable bootstrap broker is reported. */
#define CLI_KAFKA_CONNECT_TIMEOUT_S 10

/* Lines of stdin to topic: -K sep (NULL: no keys), partition (< 0: by key,
 * Kafka's murmur2; unkeyed lines: a random partition). */
int cli_kafka_produce(const char *bootstrap, const char *topic, const char *sep, int32_t partition);

typedef struct cli_kafka_consume_opts {
    int32_t partition;   /* < 0: all (or the group's share with group) */
    long long offset;    /* SL_OFFSET_BEGINNING, SL_OFFSET_END, an offset, or -N with rel */
    bool rel;            /* offset is -N: N records before the end */
    const char *group;   /* NULL: no group, nothing committed */
    bool exit_at_end;    /* -e */
    long long count;     /* -c; < 0: no limit */
    const char *fmt;     /* -f, checked */
    bool read_committed; /* --isolation */
} cli_kafka_consume_opts;

int cli_kafka_consume(const char *bootstrap, const char *topic, const cli_kafka_consume_opts *o);

/* sub: "list", "describe", "create" or "delete" (the caller refuses the
 * others). create: conf's partitions, compact, retention and segment bytes
 * become topic configs; replication is the replication factor. */
int cli_kafka_topic(const char *bootstrap, const char *sub, const char *name,
                    const sl_topic_conf *conf, int replication);

/* `sluice group describe GROUP --topic T -b HOST`: per partition of T the
 * group's committed offset, the end offset and the lag, then the total lag
 * (as kafka-consumer-groups --describe). */
int cli_kafka_group_describe(const char *bootstrap, const char *group, const char *topic);

#endif
