/*
 * The RUN-step benchmark (KILN_BENCH=1 ./unit_sandbox_test_sandbox): the
 * wall time of `RUN touch /x` from preparing the writable layer to the diff
 * being available, on a busybox rootfs and on one with 50,000 more files,
 * for the overlay snapshotter and for the scan snapshotter.
 * KILN_BENCH_PHASES=1 prints prepare / run / finish of every run.
 */
#ifndef KILN_TEST_SANDBOX_BENCH_H
#define KILN_TEST_SANDBOX_BENCH_H

#include "sandbox_cases.h"

#define BENCH_RUNS 11

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median (and *min) wall time of prepare + run + finish */
static double bench_one(const char *root, bool scan, enum ex_isolation iso, double *min)
{
    double t[BENCH_RUNS];
    const char *layers[] = {root};
    struct kn_error *e = NULL;
    struct ex_snapshot *snap = ex_snapshot_new(layers, 1, &e);
    for (int i = 0; i < BENCH_RUNS; i++) {
        double t0 = mono();
        struct ex_snapshot_rw *rw = scan ? ex_snapshot_rw_scan(root, workroot, &e)
                                         : ex_snapshot_rw_overlay(snap, workroot, &e);
        must(rw != NULL, e ? e->msg : "rw");
        const char *argv[] = {"/bin/sh", "-c", "touch /x", NULL};
        struct ex_sandbox_spec spec = {.isolation = iso, .root = rw, .argv = argv};
        struct ex_sandbox *sb = ex_sandbox_new();
        double t1 = mono();
        int rc = ex_sandbox_run(sb, &spec, NULL, &e);
        double t2 = mono();
        rc |= ex_snapshot_rw_finish(rw, &e);
        t[i] = mono() - t0;
        if (getenv("KILN_BENCH_PHASES"))
            printf("#   prepare %.1f run %.1f finish %.1f ms\n", (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                   (t[i] - (t2 - t0)) * 1e3);
        must(rc == 0, e ? e->msg : "run");
        char p[4200];
        struct stat st;
        snprintf(p, sizeof(p), "%s/x", ex_snapshot_rw_upper(rw));
        must(stat(p, &st) == 0, "diff has /x");
        ex_sandbox_free(sb);
        ex_snapshot_rw_free(rw, false);
        if (scan) { /* undo the step for the next run */
            snprintf(p, sizeof(p), "%s/x", root);
            unlink(p);
        }
    }
    ex_snapshot_unref(snap);
    qsort(t, BENCH_RUNS, sizeof(double), cmp_double);
    *min = t[0];
    return t[BENCH_RUNS / 2];
}

static int run_bench(void)
{
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tap_tmpdir());
    snprintf(workroot, sizeof(workroot), "%s/work", tap_tmpdir());
    must(mkdir(workroot, 0700) == 0, workroot);
    make_rootfs(rootfs);
    char big[4200], p[4400];
    snprintf(big, sizeof(big), "%s/big", tap_tmpdir());
    make_rootfs(big);
    double g0 = mono();
    for (int d = 0; d < 500; d++) {
        snprintf(p, sizeof(p), "%s/usr/d%03d", big, d);
        must(mkdir(p, 0755) == 0, p);
        for (int f = 0; f < 100; f++) {
            snprintf(p, sizeof(p), "%s/usr/d%03d/f%03d", big, d, f);
            put_file(p, "x", 0644);
        }
    }
    printf("# generated 50,000 files in %.2fs\n", mono() - g0);
    struct kn_error *e = NULL;
    double ts = mono();
    struct ex_scan *sc = ex_scan_record(big, &e);
    double rec = mono() - ts;
    char diff[4200];
    snprintf(diff, sizeof(diff), "%s/scan-diff", tap_tmpdir());
    mkdir(diff, 0755);
    struct ex_scan_stats st;
    ex_scan_diff(sc, diff, &st, &e);
    printf("# scan of the 50k tree: record %.1f ms, diff %.1f ms (%zu entries)\n", rec * 1e3,
           st.walk_seconds * 1e3, st.entries);
    ex_scan_free(sc);
    bool root = geteuid() == 0;
    struct {
        const char *name;
        const char *root;
        bool scan;
        enum ex_isolation iso;
    } cases[] = {
        {"overlay, busybox", rootfs, false, EX_ISOLATION_USERNS},
        {"overlay, busybox + 50k files", big, false, EX_ISOLATION_USERNS},
        {"scan (userns), busybox", rootfs, true, EX_ISOLATION_USERNS},
        {"scan (userns), busybox + 50k files", big, true, EX_ISOLATION_USERNS},
        {"scan (chroot), busybox", rootfs, true, EX_ISOLATION_CHROOT},
        {"scan (chroot), busybox + 50k files", big, true, EX_ISOLATION_CHROOT},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(cases); i++) {
        if (cases[i].iso == EX_ISOLATION_CHROOT && !root)
            continue;
        double min;
        double t = bench_one(cases[i].root, cases[i].scan, cases[i].iso, &min);
        printf("# RUN touch /x, %-36s median of %d: %7.1f ms, min %7.1f ms\n", cases[i].name,
               BENCH_RUNS, t * 1e3, min * 1e3);
    }
    ok(1, "benchmark ran");
    return tap_done();
}

#endif
