/*
 * tests/unit/test_scram.c - SCRAM-SHA-256 of the Kafka-protocol server
 * (connectors/broker/scram.c) against RFC 7677's test vector (user "user",
 * password "pencil"): the server-first message from the RFC's nonce and
 * salt, the client proof accepted and the server signature equal to the
 * RFC's; a wrong proof, a changed nonce, a wrong channel-binding field and
 * an unknown user refused; base64 round trips and malformed input; PLAIN's
 * check against the same credentials; the users file written by
 * slb_users_add and read back by slb_users_load (mode 0600, replace,
 * malformed lines refused with a line number).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "connectors/broker/scram.h"
#include "sluice/error.h"

#define CNONCE "rOprNGfwEbeRWgbNEkqO"
#define SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define SALT   "W22ZaJ0SNY7soEsUEjb6gQ=="
#define FINAL  "c=biws,r=" CNONCE SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static slb_users users;
static slb_cred cred;

static void rfc_users(void)
{
    uint8_t salt[32];
    int sl = slb_unb64(salt, sizeof salt, SALT, strlen(SALT));
    assert_int_equal(sl, 16);
    assert_int_equal(slb_cred_make(&cred, "pencil", 6, salt, (size_t)sl, 4096), 0);
    strcpy(cred.user, "user");
    users.v = &cred;
    users.n = 1;
}

static int first(slb_scram *x, const char *msg, char *out, size_t *ol)
{
    return slb_scram_first(x, &users, msg, strlen(msg), SNONCE, out, 512, ol);
}

static void test_rfc7677(void **state)
{
    (void)state;
    rfc_users();
    slb_scram x;
    char out[512];
    size_t ol;
    assert_int_equal(first(&x, "n,,n=user,r=" CNONCE, out, &ol), 0);
    assert_string_equal(out, "r=" CNONCE SNONCE ",s=" SALT ",i=4096");
    assert_int_equal(ol, strlen(out));
    assert_int_equal(slb_scram_final(&x, FINAL, strlen(FINAL), out, sizeof out, &ol), 0);
    assert_string_equal(out, SFINAL);
    assert_int_equal(x.step, 2);
    /* a second final message is out of order */
    assert_int_equal(slb_scram_final(&x, FINAL, strlen(FINAL), out, sizeof out, &ol), SL_EPARSE);
}

static void refused(const char *first_msg, const char *final, int want)
{
    slb_scram x;
    char out[512];
    size_t ol;
    assert_int_equal(first(&x, first_msg, out, &ol), 0);
    assert_int_equal(slb_scram_final(&x, final, strlen(final), out, sizeof out, &ol), want);
    assert_non_null(x.why);
}

