/*
 * connectors/broker/scram.c - SCRAM-SHA-256 server side (RFC 5802 with
 * RFC 7677's hash), PLAIN checked against SCRAM credentials, and the users
 * file (format in scram.h). The hash, HMAC, PBKDF2 and random bytes come
 * from OpenSSL's libcrypto.
 *
 * The exchange, with the names RFC 5802 uses:
 *
 *   client-first  gs2-header client-first-bare     "n,,n=USER,r=CNONCE"
 *   server-first  "r=" CNONCE SNONCE ",s=" SALT ",i=" ITERATIONS
 *   client-final  "c=" b64(gs2-header) ",r=" CNONCE SNONCE ",p=" b64(ClientProof)
 *   server-final  "v=" b64(ServerSignature)
 *
 *   AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
 *   ClientSignature = HMAC(StoredKey, AuthMessage)
 *   ClientKey       = ClientProof XOR ClientSignature;   H(ClientKey) must be StoredKey
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 *
 * Invariants: the server never holds a password (only StoredKey and
 * ServerKey); the client's final nonce must end with the combined nonce sent
 * in server-first (RFC 5802 wants it equal; librdkafka up to 2.0 sends its
 * own nonce once more in front, and Kafka accepted that with endsWith, so
 * do we: the server's fresh nonce is still in the AuthMessage the proof
 * covers, which is what defeats replay); its channel-binding field must be the base64 of the very
 * gs2-header it opened with (channel binding itself, "p=", is refused); an
 * unknown user is answered with a salt derived from a per-process secret, so
 * that it is indistinguishable from a known one until the proof fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "connectors/broker/scram.h"
#include "sluice/error.h"

/* ---- base64 ---------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t slb_b64(char *out, const uint8_t *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static int b64val(char ch)
{
    const char *q = ch ? strchr(B64, ch) : NULL;
    return q ? (int)(q - B64) : -1;
}

int slb_unb64(uint8_t *out, size_t cap, const char *s, size_t n)
{
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else if (pad || (v[j] = b64val(s[i + j])) < 0) {
                return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (o + 3 - (size_t)pad > cap) return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return (int)o;
}

/* ---- credentials ------------------------------------------------------------- */

static void hmac256(const uint8_t *key, size_t klen, const void *msg, size_t n, uint8_t out[32])
{
    unsigned int ol = 32;
    HMAC(EVP_sha256(), key, (int)klen, msg, n, out, &ol);
}

static void sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int ol = 32;
    EVP_Digest(p, n, out, &ol, EVP_sha256(), NULL);
}

/* SaltedPassword and ClientKey of password under c's salt and iterations. */
static int salted(const slb_cred *c, const char *password, size_t plen, uint8_t sp[32],
                  uint8_t ck[32])
{
    if (PKCS5_PBKDF2_HMAC(password, (int)plen, c->salt, (int)c->saltlen, c->iter, EVP_sha256(), 32,
                          sp) != 1)
        return SL_ENOMEM;
    hmac256(sp, 32, "Client Key", 10, ck);
    return 0;
}

int slb_cred_make(slb_cred *c, const char *password, size_t plen, const uint8_t *salt,
                  size_t saltlen, int iter)
{
    if (saltlen == 0 || saltlen > SLB_SALT_MAX || iter < 1 || iter > SLB_SCRAM_ITER_MAX)
        return SL_EINVAL;
    memcpy(c->salt, salt, saltlen);
    c->saltlen = saltlen;
    c->iter = iter;
    uint8_t sp[32], ck[32];
    if (salted(c, password, plen, sp, ck) < 0) return SL_ENOMEM;
    sha256(ck, 32, c->stored);
    hmac256(sp, 32, "Server Key", 10, c->server);
    OPENSSL_cleanse(sp, sizeof sp);
    OPENSSL_cleanse(ck, sizeof ck);
    return 0;
}

bool slb_cred_check(const slb_cred *c, const char *password, size_t plen)
{
    uint8_t sp[32], ck[32], st[32];
    if (salted(c, password, plen, sp, ck) < 0) return false;
    sha256(ck, 32, st);
    OPENSSL_cleanse(sp, sizeof sp);
    OPENSSL_cleanse(ck, sizeof ck);
    return CRYPTO_memcmp(st, c->stored, 32) == 0;
}

