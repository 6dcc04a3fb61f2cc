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
 * non-flexible versions; any other request gets an error answer. There is
 * no authentication yet, so only loopback addresses are accepted.
 *
 * Threads: sl_server_run() runs the event loop on the calling thread, which
 * is then the only user of the broker handle until it returns;
 * sl_server_stop() may be called from any thread or a signal handler.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include "sluice/export.h"
#include <stdio.h>

#include "sluice/broker.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_server sl_server;

/* Open a server on broker b listening on listen ("HOST:PORT", HOST a
 * loopback address or "localhost", PORT 0 for any free one; NULL means
 * "127.0.0.1:9092"). b stays the caller's and must outlive the server. On
 * success *out is a new server that the caller owns and frees with
 * sl_server_close(); on failure *out is still set (unless memory ran out,
 * then NULL) so that sl_server_errmsg() can say why, and must be closed. */
SL_API int sl_server_open(sl_server **out, sl_broker *b, const char *listen);
/* The TCP port the server listens on. */
SL_API int sl_server_port(const sl_server *s);
/* Where the server writes one line per client it disconnects (a malformed
 * or oversized frame); NULL (the default) writes nothing. */
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