static void test_refusals(void **state)
{
    (void)state;
    rfc_users();
    const char *f = "n,,n=user,r=" CNONCE;
    /* one bit of the proof changed */
    refused(f,
            "c=biws,r=" CNONCE SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=", SL_EPERM);
    /* the nonce without the server's part, or changed */
    refused(f, "c=biws,r=" CNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SL_EPERM);
    refused(f, "c=biws,r=" CNONCE "X" SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            SL_EPERM);
    /* channel-binding field other than base64("n,,") */
    refused(f,
            "c=eSws,r=" CNONCE SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SL_EPERM);
    /* malformed finals */
    refused(f, "r=" CNONCE SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", SL_EPARSE);
    refused(f, "c=biws,r=" CNONCE SNONCE, SL_EPARSE);
    refused(f, "c=biws,r=" CNONCE SNONCE ",p=!!!!", SL_EPARSE);
    /* an unknown user gets a salt and iterations like a known one, then fails */
    slb_scram x;
    char out[512];
    size_t ol;
    assert_int_equal(first(&x, "n,,n=mallory,r=" CNONCE, out, &ol), 0);
    assert_non_null(strstr(out, ",s="));
    assert_non_null(strstr(out, ",i=4096"));
    assert_int_equal(slb_scram_final(&x, FINAL, strlen(FINAL), out, sizeof out, &ol), SL_EPERM);
    assert_string_equal(x.why, "unknown user");
    /* malformed firsts, channel binding */
    const char *bad[] = {"",
                         "n,",
                         "x,,n=user,r=a",
                         "n,,r=abc",
                         "n,,n=user",
                         "n,,n=user,r=",
                         "p=tls-unique,,n=user,r=abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(first(&x, bad[i], out, &ol), SL_EPARSE);
}

static void test_base64_plain(void **state)
{
    (void)state;
    char b[64];
    uint8_t d[64];
    const char *v[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *e[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(slb_b64(b, (const uint8_t *)v[i], strlen(v[i])), strlen(e[i]));
        assert_string_equal(b, e[i]);
        assert_int_equal(slb_unb64(d, sizeof d, e[i], strlen(e[i])), (int)strlen(v[i]));
        assert_memory_equal(d, v[i], strlen(v[i]));
    }
    assert_int_equal(slb_unb64(d, sizeof d, "Zg=", 3), -1);
    assert_int_equal(slb_unb64(d, sizeof d, "Z===", 4), -1);
    assert_int_equal(slb_unb64(d, sizeof d, "Zg=a", 4), -1);
    assert_int_equal(slb_unb64(d, sizeof d, "Zm9v*mFy", 8), -1);
    assert_int_equal(slb_unb64(d, 2, "Zm9v", 4), -1);
    rfc_users();
    assert_true(slb_cred_check(&cred, "pencil", 6));
    assert_false(slb_cred_check(&cred, "pencim", 6));
    assert_false(slb_cred_check(&cred, "pencil", 5));
}

static void test_users_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice_test_scram_XXXXXX", path[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/users", dir);
    slb_users u;
    bool world;
    assert_int_equal(slb_users_load(&u, path, &world, err, sizeof err), SL_ENOENT);
    assert_int_equal(slb_users_add(path, "alice", "one", err, sizeof err), 0);
    assert_int_equal(slb_users_add(path, "bob", "two", err, sizeof err), 0);
    assert_int_equal(slb_users_add(path, "alice", "three", err, sizeof err), 0); /* replaces */
    assert_int_equal(slb_users_add(path, "bad user", "x", err, sizeof err), SL_EINVAL);
    assert_int_equal(slb_users_add(path, "a=b", "x", err, sizeof err), SL_EINVAL);
    assert_int_equal(slb_users_add(path, "carol", "", err, sizeof err), SL_EINVAL);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(slb_users_load(&u, path, &world, err, sizeof err), 0);
    assert_false(world);
    assert_int_equal(u.n, 2);
    const slb_cred *a = slb_users_find(&u, "alice", 5), *b = slb_users_find(&u, "bob", 3);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(slb_users_find(&u, "ali", 3));
    assert_true(slb_cred_check(a, "three", 5));
    assert_false(slb_cred_check(a, "one", 3));
    assert_true(slb_cred_check(b, "two", 3));
    slb_users_free(&u);
    chmod(path, 0644);
    assert_int_equal(slb_users_load(&u, path, &world, err, sizeof err), 0);
    assert_true(world);
    slb_users_free(&u);
    /* a malformed line is refused with its number */
    FILE *f = fopen(path, "a");
    fputs("mallory SCRAM-SHA-256 4096 notbase64 x y\n", f);
    fclose(f);
    assert_int_equal(slb_users_load(&u, path, &world, err, sizeof err), SL_EPARSE);
    assert_non_null(strstr(err, "line 4"));
    f = fopen(path, "w");
    fputs("# nobody\n", f);
    fclose(f);
    assert_int_equal(slb_users_load(&u, path, &world, err, sizeof err), SL_EINVAL);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_base64_plain),
        cmocka_unit_test(test_users_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
