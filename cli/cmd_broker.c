/*
 * cli/cmd_broker.c - the broker commands of the sluice CLI:
 *
 *   sluice topic create NAME [--partitions N] [--compact] [--retention-bytes B]
 *                            [--retention-ms T] [--fsync always|INTERVAL_MS|never]
 *                            [--segment-bytes B]
 *   sluice topic list | describe NAME | delete NAME | clean NAME
 *   sluice topic repair NAME [-p PARTITION]   cut a corrupt active segment, or give
 *                                             up offsets whose segment is gone
 *   sluice produce TOPIC [-K SEP] [-p PARTITION]          lines from stdin
 *                        [--transactional-id ID [--transaction-timeout MS]]
 *   sluice consume TOPIC [-p PARTITION] [-o beginning|end|OFFSET|-N] [-G GROUP]
 *                        [-e] [-c COUNT] [-f FORMAT]
 *                        [--isolation read_committed|read_uncommitted]
 *
 * All take --dir DIR (default $SLUICE_DIR, else ./sluice-data). They speak
 * like kcat where they can: -K splits key and value at the first SEP, -f takes
 * kcat's format tokens, -e exits at the end of the log, -o -N starts N records
 * before the end.
 *
 * Options are parsed by getopt_long: --dir=DIR or --dir DIR, bundled short
 * options with an attached value as kcat takes them (-eo beginning, -c5),
 * operands anywhere, `--` ends options.
 *
 * Errors: every bad argument is reported as one line "sluice <cmd>: <problem>"
 * on stderr, exit status 2, before anything is changed; runtime failures exit
 * with 1. `--dir ""` is a bad argument (not the default directory). A name
 * the broker refuses (a topic or group name with a character outside
 * [A-Za-z0-9._-], empty, too long, reserved) is a usage error too: the broker
 * says so with SL_EINVAL (exit_for), checked before any file is written,
 * except that `topic create` into a directory that did not exist may have
 * made it: it is removed again (rmdir: only if still empty). produce is a
 * stream: a bad line (too large, no key for a compacted topic) stops it
 * there, after the lines before it were produced.
 *
 * A closed standard output (`sluice consume t | head -1`) ends consume
 * quietly with status 0; any other write error (a full disk: ENOSPC) ends it
 * with one line naming the error and status 1. Either way, with -G it
 * commits, per partition, only the position at the last point where
 * everything printed before had been written (stdout flushed without error;
 * cpart.written): records the reader may not have received are never
 * committed, so the group reads them again (at least once, never lost).
 * stdout is flushed after every pass over the partitions (at most a burst of
 * 4096 records each), so a failure loses the progress of one pass at most.
 *
 * Transactions: produce --transactional-id writes all of stdin in one
 * transaction, committed at its end (aborted after a bad line: nothing of
 * the run is visible to read_committed readers); each chunk read from stdin
 * is appended as one batch per partition. consume reads read_committed by
 * default (stops at the last stable offset; -e exits there). topic describe
 * and consume first abort the transactions of the directory that are past
 * their timeout (sl_txn_abort_expired), so a crashed producer's transaction
 * does not hold readers back for longer than its timeout.
 *
 * Threads: single-threaded; consume waits in poll(2) on the readers' inotify
 * descriptors, and SIGINT/SIGTERM end it cleanly (committing with -G).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_kafka.h"
#include "cli/msgfmt.h"

/* The exit status for a broker call's failure: a name or argument the
 * broker refuses (SL_EINVAL) is a usage error, 2; anything else 1. */
static int exit_for(int rc)
{
    return rc == SL_EINVAL ? 2 : 1;
}

/* -b / --bootstrap HOST:PORT: a usage error unless it looks like one (the
 * Kafka side, cli/cmd_kafka.c, reports what it cannot reach). */
static int bootstrap_opt(const char *cmd, const char *v, const char **out)
{
    const char *colon = strrchr(v, ':');
    if (!*v || !colon || colon == v || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        fprintf(stderr, "sluice %s: -b needs HOST:PORT (e.g. 127.0.0.1:9092), not '%s'\n", cmd, v);
        return 2;
    }
    *out = v;
    return 0;
}

/* An option given with -b that works on a directory only. */
static int bootstrap_excludes(const char *cmd, const char *given, const char *opt)
{
    if (!given) return 0;
    fprintf(stderr, "sluice %s: %s cannot be used with -b (a Kafka server)\n", cmd, opt);
    return 2;
}

static sl_broker *open_broker(const char *cmd, const char *dir, unsigned flags)
{
    sl_broker *b;
    if (sl_broker_open(&b, dir, flags) < 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
        sl_broker_close(b);
        return NULL;
    }
    return b;
}

/* ---- topic ---------------------------------------------------------------------- */

static void topic_usage(FILE *f)
{
    fprintf(f,
            "usage: sluice topic create NAME [--partitions N] [--compact] [--retention-bytes B]\n"
            "                               [--retention-ms T] [--fsync always|INTERVAL_MS|never]\n"
            "                               [--segment-bytes B] [--dir DIR]\n"
            "       sluice topic list [--dir DIR]\n"
            "       sluice topic describe NAME [--dir DIR]\n"
            "       sluice topic delete NAME [--dir DIR]\n"
            "       sluice topic clean NAME [--dir DIR]   (retention and compaction now)\n"
            "       sluice topic repair NAME [-p PARTITION] [--dir DIR]\n"
            "                            (after a corruption report: cut a corrupt active\n"
            "                            segment at its first bad batch, or give up offsets\n"
            "                            whose segment is gone; says what it drops)\n"
            "       sluice topic list|describe|create|delete ... -b HOST:PORT\n"
            "                            (a Kafka server, through librdkafka; create takes\n"
            "                            --replication-factor N, default 1, and not --fsync)\n"
            "\n"
            "Topics of the built-in broker in DIR (default $SLUICE_DIR, else ./sluice-data).\n"
            "  --partitions N       partitions (default 1)\n"
            "  --compact            keep only the latest record per key (records need keys)\n"
            "  --retention-bytes B  per partition, delete the oldest segments beyond B bytes\n"
            "  --retention-ms T     delete segments whose records are all older than T ms\n"
            "  --fsync POLICY       always: fsync each batch; N: at most N ms after an append;\n"
            "                       never: leave it to the OS (default)\n"
            "  --segment-bytes B    roll segments at B bytes (default 64 MiB)\n");
}

static void print_size(char *buf, size_t cap, int64_t v)
{
    if (v < 0)
        snprintf(buf, cap, "unlimited");
    else
        snprintf(buf, cap, "%" PRId64, v);
}

/* Abort the directory's expired transactions (before reading); a failure
 * is a warning: reading goes on. */
static void abort_expired(const char *cmd, sl_broker *b)
{
    int rc = sl_txn_abort_expired(b, 0);
    if (rc < 0)
        fprintf(stderr, "sluice %s: warning: cannot abort expired transactions: %s\n", cmd,
                sl_broker_errmsg(b));
    else if (rc > 0)
        fprintf(stderr, "sluice %s: aborted %d transaction%s past %s timeout\n", cmd, rc,
                rc == 1 ? "" : "s", rc == 1 ? "its" : "their");
}

