/*
 * connectors/broker/broker_int.h - the broker handle's insides, shared by
 * broker.c, reader.c and group.c (private header).
 */
#ifndef SLUICE_BROKER_BROKER_INT_H
#define SLUICE_BROKER_BROKER_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "connectors/broker/log.h"
#include "sluice/broker.h"

#define SLB_OFFSETS_TOPIC "__consumer_offsets"

/* A topic this handle writes to: its partitions' writers, opened lazily. */
typedef struct slb_wtopic {
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_topic_conf conf;
    slb_plog **parts; /* conf.partitions entries, NULL until first write */
    uint32_t rr;      /* round-robin cursor for keyless records */
} slb_wtopic;

/* Threads: the handle is used by one application thread at a time; the
 * flusher thread (fsync=INTERVAL topics) reads topics[] under mu, and the
 * application thread changes topics[] only under mu. */
struct sl_broker {
    char *dir;
    char errmsg[SLB_ERRLEN];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slb_wtopic **topics;
    size_t ntopics;
    bool flusher_running;
    bool stop;
    pthread_t flusher;
};

/* Check a topic name; internal_ok admits names starting with "__". */
int slb_check_name(const char *what, const char *name, bool internal_ok, char *err);
/* Read the topic's metadata file. SL_ENOENT: no such topic. */
int slb_topic_load(const sl_broker *b, const char *name, sl_topic_conf *conf, char *err);
void slb_part_dir(char *buf, size_t cap, const sl_broker *b, const char *topic, int32_t p);
/* sl_log_append_idempotent with batch attributes (SLB_ATTR_TRANSACTIONAL),
 * for transactional producers (txn.c). */
int slb_log_append(sl_broker *b, const char *topic, int32_t partition, const sl_producer_ref *pr,
                   uint8_t txn_attrs, const sl_record *recs, size_t n, int64_t *base_offset);
/* Write a transaction marker (SLB_MARKER_*) to a partition
 * (slb_plog_append_marker: with only_open, 1 and nothing written when the
 * producer has no open transaction there). With keep, or when b writes the
 * partition already, through b's writer of it (its lock kept until
 * sl_broker_close); else through a writer opened for this marker alone
 * (SL_EBUSY when another writer holds the partition). */
int slb_log_append_marker(sl_broker *b, const char *topic, int32_t partition,
                          const sl_producer_ref *pr, int type, bool only_open, bool keep,
                          int64_t *offset);
/* ---- the Kafka-protocol server's transaction coordinator (txn.c) ----
 * Over the same state file as sl_txn_producer (txn.c's top comment), with a
 * transaction's partitions on any topics and its group offsets. Each call
 * takes the state lock; errors: SL_ENOENT (the transactional id has no
 * entry, or another producer id), SL_EFENCED (another epoch), SL_ESTATE (no
 * open transaction, or the partition is not in it), or an I/O error; the
 * message is in b's. */
typedef struct slb_txn_offset {
    const char *topic;
    int32_t partition;
    int64_t offset;
} slb_txn_offset;
typedef struct slb_txn_view slb_txn_view;
/* InitProducerId: tid NULL allocates a fresh producer id (epoch 0); else
 * tid's id with its epoch bumped (fencing older epochs, aborting their open
 * transaction); timeout_ms > 0 becomes its transaction timeout. */
int slb_txn_init(sl_broker *b, const char *tid, int64_t timeout_ms, int64_t *pid, int16_t *epoch);
/* AddPartitionsToTxn (n 0: AddOffsetsToTxn): begin the transaction if none
 * is open, add (topic, parts[i]). */
int slb_txn_add_partitions(sl_broker *b, const char *tid, int64_t pid, int16_t epoch,
                           const char *topic, const int32_t *parts, size_t n);
/* TxnOffsetCommit: note group offsets, committed if the transaction is. */
int slb_txn_add_offsets(sl_broker *b, const char *tid, int64_t pid, int16_t epoch,
                        const char *group, const slb_txn_offset *offs, size_t n);
/* EndTxn: commit (prepared durably first) or abort the open transaction. */
int slb_txn_end(sl_broker *b, const char *tid, int64_t pid, int16_t epoch, bool commit);
/* Produce of a transactional batch: 0 if (topic, partition) is in tid's
 * open transaction of (pid, epoch). *v caches the state file (allocated on
 * first use; slb_txn_view_free). */
int slb_txn_check_produce(sl_broker *b, slb_txn_view **v, const char *tid, int64_t pid,
                          int16_t epoch, const char *topic, int32_t partition);
/* Make the next check read the file again (after a change through b: the
 * file's identity alone may not show a change within one clock tick). */
void slb_txn_view_reset(slb_txn_view *v);
void slb_txn_view_free(slb_txn_view *v);

/* Create a topic (internal topics too). */
int slb_topic_create(sl_broker *b, const char *name, const sl_topic_conf *conf, bool internal);
/* The topic as b writes it: its configuration in *conf (may be NULL; valid
 * while b knows the topic) and, for partition >= 0, the partition's writer
 * in *out, opened and locked on first use (SL_EBUSY: another writer holds
 * it; SL_ERANGE: no such partition; SL_ENOENT: no such topic). The protocol
 * server reads through it (rawlog.c). */
int slb_broker_plog(sl_broker *b, const char *topic, int32_t partition, slb_plog **out,
                    const sl_topic_conf **conf);

#endif
