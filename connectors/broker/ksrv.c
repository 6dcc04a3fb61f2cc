/*
 * connectors/broker/ksrv.c - what the Kafka-protocol server's request
 * handlers (kapi_*.c) call back into: the server's log lines, topic lookup
 * by a wire name, the Kafka error code of an SL_E... code, and appending a
 * file range to a connection's output. It sits below both the handlers and
 * server.c (which dispatches to them), so that no file calls back up into
 * the one that calls it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/broker/server_int.h"

static void vlog(sl_server *s, int level, const char *fmt, va_list ap)
{
    if (!s->log || s->log_level < level) return;
    vfprintf(s->log, fmt, ap);
    fflush(s->log);
}

void slb_srv_log(sl_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(s, SLB_LOG_WARN, fmt, ap);
    va_end(ap);
}

void slb_srv_logl(sl_server *s, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(s, level, fmt, ap);
    va_end(ap);
}

bool slb_srv_topic_name(const char *p, int len, char out[SL_TOPIC_NAME_MAX + 1])
{
    if (!p || len <= 0 || len > SL_TOPIC_NAME_MAX || memchr(p, 0, (size_t)len)) return false;
    memcpy(out, p, (size_t)len);
    out[len] = 0;
    return true;
}

sl_topic_info *slb_srv_describe(sl_server *s, const char *p, int len)
{
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_topic_info *ti = NULL;
    if (!slb_srv_topic_name(p, len, name) || sl_topic_describe(s->b, name, &ti) < 0) return NULL;
    return ti;
}

int16_t slb_srv_kafka_error(int rc)
{
    switch (rc) {
    case SL_ENOENT: return KE_UNKNOWN_TOPIC;
    case SL_ETOOBIG: return KE_MESSAGE_TOO_LARGE;
    case SL_EFENCED: return KE_INVALID_PRODUCER_EPOCH;
    case SL_ERANGE: return KE_OUT_OF_ORDER_SEQ;
    case SL_ECORRUPT: return KE_CORRUPT_MESSAGE;
    case SL_EINVAL: return KE_INVALID_RECORD;
    default: return KE_UNKNOWN;
    }
}

int slb_conn_add_range(slb_conn *c, slb_rfile *f, int64_t off, int64_t len)
{
    if (c->nrq == c->caprq) {
        size_t cap = c->caprq ? c->caprq * 2 : 64;
        slb_orange *n = realloc(c->rq, cap * sizeof *n);
        if (!n) return SL_ENOMEM;
        c->rq = n;
        c->caprq = cap;
    }
    c->rq[c->nrq++] = (slb_orange){c->out.len, slb_rfile_ref(f), off, len};
    c->rqbytes += len;
    c->req_extra += len;
    return 0;
}
