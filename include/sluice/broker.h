/*
 * sluice/broker.h - the built-in broker: a durable, partitioned, append-only
 * log in a directory (public API).
 *
 * A broker is a directory of topics; a topic has a fixed number of
 * partitions; a partition is a sequence of segment files holding record
 * batches, each record with an offset (0, 1, 2, ... per partition), a
 * timestamp (int64 ms since the Unix epoch), an optional key, an optional
 * value (a NULL value is a tombstone) and optional headers.
 *
 * Several processes may use one directory at once: each partition has at most
 * one writer at a time (an advisory file lock; a second writer gets SL_EBUSY),
 * and any number of readers, in any process, that follow the log as it grows.
 *
 * Errors: every function returns 0 or a negative SL_E... code (sluice/error.h);
 * the detailed message of the last failure is kept on the object it was called
 * on (sl_broker_errmsg(), sl_producer_errmsg(), sl_log_reader_errmsg(),
 * sl_group_member_errmsg()), like sqlite3_errmsg.
 *
 * Threads: a handle (broker, producer, reader, member) is used by one thread
 * at a time; different handles may be used by different threads. Objects made
 * from a broker (producers, readers, members) must be closed before it.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>

#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_broker sl_broker;
typedef struct sl_producer sl_producer;
typedef struct sl_txn_producer sl_txn_producer;
typedef struct sl_log_reader sl_log_reader;
typedef struct sl_group_member sl_group_member;

/* ---- limits and special values ---------------------------------------- */

#define SL_TOPIC_NAME_MAX         200  /* bytes, [A-Za-z0-9._-], not starting with '.' */
#define SL_PARTITIONS_MAX         4096 /* partitions per topic */
#define SL_PARTITION_ANY          (-1) /* producer: choose by key (murmur2) or round-robin */
#define SL_OFFSET_BEGINNING       (-2) /* reader: the first offset still in the log */
#define SL_OFFSET_END             (-1) /* reader: the next offset to be written */
#define SL_MAX_RECORD_BYTES_LIMIT (64 << 20)
/* Record timestamp meaning "no timestamp": the broker stamps the record with
 * the wall-clock time of the append (as Kafka's producer does for -1). Every
 * other value is a time: 0 is 1970-01-01T00:00:00Z, stored and read back as
 * 0. The engine uses the same value for "no event time". */
#define SL_TIMESTAMP_NONE INT64_MIN

/* ---- broker ------------------------------------------------------------ */

enum sl_broker_flags {
    SL_BROKER_CREATE = 1 /* create the directory (one level) if missing */
};

/* Open the broker directory dir. On success *out is a new handle that the
 * caller owns and releases with sl_broker_close(). On failure *out is still
 * set (unless memory ran out, then it is NULL) so that sl_broker_errmsg() can
 * say why; the caller must still sl_broker_close() it. */
SL_API int sl_broker_open(sl_broker **out, const char *dir, unsigned flags);
/* Flush and sync what this handle wrote, release its partition locks and free
 * it. Accepts NULL. Returns the first error met while flushing (the handle is
 * freed anyway). */
SL_API int sl_broker_close(sl_broker *b);
/* Message of the last failure on b ("" if none); valid until the next call on
 * b. Accepts NULL ("out of memory"). */
SL_API const char *sl_broker_errmsg(const sl_broker *b);
/* The directory b was opened on. */
SL_API const char *sl_broker_dir(const sl_broker *b);

/* ---- topics ------------------------------------------------------------ */

enum sl_fsync_policy {
    SL_FSYNC_NEVER = 0,    /* left to the operating system */
    SL_FSYNC_ALWAYS = 1,   /* fdatasync before each append returns */
    SL_FSYNC_INTERVAL = 2, /* at most fsync_interval_ms after the append */
};

typedef struct sl_topic_conf {
    int32_t partitions;             /* >= 1; default 1 */
    int32_t compact;                /* nonzero: keep the latest record per key */
    int64_t retention_bytes;        /* per partition; -1 (default) = unlimited */
    int64_t retention_ms;           /* by record timestamp; -1 (default) = unlimited */
    int32_t fsync;                  /* enum sl_fsync_policy; default SL_FSYNC_NEVER */
    int64_t fsync_interval_ms;      /* for SL_FSYNC_INTERVAL; default 1000 */
    int64_t segment_bytes;          /* roll the active segment at this size; default 64 MiB */
    int64_t segment_ms;             /* ... or this long after its first append; 7 days */
    int64_t tombstone_retention_ms; /* compacted topics: keep tombstones this long; default 1 day */
    int32_t max_record_bytes;       /* largest encoded key+value+headers; default 1 MiB */
} sl_topic_conf;

