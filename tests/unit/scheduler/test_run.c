/*
 * Unit tests for sched_run with fake handlers: dependencies and running
 * each vertex once, parallelism (overlap of recorded intervals, never wall
 * time), I/O slots, the cache (hits, lookups after a miss, no_cache),
 * failure and cancellation (first error, its location, pending vertices
 * never started, cancel callbacks), result references, and bad options.
 */
#include "fake.h"
#include "tap.h"

#include <errno.h>
#include <signal.h>

static bool overlap(struct fake *f, uint32_t a, uint32_t b)
{
    uint64_t s = f->t_start[a] > f->t_start[b] ? f->t_start[a] : f->t_start[b];
    uint64_t e = f->t_end[a] < f->t_end[b] ? f->t_end[a] : f->t_end[b];
    return s < e;
}

static void release_results(struct fake *f, void **results, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (results[i])
            fake_release(f, results[i]);
}

/* (1) a diamond runs each vertex once, in dependency order; two roots that
 * share vertices do not run them twice */
static void test_diamond(int jobs)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "a", NULL, 0);
    uint32_t b = gadd1(g, "b", a);
    uint32_t c = gadd1(g, "c", a);
    uint32_t d = gadd2(g, "d", b, c);
    uint32_t unused = gadd1(g, "unused", a);
    struct fake *f = fake_new(g);
    for (uint32_t i = 0; i < g->nv; i++)
        f->sleep_ms[i] = 20;
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = jobs};
    uint32_t roots[] = {d, b};
    void *results[2];
    struct sched_stats st;
    struct kn_error *err = NULL;
    int rc = sched_run(g, roots, 2, &h, &o, results, &st, &err);
    is_int(rc, 0, "diamond jobs=%d: runs", jobs);
    ok(!err, "diamond jobs=%d: no error", jobs);
    for (uint32_t i = a; i <= d; i++)
        is_int(atomic_load(&f->executes[i]), 1, "diamond jobs=%d: vertex %u executed once", jobs,
               i);
    is_int(atomic_load(&f->executes[unused]), 0, "diamond jobs=%d: unneeded vertex not run", jobs);
    ok(fake_pos(f, 'E', a) < fake_pos(f, 'S', b) && fake_pos(f, 'E', a) < fake_pos(f, 'S', c),
       "diamond jobs=%d: a ends before b and c start", jobs);
    ok(fake_pos(f, 'E', b) < fake_pos(f, 'S', d) && fake_pos(f, 'E', c) < fake_pos(f, 'S', d),
       "diamond jobs=%d: b and c end before d starts", jobs);
    is_int(f->nlog, 8, "diamond jobs=%d: 4 starts and 4 ends", jobs);
    ok(results[0] == f->res[d] && results[1] == f->res[b], "diamond jobs=%d: outputs returned",
       jobs);
    is_int(st.vertices, 4, "diamond jobs=%d: stats vertices", jobs);
    is_int(st.executed, 4, "diamond jobs=%d: stats executed", jobs);
    is_int(st.critical_path_len, 3, "diamond jobs=%d: critical path a-b-d", jobs);
    ok(st.critical_path_us >= 60000, "diamond jobs=%d: critical path >= 3 x 20 ms", jobs);
    is_int(atomic_load(&f->violations), 0, "diamond jobs=%d: inputs always finished and live",
           jobs);
    /* (6) a and c were released by the scheduler, b and d are the caller's */
    is_int(atomic_load(&f->res[a]->releases), 1, "diamond jobs=%d: a released once", jobs);
    is_int(atomic_load(&f->res[c]->releases), 1, "diamond jobs=%d: c released once", jobs);
    is_int(atomic_load(&f->res[b]->releases), 0, "diamond jobs=%d: output b kept", jobs);
    is_int(atomic_load(&f->res[d]->releases), 0, "diamond jobs=%d: output d kept", jobs);
    release_results(f, results, 2);
    ok(fake_all_released(f), "diamond jobs=%d: every result released exactly once", jobs);
    fake_free(f);
    ir_graph_free(g);
}

