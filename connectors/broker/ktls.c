/*
 * connectors/broker/ktls.c - the server's connection I/O layer: plain
 * recv/send, or OpenSSL over the same non-blocking socket.
 *
 * TLS runs inside the epoll loop without threads or blocking: each
 * connection has an SSL in accept state on its socket, and the handshake
 * happens inside the first SSL_read/SSL_write calls. SSL_ERROR_WANT_READ and
 * SSL_ERROR_WANT_WRITE become "nothing now" plus a note in c->io_want when
 * the operation waits for the other direction (a read that must write
 * during the handshake, a write that must read), which server.c's conn_arm
 * turns into epoll interest. Writes use SSL_MODE_ENABLE_PARTIAL_WRITE and
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: the output buffer may grow (move)
 * between a write that would block and its retry, and the retry passes at
 * least the bytes it passed before (the buffer only grows at its end).
 * Reads are never shorter than one TLS record's plaintext (server.c reads
 * into at least READ_CHUNK bytes), and slb_io_pending reports the rest if
 * there is any, since epoll cannot see bytes OpenSSL already holds.
 *
 * Invariants: TLS 1.2 or newer only; no session tickets or renegotiation
 * (a client may not make the server do handshakes on demand); a TLS error
 * ends the connection with one reason in c->io_err.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "connectors/broker/ktls.h"
#include "connectors/broker/server_int.h"

struct slb_tls {
    SSL_CTX *ctx;
    BIO_METHOD *bio; /* the socket BIO below: send() with MSG_NOSIGNAL */
};

/* A minimal socket BIO (fd in the BIO's data): OpenSSL's own writes with
 * write(), which raises SIGPIPE on a socket the client closed; this one uses
 * send(MSG_NOSIGNAL), so the library never depends on the process ignoring
 * SIGPIPE. */
static int sock_write(BIO *b, const char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t k = send((int)(intptr_t)BIO_get_data(b), p, (size_t)n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)k;
}

static int sock_read(BIO *b, char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t k = recv((int)(intptr_t)BIO_get_data(b), p, (size_t)n, 0);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(b);
    return (int)k;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void ssl_reason(char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s", r ? r : "unknown TLS error");
    ERR_clear_error();
}

int slb_tls_open(slb_tls **out, const char *cert, const char *key, char *err, size_t errlen)
{
    int rc = SL_EINVAL;
    char why[200];
    *out = NULL;
    slb_tls *t = calloc(1, sizeof *t);
    if (!t) return SL_ENOMEM;
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx) {
        rc = SL_ENOMEM;
        snprintf(err, errlen, "TLS: cannot create a context");
        goto fail;
    }
    t->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice socket");
    if (!t->bio || !BIO_meth_set_write(t->bio, sock_write) ||
        !BIO_meth_set_read(t->bio, sock_read) || !BIO_meth_set_ctrl(t->bio, sock_ctrl) ||
        !BIO_meth_set_create(t->bio, sock_create)) {
        rc = SL_ENOMEM;
        snprintf(err, errlen, "TLS: cannot create the socket BIO");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
        ssl_reason(why, sizeof why);
        snprintf(err, errlen, "TLS certificate '%s': %s", cert, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(why, sizeof why);
        snprintf(err, errlen, "TLS key '%s': %s", key, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "TLS key '%s' does not match the certificate '%s'", key, cert);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    slb_tls_free(t);
    return rc;
}

void slb_tls_free(slb_tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio);
    free(t);
}

int slb_tls_attach(slb_tls *t, slb_conn *c)
{
    SSL *ssl = SSL_new(t->ctx);
    BIO *b = ssl ? BIO_new(t->bio) : NULL;
    if (!b) {
        SSL_free(ssl);
        ERR_clear_error();
        return SL_ENOMEM;
    }
    BIO_set_data(b, (void *)(intptr_t)c->fd);
    SSL_set_bio(ssl, b, b); /* ssl owns b */
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    return 0;
}

void slb_tls_detach(slb_conn *c)
{
    if (!c->ssl) return;
    SSL_free(c->ssl); /* no close_notify: the socket is closed right after */
    c->ssl = NULL;
}

/* Map an SSL_read/SSL_write result k to the slb_io_* convention. */
static ssize_t ssl_result(slb_conn *c, int k, bool reading)
{
    if (k > 0) return k;
    int e = SSL_get_error(c->ssl, k);
    if (e == SSL_ERROR_WANT_READ) {
        if (!reading) c->io_want |= SLB_IO_WRITE_WANTS_IN;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        if (reading) c->io_want |= SLB_IO_READ_WANTS_OUT;
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(c->io_err, sizeof c->io_err, "closed by the client");
    } else if (e == SSL_ERROR_SSL) {
        char why[100];
        ssl_reason(why, sizeof why);
        snprintf(c->io_err, sizeof c->io_err, "TLS %s failed: %s",
                 SSL_is_init_finished(c->ssl) ? "session" : "handshake", why);
    } else {
        snprintf(c->io_err, sizeof c->io_err, "%s",
                 errno && k < 0 ? strerror(errno) : "closed by the client");
    }
    ERR_clear_error();
    return -1;
}

ssize_t slb_io_recv(slb_conn *c, void *p, size_t n)
{
    if (!c->ssl) {
        for (;;) {
            ssize_t k = recv(c->fd, p, n, 0);
            if (k > 0) return k;
            if (k < 0 && errno == EINTR) continue;
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            snprintf(c->io_err, sizeof c->io_err, "%s",
                     k == 0 ? "closed by the client" : strerror(errno));
            return -1;
        }
    }
    c->io_want &= ~SLB_IO_READ_WANTS_OUT;
    errno = 0;
    return ssl_result(c, SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), true);
}

ssize_t slb_io_send(slb_conn *c, const void *p, size_t n)
{
    if (!c->ssl) {
        for (;;) {
            ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
            if (k >= 0) return k;
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            snprintf(c->io_err, sizeof c->io_err, "%s", strerror(errno));
            return -1;
        }
    }
    c->io_want &= ~SLB_IO_WRITE_WANTS_IN;
    errno = 0;
    return ssl_result(c, SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), false);
}

int slb_io_pending(const slb_conn *c)
{
    return c->ssl ? SSL_pending(c->ssl) : 0;
}

bool slb_io_handshaking(const slb_conn *c)
{
    return c->ssl && !SSL_is_init_finished(c->ssl);
}