/* Fill conf with the defaults above. */
SL_API void sl_topic_conf_init(sl_topic_conf *conf);

/* Create a topic. conf NULL means the defaults; conf is copied, not kept.
 * The topic appears atomically: fully created or not at all. Names starting
 * with "__" are reserved for internal topics (SL_EINVAL). */
SL_API int sl_topic_create(sl_broker *b, const char *name, const sl_topic_conf *conf);
/* Delete a topic and all its data. SL_EBUSY if a writer holds one of its
 * partitions (in this or another process); SL_ENOENT if there is no such
 * topic. */
SL_API int sl_topic_delete(sl_broker *b, const char *name);
/* List topic names, sorted. On success *names is an array of *count strings
 * that the caller owns and frees with sl_topic_list_free(). */
SL_API int sl_topic_list(sl_broker *b, char ***names, size_t *count);
SL_API void sl_topic_list_free(char **names, size_t count);

typedef struct sl_partition_info {
    int32_t partition;
    int64_t first_offset; /* first offset still stored (== next_offset when empty) */
    int64_t next_offset;  /* offset the next record will get */
    int64_t size_bytes;   /* bytes of segment files */
    int32_t segments;     /* number of segments */
    /* The last stable offset: the first offset of the earliest transaction
     * still open, else next_offset; read_committed readers stop there. */
    int64_t last_stable_offset;
} sl_partition_info;

typedef struct sl_topic_info {
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_topic_conf conf;
    int32_t partition_count;
    sl_partition_info *partitions; /* partition_count entries */
} sl_topic_info;

/* Describe a topic. On success *info is a new object that the caller owns and
 * frees with sl_topic_info_free(). */
SL_API int sl_topic_describe(sl_broker *b, const char *name, sl_topic_info **info);
SL_API void sl_topic_info_free(sl_topic_info *info);

/* Run retention (delete whole old segments) and, for compacted topics,
 * compaction on every partition of the topic now. Takes each partition's
 * writer lock (SL_EBUSY if another process holds it; partitions this handle
 * writes to are cleaned in place). now_ms 0 means the current time. */
SL_API int sl_topic_clean(sl_broker *b, const char *name, int64_t now_ms);

/* What sl_topic_repair dropped from one partition. */
typedef struct sl_repair_info {
    int32_t partition;
    int64_t segment;              /* base offset of the segment cut; -1: nothing dropped */
    int64_t byte;                 /* where it was cut (bytes before it are kept) */
    int64_t bytes_dropped;        /* from byte to the end of the segment */
    int64_t first_offset_dropped; /* the partition's next offset after the repair */
    int64_t last_offset_dropped;  /* last offset of the valid batches dropped, -1 if none */
    /* Nonzero: the offsets from first_offset_dropped were already gone (a
     * segment deleted or truncated behind the writer's back; up to
     * last_offset_dropped, or an unknown number if that is -1); new records
     * take their numbers from now on. */
    int32_t missing;
} sl_repair_info;

/* Repair one partition whose recovery refused to go on: a corrupt batch in
 * the active segment followed by valid batches makes every writer fail with
 * SL_ECORRUPT (nothing is truncated); this cuts the segment at the corrupt
 * batch, dropping it and everything after it, and fills info (may be NULL)
 * with what was dropped. A partition with nothing to repair is left as it is
 * (a torn tail is cut, as any writer's recovery does). Takes the partition's
 * writer lock (SL_EBUSY if another writer holds it). */
SL_API int sl_topic_repair(sl_broker *b, const char *name, int32_t partition, sl_repair_info *info);

/* Kafka's default partitioner for a key: toPositive(murmur2(key)) % npartitions
 * with seed 0x9747b28c, so a key lands in the same partition number in both. */
SL_API int32_t sl_partition_for_key(const void *key, size_t len, int32_t npartitions);
/* Kafka's murmur2 itself (as a signed 32-bit int, as Java returns it). */
SL_API int32_t sl_murmur2(const void *key, size_t len);

/* ---- records ----------------------------------------------------------- */

typedef struct sl_record_header {
    const char *key;
    size_t key_len;
    const void *value; /* NULL = null value */
    size_t value_len;
} sl_record_header;