static int topic_describe(const char *cmd, sl_broker *b, const char *name)
{
    sl_topic_info *ti;
    abort_expired(cmd, b);
    int rc = sl_topic_describe(b, name, &ti);
    if (rc < 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
        return exit_for(rc);
    }
    char rb[32], rm[32], fs[48];
    print_size(rb, sizeof rb, ti->conf.retention_bytes);
    print_size(rm, sizeof rm, ti->conf.retention_ms);
    if (ti->conf.fsync == SL_FSYNC_INTERVAL)
        snprintf(fs, sizeof fs, "every %" PRId64 " ms", ti->conf.fsync_interval_ms);
    else
        snprintf(fs, sizeof fs, "%s", ti->conf.fsync == SL_FSYNC_ALWAYS ? "always" : "never");
    printf("topic %s: %d partition%s, %s, retention.bytes=%s, retention.ms=%s, fsync=%s, "
           "segment.bytes=%" PRId64 "\n",
           ti->name, ti->partition_count, ti->partition_count == 1 ? "" : "s",
           ti->conf.compact ? "compacted" : "not compacted", rb, rm, fs, ti->conf.segment_bytes);
    printf("%9s %14s %14s %14s %8s %14s\n", "partition", "first_offset", "next_offset",
           "size_bytes", "segments", "last_stable");
    for (int32_t p = 0; p < ti->partition_count; p++) {
        const sl_partition_info *pi = &ti->partitions[p];
        printf("%9d %14" PRId64 " %14" PRId64 " %14" PRId64 " %8d %14" PRId64 "\n", pi->partition,
               pi->first_offset, pi->next_offset, pi->size_bytes, pi->segments,
               pi->last_stable_offset);
    }
    sl_topic_info_free(ti);
    return 0;
}

/* Repair partition p of topic name (all partitions if p < 0); say what was
 * dropped from each, on stdout. */
static int topic_repair(const char *cmd, sl_broker *b, const char *name, int32_t p)
{
    sl_topic_info *ti;
    int rc = sl_topic_describe(b, name, &ti);
    if (rc < 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
        return exit_for(rc);
    }
    int32_t n = ti->partition_count;
    sl_topic_info_free(ti);
    if (p >= n) {
        fprintf(stderr, "sluice %s: topic '%s' has no partition %d (it has %d: 0..%d)\n", cmd, name,
                p, n, n - 1);
        return 1;
    }
    int status = 0;
    for (int32_t q = p < 0 ? 0 : p; q < (p < 0 ? n : p + 1); q++) {
        sl_repair_info ri;
        if (sl_topic_repair(b, name, q, &ri) < 0) {
            fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
            status = 1;
            continue;
        }
        if (ri.segment < 0)
            printf("topic '%s' partition %d: nothing to repair\n", name, q);
        else if (ri.missing)
            printf("topic '%s' partition %d: offsets from %" PRId64 " on are gone (a segment "
                   "deleted or truncated) and given up: new records take offsets from %" PRId64
                   " again\n",
                   name, q, ri.first_offset_dropped, ri.first_offset_dropped);
        else if (ri.last_offset_dropped < 0)
            printf("topic '%s' partition %d: cut a torn tail of %" PRId64 " bytes at byte %" PRId64
                   " of segment %020" PRId64
                   ".log (no complete record dropped); next offset %" PRId64 "\n",
                   name, q, ri.bytes_dropped, ri.byte, ri.segment, ri.first_offset_dropped);
        else
            printf("topic '%s' partition %d: dropped offsets %" PRId64 "..%" PRId64
                   " (a corrupt batch and the valid batches after it): %" PRId64
                   " bytes from byte %" PRId64 " of segment %020" PRId64
                   ".log; next offset %" PRId64 "\n",
                   name, q, ri.first_offset_dropped, ri.last_offset_dropped, ri.bytes_dropped,
                   ri.byte, ri.segment, ri.first_offset_dropped);
    }
    return status;
}