/* (2) four independent 200 ms vertices overlap with jobs=4, not with jobs=1 */
static void test_parallel(void)
{
    for (int jobs = 1; jobs <= 4; jobs += 3) {
        struct ir_graph *g = ir_graph_new();
        uint32_t v[4];
        char name[16];
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof(name), "sleep%d", i);
            v[i] = gadd(g, name, NULL, 0);
        }
        struct fake *f = fake_new(g);
        for (int i = 0; i < 4; i++)
            f->sleep_ms[v[i]] = 200;
        struct sched_handlers h = fake_handlers(f);
        struct sched_opts o = {.jobs = jobs};
        void *results[4];
        struct kn_error *err = NULL;
        is_int(sched_run(g, v, 4, &h, &o, results, NULL, &err), 0, "parallel jobs=%d: runs", jobs);
        int pairs = 0;
        for (int i = 0; i < 4; i++)
            for (int j = i + 1; j < 4; j++)
                pairs += overlap(f, v[i], v[j]);
        if (jobs == 4) {
            uint64_t latest_start = 0, earliest_end = UINT64_MAX;
            for (int i = 0; i < 4; i++) {
                if (f->t_start[v[i]] > latest_start)
                    latest_start = f->t_start[v[i]];
                if (f->t_end[v[i]] < earliest_end)
                    earliest_end = f->t_end[v[i]];
            }
            ok(latest_start < earliest_end, "parallel jobs=4: all four run at one moment");
            is_int(pairs, 6, "parallel jobs=4: every pair overlaps");
        } else {
            is_int(pairs, 0, "parallel jobs=1: no two overlap");
        }
        release_results(f, results, 4);
        ok(fake_all_released(f), "parallel jobs=%d: all released", jobs);
        fake_free(f);
        ir_graph_free(g);
    }
}

/* (3) an I/O vertex does not take the only CPU slot */
static void test_io_slots(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t pull = gadd(g, "pull", NULL, 0);
    uint32_t cpu = gadd(g, "compile", NULL, 0);
    uint32_t cpu2 = gadd(g, "compile2", NULL, 0);
    struct fake *f = fake_new(g);
    f->io[pull] = true;
    f->sleep_ms[pull] = 400;
    f->sleep_ms[cpu] = 150;
    f->sleep_ms[cpu2] = 150;
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = 1, .io_jobs = 1};
    uint32_t roots[] = {pull, cpu, cpu2};
    void *results[3];
    struct kn_error *err = NULL;
    is_int(sched_run(g, roots, 3, &h, &o, results, NULL, &err), 0, "io: runs");
    ok(overlap(f, pull, cpu), "io: the pull and a compile run at the same time");
    ok(!overlap(f, cpu, cpu2), "io: the two compiles share the one CPU slot");
    ok(f->t_start[cpu2] < f->t_end[pull], "io: the second compile does not wait for the pull");
    release_results(f, results, 3);
    fake_free(f);
    ir_graph_free(g);
}

/* (4) the cache: a hit skips execute and feeds consumers; lookups go on
 * below a miss; no_cache and ir_vertex.no_cache skip lookups */