typedef struct sl_record {
    const void *key; /* NULL = no key */
    size_t key_len;
    const void *value; /* NULL = tombstone */
    size_t value_len;
    int64_t timestamp; /* ms since the epoch, >= 0; SL_TIMESTAMP_NONE = time of the append */
    const sl_record_header *headers;
    size_t header_count;
} sl_record;

/* Append n records to one partition as one batch, synchronously: returns once
 * the topic's fsync policy is met. The first record gets *base_offset (may be
 * NULL), the others the following offsets. Takes the partition's writer lock
 * on first use and keeps it until sl_broker_close() (SL_EBUSY if another
 * writer holds it). The records are copied; the caller keeps them. */
SL_API int sl_log_append(sl_broker *b, const char *topic, int32_t partition, const sl_record *recs,
                         size_t n, int64_t *base_offset);

/* ---- idempotent and transactional producers ---------------------------- */

/* Who wrote a batch, as in Kafka's record batch v2: a producer id, its epoch
 * and the sequence number of the batch's first record (record i of the
 * batch has base_sequence + i; sequences count per partition from 0 in each
 * epoch). */
typedef struct sl_producer_ref {
    int64_t producer_id;   /* >= 0 */
    int16_t epoch;         /* >= 0 */
    int32_t base_sequence; /* >= 0 */
} sl_producer_ref;

/* sl_log_append for an idempotent producer: the partition remembers each
 * producer id's epoch and last batch (in the log itself, so it survives a
 * crash), and
 * - a retry of the producer's last batch (same id, epoch, base sequence and
 *   record count) is acknowledged (0, *base_offset = where it was written)
 *   but not written twice;
 * - an epoch older than one the partition has seen for the id fails with
 *   SL_EFENCED;
 * - a base sequence other than the next one (0 in a new epoch) fails with
 *   SL_ERANGE (out-of-order sequence; nothing written).
 * A producer id the partition knows nothing of (new, or whose last batch is
 * in an older segment than the active one) is accepted at any sequence. */
SL_API int sl_log_append_idempotent(sl_broker *b, const char *topic, int32_t partition,
                                    const sl_producer_ref *producer, const sl_record *recs,
                                    size_t n, int64_t *base_offset);

/* A transactional producer: appends to one topic under a producer id and
 * epoch that belong to transactional_id (1..SL_TOPIC_NAME_MAX bytes, any
 * except NUL). Opening one allocates the id's producer id the first time and
 * bumps its epoch every time, durably (the broker directory's
 * __transactions.state file, written atomically, under a file lock, so
 * several processes may open producers), which fences every older producer
 * of the same transactional_id: their appends then fail with SL_EFENCED.
 * On success *out is a new producer that the caller owns and releases with
 * sl_txn_producer_close(); on failure *out is NULL and b's message says
 * why. */
SL_API int sl_txn_producer_open(sl_txn_producer **out, sl_broker *b, const char *topic,
                                const char *transactional_id);
/* Append n records to one partition as one batch with the producer's next
 * sequence number in that partition (sl_log_append_idempotent), after
 * checking that no newer epoch has been opened (SL_EFENCED). A failed
 * append may be retried with the same records: it is written once. */
SL_API int sl_txn_producer_append(sl_txn_producer *p, int32_t partition, const sl_record *recs,
                                  size_t n, int64_t *base_offset);
/* End the open transaction (begun by the first append since the producer
 * was opened or its last transaction ended): write a COMMIT (or ABORT)
 * marker, a control batch, to every partition it appended to; readers skip
 * markers, and read_committed readers return an aborted transaction's
 * records never and a committed one's once its marker is written.
 * SL_EFENCED if a newer epoch was opened. On another failure the partitions
 * not yet marked stay in the transaction and the call may be retried. With
 * no open transaction, does nothing. */
SL_API int sl_txn_producer_commit(sl_txn_producer *p);
SL_API int sl_txn_producer_abort(sl_txn_producer *p);
/* Transactions of p begun from now on are aborted by the broker once they
 * have been open longer than timeout_ms (> 0; default
 * SL_TXN_TIMEOUT_DEFAULT_MS): by the next sl_txn_producer_open of any
 * transactional id of the directory, or by sl_txn_abort_expired(). Aborting
 * bumps the id's epoch, so p is then fenced (SL_EFENCED). */