int cli_topic(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "sluice topic: missing subcommand (create, list, describe, delete, clean, "
                        "repair; sluice topic --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        topic_usage(stdout);
        return 0;
    }
    const char *sub = argv[1];
    char cmd[64];
    snprintf(cmd, sizeof cmd, "topic %.40s", sub);
    bool is_create = !strcmp(sub, "create"), is_list = !strcmp(sub, "list");
    bool is_repair = !strcmp(sub, "repair");
    if (!is_create && !is_list && !is_repair && strcmp(sub, "describe") && strcmp(sub, "delete") &&
        strcmp(sub, "clean")) {
        fprintf(stderr,
                "sluice topic: unknown subcommand '%s' (create, list, describe, delete, clean, "
                "repair)\n",
                sub);
        return 2;
    }
    enum {
        O_DIR = JOBS_OPT_FIRST_FREE,
        O_PARTITIONS,
        O_COMPACT,
        O_RETENTION_BYTES,
        O_RETENTION_MS,
        O_SEGMENT_BYTES,
        O_FSYNC,
        O_REPLICATION
    };
    static const struct option opts[] = {
        {"dir", required_argument, NULL, O_DIR},
        {"partitions", required_argument, NULL, O_PARTITIONS},
        {"compact", no_argument, NULL, O_COMPACT},
        {"retention-bytes", required_argument, NULL, O_RETENTION_BYTES},
        {"retention-ms", required_argument, NULL, O_RETENTION_MS},
        {"segment-bytes", required_argument, NULL, O_SEGMENT_BYTES},
        {"fsync", required_argument, NULL, O_FSYNC},
        {"replication-factor", required_argument, NULL, O_REPLICATION},
        {"bootstrap", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {0}};
    sl_topic_conf conf;
    sl_topic_conf_init(&conf);
    const char *dir = NULL, *name = NULL, *bootstrap = NULL;
    long long repair_p = -1, replication = -1;
    bool fsync_set = false;
    int opt, ret;
    /* getopt sees the arguments after the subcommand (argv[1] is its argv[0]). */
    int ac = argc - 1;
    char **av = argv + 1;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(ac, av, is_repair ? ":hp:b:" : ":hb:", opts)) != -1) {
        const char *v = optarg;
        long long n;
        if (opt >= O_PARTITIONS && opt <= O_REPLICATION && !is_create) {
            fprintf(stderr, "sluice %s: --%s applies to topic create only\n", cmd,
                    opts[opt - O_DIR].name);
            return 2;
        }
        switch (opt) {
        case O_DIR:
            if (jobs_dir_opt(cmd, v, &dir)) return 2;
            break;
        case 'p':
            if (jobs_int(cmd, "-p", v, 0, SL_PARTITIONS_MAX - 1, &repair_p)) return 2;
            break;
        case 'b':
            if (bootstrap_opt(cmd, v, &bootstrap)) return 2;
            break;
        case O_REPLICATION:
            if (jobs_int(cmd, "--replication-factor", v, 1, 32767, &replication)) return 2;
            break;
        case O_PARTITIONS:
            if (jobs_int(cmd, "--partitions", v, 1, SL_PARTITIONS_MAX, &n)) return 2;
            conf.partitions = (int32_t)n;
            break;
        case O_COMPACT: conf.compact = 1; break;
        case O_RETENTION_BYTES:
            if (jobs_int(cmd, "--retention-bytes", v, -1, INT64_MAX, &n)) return 2;
            conf.retention_bytes = n;
            break;
        case O_RETENTION_MS:
            if (jobs_int(cmd, "--retention-ms", v, -1, INT64_MAX, &n)) return 2;
            conf.retention_ms = n;
            break;
        case O_SEGMENT_BYTES:
            if (jobs_int(cmd, "--segment-bytes", v, 1024, 1LL << 31, &n)) return 2;
            conf.segment_bytes = n;
            break;
        case O_FSYNC:
            fsync_set = true;
            if (!strcmp(v, "always"))
                conf.fsync = SL_FSYNC_ALWAYS;
            else if (!strcmp(v, "never"))
                conf.fsync = SL_FSYNC_NEVER;
            else {
                char *end;
                errno = 0;
                long long ms = strtoll(v, &end, 10);
                if (!*v || *end || errno || ms < 1 || ms > 86400000LL) {
                    fprintf(stderr,
                            "sluice %s: --fsync needs always, never or an interval in ms "
                            "(1..86400000), not '%s'\n",
                            cmd, v);
                    return 2;
                }
                conf.fsync = SL_FSYNC_INTERVAL;
                conf.fsync_interval_ms = ms;
            }
            break;
        default:
            if ((ret = jobs_opt(cmd, opt, av, NULL)) == JOBS_HELP) {
                topic_usage(stdout);
                return 0;
            }
            return ret;
        }
    }
    if (!is_list && optind < ac) name = av[optind++];
    if (jobs_no_operands(cmd, ac, av)) return 2;
    if (!is_list && !name) {
        fprintf(stderr, "sluice %s: missing topic NAME\n", cmd);
        return 2;
    }
    if (bootstrap) {
        if (bootstrap_excludes(cmd, dir, "--dir") ||
            bootstrap_excludes(cmd, fsync_set ? "" : NULL, "--fsync"))
            return 2;
        if (is_repair || !strcmp(sub, "clean")) {
            fprintf(stderr, "sluice %s: works on a broker directory only, not with -b\n", cmd);
            return 2;
        }
        return cli_kafka_topic(bootstrap, sub, name, &conf, replication > 0 ? (int)replication : 1);
    }
    if (replication > 0) {
        fprintf(stderr, "sluice %s: --replication-factor needs -b (a directory has no replicas)\n",
                cmd);
        return 2;
    }
    dir = jobs_broker_dir(dir);
    struct stat st;
    bool dir_was_there = stat(dir, &st) == 0;
    sl_broker *b = open_broker(cmd, dir, is_create ? SL_BROKER_CREATE : 0);
    if (!b) return 1;
    int status = 0, rc;
    if (is_create) {
        if ((rc = sl_topic_create(b, name, &conf)) < 0) {
            fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
            status = exit_for(rc);
            if (status == 2 && !dir_was_there) (void)rmdir(dir); /* change nothing */
        }
    } else if (is_list) {
        char **names;
        size_t n;
        if (sl_topic_list(b, &names, &n) < 0) {
            fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
            status = 1;
        } else {
            for (size_t i = 0; i < n; i++) printf("%s\n", names[i]);
            sl_topic_list_free(names, n);
        }
    } else if (!strcmp(sub, "describe")) {
        status = topic_describe(cmd, b, name);
    } else if (is_repair) {
        status = topic_repair(cmd, b, name, (int32_t)repair_p);
    } else if (!strcmp(sub, "delete")) {
        if ((rc = sl_topic_delete(b, name)) < 0) {
            fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
            status = exit_for(rc);
        }
    } else {
        if ((rc = sl_topic_clean(b, name, 0)) < 0) {
            fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(b));
            status = exit_for(rc);
        }
    }
    if (sl_broker_close(b) < 0 && status == 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_broker_errmsg(NULL));
        status = 1;
    }
    return status;
}

/* ---- produce ------------------------------------------------------------------------ */

static void produce_usage(FILE *f)
{
    fprintf(f, "usage: sluice produce TOPIC [-K SEP] [-p PARTITION] [--dir DIR | -b HOST:PORT]\n"
               "                      [--transactional-id ID [--transaction-timeout MS]]\n"
               "\n"
               "Appends each line of stdin (without its newline) as one record.\n"
               "  -K SEP        the text before the first SEP is the key, the rest the value\n"
               "                (a line without SEP has no key), as in kcat\n"
               "  -p PARTITION  append to this partition; default: by key (Kafka's murmur2\n"
               "                partitioner), round-robin for lines without a key\n"
               "  --transactional-id ID\n"
               "                write all of stdin in one transaction of ID, committed at\n"
               "                its end; opening ID aborts what an earlier producer of ID\n"
               "                left open\n"
               "  --transaction-timeout MS\n"
               "                the broker aborts this transaction once it is open longer\n"
               "                (default 900000: 15 minutes)\n"
               "  --dir DIR     broker directory (default $SLUICE_DIR, else ./sluice-data)\n"
               "  -b, --bootstrap HOST:PORT\n"
               "                produce to this Kafka server instead (librdkafka; acks=all,\n"
               "                keyed: murmur2 as Kafka's Java client, unkeyed: a random\n"
               "                partition); waits for every delivery report; an unreachable\n"
               "                server is reported within 10 s\n"
               "A bad line (too large, no key for a compacted topic) stops at that line;\n"
               "the lines before it have been produced (with --transactional-id: the\n"
               "transaction is aborted, nothing of the run is committed).\n");
}

/* Lines of the current chunk of stdin for a transactional producer: the
 * records point into the input buffer and are appended, one batch per
 * partition, before it moves (txq_flush). */
typedef struct txq {
    sl_txn_producer *tp;
    int32_t nparts;
    uint32_t rr;
    sl_record *recs, *sorted;
    int32_t *part;
    size_t n, cap;
    size_t *count; /* per partition */
} txq;

static int txq_push(txq *q, int32_t part, const sl_record *r)
{
    if (q->n == q->cap) {
        size_t nc = q->cap ? 2 * q->cap : 1024;
        sl_record *a = realloc(q->recs, nc * sizeof *a);
        if (a) q->recs = a;
        sl_record *b2 = realloc(q->sorted, nc * sizeof *b2);
        if (b2) q->sorted = b2;
        int32_t *c = realloc(q->part, nc * sizeof *c);
        if (c) q->part = c;
        if (!a || !b2 || !c) {
            fprintf(stderr, "sluice produce: out of memory\n");
            return 1;
        }
        q->cap = nc;
    }
    if (part < 0)
        part = r->key ? sl_partition_for_key(r->key, r->key_len, q->nparts)
                      : (int32_t)(q->rr++ % (uint32_t)q->nparts);
    q->recs[q->n] = *r;
    q->part[q->n++] = part;
    return 0;
}

