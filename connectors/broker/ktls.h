/*
 * connectors/broker/ktls.h - a connection's byte I/O for the Kafka-protocol
 * server, plain or TLS (private header; ktls.c). server.c moves bytes
 * between sockets and a connection's buffers through slb_io_recv and
 * slb_io_send only, so that whatever sends bytes (the output buffer, or a
 * file range: pread into a scratch buffer, then slb_io_send) works over TLS
 * unchanged.
 */
#ifndef SLUICE_BROKER_KTLS_H
#define SLUICE_BROKER_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct slb_tls slb_tls;
struct slb_conn;

/* What a TLS read or write waits for, beyond the obvious (c->io_want). */
#define SLB_IO_READ_WANTS_OUT 1 /* SSL_read needs the socket writable (handshake) */
#define SLB_IO_WRITE_WANTS_IN 2 /* SSL_write needs the socket readable */

/* A server-side TLS context from a PEM certificate (chain) and key file.
 * Returns 0, or a negative SL_E... code with a one-line reason in err. */
int slb_tls_open(slb_tls **out, const char *cert, const char *key, char *err, size_t errlen);
void slb_tls_free(slb_tls *t);
/* Make c speak TLS as the server on its socket (the handshake runs inside
 * the first reads and writes). Returns 0 or SL_ENOMEM. */
int slb_tls_attach(slb_tls *t, struct slb_conn *c);
/* Free c's TLS state (accepts a plain connection). */
void slb_tls_detach(struct slb_conn *c);

/* Read up to n bytes: > 0 bytes read; 0 nothing now (the socket would
 * block; c->io_want says what for); -1 the connection is over (closed by the
 * peer, a socket error or a TLS failure, c->io_err naming it). */
ssize_t slb_io_recv(struct slb_conn *c, void *p, size_t n);
/* Write up to n bytes; results as slb_io_recv. */
ssize_t slb_io_send(struct slb_conn *c, const void *p, size_t n);
/* Bytes already decrypted and waiting inside TLS (epoll will not say so). */
int slb_io_pending(const struct slb_conn *c);
/* True while c's TLS handshake is not finished (false on a plain one). */
bool slb_io_handshaking(const struct slb_conn *c);

#endif