static void test_cache(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "a", NULL, 0);
    uint32_t b = gadd1(g, "b", a);
    uint32_t c = gadd1(g, "c", b);
    /* b's key given a's content "a" is in the cache, a's is not */
    char key[SCHED_KEY_SIZE];
    const char *in_a[] = {"a"};
    fake_key(g, b, in_a, key);

    struct fake *f = fake_new(g);
    fake_cache_add(f, key, "b-from-cache");
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = 2};
    void *res = NULL;
    struct sched_stats st;
    struct kn_error *err = NULL;
    is_int(sched_run(g, &c, 1, &h, &o, &res, &st, &err), 0, "cache: runs");
    is_int(atomic_load(&f->lookups[a]), 1, "cache: a looked up");
    is_int(atomic_load(&f->executes[a]), 1, "cache: a missed and ran");
    is_int(atomic_load(&f->lookups[b]), 1, "cache: b looked up after a's miss");
    is_int(atomic_load(&f->executes[b]), 0, "cache: b hit, not executed");
    is_int(atomic_load(&f->executes[c]), 1, "cache: c missed and ran");
    ok(f->res[b] && f->res[b]->from_cache, "cache: b's result came from the cache");
    is_int(atomic_load(&f->violations), 0, "cache: c got b's cached result as input");
    is_int(st.cached, 1, "cache: stats cached");
    is_int(st.executed, 2, "cache: stats executed");
    release_results(f, &res, 1);
    ok(fake_all_released(f), "cache: all released, cached ones too");
    fake_free(f);

    /* --no-cache: keys computed, nothing looked up */
    f = fake_new(g);
    fake_cache_add(f, key, "b-from-cache");
    h = fake_handlers(f);
    o.no_cache = true;
    is_int(sched_run(g, &c, 1, &h, &o, &res, &st, &err), 0, "no_cache: runs");
    is_int(atomic_load(&f->lookups[a]) + atomic_load(&f->lookups[b]) + atomic_load(&f->lookups[c]),
           0, "no_cache: no lookups");
    is_int(atomic_load(&f->keys[b]), 1, "no_cache: keys still computed");
    is_int(st.executed, 3, "no_cache: all executed");
    release_results(f, &res, 1);
    fake_free(f);

    /* ir_vertex.no_cache on b only */
    g->v[b].no_cache = true;
    f = fake_new(g);
    fake_cache_add(f, key, "b-from-cache");
    h = fake_handlers(f);
    o.no_cache = false;
    is_int(sched_run(g, &c, 1, &h, &o, &res, &st, &err), 0, "vertex no_cache: runs");
    is_int(atomic_load(&f->lookups[b]), 0, "vertex no_cache: b not looked up");
    is_int(atomic_load(&f->executes[b]), 1, "vertex no_cache: b executed");
    is_int(atomic_load(&f->lookups[c]), 1, "vertex no_cache: c still looked up");
    release_results(f, &res, 1);
    fake_free(f);

    /* no cache handlers at all: the digest is the key, nothing hits */
    f = fake_new(g);
    h = fake_handlers(f);
    h.cache_key = NULL;
    h.cache_lookup = NULL;
    is_int(sched_run(g, &c, 1, &h, &o, &res, &st, &err), 0, "no cache handlers: runs");
    is_int(st.executed, 3, "no cache handlers: all executed");
    release_results(f, &res, 1);
    fake_free(f);
    ir_graph_free(g);
}

/* a reporter that records events; calls are serialized by the scheduler */
struct recorder {
    struct sched_reporter base;
    KN_VEC(struct sched_event) ev;
    int concurrent, inside;
};

static void rec_event(struct sched_reporter *r, const struct sched_event *ev)
{
    struct recorder *rec = (struct recorder *)r;
    if (rec->inside++)
        rec->concurrent++;
    struct sched_event copy = *ev;
    copy.data = NULL; /* only valid during the call */
    fake_sleep_ms(0);
    kn_vec_push(&rec->ev, copy);
    rec->inside--;
}

/* (5) the first failure: its error with its location, pending vertices
 * never start, running ones are canceled through their callback */