static int txq_flush(txq *q)
{
    if (q->n == 0) return 0;
    memset(q->count, 0, (size_t)q->nparts * sizeof *q->count);
    for (size_t i = 0; i < q->n; i++) q->count[q->part[i]]++;
    size_t at = 0;
    for (int32_t p = 0; p < q->nparts; p++) {
        size_t c = q->count[p];
        q->count[p] = at;
        at += c;
    }
    for (size_t i = 0; i < q->n; i++) q->sorted[q->count[q->part[i]]++] = q->recs[i];
    size_t from = 0;
    for (int32_t p = 0; p < q->nparts; p++) {
        size_t to = q->count[p];
        if (to > from && sl_txn_producer_append(q->tp, p, q->sorted + from, to - from, NULL) < 0) {
            fprintf(stderr, "sluice produce: %s\n", sl_txn_producer_errmsg(q->tp));
            q->n = 0;
            return 1;
        }
        from = to;
    }
    q->n = 0;
    return 0;
}

static int produce_line(sl_producer *p, txq *q, int32_t part, const char *sep, size_t seplen,
                        const char *line, size_t len, long long lineno)
{
    sl_record r = {.timestamp = SL_TIMESTAMP_NONE};
    r.value = line;
    r.value_len = len;
    if (sep) {
        const char *hit = seplen ? memmem(line, len, sep, seplen) : NULL;
        if (hit) {
            r.key = line;
            r.key_len = (size_t)(hit - line);
            r.value = hit + seplen;
            r.value_len = len - r.key_len - seplen;
        }
    }
    if (q) return txq_push(q, part, &r);
    if (sl_producer_send(p, part, &r, NULL) < 0) {
        fprintf(stderr, "sluice produce: line %lld: %s\n", lineno, sl_producer_errmsg(p));
        return 1;
    }
    return 0;
}

