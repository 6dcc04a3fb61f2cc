/*
 * connectors/broker/scram.h - SCRAM-SHA-256 (RFC 5802, RFC 7677) for the
 * Kafka-protocol server's SASL, the users file it checks against, and PLAIN
 * checked against the same credentials (private header; scram.c).
 *
 * The users file holds salted credentials only, never a password:
 *
 *   # comment
 *   USER SCRAM-SHA-256 ITERATIONS SALT STOREDKEY SERVERKEY
 *
 * one user a line, fields separated by one or more blanks, SALT, STOREDKEY
 * and SERVERKEY in base64 (RFC 4648, padded), StoredKey = H(ClientKey) and
 * ServerKey = HMAC(SaltedPassword, "Server Key") as RFC 5802 defines them.
 * USER is 1..SLB_USER_MAX bytes of printable ASCII without blanks, ',' or
 * '=' (so that it needs no escaping in SCRAM's saslname).
 */
#ifndef SLUICE_BROKER_SCRAM_H
#define SLUICE_BROKER_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLB_USER_MAX       255
#define SLB_SALT_MAX       64
#define SLB_SCRAM_ITER     4096 /* iterations written by slb_users_add (Kafka's minimum) */
#define SLB_SCRAM_ITER_MAX 1000000

typedef struct slb_cred {
    char user[SLB_USER_MAX + 1];
    int iter;
    size_t saltlen;
    uint8_t salt[SLB_SALT_MAX];
    uint8_t stored[32], server[32]; /* StoredKey, ServerKey */
} slb_cred;

typedef struct slb_users {
    slb_cred *v;
    size_t n;
    uint8_t secret[32]; /* per process: fake salts for unknown users */
} slb_users;

/* Derive the credentials of password over salt with iter iterations. */
int slb_cred_make(slb_cred *c, const char *password, size_t plen, const uint8_t *salt,
                  size_t saltlen, int iter);
/* True if password matches c (PLAIN over SCRAM credentials); constant-time
 * in the comparison. */
bool slb_cred_check(const slb_cred *c, const char *password, size_t plen);

/* Load a users file into u (zeroed first). Returns 0, or a negative SL_E...
 * code with a one-line message in err. *world_readable says whether others
 * may read the file (the caller warns). */
int slb_users_load(slb_users *u, const char *path, bool *world_readable, char *err, size_t errlen);
void slb_users_free(slb_users *u);
const slb_cred *slb_users_find(const slb_users *u, const char *user, size_t len);
/* Add or replace user in the file at path (created mode 0600; rewritten
 * whole through a temporary file and rename). */
int slb_users_add(const char *path, const char *user, const char *password, char *err,
                  size_t errlen);

/* One SCRAM-SHA-256 exchange, server side:
 *   slb_scram_first(client-first-message) -> server-first-message
 *   slb_scram_final(client-final-message) -> server-final-message
 * Each returns 0 with the answer in out (NUL-terminated, *outlen bytes), or
 * SL_EPARSE (malformed message), SL_EPERM (unknown user or wrong proof;
 * an unknown user gets a made-up salt at the first step, so that the two
 * look alike until the proof) with a reason in x->why. snonce is the
 * server's nonce part (printable, no ','); NULL draws 24 random bytes. */
typedef struct slb_scram {
    int step; /* 0: expects client-first, 1: client-final, 2: done */
    bool known;
    slb_cred cred;
    char gs2[SLB_USER_MAX + 16]; /* gs2-header, e.g. "n,," */
    char auth[1024];             /* client-first-bare "," server-first */
    size_t authlen;
    char nonce[256];
    const char *why;
} slb_scram;

int slb_scram_first(slb_scram *x, const slb_users *u, const char *msg, size_t n, const char *snonce,
                    char *out, size_t cap, size_t *outlen);
int slb_scram_final(slb_scram *x, const char *msg, size_t n, char *out, size_t cap, size_t *outlen);

/* base64 (padded) of p into out (room for 4 * ceil(n / 3) + 1); returns the
 * length. */
size_t slb_b64(char *out, const uint8_t *p, size_t n);
/* Decode base64 text (s, n) into out (cap bytes); -1 if malformed or too
 * long, else the decoded length. */
int slb_unb64(uint8_t *out, size_t cap, const char *s, size_t n);

#endif