/* ---- the users file ------------------------------------------------------------ */

static bool user_ok(const char *u, size_t n)
{
    if (n == 0 || n > SLB_USER_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (u[i] <= ' ' || u[i] > '~' || u[i] == ',' || u[i] == '=') return false;
    return true;
}

/* Parse one non-comment line into c; false if it is not a valid entry. */
static bool parse_line(char *line, slb_cred *c)
{
    char *f[7];
    int nf = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t;
         t = strtok_r(NULL, " \t\r\n", &save))
        if (nf < 7)
            f[nf++] = t;
        else
            return false;
    if (nf != 6 || !user_ok(f[0], strlen(f[0])) || strcmp(f[1], "SCRAM-SHA-256") != 0) return false;
    char *end;
    long it = strtol(f[2], &end, 10);
    if (*end || it < 1 || it > SLB_SCRAM_ITER_MAX) return false;
    memset(c, 0, sizeof *c);
    strcpy(c->user, f[0]);
    c->iter = (int)it;
    int sl = slb_unb64(c->salt, sizeof c->salt, f[3], strlen(f[3]));
    if (sl <= 0) return false;
    c->saltlen = (size_t)sl;
    return slb_unb64(c->stored, 32, f[4], strlen(f[4])) == 32 &&
           slb_unb64(c->server, 32, f[5], strlen(f[5])) == 32;
}

int slb_users_load(slb_users *u, const char *path, bool *world_readable, char *err, size_t errlen)
{
    int rc = SL_EIO;
    char line[1024];
    memset(u, 0, sizeof *u);
    *world_readable = false;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "users file '%s': %s", path, strerror(errno));
        return errno == ENOENT ? SL_ENOENT : SL_EIO;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0) *world_readable = (st.st_mode & S_IROTH) != 0;
    if (RAND_bytes(u->secret, sizeof u->secret) != 1) {
        snprintf(err, errlen, "users file '%s': no random bytes for the server's secret", path);
        goto fail;
    }
    size_t cap = 0;
    for (int no = 1; fgets(line, sizeof line, f); no++) {
        rc = SL_EPARSE;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "users file '%s' line %d: longer than %zu bytes", path, no,
                     sizeof line - 2);
            goto fail;
        }
        char *p = line + strspn(line, " \t\r\n");
        if (!*p || *p == '#') continue;
        slb_cred c;
        if (!parse_line(p, &c)) {
            snprintf(err, errlen,
                     "users file '%s' line %d: not 'USER SCRAM-SHA-256 ITERATIONS SALT STOREDKEY "
                     "SERVERKEY' (base64; write it with sluice broker user add)",
                     path, no);
            goto fail;
        }
        if (slb_users_find(u, c.user, strlen(c.user))) {
            snprintf(err, errlen, "users file '%s' line %d: user '%s' appears twice", path, no,
                     c.user);
            goto fail;
        }
        if (u->n == cap) {
            rc = SL_ENOMEM;
            cap = cap ? 2 * cap : 16;
            slb_cred *v = realloc(u->v, cap * sizeof *v);
            if (!v) {
                snprintf(err, errlen, "users file '%s': out of memory", path);
                goto fail;
            }
            u->v = v;
        }
        u->v[u->n++] = c;
    }
    if (ferror(f)) {
        rc = SL_EIO;
        snprintf(err, errlen, "users file '%s': read error", path);
        goto fail;
    }
    if (u->n == 0) {
        rc = SL_EINVAL;
        snprintf(err, errlen, "users file '%s' has no users (add one with sluice broker user add)",
                 path);
        goto fail;
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    slb_users_free(u);
    return rc;
}