#define SL_TXN_TIMEOUT_DEFAULT_MS (15 * 60 * 1000)
SL_API int sl_txn_producer_set_timeout(sl_txn_producer *p, int64_t timeout_ms);
/* Abort every transaction of the directory that has been open longer than
 * its timeout at now_ms (0: the current wall-clock time): bump its
 * transactional id's epoch (fencing its producer) and write ABORT markers to
 * its partitions. A partition that another process writes to (SL_EBUSY) is
 * left for a later call. A commit that the Kafka-protocol server had made
 * durable but not finished (a crash) is completed instead. Returns the
 * number of transactions ended, or a negative code (message on b).
 * sl_txn_producer_open calls it too, and the server once a second. */
SL_API int sl_txn_abort_expired(sl_broker *b, int64_t now_ms);
/* Commit, after a crash, the transaction that producer (producer_id, epoch) of transactional_id
 * left open on topic, without opening a producer (no epoch bump): writes a COMMIT marker to every
 * partition where that producer still has an open transaction. Returns 0 when it wrote at least one
 * marker, 1 when nothing of that producer was open (already committed or aborted; a transactional id
 * whose epoch is now newer than `epoch` always gives 1: its open transaction was aborted by the
 * newer open), or a negative code (message on b). */
SL_API int sl_txn_recover_commit(sl_broker *b, const char *topic, const char *transactional_id,
                                 int64_t producer_id, int16_t epoch);
/* The producer id and epoch this producer writes with. */
SL_API int64_t sl_txn_producer_id(const sl_txn_producer *p);
SL_API int16_t sl_txn_producer_epoch(const sl_txn_producer *p);
/* Free. Accepts NULL. */
SL_API void sl_txn_producer_close(sl_txn_producer *p);
SL_API const char *sl_txn_producer_errmsg(const sl_txn_producer *p);

/* ---- producer: buffered appends ---------------------------------------- */

/* A producer buffers records per partition and writes each partition's
 * buffer as one batch when it is full, on sl_producer_flush() and on close.
 * On success *out is a new producer that the caller owns and releases with
 * sl_producer_close(). On failure *out is NULL and b's message says why. */
SL_API int sl_producer_open(sl_producer **out, sl_broker *b, const char *topic);
/* Queue one record (copied). partition SL_PARTITION_ANY chooses the partition
 * by murmur2 of the key, or round-robin without a key: over the partitions
 * that no other process writes (one writer per partition), waiting for one
 * only when all have a writer. *offset (may be NULL)
 * gets the record's offset; the record is durable per the topic's policy only
 * after the next successful sl_producer_flush(). */
SL_API int sl_producer_send(sl_producer *p, int32_t partition, const sl_record *rec,
                            int64_t *offset);
/* Write all buffered records; returns once the fsync policy is met. */
SL_API int sl_producer_flush(sl_producer *p);
/* Flush, then free. Accepts NULL. Returns the flush's result. */
SL_API int sl_producer_close(sl_producer *p);
SL_API const char *sl_producer_errmsg(const sl_producer *p);

/* ---- readers ----------------------------------------------------------- */

typedef struct sl_message {
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* as appended, or the append time for SL_TIMESTAMP_NONE */
    const void *key;   /* NULL if none */
    size_t key_len;
    const void *value; /* NULL for a tombstone */
    size_t value_len;
    const sl_record_header *headers;
    size_t header_count;
} sl_message;

/* What a reader returns of transactional records (as Kafka's
 * isolation.level). read_committed (the default) returns a transaction's
 * records only once it has committed, never those of an aborted one, and
 * stops at the last stable offset (the first offset of the earliest
 * transaction still open: later records, transactional or not, wait until
 * it ends). read_uncommitted returns every record as soon as it is written.
 * Both skip the markers. Records of non-transactional producers cost the
 * same in both. A reader decides from the log alone (it reads ahead to a
 * transaction's marker), so it works in any process and after any crash.
 * SL_OFFSET_END is the last stable offset under read_committed (as Kafka's
 * ListOffsets answers it), so that a transaction open at the end is read
 * once it commits; the log end under read_uncommitted (a reader opened at
 * SL_OFFSET_END moves there when its isolation is set before it reads).
 * One limit: a transaction begun before the reader's start position does
 * not hold back the non-transactional records after that position (Kafka
 * would hold them until it ends; the records returned are the same). */
enum sl_isolation { SL_READ_COMMITTED = 0, SL_READ_UNCOMMITTED = 1 };

/* Open a reader of one partition at offset (or SL_OFFSET_BEGINNING /
 * SL_OFFSET_END), with isolation SL_READ_COMMITTED. A reader takes no lock and may live in any process. On
 * success *out is a new reader that the caller owns and releases with
 * sl_log_reader_close(); on failure *out is NULL and b's message says why. */
