/*
 * sluice/server.h - the built-in broker's Kafka-protocol server (public API).
 *
 * A server listens on a loopback TCP address and answers Kafka clients
 * (librdkafka, kcat, the Java client) over a broker directory opened with
 * sl_broker_open(): it is node 0 and the leader of every partition. What it
 * speaks so far: ApiVersions, Metadata, Produce (record batch v2,
 * uncompressed; idempotent and transactional), Fetch and ListOffsets
 * (earliest and latest), and the transaction coordinator's InitProducerId,
 * AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn, in their
 * non-flexible versions; any other request gets an error answer.
 *
 * Security (sl_server_conf): without a users file the server listens on
 * loopback addresses only. With one (conf.sasl_users, written by
 * sl_server_user_add) every connection must authenticate with SASL
 * SCRAM-SHA-256, or PLAIN over TLS, before anything but ApiVersions is
 * served, and any address may be listened on. With conf.tls_cert and
 * conf.tls_key every connection speaks TLS. Limits: the largest request,
 * the number of connections, and how long a client may stay silent in the
 * middle of a request or before authenticating; a client past one of them
 * is disconnected alone, with one line on the log.
 *
 * Threads: sl_server_run() runs the event loop on the calling thread, which
 * is then the only user of the broker handle until it returns;
 * sl_server_stop() may be called from any thread or a signal handler.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/broker.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_server sl_server;

/* How much the server writes to its log. */
enum sl_server_log_level {
    SL_SERVER_LOG_ERROR = 0, /* nothing but failures of the server itself */
    SL_SERVER_LOG_WARN = 1,  /* + each client disconnected for a protocol or auth failure */
    SL_SERVER_LOG_INFO = 2,  /* + idle and refused clients, TLS failures, authentications */
    SL_SERVER_LOG_DEBUG = 3, /* + one line per connection and per request (api, version,
                                client, latency) */
};

typedef struct sl_server_conf {
    const char *listen;        /* "HOST:PORT" (PORT 0: any free one); NULL: 127.0.0.1:9092 */
    const char *tls_cert;      /* PEM certificate (chain) file; NULL: no TLS */
    const char *tls_key;       /* PEM private key file; with tls_cert */
    const char *sasl_users;    /* users file; NULL: no authentication (loopback only) */
    int32_t max_request_bytes; /* largest request frame; default and most 100 MiB */
    int32_t max_connections;   /* more are closed at accept; default 10,000 */
    int32_t idle_timeout_ms;   /* silence allowed mid-request or before authenticating;
                                      default 30,000; 0: none */
    int32_t log_level;         /* enum sl_server_log_level; default SL_SERVER_LOG_WARN */
    FILE *log;                 /* where log lines go; NULL (default): nowhere */
} sl_server_conf;

/* Fill conf with the defaults above. */
SL_API void sl_server_conf_init(sl_server_conf *conf);
/* Open a server as sl_server_open() does, with the settings in conf (NULL:
 * the defaults). conf and the strings it points to are read during the
 * call only; conf->log is kept and must outlive the server. A bad setting,
 * certificate, key or users file fails with a one-line reason in
 * sl_server_errmsg(). */
SL_API int sl_server_open_conf(sl_server **out, sl_broker *b, const sl_server_conf *conf);
/* Add user (or change its password) in the users file at path, creating it
 * (mode 0600) if needed: salted SCRAM-SHA-256 credentials, never the
 * password itself. Returns 0, or a negative SL_E... code with a one-line
 * reason in err (errlen bytes). */
SL_API int sl_server_user_add(const char *path, const char *user, const char *password, char *err,
                              size_t errlen);

/* Open a server on broker b listening on listen ("HOST:PORT", HOST a
 * loopback address or "localhost", PORT 0 for any free one; NULL means
 * "127.0.0.1:9092"), with the defaults of sl_server_conf_init(). b stays the caller's and must outlive the server. On
 * success *out is a new server that the caller owns and frees with
 * sl_server_close(); on failure *out is still set (unless memory ran out,
 * then NULL) so that sl_server_errmsg() can say why, and must be closed.
 * While open, the server records itself in DIR/.server.PID (its address),
 * so that an embedded writer refused by a partition the server writes is
 * told to produce through it. */
SL_API int sl_server_open(sl_server **out, sl_broker *b, const char *listen);
/* The TCP port the server listens on. */
SL_API int sl_server_port(const sl_server *s);
/* Where the server writes its log lines (see sl_server_conf.log_level;
 * by default one per client it disconnects for a malformed or oversized
 * frame); NULL writes nothing. */
SL_API void sl_server_set_log(sl_server *s, FILE *log);
/* Serve until sl_server_stop(). Returns 0 after a stop, or a negative
 * SL_E... code if the event loop failed (sl_server_errmsg() says why). */
SL_API int sl_server_run(sl_server *s);
/* Make sl_server_run() return soon. Async-signal-safe; any thread. */
SL_API void sl_server_stop(sl_server *s);
/* Close the listener and every connection and free s. Accepts NULL. */
SL_API void sl_server_close(sl_server *s);
/* Message of the last failure on s ("" if none). Accepts NULL. */
SL_API const char *sl_server_errmsg(const sl_server *s);

#ifdef __cplusplus
}
#endif

#endif
