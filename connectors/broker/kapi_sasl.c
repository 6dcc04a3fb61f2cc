/*
 * connectors/broker/kapi_sasl.c - SASL authentication for the Kafka-protocol
 * server: SaslHandshake v0-1 and SaslAuthenticate v0-1 (v2 is flexible, not
 * served), with mechanisms SCRAM-SHA-256 (always) and PLAIN (over TLS only:
 * PLAIN sends the password itself). Credentials are checked by scram.c.
 *
 * The two flows Kafka defines, both served:
 *
 *   SaslHandshake v1, then SaslAuthenticate requests carrying the tokens
 *   (librdkafka);
 *   SaslHandshake v0, then raw tokens without any Kafka header, each way
 *   framed by an int32 length only (kafka-python 2.0):
 *
 *     client:  int32 length | token bytes
 *     server:  int32 length | token bytes      (PLAIN success: length 0)
 *
 * Invariants: until c->authed, server.c answers only ApiVersions and these
 * two requests and closes the connection on anything else; a failed
 * authentication closes the connection (after the SaslAuthenticate error
 * answer, or at once in the raw flow), with one line on the log at warn
 * level naming the client, the mechanism and the user; a handshake is
 * accepted once per connection, and only when the server has users.
 */
#include <stdlib.h>
#include <string.h>

#include "connectors/broker/server_int.h"

#define TOKEN_MAX 1024 /* the longest server token (SCRAM's, well below) */

static const char *mech_name(int m)
{
    return m == SLB_MECH_PLAIN ? "PLAIN" : "SCRAM-SHA-256";
}

void slb_sasl_free(slb_conn *c)
{
    free(c->scram);
    c->scram = NULL;
}

static void failed(sl_server *s, slb_conn *c, const char *user, int ul, const char *why)
{
    slb_srv_logl(s, SLB_LOG_WARN,
                 "sluice broker serve: client %s: authentication failed (%s, user '%.*s'): %s; "
                 "disconnected\n",
                 c->peer, mech_name(c->mech), ul, user ? user : "", why);
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. */
static int plain_step(sl_server *s, slb_conn *c, const uint8_t *p, size_t n)
{
    const char *t = (const char *)p, *e = t + n;
    const char *z1 = memchr(t, 0, n);
    const char *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(e - z1 - 1)) : NULL;
    if (!z2) {
        failed(s, c, NULL, 0, "malformed PLAIN token");
        return SL_EPERM;
    }
    const char *user = z1 + 1, *pw = z2 + 1;
    int ul = (int)(z2 - user);
    size_t zl = (size_t)(z1 - t);
    if (zl && (zl != (size_t)ul || memcmp(t, user, zl))) {
        failed(s, c, user, ul, "authorization id differs from the user");
        return SL_EPERM;
    }
    const slb_cred *cr = slb_users_find(&s->users, user, (size_t)ul);
    if (!cr || !slb_cred_check(cr, pw, (size_t)(e - pw))) {
        failed(s, c, user, ul, cr ? "wrong password" : "unknown user");
        return SL_EPERM;
    }
    c->authed = true;
    slb_srv_logl(s, SLB_LOG_INFO,
                 "sluice broker serve: client %s: authenticated as '%.*s' (PLAIN)\n", c->peer, ul,
                 user);
    return 0;
}

/* One step of the exchange with token (p, n); the answer goes to out
 * (*outlen bytes, possibly none). Returns 0, SL_EPERM (failed, logged) or
 * SL_ENOMEM. */
static int step(sl_server *s, slb_conn *c, const uint8_t *p, size_t n, char *out, size_t *outlen)
{
    *outlen = 0;
    if (c->mech == SLB_MECH_PLAIN) return plain_step(s, c, p, n);
    int rc;
    if (!c->scram) {
        if (!(c->scram = malloc(sizeof *c->scram))) return SL_ENOMEM;
        rc = slb_scram_first(c->scram, &s->users, (const char *)p, n, NULL, out, TOKEN_MAX, outlen);
    } else {
        rc = slb_scram_final(c->scram, (const char *)p, n, out, TOKEN_MAX, outlen);
    }
    if (rc == SL_ENOMEM) return rc;
    const char *user = c->scram->cred.user;
    if (rc < 0) {
        failed(s, c, user, (int)strlen(user), c->scram->why ? c->scram->why : "failed");
        slb_sasl_free(c);
        return SL_EPERM;
    }
    if (c->scram->step == 2) {
        c->authed = true;
        slb_srv_logl(s, SLB_LOG_INFO,
                     "sluice broker serve: client %s: authenticated as '%s' (SCRAM-SHA-256)\n",
                     c->peer, user);
        slb_sasl_free(c);
    }
    return 0;
}