static void test_failure(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t s = gadd(g, "s", NULL, 0);
    uint32_t fl = gadd1(g, "[build 2/3] RUN false", s);
    uint32_t lng = gadd1(g, "long", s);
    uint32_t q = gadd1(g, "queued", s);
    uint32_t p = gadd1(g, "pending", fl);
    g->v[fl].loc.file = ir_graph_strdup(g, "Dockerfile");
    g->v[fl].loc.line = 7;
    g->v[fl].loc.col = 1;
    struct fake *f = fake_new(g);
    f->sleep_ms[fl] = 50;
    f->fail[fl] = "process \"/bin/sh -c false\" did not complete successfully: exit code: 1";
    f->wait_cancel[lng] = true;
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = 2};
    uint32_t roots[] = {p, lng, q};
    void *results[3] = {(void *)1, (void *)1, (void *)1};
    struct sched_stats st;
    struct kn_error *err = NULL;
    is_int(sched_run(g, roots, 3, &h, &o, results, &st, &err), -1, "failure: fails");
    ok(err != NULL, "failure: an error");
    if (err) {
        is_int(err->code, KN_E_EXEC, "failure: the failing vertex's code");
        is_str(err->msg, "process \"/bin/sh -c false\" did not complete successfully: exit code: 1",
               "failure: the failing vertex's message, not 'canceled'");
        is_str(err->loc.file, "Dockerfile", "failure: stamped with the file");
        is_int(err->loc.line, 7, "failure: stamped with the line");
        is_int(err->loc.col, 1, "failure: stamped with the column");
        ok(err->next == NULL, "failure: one error only");
    }
    is_int(atomic_load(&f->executes[p]), 0, "failure: the vertex after the failure never starts");
    is_int(atomic_load(&f->executes[q]), 0, "failure: the queued vertex never starts");
    is_int(atomic_load(&f->keys[q]), 0, "failure: not even its key is computed");
    is_int(atomic_load(&f->executes[lng]), 1, "failure: the long vertex had started");
    is_int(atomic_load(&f->cancel_calls[lng]), 1, "failure: its cancel callback was called once");
    ok(f->t_end[lng] - f->t_start[lng] < 5000000, "failure: the long vertex stopped early");
    ok(!results[0] && !results[1] && !results[2], "failure: no results handed out");
    is_int(st.failed, 1, "failure: stats failed");
    is_int(st.canceled, 1, "failure: stats canceled");
    is_int(st.skipped, 2, "failure: stats skipped");
    is_int(st.executed, 1, "failure: stats executed");
    ok(fake_all_released(f), "failure: the scheduler released every result");
    kn_err_free(err);
    fake_free(f);

    /* an error that has a location keeps it; -1 without an error is a bug */
    f = fake_new(g);
    f->fail[fl] = "cannot copy 'x'";
    f->fail_file = "other.txt";
    h = fake_handlers(f);
    err = NULL;
    is_int(sched_run(g, &fl, 1, &h, &o, results, NULL, &err), -1, "own location: fails");
    if (err) {
        is_str(err->loc.file, "other.txt", "own location: kept");
        is_int(err->loc.line, 3, "own location: line kept");
    }
    kn_err_free(err);
    fake_free(f);

    /* the key cannot be computed: an error event without a start */
    f = fake_new(g);
    f->key_fail[fl] = "cannot read 'src/a.c': Permission denied";
    h = fake_handlers(f);
    struct recorder rec = {.base = {.event = rec_event}};
    o.reporter = &rec.base;
    err = NULL;
    is_int(sched_run(g, &fl, 1, &h, &o, results, NULL, &err), -1, "key fails: fails");
    is_str(err ? err->msg : NULL, "cannot read 'src/a.c': Permission denied", "key fails: message");
    is_int(err ? err->loc.line : 0, 7, "key fails: stamped with the line");
    is_int(atomic_load(&f->executes[fl]), 0, "key fails: not executed");
    is_int(atomic_load(&f->lookups[fl]), 0, "key fails: not looked up");
    ok(rec.ev.n == 3 && rec.ev.v[2].kind == SCHED_EV_ERROR && rec.ev.v[2].vertex == fl,
       "key fails: after s start and done, the vertex's only event is error");
    free(rec.ev.v);
    o.reporter = NULL;
    kn_err_free(err);
    fake_free(f);

    f = fake_new(g);
    f->fail[fl] = "x";
    f->fail_no_err = true;
    h = fake_handlers(f);
    err = NULL;
    is_int(sched_run(g, &fl, 1, &h, &o, results, NULL, &err), -1, "no error: fails");
    if (err) {
        is_int(err->code, KN_E_INTERNAL, "no error: internal");
        is_str(err->msg, "'[build 2/3] RUN false' failed without saying why", "no error: message");
    }
    kn_err_free(err);
    fake_free(f);
    ir_graph_free(g);
}

static struct sched_cancel *sig_token;

static void on_sigusr1(int sig)
{
    (void)sig;
    sched_cancel_request(sig_token);
}

struct canceler {
    pthread_t target;
};

static void *cancel_later(void *arg)
{
    struct canceler *cl = arg;
    fake_sleep_ms(150);
    pthread_kill(cl->target, SIGUSR1);
    return NULL;
}

/* the caller cancels from a signal handler (SIGINT in kiln): "build canceled",
 * running jobs stopped */
static void test_cancel_token(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t s = gadd(g, "s", NULL, 0);
    uint32_t lng = gadd1(g, "long", s);
    uint32_t after = gadd1(g, "after", lng);
    struct fake *f = fake_new(g);
    f->wait_cancel[lng] = true;
    struct sched_handlers h = fake_handlers(f);
    struct sched_cancel token = {0};
    struct sched_opts o = {.jobs = 2, .cancel = &token};
    sig_token = &token;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, NULL);
    struct canceler cl = {pthread_self()};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &cl);
    void *res = NULL;
    struct kn_error *err = NULL;
    is_int(sched_run(g, &after, 1, &h, &o, &res, NULL, &err), -1, "cancel: fails");
    pthread_join(th, NULL);
    if (err) {
        is_int(err->code, KN_E_CANCELED, "cancel: canceled code");
        is_str(err->msg, "build canceled", "cancel: message");
    }
    is_int(atomic_load(&f->cancel_calls[lng]), 1, "cancel: the running job's callback called");
    is_int(atomic_load(&f->executes[after]), 0, "cancel: the next vertex never starts");
    ok(fake_all_released(f), "cancel: everything released");
    kn_err_free(err);
    fake_free(f);
    ir_graph_free(g);
}