int cli_produce(int argc, char **argv)
{
    enum { O_DIR = JOBS_OPT_FIRST_FREE, O_TID, O_TTIMEOUT };
    static const struct option opts[] = {
        {"dir", required_argument, NULL, O_DIR},
        {"bootstrap", required_argument, NULL, 'b'},
        {"transactional-id", required_argument, NULL, O_TID},
        {"transaction-timeout", required_argument, NULL, O_TTIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {0}};
    const char *dir = NULL, *topic = NULL, *sep = NULL, *tid = NULL, *bootstrap = NULL;
    long long part = SL_PARTITION_ANY, ttimeout = -1;
    int opt, ret;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hK:p:b:", opts)) != -1) {
        switch (opt) {
        case 'b':
            if (bootstrap_opt("produce", optarg, &bootstrap)) return 2;
            break;
        case O_DIR:
            if (jobs_dir_opt("produce", optarg, &dir)) return 2;
            break;
        case 'K':
            sep = optarg;
            if (!*sep) {
                fprintf(stderr, "sluice produce: -K needs a non-empty separator\n");
                return 2;
            }
            break;
        case 'p':
            if (jobs_int("produce", "-p", optarg, 0, SL_PARTITIONS_MAX - 1, &part)) return 2;
            break;
        case O_TID:
            tid = optarg;
            if (!*tid) {
                fprintf(stderr, "sluice produce: --transactional-id needs a non-empty id\n");
                return 2;
            }
            break;
        case O_TTIMEOUT:
            if (jobs_int("produce", "--transaction-timeout", optarg, 1, INT64_MAX, &ttimeout))
                return 2;
            break;
        default:
            if ((ret = jobs_opt("produce", opt, argv, NULL)) == JOBS_HELP) {
                produce_usage(stdout);
                return 0;
            }
            return ret;
        }
    }
    if (optind < argc) topic = argv[optind++];
    if (jobs_no_operands("produce", argc, argv)) return 2;
    if (!topic) {
        fprintf(stderr, "sluice produce: missing TOPIC (sluice produce --help)\n");
        return 2;
    }
    if (ttimeout > 0 && !tid) {
        fprintf(stderr, "sluice produce: --transaction-timeout needs --transactional-id\n");
        return 2;
    }
    if (bootstrap) {
        if (bootstrap_excludes("produce", dir, "--dir") ||
            bootstrap_excludes("produce", tid, "--transactional-id"))
            return 2;
        return cli_kafka_produce(bootstrap, topic, sep, (int32_t)part);
    }
    sl_broker *b = open_broker("produce", jobs_broker_dir(dir), 0);
    if (!b) return 1;
    sl_producer *p = NULL;
    txq tq = {0}, *q = NULL;
    int status = 0;
    int rc = tid ? sl_txn_producer_open(&tq.tp, b, topic, tid) : sl_producer_open(&p, b, topic);
    if (rc < 0) {
        fprintf(stderr, "sluice produce: %s\n", sl_broker_errmsg(b));
        sl_broker_close(b);
        return exit_for(rc);
    }
    sl_topic_info *ti;
    if (sl_topic_describe(b, topic, &ti) == 0) {
        if (part >= ti->partition_count) {
            fprintf(stderr, "sluice produce: topic '%s' has no partition %lld (it has %d: 0..%d)\n",
                    topic, part, ti->partition_count, ti->partition_count - 1);
            status = 2;
        }
        tq.nparts = ti->partition_count;
        sl_topic_info_free(ti);
    } else if (tid) {
        fprintf(stderr, "sluice produce: %s\n", sl_broker_errmsg(b));
        status = 1;
    }
    if (tq.tp) {
        q = &tq;
        if (status == 0 && !(tq.count = calloc((size_t)tq.nparts, sizeof *tq.count))) {
            fprintf(stderr, "sluice produce: out of memory\n");
            status = 1;
        }
        if (status == 0 && ttimeout > 0 && sl_txn_producer_set_timeout(tq.tp, ttimeout) < 0) {
            fprintf(stderr, "sluice produce: %s\n", sl_txn_producer_errmsg(tq.tp));
            status = 2;
        }
    }
    size_t seplen = sep ? strlen(sep) : 0;
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    long long lineno = 0;
    if (!buf) {
        fprintf(stderr, "sluice produce: out of memory\n");
        status = 1;
    }
    while (status == 0) {
        if (have == cap) {
            if (cap >= (size_t)SL_MAX_RECORD_BYTES_LIMIT * 2) {
                fprintf(stderr, "sluice produce: line %lld is longer than %d bytes\n", lineno + 1,
                        SL_MAX_RECORD_BYTES_LIMIT * 2);
                status = 1;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                fprintf(stderr, "sluice produce: out of memory\n");
                status = 1;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(0, buf + have, cap - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            fprintf(stderr, "sluice produce: reading stdin: %s\n", strerror(errno));
            status = 1;
            break;
        }
        if (n == 0) {
            if (have > 0)
                status = produce_line(p, q, (int32_t)part, sep, seplen, buf, have, ++lineno);
            if (q && status == 0) status = txq_flush(q);
            break;
        }
        size_t start = 0, end = have + (size_t)n;
        for (size_t i = have; i < end && status == 0; i++) {
            if (buf[i] != '\n') continue;
            status =
                produce_line(p, q, (int32_t)part, sep, seplen, buf + start, i - start, ++lineno);
            start = i + 1;
        }
        if (q && status == 0) status = txq_flush(q); /* before the lines move */
        memmove(buf, buf + start, end - start);
        have = end - start;
        /* Input paused (a terminal, a slow pipe): make what we have visible. */
        if (!q && status == 0 && (size_t)n < (cap - have) / 2 && sl_producer_flush(p) < 0) {
            fprintf(stderr, "sluice produce: %s\n", sl_producer_errmsg(p));
            status = 1;
        }
    }
    free(buf);
    if (q) {
        rc = status == 0 ? sl_txn_producer_commit(tq.tp) : sl_txn_producer_abort(tq.tp);
        if (rc < 0) {
            fprintf(
                stderr, "sluice produce: %s %s\n",
                status == 0 ? "commit failed:" : "abort failed:", sl_txn_producer_errmsg(tq.tp));
            if (status == 0) status = 1;
        }
        sl_txn_producer_close(tq.tp);
        free(tq.recs);
        free(tq.sorted);
        free(tq.part);
        free(tq.count);
    } else if (sl_producer_close(p) < 0 && status == 0) {
        fprintf(stderr, "sluice produce: %s\n", sl_producer_errmsg(p));
        status = 1;
    }
    if (sl_broker_close(b) < 0 && status == 0) {
        fprintf(stderr, "sluice produce: closing the broker failed\n");
        status = 1;
    }
    return status;
}

/* ---- consume ------------------------------------------------------------------------ */

static volatile sig_atomic_t consume_stop;

static void on_signal(int sig)
{
    (void)sig;
    consume_stop = 1;
}

static void consume_usage(FILE *f)
{
    fprintf(f,
            "usage: sluice consume TOPIC [-p PARTITION] [-o beginning|end|OFFSET|-N] [-G GROUP]\n"
            "                      [-e] [-c COUNT] [-f FORMAT] [--dir DIR | -b HOST:PORT]\n"
            "                      [--isolation read_committed|read_uncommitted]\n"
            "\n"
            "Prints the records of a topic and follows it as it grows.\n"
            "  -p PARTITION  only this partition (default: all, or the group's share)\n"
            "  -o OFFSET     where to start: beginning (default), end, an offset, or -N for\n"
            "                N records before the end; with -G, a committed offset wins\n"
            "  -G GROUP      consume as a member of GROUP: members share the partitions\n"
            "                (member i of n takes p %% n == i) and offsets are committed\n"
            "  -e            exit at the end of the log instead of waiting for more\n"
            "                (read_committed: at the last stable offset)\n"
            "  -c COUNT      exit after COUNT records\n"
            "  -f FORMAT     kcat format: %%t topic, %%p partition, %%o offset, %%k key,\n"
            "                %%s value, %%T timestamp (ms), %%K key size, %%S value size,\n"
            "                %%%% percent, \\n newline, \\t tab (default '%%s\\n')\n"
            "  --isolation read_committed (default): records of committed transactions\n"
            "                only, stopping at a transaction still open; read_uncommitted:\n"
            "                every record, aborted transactions' too\n"
            "  --dir DIR     broker directory (default $SLUICE_DIR, else ./sluice-data)\n"
            "  -b, --bootstrap HOST:PORT\n"
            "                consume from this Kafka server instead (librdkafka); with -G\n"
            "                the group is Kafka's (its protocol shares the partitions);\n"
            "                an unreachable server is reported within 10 s\n");
}

static int consume_isolation = SL_READ_COMMITTED;

/* Standard output after a flush: 0 written, 1 closed by its reader (end
 * quietly: status 0, no message), -1 failed (reported once, with the error).
 * Once it failed it stays failed (the stream's error flag): nothing printed
 * after a lost write may be counted as written. */
static int out_errno; /* errno of the first failed write of a record (print loop) */

static int output_state(void)
{
    static int reported;
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
    int e = out_errno ? out_errno : errno;
    if (cli_output_closed() || e == EPIPE) return 1;
    if (!reported++)
        fprintf(stderr, "sluice consume: cannot write standard output%s%s\n", e ? ": " : "",
                e ? strerror(e) : "");
    return -1;
}

typedef struct cpart {
    int32_t partition;
    sl_log_reader *r;
    int64_t written;   /* reader position when stdout was last flushed without error */
    int64_t committed; /* last position committed for the group (-1: none) */
} cpart;

/* stdout was flushed without error: everything read so far is written. */
static void mark_written(cpart *cp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp[i].r) cp[i].written = sl_log_reader_position(cp[i].r);
}

static int64_t start_offset(sl_broker *b, const char *topic, int32_t p, const char *group,
                            long long o, bool o_rel)
{
    int64_t off;
    if (group && sl_group_fetch(b, group, topic, p, &off) == 0) return off;
    if (!o_rel) return o;
    /* -N: N records before the end. */
    sl_log_reader *r;
    if (sl_log_reader_open(&r, b, topic, p, SL_OFFSET_END) < 0) return SL_OFFSET_END;
    (void)sl_log_reader_set_isolation(r, consume_isolation); /* the end it reads to */
    int64_t end = sl_log_reader_position(r);
    sl_log_reader_close(r);
    return end + o > 0 ? end + o : SL_OFFSET_BEGINNING;
}

static int commit_all(sl_broker *b, const char *topic, const char *group, cpart *cp, size_t n)
{
    for (size_t i = 0; group && i < n; i++) {
        if (!cp[i].r) continue;      /* kept at a rebalance: its reader moved to the new set */
        int64_t pos = cp[i].written; /* never what was read but not written */
        if (pos == cp[i].committed) continue;
        if (sl_group_commit(b, group, topic, cp[i].partition, pos) < 0) {
            fprintf(stderr, "sluice consume: commit failed: %s\n", sl_broker_errmsg(b));
            return 1;
        }
        cp[i].committed = pos;
    }
    return 0;
}

/* An offset past the end of the log is out of range (as Kafka answers
 * OFFSET_OUT_OF_RANGE): say so rather than wait for it or skip to it. */
static bool offset_out_of_range(sl_broker *b, const char *topic, int32_t p, int64_t off)
{
    sl_log_reader *r;
    if (sl_log_reader_open(&r, b, topic, p, SL_OFFSET_END) < 0) return false;
    (void)sl_log_reader_set_isolation(r, SL_READ_UNCOMMITTED); /* the log end */
    int64_t end = sl_log_reader_position(r);
    sl_log_reader_close(r);
    if (off <= end) return false;
    fprintf(stderr,
            "sluice consume: topic '%s' partition %d: offset %" PRId64
            " is out of range (the log ends at offset %" PRId64 ")\n",
            topic, p, off, end);
    return true;
}

/* Open readers for the partitions in parts[], closing the others. */
static int set_partitions(sl_broker *b, const char *topic, const char *group, long long o,
                          bool o_rel, bool exit_at_end, cpart **cp, size_t *ncp,
                          const int32_t *parts, size_t n)
{
    cpart *nv = calloc(n ? n : 1, sizeof *nv);
    if (!nv) return 1;
    for (size_t i = 0; i < n; i++) {
        nv[i].partition = parts[i];
        nv[i].committed = -1;
        for (size_t j = 0; j < *ncp; j++)
            if ((*cp)[j].r && (*cp)[j].partition == parts[i]) {
                nv[i] = (*cp)[j];
                (*cp)[j].r = NULL;
            }
        if (nv[i].r) continue;
        int64_t off = start_offset(b, topic, parts[i], group, o, o_rel);
        if (off >= 0 && offset_out_of_range(b, topic, parts[i], off)) {
            for (size_t k = 0; k < i; k++) sl_log_reader_close(nv[k].r);
            free(nv);
            return 1;
        }
        if (sl_log_reader_open(&nv[i].r, b, topic, parts[i], off) < 0 ||
            sl_log_reader_set_isolation(nv[i].r, consume_isolation) < 0) {
            fprintf(stderr, "sluice consume: %s\n",
                    nv[i].r ? sl_log_reader_errmsg(nv[i].r) : sl_broker_errmsg(b));
            sl_log_reader_close(nv[i].r);
            for (size_t k = 0; k < i; k++) sl_log_reader_close(nv[k].r);
            free(nv);
            return 1;
        }
        nv[i].written = sl_log_reader_position(nv[i].r);
        nv[i].committed = group ? nv[i].written : -1;
        if (!exit_at_end) (void)sl_log_reader_fd(nv[i].r); /* watch from the start */
    }
    if (group) commit_all(b, topic, group, *cp, *ncp); /* partitions given away */
    for (size_t j = 0; j < *ncp; j++) sl_log_reader_close((*cp)[j].r);
    free(*cp);
    *cp = nv;
    *ncp = n;
    return 0;
}

int cli_consume(int argc, char **argv)
{
    enum { O_DIR = JOBS_OPT_FIRST_FREE, O_ISOLATION };
    static const struct option opts[] = {{"dir", required_argument, NULL, O_DIR},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"isolation", required_argument, NULL, O_ISOLATION},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    consume_isolation = SL_READ_COMMITTED;
    const char *dir = NULL, *topic = NULL, *group = NULL, *fmt = "%s\\n", *bootstrap = NULL;
    long long part = -1, count = -1, o = SL_OFFSET_BEGINNING;
    bool o_rel = false, exit_at_end = false;
    int opt, ret;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hp:o:G:ec:f:b:", opts)) != -1) {
        const char *v = optarg;
        switch (opt) {
        case 'b':
            if (bootstrap_opt("consume", v, &bootstrap)) return 2;
            break;
        case O_DIR:
            if (jobs_dir_opt("consume", v, &dir)) return 2;
            break;
        case O_ISOLATION:
            if (!strcmp(v, "read_committed")) {
                consume_isolation = SL_READ_COMMITTED;
            } else if (!strcmp(v, "read_uncommitted")) {
                consume_isolation = SL_READ_UNCOMMITTED;
            } else {
                fprintf(stderr,
                        "sluice consume: --isolation: unknown level '%s' (read_committed or "
                        "read_uncommitted)\n",
                        v);
                return 2;
            }
            break;
        case 'p':
            if (jobs_int("consume", "-p", v, 0, SL_PARTITIONS_MAX - 1, &part)) return 2;
            break;
        case 'o':
            if (!strcmp(v, "beginning"))
                o = SL_OFFSET_BEGINNING;
            else if (!strcmp(v, "end"))
                o = SL_OFFSET_END;
            else if (v[0] == '-') {
                if (jobs_int("consume", "-o", v, -INT64_MAX, -1, &o)) return 2;
                o_rel = true;
            } else if (jobs_int("consume", "-o", v, 0, INT64_MAX, &o)) {
                return 2;
            }
            break;
        case 'G': group = v; break;
        case 'e': exit_at_end = true; break;
        case 'c':
            if (jobs_int("consume", "-c", v, 1, INT64_MAX, &count)) return 2;
            break;
        case 'f':
            fmt = v;
            if (cli_check_format(fmt)) return 2;
            break;
        default:
            if ((ret = jobs_opt("consume", opt, argv, NULL)) == JOBS_HELP) {
                consume_usage(stdout);
                return 0;
            }
            return ret;
        }
    }
    if (optind < argc) topic = argv[optind++];
    if (jobs_no_operands("consume", argc, argv)) return 2;
    if (!topic) {
        fprintf(stderr, "sluice consume: missing TOPIC (sluice consume --help)\n");
        return 2;
    }
    if (bootstrap) {
        if (bootstrap_excludes("consume", dir, "--dir")) return 2;
        cli_kafka_consume_opts ko = {.partition = (int32_t)part,
                                     .offset = o,
                                     .rel = o_rel,
                                     .group = group,
                                     .exit_at_end = exit_at_end,
                                     .count = count,
                                     .fmt = fmt,
                                     .read_committed = consume_isolation == SL_READ_COMMITTED};
        return cli_kafka_consume(bootstrap, topic, &ko);
    }
    sl_broker *b = open_broker("consume", jobs_broker_dir(dir), 0);
    if (!b) return 1;
    int status = 0;
    sl_topic_info *ti = NULL;
    sl_group_member *member = NULL;
    cpart *cp = NULL;
    size_t ncp = 0;
    int32_t *parts = NULL;
    int rc = sl_topic_describe(b, topic, &ti);
    if (rc == 0) abort_expired("consume", b);
    if (rc < 0) {
        fprintf(stderr, "sluice consume: %s\n", sl_broker_errmsg(b));
        status = exit_for(rc);
        goto out;
    }
    if (part >= ti->partition_count) {
        fprintf(stderr, "sluice consume: topic '%s' has no partition %lld (it has %d: 0..%d)\n",
                topic, part, ti->partition_count, ti->partition_count - 1);
        status = 2;
        goto out;
    }
    parts = malloc(sizeof *parts * (size_t)ti->partition_count);
    if (!parts) {
        status = 1;
        goto out;
    }
    size_t nparts = 0;
    if (group && part < 0) {
        if ((rc = sl_group_join(&member, b, group, topic)) < 0) {
            fprintf(stderr, "sluice consume: %s\n", sl_broker_errmsg(b));
            status = exit_for(rc);
            goto out;
        }
        if (sl_group_member_assignment(member, parts, (size_t)ti->partition_count, &nparts) < 0) {
            fprintf(stderr, "sluice consume: %s\n", sl_group_member_errmsg(member));
            status = 1;
            goto out;
        }
    } else if (part >= 0) {
        parts[nparts++] = (int32_t)part;
    } else {
        for (int32_t p = 0; p < ti->partition_count; p++) parts[nparts++] = p;
    }
    if (group) {
        int64_t junk;
        if (sl_group_fetch(b, group, topic, 0, &junk) == SL_EINVAL) {
            fprintf(stderr, "sluice consume: %s\n", sl_broker_errmsg(b));
            status = 2;
            goto out;
        }
    }
    if ((status = set_partitions(b, topic, group, o, o_rel, exit_at_end, &cp, &ncp, parts, nparts)))
        goto out;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    long long printed = 0;
    size_t rr = 0;
    struct pollfd *pfd = NULL;
    while (!consume_stop && (count < 0 || printed < count)) {
        /* One pass over the partitions, a burst from each. */
        bool any = false;
        for (size_t k = 0; k < ncp && (count < 0 || printed < count); k++) {
            cpart *c = &cp[(rr + k) % ncp];
            sl_message m;
            for (int burst = 0; burst < 4096 && (count < 0 || printed < count); burst++) {
                rc = sl_log_reader_next(c->r, &m, 0);
                if (rc == SL_EAGAIN) break;
                if (rc < 0) {
                    fprintf(stderr, "sluice consume: %s\n", sl_log_reader_errmsg(c->r));
                    status = 1;
                    goto done;
                }
                int64_t sk_from, sk_to;
                if (sl_log_reader_skipped(c->r, &sk_from, &sk_to))
                    fprintf(stderr,
                            "sluice consume: topic '%s' partition %d: offsets %" PRId64 "..%" PRId64
                            " were deleted by retention before they were read; skipped\n",
                            topic, c->partition, sk_from, sk_to - 1);
                cli_print_msg(fmt, topic, &m);
                printed++;
                any = true;
                if (ferror(stdout)) { /* a full buffer could not be written */
                    out_errno = errno;
                    goto done;
                }
            }
        }
        rr++;
        /* Everything printed in this pass is out, or the output failed
         * (output_state() tells closed from failed at done). */
        if (output_state() != 0) goto done;
        mark_written(cp, ncp);
        if (any) continue;
        /* Idle: commit; maybe rebalance. */
        if ((status = commit_all(b, topic, group, cp, ncp))) goto done;
        if (exit_at_end) break;
        if (member) {
            size_t nn;
            if (sl_group_member_assignment(member, parts, (size_t)ti->partition_count, &nn) == 0) {
                bool same = nn == ncp;
                for (size_t k = 0; same && k < nn; k++) same = parts[k] == cp[k].partition;
                if (!same && (status = set_partitions(b, topic, group, o, o_rel, exit_at_end, &cp,
                                                      &ncp, parts, nn)))
                    goto done;
            }
        }
        struct pollfd *np = realloc(pfd, sizeof *pfd * (ncp ? ncp : 1));
        if (!np) {
            status = 1;
            goto done;
        }
        pfd = np;
        size_t nfd = 0;
        for (size_t k = 0; k < ncp; k++)
            if (sl_log_reader_fd(cp[k].r) >= 0) {
                pfd[nfd].fd = sl_log_reader_fd(cp[k].r);
                pfd[nfd].events = POLLIN;
                nfd++;
            }
        /* Wake on any partition's change; at most 1 s (group changes, no
         * notifications). The readers drain their descriptors themselves. */
        if (nfd)
            (void)poll(pfd, nfd, member ? 500 : 1000);
        else
            (void)poll(NULL, 0, 100);
    }
done:
    free(pfd);
    int os = output_state();
    if (os == 0) mark_written(cp, ncp);
    /* Commit what was written, whatever happened after it. */
    if (commit_all(b, topic, group, cp, ncp) && status == 0) status = 1;
    if (os < 0 && status == 0) status = 1;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
out:
    for (size_t k = 0; k < ncp; k++) sl_log_reader_close(cp[k].r);
    free(cp);
    free(parts);
    sl_group_leave(member);
    sl_topic_info_free(ti);
    sl_broker_close(b);
    return status;
}