int slb_k_sasl_handshake(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    int len;
    const char *m = krd_str(r, &len);
    if (r->bad || len < 0) return SL_EPARSE;
    bool plain_ok = c->ssl != NULL, on = s->users.n > 0;
    int16_t err = KE_NONE;
    if (!on || c->authed || c->sasl != SLB_SASL_NONE) {
        err = on ? KE_ILLEGAL_SASL_STATE : KE_UNSUPPORTED_SASL_MECHANISM;
        slb_srv_logl(s, SLB_LOG_WARN,
                     "sluice broker serve: client %s: SaslHandshake %s; disconnected\n", c->peer,
                     on ? "after a handshake or authentication"
                        : "but the server has no users (no --sasl-users)");
    } else if (len == 13 && !memcmp(m, "SCRAM-SHA-256", 13)) {
        c->mech = SLB_MECH_SCRAM;
    } else if (len == 5 && !memcmp(m, "PLAIN", 5) && plain_ok) {
        c->mech = SLB_MECH_PLAIN;
    } else {
        err = KE_UNSUPPORTED_SASL_MECHANISM;
        slb_srv_logl(
            s, SLB_LOG_WARN,
            "sluice broker serve: client %s: SASL mechanism '%.*s' refused (%s); "
            "disconnected\n",
            c->peer, len > 64 ? 64 : len, m,
            len == 5 && !memcmp(m, "PLAIN", 5)
                ? "PLAIN only over TLS: it sends the password itself"
                : (plain_ok ? "SCRAM-SHA-256 and PLAIN are served" : "SCRAM-SHA-256 is served"));
    }
    kwr_i16(w, err);
    kwr_i32(w, on ? (plain_ok ? 2 : 1) : 0);
    if (on) kwr_str(w, "SCRAM-SHA-256", 13);
    if (on && plain_ok) kwr_str(w, "PLAIN", 5);
    if (err)
        c->closing = true;
    else
        c->sasl = ver == 0 ? SLB_SASL_RAW : SLB_SASL_AUTHENTICATE;
    return 0;
}

int slb_k_sasl_authenticate(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    int32_t n;
    const uint8_t *p = krd_bytes(r, &n);
    if (r->bad) return SL_EPARSE;
    char out[TOKEN_MAX];
    size_t ol = 0;
    int16_t err = KE_NONE;
    const char *msg = NULL;
    if (c->sasl != SLB_SASL_AUTHENTICATE || c->authed) {
        err = KE_ILLEGAL_SASL_STATE;
        msg = "SaslAuthenticate without a SaslHandshake v1 first, or after authentication";
        slb_srv_logl(s, SLB_LOG_WARN, "sluice broker serve: client %s: %s; disconnected\n", c->peer,
                     msg);
    } else {
        int rc = step(s, c, p ? p : (const uint8_t *)"", p ? (size_t)n : 0, out, &ol);
        if (rc == SL_ENOMEM) return rc;
        if (rc < 0) {
            err = KE_SASL_AUTHENTICATION_FAILED;
            msg = "Authentication failed: invalid credentials";
            ol = 0;
        }
    }
    kwr_i16(w, err);
    kwr_str(w, msg, msg ? (int)strlen(msg) : -1);
    kwr_bytes(w, (const uint8_t *)out, ol);
    if (ver >= 1) kwr_i64(w, 0); /* session_lifetime_ms: no re-authentication */
    if (err) c->closing = true;
    return 0;
}

int slb_sasl_raw(sl_server *s, slb_conn *c, const uint8_t *p, size_t n)
{
    char out[TOKEN_MAX];
    size_t ol = 0;
    int rc = step(s, c, p, n, out, &ol);
    if (rc < 0) return rc;
    if (kbuf_reserve(&c->out, 4 + ol) < 0) return SL_ENOMEM;
    kput32(c->out.p + c->out.len, (uint32_t)ol);
    memcpy(c->out.p + c->out.len + 4, out, ol);
    c->out.len += 4 + ol;
    return 0;
}