SL_API int sl_log_reader_open(sl_log_reader **out, sl_broker *b, const char *topic,
                              int32_t partition, int64_t offset);
/* Next record. Waits up to timeout_ms (0: do not wait; -1: forever) for new
 * data, sleeping on directory change notifications (inotify), not polling.
 * Returns 0 with *msg filled (its pointers stay valid until the next call on
 * r), SL_EAGAIN when the time ran out, SL_ECORRUPT when the next batch fails
 * its checks (in a sealed segment, or followed by valid batches in the active
 * one) or offsets are missing between segments (the message names topic,
 * partition, offset, segment and byte; the reader stays there until
 * sl_log_reader_seek()). Records removed by compaction or retention are
 * skipped: offsets may jump there, and only there. */
SL_API int sl_log_reader_next(sl_log_reader *r, sl_message *msg, int timeout_ms);
/* Did r jump over offsets that retention deleted before r read them (a
 * following reader that fell behind; not a corruption)? Returns 1 and sets
 * [*from, *to) to the offsets skipped since the last call (from and to may
 * be NULL), or 0. Compacted topics skip removed records without a report. */
SL_API int sl_log_reader_skipped(sl_log_reader *r, int64_t *from, int64_t *to);
/* Set r's isolation (enum sl_isolation), from its current position on.
 * SL_EINVAL for another value. */
SL_API int sl_log_reader_set_isolation(sl_log_reader *r, int isolation);
/* Move to offset (or SL_OFFSET_BEGINNING / SL_OFFSET_END). */
SL_API int sl_log_reader_seek(sl_log_reader *r, int64_t offset);
/* The offset the next record returned will have at least. */
SL_API int64_t sl_log_reader_position(const sl_log_reader *r);
/* A file descriptor that becomes readable when the partition may have new
 * data (for poll/epoll over several readers); -1 if notifications are not
 * available. Owned by the reader. The first call sets up the notification:
 * call it before the last sl_log_reader_next() that found no data, or poll
 * with a timeout. */
SL_API int sl_log_reader_fd(sl_log_reader *r);
SL_API void sl_log_reader_close(sl_log_reader *r);
SL_API const char *sl_log_reader_errmsg(const sl_log_reader *r);

/* ---- consumer groups ---------------------------------------------------- */

/* Store group's committed offset for (topic, partition) durably (fsync) in the
 * internal compacted topic __consumer_offsets. Safe from several processes. */
SL_API int sl_group_commit(sl_broker *b, const char *group, const char *topic, int32_t partition,
                           int64_t offset);
/* Fetch the last committed offset; SL_ENOENT if the group never committed
 * one for this partition. */
SL_API int sl_group_fetch(sl_broker *b, const char *group, const char *topic, int32_t partition,
                          int64_t *offset);

/* Every committed offset of group (NULL: of every group), one entry per
 * (group, topic, partition), read from __consumer_offsets in one pass (for
 * monitoring: its cost grows with that topic). *out is the caller's, freed
 * with sl_group_offsets_free(); NULL when *count is 0. */
typedef struct sl_group_offset {
    char group[SL_TOPIC_NAME_MAX + 1];
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    int64_t offset;
} sl_group_offset;
SL_API int sl_group_offsets(sl_broker *b, const char *group, sl_group_offset **out, size_t *count);
SL_API void sl_group_offsets_free(sl_group_offset *v);

/* Join group as a consumer of topic. Membership is a lock file held for the
 * member's lifetime; see sl_group_member_assignment(). On success *out is a
 * new member that the caller owns and releases with sl_group_leave(); on
 * failure *out is NULL and b's message says why. */
SL_API int sl_group_join(sl_group_member **out, sl_broker *b, const char *group, const char *topic);
/* The partitions this member should consume now: with the live members
 * ranked 0..n-1 by slot, member i takes the partitions p with p % n == i.
 * Recomputed on each call (members come and go). Writes up to cap partition
 * numbers to parts and their total to *count. */
SL_API int sl_group_member_assignment(sl_group_member *m, int32_t *parts, size_t cap,
                                      size_t *count);
/* Leave the group (releases the membership lock). Accepts NULL. */
SL_API void sl_group_leave(sl_group_member *m);
SL_API const char *sl_group_member_errmsg(const sl_group_member *m);

#ifdef __cplusplus
}
#endif
#endif
