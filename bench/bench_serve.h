/*
 * bench/bench_serve.h - what the Kafka benchmarks (bench_kafka.c,
 * bench_kafka_e2e.c) share: sluice's Kafka server on a thread of the bench
 * process, and removing a temporary broker directory.
 */
#ifndef SLUICE_BENCH_SERVE_H
#define SLUICE_BENCH_SERVE_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sluice/server.h>

/* The server thread's argument and result: t->rc = sl_server_run(t->s). */
typedef struct srv_thread {
    sl_server *s;
    int rc;
} srv_thread;

static inline void *server_main(void *arg)
{
    srv_thread *t = arg;
    t->rc = sl_server_run(t->s);
    return NULL;
}

/* nftw callback: remove everything (FTW_DEPTH | FTW_PHYS). */
static inline int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

#endif
