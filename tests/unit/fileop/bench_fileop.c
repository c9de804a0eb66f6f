/*
 * A benchmark of exec/fileop (not a unit test: not registered with ctest).
 * Generates a context of 20,000 small files plus one 200 MiB file under
 * $1 (default /tmp/kiln-fileop-bench) and times:
 *   - the stream back-end: COPY . / straight into a zstd layer in a store;
 *   - the materialize back-end: the same diff written to an upper dir;
 *   - the content checksum of the tree, with an empty hash cache and again
 *     with a warm one.
 * Compare with `tar -cf - . | zstd -T2 > /dev/null` in the context dir.
 * Built as build/bench_fileop (see docs/fileop.md).
 */
/* paths here are short and fixed (a benchmark tree under /tmp); gcc's
 * truncation analysis cannot see that */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include "exec/fileop/fileop.h"
#include "exec/layer/layer.h"
#include "exec/store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, struct kn_error *e)
{
    fprintf(stderr, "%s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

static void generate(const char *ctx)
{
    char p[4096];
    mkdir(ctx, 0755);
    snprintf(p, sizeof(p), "%s/.done", ctx);
    if (access(p, F_OK) == 0)
        return;
    uint64_t x = 88172645463325252ull;
    char buf[2048];
    for (int d = 0; d < 200; d++) {
        snprintf(p, sizeof(p), "%s/d%03d", ctx, d);
        mkdir(p, 0755);
        for (int f = 0; f < 100; f++) {
            snprintf(p, sizeof(p), "%s/d%03d/f%03d.txt", ctx, d, f);
            size_t n = 100 + (size_t)((d * 100 + f) * 37 % 1900);
            for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[i] = (char)('a' + (x % 26));
            }
            int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
                die(p, NULL);
            close(fd);
        }
    }
    snprintf(p, sizeof(p), "head -c 200M /dev/urandom > '%s/big.bin'", ctx);
    if (system(p) != 0)
        die("big file", NULL);
    snprintf(p, sizeof(p), "%s/.done", ctx);
    close(open(p, O_WRONLY | O_CREAT, 0644));
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : "/tmp/kiln-fileop-bench";
    char ctxdir[4096], storedir[4200], upper[4200], scratch[4200];
    mkdir(base, 0755);
    snprintf(ctxdir, sizeof(ctxdir), "%s/ctx", base);
    snprintf(storedir, sizeof(storedir), "%s/store", base);
    snprintf(scratch, sizeof(scratch), "%s/scratch", base);
    generate(ctxdir);
    mkdir(scratch, 0755);
    char *ign[] = {".done"};
    struct kn_error *e = NULL;
    struct ex_view *ctx = ex_view_new_dir(ctxdir, "build context", NULL, 0, ign, 1, &e);
    const char *none[1] = {NULL};
    struct ex_view *dest = ex_view_new_chain(none, 0, "scratch", &e);
    struct ex_store *s = ex_store_open(storedir, &e);
    if (!ctx || !dest || !s)
        die("setup", e);
    struct ir_file_action a = {.kind = IR_FILE_COPY,
                               .src_input = 1,
                               .src = ".",
                               .dest = "/",
                               .mode = -1,
                               .flags = IR_FF_DIR_CONTENTS | IR_FF_CREATE_PARENTS};
    struct ir_file op = {.actions = &a, .nactions = 1};
    const struct ex_view *inputs[] = {dest, ctx};
    struct ex_fileop_req req = {
        .op = &op, .dest = dest, .inputs = inputs, .ninputs = 2, .mtime = 0, .tmpdir = scratch};

    struct ex_layer_opts lo = {.compression = EX_COMP_ZSTD, .source_date_epoch = 0, .threads = 2};
    double t0 = now();
    struct ex_layer_writer *w = ex_layer_writer_new(s, &lo, &e);
    if (!w || ex_fileop_stream_layer(&req, w, &e) < 0)
        die("stream", e);
    struct ex_layer_info info;
    if (ex_layer_writer_finish(w, &info, &e) < 0)
        die("finish", e);
    double t_stream = now() - t0;
    printf("stream COPY -> zstd layer: %.2f s (blob %.1f MiB, %s)\n", t_stream,
           (double)info.size / 1048576.0, info.diff_id);

    snprintf(upper, sizeof(upper), "%s/upper", base);
    char cmd[8400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir '%s' && sync", upper, upper);
    if (system(cmd) != 0)
        die("rm", NULL);
    t0 = now();
    if (ex_fileop_materialize(&req, upper, &e) < 0)
        die("materialize", e);
    double t_mat = now() - t0;
    t0 = now();
    sync();
    double t_sync = now() - t0;
    printf("materialize COPY -> upper dir: %.2f s (+ %.2f s sync)\n", t_mat, t_sync);

    char sum[KN_DIGEST_SIZE];
    ex_fileop_hash_cache_clear();
    t0 = now();
    if (ex_fileop_checksum(ctx, &a, sum, &e) < 0)
        die("checksum", e);
    double t_cold = now() - t0;
    t0 = now();
    if (ex_fileop_checksum(ctx, &a, sum, &e) < 0)
        die("checksum", e);
    double t_warm = now() - t0;
    struct ex_fileop_hash_stats hs;
    ex_fileop_hash_stats(&hs);
    printf("checksum: cold cache %.2f s, warm cache %.3f s (%ju hits, %ju misses, %.1f MiB "
           "hashed)\n",
           t_cold, t_warm, (uintmax_t)hs.hits, (uintmax_t)hs.misses,
           (double)hs.bytes_hashed / 1048576.0);
    ex_view_free(ctx);
    ex_view_free(dest);
    ex_store_close(s);
    return 0;
}
