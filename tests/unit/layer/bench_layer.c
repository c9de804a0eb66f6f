/*
 * Pack throughput and memory benchmark for exec/layer (built as
 * build/bench_layer, not a ctest); exits 77 unless KILN_BENCH_DIR names a
 * tree to pack. Packs it with zstd (2 threads), gzip
 * and no compression into a store under $TMPDIR and prints MiB/s and the
 * peak RSS; peak RSS must stay under 64 MiB whatever the tree's size.
 *   KILN_BENCH_DIR=/tmp/benchtree /usr/bin/time -v build/bench_layer
 * KILN_BENCH_ONLY="zstd -T2"|gzip|none runs one codec; KILN_BENCH_UNPACK=1
 * also unpacks each blob and commits it as a store layer, timing both.
 */
#include "exec/layer/layer.h"
#include "exec/store/store.h"
#include "tap.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    const char *dir = getenv("KILN_BENCH_DIR");
    if (!dir || !*dir)
        tap_skip_all("set KILN_BENCH_DIR to a tree to pack");
    setvbuf(stdout, NULL, _IONBF, 0);
    struct kn_error *err = NULL;
    char *root = kn_asprintf("%s/store", tap_tmpdir());
    struct ex_store *s = ex_store_open(root, &err);
    ok(s != NULL, "open a store");
    if (!s)
        return tap_done();
    static const struct {
        const char *name;
        enum ex_compression c;
        int threads;
    } runs[] = {
        {"zstd -T2", EX_COMP_ZSTD, 2}, {"gzip", EX_COMP_GZIP, 1}, {"none", EX_COMP_NONE, 1}};
    const char *only = getenv("KILN_BENCH_ONLY");
    for (size_t i = 0; i < KN_ARRAY_SIZE(runs); i++) {
        if (only && strcmp(only, runs[i].name) != 0)
            continue;
        struct ex_layer_opts o = {
            .compression = runs[i].c, .threads = runs[i].threads, .source_date_epoch = -1};
        struct ex_layer_info info;
        double t0 = now();
        int rc = ex_layer_pack_dir(s, dir, &o, &info, &err);
        double dt = now() - t0;
        ok(rc == 0, "pack with %s", runs[i].name);
        if (rc < 0) {
            printf("# %s\n", err->msg);
            kn_err_free(err);
            err = NULL;
            continue;
        }
        printf("# %-8s %.2f s, blob %.1f MiB, %s\n", runs[i].name, dt,
               (double)info.size / 1048576.0, info.digest);
        /* unpack it again and commit it as a layer: syncfs once per layer */
        if (!getenv("KILN_BENCH_UNPACK"))
            continue;
        char *tmpd = ex_store_mkdtemp(s, "bench-", &err);
        t0 = now();
        rc = tmpd ? ex_layer_unpack(s, info.digest, info.media_type, tmpd, EX_UNPACK_OVERLAY, NULL,
                                    &err)
                  : -1;
        double du = now() - t0;
        t0 = now();
        if (rc == 0)
            rc = ex_store_layer_commit(s, info.diff_id, tmpd, &err);
        double dc = now() - t0;
        ok(rc == 0, "unpack and commit the %s layer", runs[i].name);
        if (rc == 0)
            printf("# %-8s unpack %.2f s, layer commit (syncfs + rename) %.3f s\n", runs[i].name,
                   du, dc);
        free(tmpd);
        kn_err_free(err);
        err = NULL;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("# peak RSS %ld KiB\n", ru.ru_maxrss);
    ok(ru.ru_maxrss < 64 * 1024, "peak RSS under 64 MiB");
    uint64_t freed;
    ex_store_prune(s, 0, &freed, &err);
    ex_store_close(s);
    free(root);
    return tap_done();
}