/* (6) the same vertex requested twice: one reference per entry */
static void test_duplicate_roots(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "a", NULL, 0);
    uint32_t b = gadd1(g, "b", a);
    struct fake *f = fake_new(g);
    struct sched_handlers h = fake_handlers(f);
    uint32_t roots[] = {b, a, b};
    void *results[3];
    struct kn_error *err = NULL;
    is_int(sched_run(g, roots, 3, &h, NULL, results, NULL, &err), 0, "dup roots: runs");
    ok(results[0] == f->res[b] && results[2] == f->res[b] && results[1] == f->res[a],
       "dup roots: both entries hold b");
    is_int(atomic_load(&f->executes[b]), 1, "dup roots: b ran once");
    is_int(atomic_load(&f->res[b]->retains), 1, "dup roots: one retain for the second entry");
    is_int(atomic_load(&f->res[a]->releases), 0, "dup roots: a is an output, not released");
    release_results(f, results, 3);
    ok(fake_all_released(f), "dup roots: all released after the caller's releases");
    fake_free(f);

    f = fake_new(g);
    h = fake_handlers(f);
    h.retain = NULL;
    err = NULL;
    is_int(sched_run(g, roots, 3, &h, NULL, results, NULL, &err), -1,
           "dup roots without retain: refused");
    if (err)
        is_str(err->msg, "scheduler: root vertex 1 requested twice without a retain handler",
               "dup roots without retain: message");
    is_int(atomic_load(&f->executes[a]), 0, "dup roots without retain: nothing ran");
    kn_err_free(err);
    fake_free(f);
    ir_graph_free(g);
}

/* bad options, each with its message */
static void test_bad_options(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "a", NULL, 0);
    struct fake *f = fake_new(g);
    struct sched_handlers h = fake_handlers(f);
    void *res;
    struct kn_error *err = NULL;

    struct sched_opts o = {.jobs = -1};
    is_int(sched_run(g, &a, 1, &h, &o, &res, NULL, &err), -1, "jobs -1: refused");
    is_str(err ? err->msg : NULL, "invalid number of jobs -1 (want 0 to 1024)", "jobs -1: message");
    is_int(err ? err->code : 0, KN_E_USAGE, "jobs -1: usage error");
    kn_err_free(err);
    err = NULL;

    o = (struct sched_opts){.io_jobs = 5000};
    is_int(sched_run(g, &a, 1, &h, &o, &res, NULL, &err), -1, "io_jobs 5000: refused");
    is_str(err ? err->msg : NULL, "invalid number of I/O jobs 5000 (want 0 to 1024)",
           "io_jobs 5000: message");
    kn_err_free(err);
    err = NULL;

    uint32_t bad = 7;
    is_int(sched_run(g, &bad, 1, &h, NULL, &res, NULL, &err), -1, "bad root: refused");
    is_str(err ? err->msg : NULL, "scheduler: root vertex 7 out of range (graph has 1)",
           "bad root: message");
    kn_err_free(err);
    err = NULL;

    struct sched_handlers none = {0};
    is_int(sched_run(g, &a, 1, &none, NULL, &res, NULL, &err), -1, "no execute: refused");
    is_str(err ? err->msg : NULL, "scheduler: no execute handler", "no execute: message");
    kn_err_free(err);
    err = NULL;

    o = (struct sched_opts){.trace_path = "/nonexistent-dir/trace.json"};
    is_int(sched_run(g, &a, 1, &h, &o, &res, NULL, &err), -1, "bad trace path: refused");
    is_str(err ? err->msg : NULL,
           "cannot open trace file '/nonexistent-dir/trace.json': No such file or directory",
           "bad trace path: message");
    kn_err_free(err);
    is_int(atomic_load(&f->executes[a]), 0, "bad options: nothing ran");

    /* no roots: nothing to do */
    err = NULL;
    struct sched_stats st;
    is_int(sched_run(g, NULL, 0, &h, NULL, NULL, &st, &err), 0, "no roots: succeeds");
    is_int(st.vertices, 0, "no roots: no vertices");
    fake_free(f);
    ir_graph_free(g);
}

/* events for each vertex come in order: start, logs, done (or just cached);
 * output is split into lines, long ones into SCHED_MAX_LOG_LINE pieces,
 * a partial last line is flushed when the job ends */
