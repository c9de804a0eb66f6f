/*
 * Unit tests for ir/base: errors, buffers, vectors, arena, digests, sizes.
 */
#include "ir/base/base.h"
#include "ir/base/cleanup.h"
#include "tap.h"

static void test_errors(void)
{
    struct kn_error *err = NULL;
    ok(kn_err_set(&err, KN_E_PARSE, "bad '%s'", "x") == -1, "kn_err_set returns -1");
    kn_err_set(&err, KN_E_IO, "second");
    is_str(err->msg, "bad 'x'", "first error wins");
    kn_err_wrap(&err, "reading %s", "Dockerfile");
    is_str(err->msg, "reading Dockerfile: bad 'x'", "wrap prefixes context");
    kn_err_at(err, "Dockerfile", 3, 5);
    char *s = kn_err_format(err);
    is_str(s, "Dockerfile:3:5: reading Dockerfile: bad 'x'", "format with location");
    free(s);
    kn_err_append(&err, kn_err_new(KN_E_PARSE, "another"));
    ok(err->next && strcmp(err->next->msg, "another") == 0, "errors chain");
    kn_err_free(err);

    err = NULL;
    errno = ENOENT;
    kn_err_sys(&err, "cannot open '%s'", "f");
    is_str(err->msg, "cannot open 'f': No such file or directory", "sys error has strerror");
    is_int(err->sys_errno, ENOENT, "sys error keeps errno");
    kn_err_free(err);
    ok(kn_err_set(NULL, KN_E_IO, "ignored") == -1, "NULL err pointer is allowed");
}

static void test_buf_vec(void)
{
    struct kn_buf b = KN_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        kn_buf_addf(&b, "%d,", i);
    ok(b.len == strlen(b.data), "buffer stays NUL-terminated");
    ok(strncmp(b.data, "0,1,2,", 6) == 0, "buffer content");
    kn_buf_release(&b);

    KN_VEC(int) v = {0};
    for (int i = 0; i < 100; i++)
        kn_vec_push(&v, i * 2);
    is_int(v.n, 100, "vector length");
    is_int(v.v[99], 198, "vector content");
    free(v.v);

    struct kn_strv sv = {0};
    kn_strv_push(&sv, "a");
    kn_strv_push(&sv, "b");
    ok(sv.n == 2 && sv.v[2] == NULL, "strv is NULL-terminated");
    kn_strv_release(&sv);
}

static void test_arena(void)
{
    struct kn_arena a;
    kn_arena_init(&a);
    char *big = kn_arena_alloc(&a, 1 << 20);
    big[(1 << 20) - 1] = 1;
    for (int i = 0; i < 10000; i++) {
        char *s = kn_arena_printf(&a, "s%d", i);
        if (i == 9999)
            is_str(s, "s9999", "arena strings");
    }
    ok(((uintptr_t)kn_arena_alloc(&a, 3) & 15) == 0, "arena alignment");
    kn_arena_release(&a);
}

static void test_digest(void)
{
    char d[KN_DIGEST_SIZE];
    kn_sha256_digest("", 0, d);
    is_str(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "sha256 of empty");
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "ab", 2);
    kn_sha256_update(&h, "c", 1);
    kn_sha256_final(&h, d);
    is_str(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "streaming sha256 of abc");
    ok(kn_digest_valid(d), "digest valid");
    ok(!kn_digest_valid("sha256:abc"), "short digest invalid");
    ok(!kn_digest_valid("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"),
       "uppercase digest invalid");
    unsigned char raw[32];
    kn_digest_to_raw(d, raw);
    ok(raw[0] == 0xba && raw[1] == 0x78 && raw[31] == 0xad, "digest as bytes");
    char back[KN_DIGEST_SIZE];
    kn_digest_from_raw(raw, back);
    is_str(back, d, "bytes back to the digest");
}

static void test_size(void)
{
    uint64_t v = 0;
    ok(kn_parse_size("10GB", &v, NULL) == 0 && v == 10000000000ULL, "10GB");
    ok(kn_parse_size("512MiB", &v, NULL) == 0 && v == 512ULL * 1048576, "512MiB");
    ok(kn_parse_size("1024", &v, NULL) == 0 && v == 1024, "plain bytes");
    struct kn_error *err = NULL;
    ok(kn_parse_size("12 parsecs", &v, &err) == -1 && err, "bad unit refused");
    kn_err_free(err);
}

static int cleanup_ran;
static void count_free(char **p)
{
    cleanup_ran++;
    free(*p);
}

static void test_cleanup(void)
{
    {
        __attribute__((cleanup(count_free))) char *p = kn_strdup("x");
        (void)p;
    }
    is_int(cleanup_ran, 1, "cleanup runs at scope exit");
    _cleanup_free_ char *q = kn_strdup("y");
    char *r = kn_steal(&q);
    ok(q == NULL && strcmp(r, "y") == 0, "kn_steal hands the value out");
    free(r);
}

int main(void)
{
    test_errors();
    test_buf_vec();
    test_arena();
    test_digest();
    test_size();
    test_cleanup();
    return tap_done();
}
