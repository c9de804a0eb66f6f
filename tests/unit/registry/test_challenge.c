/*
 * The WWW-Authenticate parser (RFC 7235 auth-params with quoted strings,
 * several challenges in one header, token68), base64, and the redaction of
 * credential headers in traces.
 */
#include "exec/registry/internal.h"
#include "tap.h"

static void check_params(const char *hdr, size_t idx, const char *scheme, const char *const *kv)
{
    struct ex_challenges c = {0};
    struct kn_error *err = NULL;
    int rc = ex_challenges_parse(hdr, &c, &err);
    ok(rc == 0, "parse [%s]%s%s", hdr, err ? ": " : "", err ? err->msg : "");
    ok(c.n > idx, "  has challenge %zu", idx);
    if (c.n > idx) {
        is_str(c.v[idx].scheme, scheme, "  scheme");
        size_t n = 0;
        for (; kv[2 * n]; n++)
            is_str(ex_challenge_param(&c.v[idx], kv[2 * n]), kv[2 * n + 1], "  param %s",
                   kv[2 * n]);
        is_int(c.v[idx].nparams, n, "  number of params");
    }
    kn_err_free(err);
    ex_challenges_release(&c);
}

static void check_bad(const char *hdr, const char *msg)
{
    struct ex_challenges c = {0};
    struct kn_error *err = NULL;
    int rc = ex_challenges_parse(hdr, &c, &err);
    ok(rc < 0, "refuse [%s]", hdr);
    is_str(err ? err->msg : NULL, msg, "  message");
    kn_err_free(err);
    ex_challenges_release(&c);
}

int main(void)
{
    check_params("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                 "scope=\"repository:library/alpine:pull\"",
                 0, "bearer",
                 (const char *[]){"realm", "https://auth.docker.io/token", "service",
                                  "registry.docker.io", "scope", "repository:library/alpine:pull",
                                  NULL});
    /* commas inside quotes, escapes, odd spacing, case-insensitive names */
    check_params("BEARER  Realm = \"http://h:1/t?a=1,b=2\" , SERVICE=reg ,"
                 " scope=\"repository:a/b:pull,push\",error=\"insufficient_scope\"",
                 0, "bearer",
                 (const char *[]){"realm", "http://h:1/t?a=1,b=2", "service", "reg", "scope",
                                  "repository:a/b:pull,push", "error", "insufficient_scope", NULL});
    check_params("Basic realm=\"say \\\"hi\\\" \\\\ there\"", 0, "basic",
                 (const char *[]){"realm", "say \"hi\" \\ there", NULL});
    check_params("Basic realm=\"\"", 0, "basic", (const char *[]){"realm", "", NULL});
    /* two challenges in one header */
    const char *two = "Basic realm=\"Registry Realm\", Bearer realm=\"https://a/t\",service=\"s\"";
    check_params(two, 0, "basic", (const char *[]){"realm", "Registry Realm", NULL});
    check_params(two, 1, "bearer", (const char *[]){"realm", "https://a/t", "service", "s", NULL});
    /* a scheme alone, token68, empty list elements */
    check_params("Negotiate", 0, "negotiate", (const char *[]){NULL});
    check_params("Negotiate abc+/de==", 0, "negotiate", (const char *[]){"", "abc+/de==", NULL});
    check_params(",, Basic realm=x,,", 0, "basic", (const char *[]){"realm", "x", NULL});
    check_params("Negotiate, Basic realm=x", 1, "basic", (const char *[]){"realm", "x", NULL});

    /* find by scheme */
    struct ex_challenges c = {0};
    struct kn_error *err = NULL;
    int rc1 = ex_challenges_parse(two, &c, &err);
    ok(rc1 == 0, "parse two challenges");
    rc1 = ex_challenges_parse("Digest realm=\"d\"", &c, &err);
    ok(rc1 == 0, "append a second header");
    is_int(c.n, 3, "three challenges in all");
    ok(ex_challenges_find(&c, "BEARER") == &c.v[1], "find Bearer case-insensitively");
    ok(ex_challenges_find(&c, "digest") == &c.v[2], "find Digest");
    ok(ex_challenges_find(&c, "ntlm") == NULL, "no NTLM");
    ex_challenges_release(&c);

    check_bad("Bearer realm=\"unterminated",
              "malformed authentication challenge 'Bearer realm=\"unterminated': unterminated "
              "quoted string");
    check_bad("Bearer realm=\"a\" junk",
              "malformed authentication challenge 'Bearer realm=\"a\" junk': unexpected 'j' "
              "after parameter 'realm'");
    check_bad("=x", "malformed authentication challenge '=x': expected a scheme at '=x'");
    check_bad("Bearer\"x\"",
              "malformed authentication challenge 'Bearer\"x\"': unexpected '\"' after scheme");
    check_bad("Basic a b", "malformed authentication challenge 'Basic a b': unexpected 'b'");

    /* base64 */
    char *e = ex_base64_encode("user:pa ss", 10);
    is_str(e, "dXNlcjpwYSBzcw==", "base64 encode with padding");
    free(e);
    e = ex_base64_encode("abc", 3);
    is_str(e, "YWJj", "base64 encode without padding");
    free(e);
    struct kn_buf b = KN_BUF_INIT;
    int brc = ex_base64_decode("dXNlcjpwYSBzcw==", &b);
    ok(brc == 0, "base64 decode");
    is_str(b.data, "user:pa ss", "base64 round trip");
    kn_buf_reset(&b);
    brc = ex_base64_decode("dXN!cg==", &b);
    ok(brc < 0, "base64 refuses a bad character");
    kn_buf_reset(&b);
    brc = ex_base64_decode("YQ==YQ", &b);
    ok(brc < 0, "base64 refuses data after padding");
    kn_buf_release(&b);

    /* redaction */
    char *r = ex_header_redact("Authorization: Bearer sekrit.token");
    is_str(r, "Authorization: Bearer <redacted>", "bearer token redacted");
    free(r);
    r = ex_header_redact("authorization: Basic dXNlcjpwYXNz");
    is_str(r, "authorization: Basic <redacted>", "basic credentials redacted");
    free(r);
    r = ex_header_redact("Accept: application/json");
    is_str(r, "Accept: application/json", "other headers kept");
    free(r);
    return tap_done();
}