/* ---- broker serve --------------------------------------------------------------------- */

static sl_server *serve_server; /* for the signal handler */

static void on_serve_signal(int sig)
{
    (void)sig;
    sl_server_stop(serve_server); /* async-signal-safe (an eventfd write) */
}

static void broker_usage(FILE *f)
{
    fprintf(
        f, "usage: sluice broker serve [--dir DIR] [--listen HOST:PORT] [options]\n"
           "       sluice broker user add FILE USER     (the password is read from stdin)\n"
           "serve: serves the broker directory to Kafka clients (kcat, librdkafka, Java) until\n"
           "SIGINT or SIGTERM.\n"
           "  --dir DIR                broker directory (default $SLUICE_DIR, else ./sluice-data)\n"
           "  --listen HOST:PORT       address to listen on (default 127.0.0.1:9092; PORT 0\n"
           "                           picks a free port, printed at start); loopback only\n"
           "                           unless --sasl-users is given\n"
           "  --tls-cert FILE          PEM certificate (chain): every connection speaks TLS\n"
           "  --tls-key FILE           PEM private key of --tls-cert\n"
           "  --sasl-users FILE        require SASL: SCRAM-SHA-256, or PLAIN over TLS, with the\n"
           "                           users in FILE (written by sluice broker user add)\n"
           "  --max-request-bytes N    largest request accepted (default and most 104857600)\n"
           "  --max-connections N      connections beyond N are closed at once (default 10000)\n"
           "  --idle-timeout-ms N      disconnect a client silent this long in the middle of a\n"
           "                           request or before authenticating (default 30000; 0: never)\n"
           "  --log-level LEVEL        error, warn (default: disconnected clients), info (+ idle\n"
           "                           and refused clients, authentications), debug (+ one line\n"
           "                           per request: api, version, client, latency)\n"
           "  --http HOST:PORT         also serve a status page (topics, partitions, offsets,\n"
           "                           consumer-group lag) at /, Prometheus metrics at\n"
           "                           /metrics and JSON at /api/job; loopback only unless\n"
           "  --http-token FILE        is given (then every request needs that token)\n"
           "user add: adds USER to the users file FILE (created mode 0600), or changes its\n"
           "password: salted SCRAM-SHA-256 credentials, never the password itself.\n");
}