void slb_users_free(slb_users *u)
{
    if (!u) return;
    if (u->v) OPENSSL_cleanse(u->v, u->n * sizeof *u->v);
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

const slb_cred *slb_users_find(const slb_users *u, const char *user, size_t len)
{
    for (size_t i = 0; u && i < u->n; i++)
        if (strlen(u->v[i].user) == len && !memcmp(u->v[i].user, user, len)) return &u->v[i];
    return NULL;
}

int slb_users_add(const char *path, const char *user, const char *password, char *err,
                  size_t errlen)
{
    int rc = SL_EINVAL, fd = -1;
    FILE *in = NULL, *out = NULL;
    char tmp[4096], line[1024];
    if (!user_ok(user, strlen(user))) {
        snprintf(err, errlen,
                 "user name '%s' must be 1..%d printable characters without blanks, ',' or '='",
                 user, SLB_USER_MAX);
        return SL_EINVAL;
    }
    if (!*password) {
        snprintf(err, errlen, "empty password");
        return SL_EINVAL;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "users file path too long");
        return SL_EINVAL;
    }
    uint8_t salt[16];
    slb_cred c;
    rc = SL_EIO;
    if (RAND_bytes(salt, sizeof salt) != 1 ||
        slb_cred_make(&c, password, strlen(password), salt, sizeof salt, SLB_SCRAM_ITER) < 0) {
        snprintf(err, errlen, "cannot derive the credentials (OpenSSL)");
        goto fail;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(out = fdopen(fd, "w"))) {
        snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    in = fopen(path, "r");
    if (!in && errno != ENOENT) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!in)
        fprintf(out, "# sluice broker users: USER SCRAM-SHA-256 ITERATIONS SALT STOREDKEY "
                     "SERVERKEY (base64)\n");
    size_t ul = strlen(user);
    while (in && fgets(line, sizeof line, in)) { /* every line but user's old one */
        const char *p = line + strspn(line, " \t");
        if (!strncmp(p, user, ul) && (p[ul] == ' ' || p[ul] == '\t')) continue;
        fputs(line, out);
        if (!strchr(line, '\n')) fputc('\n', out);
    }
    char s64[100], st64[100], sv64[100];
    slb_b64(s64, c.salt, c.saltlen);
    slb_b64(st64, c.stored, 32);
    slb_b64(sv64, c.server, 32);
    fprintf(out, "%s SCRAM-SHA-256 %d %s %s %s\n", user, c.iter, s64, st64, sv64);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0 || (in && ferror(in))) {
        snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    if (fclose(out) != 0) {
        out = NULL;
        snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    out = NULL;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto fail;
    }
    if (in) fclose(in);
    return 0;
fail:
    if (fd >= 0) close(fd);
    if (out) fclose(out);
    if (in) fclose(in);
    unlink(tmp);
    return rc;
}

/* ---- the exchange ----------------------------------------------------------------- */

/* The value of attribute `a` ("a=VALUE") in a comma-separated list at p;
 * NULL if absent. *len gets its length. */
static const char *attr(const char *p, size_t n, char a, size_t *len)
{
    const char *e = p + n;
    while (p < e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        if (!c) c = e;
        if (c - p >= 2 && p[0] == a && p[1] == '=') {
            *len = (size_t)(c - p - 2);
            return p + 2;
        }
        p = c + 1;
    }
    return NULL;
}

