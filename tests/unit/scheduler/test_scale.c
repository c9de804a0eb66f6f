/*
 * Scale test: a 10,000-vertex chain (no parallelism: every vertex is a
 * round trip between the coordinator and a worker) and a 10,000-vertex
 * wide graph (9,999 sources feeding one sink) run with trivial handlers;
 * each vertex runs once, every result is released, and the scheduling
 * overhead per vertex is reported (not asserted: no timing assertions).
 */
#include "fake.h"
#include "tap.h"

#define N 10000

static void run(const char *what, struct ir_graph *g, uint32_t root, int jobs)
{
    struct fake *f = fake_new(g);
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = jobs};
    void *res = NULL;
    struct sched_stats st;
    struct kn_error *err = NULL;
    uint64_t t0 = fake_now_us();
    int rc = sched_run(g, &root, 1, &h, &o, &res, &st, &err);
    uint64_t t1 = fake_now_us();
    is_int(rc, 0, "%s jobs=%d: runs", what, jobs);
    is_int(st.executed, N, "%s jobs=%d: every vertex executed", what, jobs);
    int once = 1;
    for (size_t i = 0; i < g->nv; i++)
        if (atomic_load(&f->executes[i]) != 1)
            once = 0;
    ok(once, "%s jobs=%d: each exactly once", what, jobs);
    is_int(atomic_load(&f->violations), 0, "%s jobs=%d: inputs always ready", what, jobs);
    if (res)
        fake_release(f, res);
    ok(fake_all_released(f), "%s jobs=%d: every result released", what, jobs);
    printf("# %s jobs=%d: %d vertices in %.1f ms: %.1f us/vertex\n", what, jobs, N,
           (double)(t1 - t0) / 1e3, (double)(t1 - t0) / N);
    fake_free(f);
}

int main(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t prev = gadd(g, "chain0", NULL, 0);
    char name[32];
    for (int i = 1; i < N; i++) {
        snprintf(name, sizeof(name), "chain%d", i);
        prev = gadd1(g, name, prev);
    }
    run("chain", g, prev, 1);
    run("chain", g, prev, 4);
    ir_graph_free(g);

    g = ir_graph_new();
    uint32_t *in = kn_calloc(N - 1, sizeof(*in));
    for (int i = 0; i < N - 1; i++) {
        snprintf(name, sizeof(name), "wide%d", i);
        in[i] = gadd(g, name, NULL, 0);
    }
    uint32_t sink = gadd(g, "sink", in, N - 1);
    free(in);
    run("wide", g, sink, 1);
    run("wide", g, sink, 4);
    ir_graph_free(g);
    return tap_done();
}