/* A decimal option value in lo..hi, or -1 (after a one-line message). */
static long serve_num(const char *opt, const char *v, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < lo || n > hi) {
        fprintf(stderr, "sluice broker serve: %s '%s' is not a number in %ld..%ld\n", opt, v, lo,
                hi);
        return -1;
    }
    return n;
}

/* sluice broker user add FILE USER: the password is one line of stdin. */
static int broker_user(int argc, char **argv)
{
    if (argc != 5 || strcmp(argv[2], "add") != 0) {
        fprintf(stderr, "usage: sluice broker user add FILE USER   (password on stdin)\n");
        return 2;
    }
    char pw[1024];
    if (!fgets(pw, sizeof pw, stdin)) {
        fprintf(stderr, "sluice broker user add: no password on stdin\n");
        return 2;
    }
    size_t n = strlen(pw);
    if (n && pw[n - 1] == '\n') pw[--n] = 0;
    if (n && pw[n - 1] == '\r') pw[--n] = 0;
    if (n + 1 >= sizeof pw) {
        fprintf(stderr, "sluice broker user add: password longer than %zu bytes\n", sizeof pw - 2);
        return 2;
    }
    char err[512];
    int rc = sl_server_user_add(argv[3], argv[4], pw, err, sizeof err);
    memset(pw, 0, sizeof pw);
    if (rc < 0) {
        fprintf(stderr, "sluice broker user add: %s\n", err);
        return rc == SL_EINVAL ? 2 : 1;
    }
    return 0;
}