static void test_events(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "a", NULL, 0);
    uint32_t v[6];
    char name[16];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        v[i] = gadd1(g, name, a);
    }
    struct fake *f = fake_new(g);
    char key[SCHED_KEY_SIZE];
    fake_key(g, a, NULL, key);
    fake_cache_add(f, key, "a");
    char *big = kn_malloc(40001);
    memset(big, 'x', 40000);
    big[40000] = '\0';
    for (int i = 0; i < 6; i++)
        f->logtext[v[i]] = i == 5 ? big : "one\ntwo\n\nthree";
    struct recorder rec = {.base = {.event = rec_event}};
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = 4, .reporter = &rec.base};
    void *res[6];
    struct kn_error *err = NULL;
    is_int(sched_run(g, v, 6, &h, &o, res, NULL, &err), 0, "events: runs");
    is_int(rec.concurrent, 0, "events: never delivered concurrently");
    int order_bad = 0;
    unsigned nums[7] = {0};
    for (int k = 0; k < 7; k++) {
        uint32_t vi = k < 6 ? v[k] : a;
        KN_VEC(struct sched_event) mine = {0};
        for (size_t i = 0; i < rec.ev.n; i++)
            if (rec.ev.v[i].vertex == vi)
                kn_vec_push(&mine, rec.ev.v[i]);
        if (vi == a) {
            if (mine.n != 1 || mine.v[0].kind != SCHED_EV_CACHED)
                order_bad++;
        } else {
            size_t want = 2 + (k == 5 ? 3 : 4);
            if (mine.n != want || mine.v[0].kind != SCHED_EV_START ||
                mine.v[mine.n - 1].kind != SCHED_EV_DONE)
                order_bad++;
            for (size_t i = 1; i + 1 < mine.n; i++)
                if (mine.v[i].kind != SCHED_EV_LOG || mine.v[i].stream != SCHED_STDOUT)
                    order_bad++;
            if (k == 5 && mine.n == want) {
                is_int(mine.v[1].len, SCHED_MAX_LOG_LINE, "events: a long line's first piece");
                is_int(mine.v[2].len, SCHED_MAX_LOG_LINE, "events: its second piece");
                is_int(mine.v[3].len, 40000 - 2 * SCHED_MAX_LOG_LINE, "events: its rest");
            } else if (k == 0 && mine.n == want) {
                is_int(mine.v[1].len, 3, "events: 'one'");
                is_int(mine.v[3].len, 0, "events: an empty line");
                is_int(mine.v[4].len, 5, "events: the partial 'three' flushed at the end");
            }
        }
        for (size_t i = 0; i < mine.n; i++)
            if (mine.v[i].num != mine.v[0].num)
                order_bad++;
        nums[k] = mine.n ? mine.v[0].num : 0;
        free(mine.v);
    }
    is_int(order_bad, 0, "events: per vertex start, logs, done in order, one number");
    int dup = 0;
    for (int i = 0; i < 7; i++)
        for (int j = i + 1; j < 7; j++)
            dup += nums[i] == nums[j];
    is_int(dup, 0, "events: each vertex has its own number");
    for (int i = 0; i < 6; i++)
        fake_release(f, res[i]);
    free(rec.ev.v);
    free(big);
    fake_free(f);
    ir_graph_free(g);
}

/* a vertex that lists the same input twice gets it twice, and the input is
 * released once, after it */
static void test_repeated_input(void)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "a", NULL, 0);
    uint32_t b = gadd2(g, "b", a, a);
    struct fake *f = fake_new(g);
    struct sched_handlers h = fake_handlers(f);
    void *res = NULL;
    struct kn_error *err = NULL;
    is_int(sched_run(g, &b, 1, &h, NULL, &res, NULL, &err), 0, "repeated input: runs");
    is_int(atomic_load(&f->violations), 0, "repeated input: both entries hold a's result");
    is_int(atomic_load(&f->res[a]->releases), 1, "repeated input: a released once");
    fake_release(f, res);
    ok(fake_all_released(f), "repeated input: all released");
    fake_free(f);
    ir_graph_free(g);
}

int main(void)
{
    test_diamond(1);
    test_diamond(4);
    test_parallel();
    test_io_slots();
    test_cache();
    test_failure();
    test_cancel_token();
    test_duplicate_roots();
    test_bad_options();
    test_events();
    test_repeated_input();
    return tap_done();
}