int slb_scram_first(slb_scram *x, const slb_users *u, const char *msg, size_t n, const char *snonce,
                    char *out, size_t cap, size_t *outlen)
{
    memset(x, 0, sizeof *x);
    x->why = "malformed client-first message";
    /* gs2-header: ("n" | "y") "," [ "a=" authzid ] "," */
    if (n < 3 || memchr(msg, 0, n) || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',') {
        if (n && msg[0] == 'p') x->why = "channel binding is not supported";
        return SL_EPARSE;
    }
    const char *c2 = memchr(msg + 2, ',', n - 2);
    if (!c2 || (size_t)(c2 + 1 - msg) >= sizeof x->gs2) return SL_EPARSE;
    size_t gl = (size_t)(c2 + 1 - msg);
    memcpy(x->gs2, msg, gl);
    x->gs2[gl] = 0;
    const char *bare = c2 + 1;
    size_t bl = n - gl, ul, cnl;
    /* client-first-bare: "n=" saslname ",r=" c-nonce ["," extensions] */
    if (bl < 2 || bare[0] != 'n' || bare[1] != '=') return SL_EPARSE;
    const char *un = attr(bare, bl, 'n', &ul), *cn = attr(bare, bl, 'r', &cnl);
    if (!un || !cn || cnl == 0 || cnl > 128) return SL_EPARSE;
    if (bl + 1 > sizeof x->auth) return SL_EPARSE;
    const slb_cred *c = user_ok(un, ul) ? slb_users_find(u, un, ul) : NULL;
    if (c) {
        x->cred = *c;
        x->known = true;
    } else { /* a made-up, stable salt: unknown and known users look alike */
        uint8_t fake[32];
        hmac256(u->secret, sizeof u->secret, un, ul, fake);
        memcpy(x->cred.salt, fake, 16);
        x->cred.saltlen = 16;
        x->cred.iter = SLB_SCRAM_ITER;
    }
    char rnd[64];
    if (!snonce) {
        uint8_t r[24];
        if (RAND_bytes(r, sizeof r) != 1) return SL_ENOMEM;
        slb_b64(rnd, r, sizeof r); /* base64 holds no ',' */
        snonce = rnd;
    }
    int k = snprintf(x->nonce, sizeof x->nonce, "%.*s%s", (int)cnl, cn, snonce);
    if (k < 0 || (size_t)k >= sizeof x->nonce) return SL_EPARSE;
    char s64[100];
    slb_b64(s64, x->cred.salt, x->cred.saltlen);
    k = snprintf(out, cap, "r=%s,s=%s,i=%d", x->nonce, s64, x->cred.iter);
    if (k < 0 || (size_t)k >= cap) return SL_ENOMEM;
    *outlen = (size_t)k;
    k = snprintf(x->auth, sizeof x->auth, "%.*s,%s", (int)bl, bare, out);
    if (k < 0 || (size_t)k >= sizeof x->auth) return SL_EPARSE;
    x->authlen = (size_t)k;
    x->step = 1;
    x->why = NULL;
    return 0;
}

int slb_scram_final(slb_scram *x, const char *msg, size_t n, char *out, size_t cap, size_t *outlen)
{
    x->why = "malformed client-final message";
    if (x->step != 1 || memchr(msg, 0, n)) return SL_EPARSE;
    x->step = 2;
    size_t cl, rl, pl;
    const char *cb = attr(msg, n, 'c', &cl), *r = attr(msg, n, 'r', &rl);
    const char *p = attr(msg, n, 'p', &pl);
    if (!cb || !r || !p || cb != msg + 2 || p[-3] != ',' || p + pl != msg + n) return SL_EPARSE;
    char g64[sizeof x->gs2 * 2];
    size_t gl = slb_b64(g64, (const uint8_t *)x->gs2, strlen(x->gs2));
    if (cl != gl || memcmp(cb, g64, gl) != 0) {
        x->why = "channel-binding field does not match the gs2 header";
        return SL_EPERM;
    }
    size_t nl = strlen(x->nonce); /* ends with the combined nonce: see the top */
    if (rl < nl || memcmp(r + rl - nl, x->nonce, nl) != 0) {
        x->why = "nonce does not match the server's";
        return SL_EPERM;
    }
    uint8_t proof[32];
    if (slb_unb64(proof, sizeof proof, p, pl) != 32) return SL_EPARSE;
    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t wl = (size_t)(p - 3 - msg);
    char am[sizeof x->auth + 512];
    if (x->authlen + 1 + wl >= sizeof am) return SL_EPARSE;
    memcpy(am, x->auth, x->authlen);
    am[x->authlen] = ',';
    memcpy(am + x->authlen + 1, msg, wl);
    size_t aml = x->authlen + 1 + wl;
    uint8_t sig[32], ck[32], st[32];
    hmac256(x->cred.stored, 32, am, aml, sig);
    for (int i = 0; i < 32; i++) ck[i] = proof[i] ^ sig[i];
    sha256(ck, 32, st);
    if (!x->known || CRYPTO_memcmp(st, x->cred.stored, 32) != 0) {
        x->why = x->known ? "wrong password" : "unknown user";
        return SL_EPERM;
    }
    hmac256(x->cred.server, 32, am, aml, sig);
    char v64[64];
    slb_b64(v64, sig, 32);
    int k = snprintf(out, cap, "v=%s", v64);
    if (k < 0 || (size_t)k >= cap) return SL_ENOMEM;
    *outlen = (size_t)k;
    x->why = NULL;
    return 0;
}
