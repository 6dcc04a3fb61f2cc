/*
 * ops/httpd.h - a small embedded HTTP/1.1 server on its own thread (private
 * header; not part of the public API). It serves the operations endpoints
 * (/metrics, /api/job, the status page); what each path answers is the
 * handler's business, the server only speaks HTTP.
 *
 * GET and HEAD only (anything else: 405); keep-alive; a request head of at
 * most SLI_HTTPD_HEAD_MAX bytes (431 beyond); at most SLI_HTTPD_MAX_CONNS
 * connections (one more is accepted and closed at once). With a token, every
 * request carries `Authorization: Bearer <token>` or `?token=<token>`, or is
 * answered 401. A request head that is not complete, or a response that is
 * not fully sent, SLI_HTTPD_TIMEOUT_MS after the server began waiting for it
 * closes that connection; no client ever blocks the server or another client.
 */
#ifndef SLUICE_OPS_HTTPD_H
#define SLUICE_OPS_HTTPD_H

#include <stddef.h>
#include "sluice/operator.h" /* sl_buf */

#define SLI_HTTPD_HEAD_MAX   8192  /* bytes of a request head (line and headers) */
#define SLI_HTTPD_MAX_CONNS  512   /* connections held at once */
#define SLI_HTTPD_TIMEOUT_MS 10000 /* for a request head, or for a response to leave */

typedef struct sli_httpd sli_httpd;

typedef struct sli_http_req {
    const char *method; /* "GET" or "HEAD" (nothing else reaches the handler) */
    const char *path;   /* "/metrics" (no query, not percent-decoded) */
    const char *query;  /* what follows '?', "" if none (not decoded) */
} sli_http_req;

/* Fill body (empty on entry) and, if not text/plain, point *ctype at a string
 * that outlives the call (a literal); return the HTTP status (200, 404, ...;
 * anything outside 200..599 is sent as 500). For HEAD the body is computed
 * and only its length sent. Runs on the server thread, one request at a
 * time: it must not block for long, since every client waits for it. */
typedef int (*sli_http_handler)(void *ud, const sli_http_req *req, sl_buf *body,
                                const char **ctype);

/* Bind and listen on `listen` ("HOST:PORT"; PORT 0 = ephemeral; HOST a name,
 * an IPv4 address or a bracketed [IPv6] one) and start the server thread.
 * token_file: NULL, or a file whose first line is the token. A non-loopback
 * address without a token file is refused. Returns 0 and *out, or an SL_E
 * code with a one-line message in err ("--http 0.0.0.0:9249: a non-loopback
 * address needs --http-token FILE"). The server keeps h and ud until
 * sli_httpd_stop(); the caller keeps ud alive that long. */
int sli_httpd_start(sli_httpd **out, const char *listen, const char *token_file, sli_http_handler h,
                    void *ud, char *err, size_t errlen);
/* The bound port (the ephemeral one for PORT 0). */
int sli_httpd_port(const sli_httpd *s);
/* Wake the server thread, join it, close every connection and free s. NULL ok. */
void sli_httpd_stop(sli_httpd *s);

/* Tests: the stall timeout (default SLI_HTTPD_TIMEOUT_MS), in effect at once
 * for open connections too; and the number of connections open right now. */
void sli_httpd_set_timeout_ms(sli_httpd *s, int ms);
int sli_httpd_connections(const sli_httpd *s);

#endif