int cli_broker(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        broker_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "user")) return broker_user(argc, argv);
    if (strcmp(argv[1], "serve") != 0) {
        fprintf(stderr, "sluice broker: unknown command '%s' (serve, user)\n", argv[1]);
        return 2;
    }
    const char *dir = NULL, *http_listen = NULL, *http_token = NULL;
    sl_server_conf conf;
    sl_server_conf_init(&conf);
    conf.listen = "127.0.0.1:9092";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            broker_usage(stdout);
            return 0;
        }
        static const char *const opts[] = {"--dir",
                                           "--listen",
                                           "--tls-cert",
                                           "--tls-key",
                                           "--sasl-users",
                                           "--max-request-bytes",
                                           "--max-connections",
                                           "--idle-timeout-ms",
                                           "--log-level",
                                           "--http",
                                           "--http-token"};
        size_t o = 0;
        while (o < sizeof opts / sizeof opts[0] && strcmp(a, opts[o]) != 0) o++;
        if (o == sizeof opts / sizeof opts[0]) {
            fprintf(stderr, "sluice broker serve: unknown option '%s'\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sluice broker serve: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long n = 0;
        switch (o) {
        case 0:
            if (jobs_dir_opt("broker serve", v, &dir)) return 2;
            break;
        case 1: conf.listen = v; break;
        case 2: conf.tls_cert = v; break;
        case 3: conf.tls_key = v; break;
        case 4: conf.sasl_users = v; break;
        case 5:
            if ((n = serve_num(a, v, 64, 100L * 1024 * 1024)) < 0) return 2;
            conf.max_request_bytes = (int32_t)n;
            break;
        case 6:
            if ((n = serve_num(a, v, 1, 10000000)) < 0) return 2;
            conf.max_connections = (int32_t)n;
            break;
        case 7:
            if ((n = serve_num(a, v, 0, 86400000)) < 0) return 2;
            conf.idle_timeout_ms = (int32_t)n;
            break;
        case 9: http_listen = v; break;
        case 10: http_token = v; break;
        default: {
            static const char *const lv[] = {"error", "warn", "info", "debug"};
            int l = 0;
            while (l < 4 && strcmp(v, lv[l]) != 0) l++;
            if (l == 4) {
                fprintf(stderr,
                        "sluice broker serve: --log-level '%s' is not error, warn, info or debug\n",
                        v);
                return 2;
            }
            conf.log_level = l;
        }
        }
    }
    if (!conf.tls_cert != !conf.tls_key) {
        fprintf(stderr, "sluice broker serve: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (http_token && !http_listen) {
        fprintf(stderr, "sluice broker serve: --http-token needs --http HOST:PORT\n");
        return 2;
    }
    sl_broker *b = open_broker("broker serve", jobs_broker_dir(dir), 0);
    if (!b) return 1;
    sl_server *s = NULL;
    conf.log = stderr;
    int rc = sl_server_open_conf(&s, b, &conf);
    if (rc < 0) {
        fprintf(stderr, "sluice broker serve: %s\n", sl_server_errmsg(s));
        sl_server_close(s);
        sl_broker_close(b);
        return exit_for(rc);
    }
    sl_http *http = NULL;
    if (http_listen) {
        char err[300];
        sl_http_conf hc = {.listen = http_listen,
                           .token_file = http_token,
                           .job = "broker",
                           .broker_dir = sl_broker_dir(b)};
        if (sl_http_start(&http, &hc, err, sizeof(err)) != 0) {
            fprintf(stderr, "sluice broker serve: %s\n", err); /* names the option */
            sl_server_close(s);
            sl_broker_close(b);
            return 2;
        }
        fprintf(stderr, "sluice broker serve: status page at %s (metrics at /metrics)\n",
                sl_http_url(http));
    }
    serve_server = s;
    struct sigaction sa = {.sa_handler = on_serve_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "sluice broker serve: serving %s%s%s on port %d\n", sl_broker_dir(b),
            conf.tls_cert ? " over TLS" : "", conf.sasl_users ? " with SASL" : "",
            sl_server_port(s));
    rc = sl_server_run(s);
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "sluice broker serve: %s\n", sl_server_errmsg(s));
        status = 1;
    }
    sl_http_stop(http);
    sl_server_close(s);
    serve_server = NULL;
    if (sl_broker_close(b) < 0) {
        fprintf(stderr, "sluice broker serve: closing the broker failed\n");
        status = 1;
    }
    if (!status) fprintf(stderr, "sluice broker serve: stopped\n");
    return status;
}

/* ---- group ---------------------------------------------------------------------------- */

static void group_usage(FILE *f)
{
    fprintf(f, "usage: sluice group describe GROUP --topic T -b HOST:PORT\n"
               "Prints, for each partition of T, the group's committed offset, the end offset\n"
               "and the lag (as kafka-consumer-groups --describe), then the total lag.\n");
}

int cli_group(int argc, char **argv)
{
    const char *cmd = "group";
    static const struct option opts[] = {{"topic", required_argument, NULL, 't'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    const char *topic = NULL, *bootstrap = NULL;
    int opt;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":ht:b:", opts)) != -1) {
        switch (opt) {
        case 't': topic = optarg; break;
        case 'b': bootstrap = optarg; break;
        default: {
            int r = jobs_opt(cmd, opt, argv, NULL);
            if (r == JOBS_HELP) {
                group_usage(stdout);
                return 0;
            }
            return r ? r : 2;
        }
        }
    }
    if (optind >= argc || strcmp(argv[optind], "describe") != 0 || optind + 2 != argc) {
        if (optind < argc && strcmp(argv[optind], "describe") != 0)
            fprintf(stderr, "sluice group: unknown subcommand '%s' (describe)\n", argv[optind]);
        else
            group_usage(stderr);
        return 2;
    }
    if (!topic || !bootstrap) {
        fprintf(stderr, "sluice group describe: needs %s\n",
                !topic ? "--topic T" : "-b HOST:PORT (groups live on a Kafka server)");
        return 2;
    }
    return cli_kafka_group_describe(bootstrap, argv[optind + 1], topic);
}
