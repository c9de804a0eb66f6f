/*
 * Unit tests for exec/layer's parallel gzip: the stream inflates (zlib and
 * GNU gzip) to the input at every size around the 128 KiB block; the bytes
 * do not depend on the number of threads; the dictionary carries matches
 * across blocks; the header is gzip's; a failing writer fails the stream.
 */
#include "exec/layer/internal.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int to_buf(void *ctx, const void *data, size_t n, struct kn_error **err)
{
    (void)err;
    kn_buf_add(ctx, data, n);
    return 0;
}

static int refuse(void *ctx, const void *data, size_t n, struct kn_error **err)
{
    (void)ctx;
    (void)data;
    (void)n;
    return kn_err_set(err, KN_E_IO, "disk full");
}

/* Compresses in uneven pieces (so that writes straddle blocks). */
static struct kn_buf gz(const unsigned char *in, size_t n, int level, int threads)
{
    struct kn_buf out = KN_BUF_INIT;
    struct kn_error *e = NULL;
    struct ex_pgzip *p = ex_pgzip_new(level, threads, to_buf, &out, &e);
    int rc = p ? 0 : -1;
    size_t off = 0, step = 1;
    while (rc == 0 && off < n) {
        size_t take = n - off < step ? n - off : step;
        rc = ex_pgzip_write(p, in + off, take, &e);
        off += take;
        step = step * 7 + 3;
        if (step > 300000)
            step = 5;
    }
    if (rc == 0)
        rc = ex_pgzip_finish(p, &e);
    ok(rc == 0, "compress %zu bytes at level %d with %d threads%s%s", n, level, threads,
       e ? ": " : "", e ? e->msg : "");
    kn_err_free(e);
    ex_pgzip_free(p);
    return out;
}

static bool inflates_to(const struct kn_buf *z, const unsigned char *want, size_t n)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, 15 + 16) != Z_OK)
        return false;
    unsigned char *got = kn_malloc(n + 1);
    s.next_in = (unsigned char *)z->data;
    s.avail_in = (uInt)z->len;
    s.next_out = got;
    s.avail_out = (uInt)(n + 1);
    int zr = inflate(&s, Z_FINISH);
    bool okay = zr == Z_STREAM_END && s.total_out == n && s.avail_in == 0 &&
                (n == 0 || memcmp(got, want, n) == 0);
    inflateEnd(&s);
    free(got);
    return okay;
}

/* GNU gzip, not zlib: checks the stream and the trailer on its own. */
static bool gunzips_to(const struct kn_buf *z, const unsigned char *want, size_t n)
{
    char path[4200], cmd[8600];
    snprintf(path, sizeof(path), "%s/t.gz", tap_tmpdir());
    FILE *f = fopen(path, "w");
    if (!f || fwrite(z->data, 1, z->len, f) != z->len || fclose(f) != 0)
        return false;
    snprintf(cmd, sizeof(cmd), "gzip -dc '%s'", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return false;
    unsigned char *got = kn_malloc(n + 16);
    size_t len = fread(got, 1, n + 16, p);
    bool okay = pclose(p) == 0 && len == n && (n == 0 || memcmp(got, want, n) == 0);
    free(got);
    return okay;
}

int main(void)
{
    /* text-like data with long repeats, then random bytes */
    size_t max = (1u << 20) + 4097;
    unsigned char *data = kn_malloc(max);
    unsigned int seed = 42;
    for (size_t i = 0; i < max; i++)
        data[i] = i < max / 2 ? (unsigned char)"kiln layer data "[(i / 3) % 16]
                              : (unsigned char)(rand_r(&seed) >> 7);

    size_t sizes[] = {
        0, 1, 1000, (128u << 10) - 1, 128u << 10, (128u << 10) + 1, 3 * (128u << 10) + 17, max};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(*sizes); i++) {
        size_t n = sizes[i];
        struct kn_buf one = gz(data, n, 6, 1);
        ok(inflates_to(&one, data, n), "%zu bytes: zlib inflates them back", n);
        ok(gunzips_to(&one, data, n), "%zu bytes: gzip -d gives them back", n);
        int threads[] = {2, 4, 7};
        for (size_t t = 0; t < 3; t++) {
            struct kn_buf other = gz(data, n, 6, threads[t]);
            ok(other.len == one.len && memcmp(other.data, one.data, one.len) == 0,
               "%zu bytes: the same stream with %d threads as with 1", n, threads[t]);
            kn_buf_release(&other);
        }
        kn_buf_release(&one);
    }

    /* matches across blocks: 1 MiB of a 20 KiB random pattern; each block
     * starting afresh would spend ~20 KiB of literals on it */
    unsigned char *pat = kn_malloc(1u << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        pat[i] = i < 20480 ? (unsigned char)(rand_r(&seed) >> 5) : pat[i - 20480];
    struct kn_buf r = gz(pat, 1u << 20, 6, 2);
    ok(r.len < 40000, "a pattern repeated across blocks compresses to %zu bytes", r.len);
    ok(inflates_to(&r, pat, 1u << 20), "and inflates back");
    kn_buf_release(&r);

    /* the header: no name, no time, XFL as zlib writes it, OS Unix */
    struct kn_buf h6 = gz(data, 10, 6, 1), h9 = gz(data, 10, 9, 1), h1 = gz(data, 10, 1, 1);
    unsigned char want[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    ok(h6.len > 10 && memcmp(h6.data, want, 10) == 0, "gzip header at level 6");
    ok(h9.len > 10 && (unsigned char)h9.data[8] == 2, "XFL 2 at level 9");
    ok(h1.len > 10 && (unsigned char)h1.data[8] == 4, "XFL 4 at level 1");
    ok(inflates_to(&h9, data, 10) && inflates_to(&h1, data, 10), "levels 9 and 1 inflate");
    kn_buf_release(&h6);
    kn_buf_release(&h9);
    kn_buf_release(&h1);

    /* errors */
    struct kn_error *e = NULL;
    ok(ex_pgzip_new(11, 2, to_buf, NULL, &e) == NULL && e &&
           strcmp(e->msg, "invalid gzip level 11") == 0,
       "level 11 is refused");
    kn_err_free(e);
    e = NULL;
    struct ex_pgzip *p = ex_pgzip_new(6, 2, refuse, NULL, &e);
    int rc = ex_pgzip_write(p, data, max, &e);
    if (rc == 0)
        rc = ex_pgzip_finish(p, &e);
    ok(rc < 0 && e && strcmp(e->msg, "disk full") == 0, "a failing writer fails the stream");
    kn_err_free(e);
    ex_pgzip_free(p);
    free(pat);
    free(data);
    return tap_done();
}
