/*
 * The scheduler loop: sched_run(), its worker pool and the job API.
 *
 * How a vertex moves
 * ------------------
 * Only the vertices the roots need take part (ir_graph_reachable); the IR
 * already merged equal work by digest, so each of them is one work item and
 * runs at most once however many roots need it. Each has a state:
 *
 *   WAITING --(last input finished)--> READY --(a worker pops it)--> RUNNING
 *   RUNNING --> DONE | CACHED | FAILED | CANCELED     READY/WAITING --> SKIPPED
 *
 * WAITING: `pending` counts the input edges not yet finished. When the
 * coordinator learns that an input is DONE or CACHED it decrements the
 * count of every consumer; one that reaches zero is READY and goes into the
 * ready queue of its kind (CPU or I/O: handlers->is_io). The queues are
 * heaps ordered by height (the longest chain from the vertex to a root), so
 * the critical path starts first and a wide graph does not starve it.
 *
 * RUNNING: a worker of the matching kind pops the vertex, builds its job
 * (the inputs' results, read under the lock, so the job carries all it
 * needs) and, outside the lock: computes the cache key, looks it up unless
 * caching is off, and on a miss executes. The outcome (result or error,
 * timings) is written into the job, and the job is appended to the
 * completion queue; the coordinator is woken by a condition variable.
 * Workers never touch the graph state beyond popping: all decisions are the
 * coordinator's.
 *
 * DONE / CACHED: the coordinator stores the result, makes consumers ready,
 * and drops one use of each input's result; a result whose last consumer
 * has finished and that is not an output is released (outside the lock, so
 * a slow release does not hold up the workers).
 *
 * FAILED: the first failure is the run's error (stamped with the vertex's
 * source location). The worker that saw it sets `hold` as it queues the
 * job back, so no worker starts anything new between the failure and the
 * coordinator's reaction (a freed slot would otherwise pop the next ready
 * vertex at once). The coordinator then cancels: the ready queues are
 * emptied (those vertices are SKIPPED: they never start), every RUNNING job
 * gets its atomic canceled flag set and its on_cancel callback called (exec
 * kills the sandbox there), and no further vertex is made ready. A job
 * that then fails is CANCELED and its error dropped, so the run returns the
 * cause, not its consequences. The same happens when the caller's
 * sched_cancel token is triggered (polled every 100 ms, since a signal
 * handler cannot signal a condition variable).
 *
 * The loop ends when nothing runs and either everything finished or the run
 * is canceling. Then the workers are told to stop and joined, the outputs'
 * results are handed to the caller, everything else is released, and the
 * trace and statistics are written.
 *
 * Locks: run->mu guards the graph state and queues; job->mu guards one
 * job's cancel callback and log buffers; report_mu serializes reporter
 * calls. Order: run->mu, then job->mu, then report_mu; never the other way.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum vstate {
    VS_UNNEEDED,
    VS_WAITING,
    VS_READY,
    VS_RUNNING,
    VS_DONE,
    VS_CACHED,
    VS_FAILED,
    VS_CANCELED,
    VS_SKIPPED,
};

enum outcome { OUT_DONE, OUT_CACHED, OUT_FAILED, OUT_CANCELED, OUT_SKIPPED };

enum { KIND_CPU, KIND_IO };

struct run;

struct sched_job {
    struct run *run;
    uint32_t vertex;
    int slot;
    atomic_bool canceled;
    pthread_mutex_t mu; /* on_cancel, cancel_arg, line */
    void (*on_cancel)(void *arg);
    void *cancel_arg;
    struct kn_buf line[2]; /* partial output lines: stdout, stderr */
    void **inputs;
    /* the outcome, written by the worker before the job is queued back */
    enum outcome outcome;
    void *result;
    struct kn_error *err;
    uint64_t t0, t1;
    struct sched_job *next; /* completion queue */
};

struct vert {
    uint8_t state;       /* enum vstate */
    bool io;             /* runs on an I/O slot */
    bool output;         /* a root: its result goes to the caller */
    bool ran;            /* a work item ran for it (for the trace and stats) */
    uint32_t pending;    /* input edges not finished */
    uint32_t users_left; /* consumer edges not finished */
    uint32_t height;     /* longest chain to a root, in vertices */
    int slot;
    void *result;
    struct sched_job *job; /* while RUNNING */
    uint64_t t0, t1;
};

struct heap {
    uint32_t *v;
    size_t n, cap;
};

struct worker {
    struct run *run;
    int kind;
    int slot;
    pthread_t th;
};

struct run {
    const struct ir_graph *g;
    const struct sched_handlers *h;
    bool no_cache;
    struct sched_reporter *rep;
    struct timespec start;

    pthread_mutex_t mu;
    pthread_cond_t coord_cv;
    pthread_cond_t work_cv[2];
    struct vert *vs;
    uint32_t *cons_off; /* consumers of v: cons[cons_off[v] .. cons_off[v+1]) */
    uint32_t *cons;
    struct heap ready[2];
    struct sched_job *done_head, *done_tail;
    size_t running;  /* popped by a worker, not yet processed by the coordinator */
    size_t finished; /* DONE + CACHED */
    size_t needed;
    bool stop, canceling;
    bool hold; /* a failure is on its way to the coordinator: workers pop nothing */
    struct kn_error *first_err;
    KN_VEC(void *) to_release; /* results to release once the lock is dropped */

    pthread_mutex_t report_mu;
    unsigned *num; /* event numbers, guarded by report_mu */
    unsigned next_num;
};

/* ---- time ----------------------------------------------------------------- */

static uint64_t ts_us(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000u + (uint64_t)t->tv_nsec / 1000u;
}

static uint64_t now_us(const struct run *r)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ts_us(&t) - ts_us(&r->start);
}

/* ---- ready queues: max-heaps on (height, -index) ------------------------- */

static bool heap_before(const struct run *r, uint32_t a, uint32_t b)
{
    if (r->vs[a].height != r->vs[b].height)
        return r->vs[a].height > r->vs[b].height;
    return a < b;
}

static void heap_push(struct run *r, struct heap *hp, uint32_t vi)
{
    hp->v = kn_grow(hp->v, &hp->cap, hp->n + 1, sizeof(*hp->v));
    size_t i = hp->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(r, vi, hp->v[parent]))
            break;
        hp->v[i] = hp->v[parent];
        i = parent;
    }
    hp->v[i] = vi;
}

static uint32_t heap_pop(struct run *r, struct heap *hp)
{
    uint32_t top = hp->v[0];
    uint32_t last = hp->v[--hp->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= hp->n)
            break;
        if (c + 1 < hp->n && heap_before(r, hp->v[c + 1], hp->v[c]))
            c++;
        if (!heap_before(r, hp->v[c], last))
            break;
        hp->v[i] = hp->v[c];
        i = c;
    }
    if (hp->n)
        hp->v[i] = last;
    return top;
}

/* ---- events --------------------------------------------------------------- */

static void emit(struct run *r, struct sched_event *ev)
{
    if (!r->rep)
        return;
    pthread_mutex_lock(&r->report_mu);
    if (!r->num[ev->vertex])
        r->num[ev->vertex] = ++r->next_num;
    ev->num = r->num[ev->vertex];
    ev->g = r->g;
    ev->v = &r->g->v[ev->vertex];
    ev->time = (double)now_us(r) / 1e6;
    r->rep->event(r->rep, ev);
    pthread_mutex_unlock(&r->report_mu);
}

static void emit_simple(struct run *r, const struct sched_job *job, enum sched_event_kind kind,
                        const struct kn_error *e)
{
    struct sched_event ev = {
        .kind = kind,
        .vertex = job->vertex,
        .slot = job->slot,
        .err = e,
    };
    if (kind != SCHED_EV_START)
        ev.duration = (double)(job->t1 - job->t0) / 1e6;
    emit(r, &ev);
}

/* Called with job->mu held. */
static void emit_line(struct sched_job *job, int si)
{
    struct sched_event ev = {
        .kind = SCHED_EV_LOG,
        .vertex = job->vertex,
        .slot = job->slot,
        .stream = si ? SCHED_STDERR : SCHED_STDOUT,
        .data = job->line[si].data ? job->line[si].data : "",
        .len = job->line[si].len,
    };
    emit(job->run, &ev);
    kn_buf_reset(&job->line[si]);
}

/* ---- the job API ---------------------------------------------------------- */

bool sched_job_canceled(const struct sched_job *job)
{
    return atomic_load(&job->canceled);
}

void sched_job_on_cancel(struct sched_job *job, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&job->mu);
    if (fn && atomic_load(&job->canceled)) {
        job->on_cancel = NULL;
        job->cancel_arg = NULL;
        pthread_mutex_unlock(&job->mu);
        fn(arg);
        return;
    }
    job->on_cancel = fn;
    job->cancel_arg = fn ? arg : NULL;
    pthread_mutex_unlock(&job->mu);
}

void sched_job_log(struct sched_job *job, enum sched_stream stream, const void *data, size_t len)
{
    if (!job->run->rep || !len)
        return;
    int si = stream == SCHED_STDERR ? 1 : 0;
    const char *p = data;
    pthread_mutex_lock(&job->mu);
    struct kn_buf *b = &job->line[si];
    while (len) {
        const char *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) : len;
        if (b->len + take >= SCHED_MAX_LOG_LINE) {
            /* a line too long for one event: deliver it in pieces */
            take = SCHED_MAX_LOG_LINE - b->len;
            kn_buf_add(b, p, take);
            emit_line(job, si);
            p += take;
            len -= take;
            continue;
        }
        kn_buf_add(b, p, take);
        p += take;
        len -= take;
        if (nl) {
            emit_line(job, si);
            p++;
            len--;
        }
    }
    pthread_mutex_unlock(&job->mu);
}

uint32_t sched_job_vertex(const struct sched_job *job)
{
    return job->vertex;
}

int sched_job_slot(const struct sched_job *job)
{
    return job->slot;
}

void sched_cancel_request(struct sched_cancel *c)
{
    atomic_store(&c->requested, 1);
}

static void job_flush_logs(struct sched_job *job)
{
    pthread_mutex_lock(&job->mu);
    for (int si = 0; si < 2; si++)
        if (job->line[si].len)
            emit_line(job, si);
    pthread_mutex_unlock(&job->mu);
}

/* Called with run->mu held: the inputs' results are stable under it. */
static struct sched_job *job_new(struct run *r, uint32_t vi, int slot)
{
    const struct ir_vertex *v = &r->g->v[vi];
    struct sched_job *job = kn_calloc(1, sizeof(*job));
    job->run = r;
    job->vertex = vi;
    job->slot = slot;
    atomic_init(&job->canceled, false);
    pthread_mutex_init(&job->mu, NULL);
    if (v->ninputs) {
        job->inputs = kn_calloc(v->ninputs, sizeof(*job->inputs));
        for (size_t i = 0; i < v->ninputs; i++)
            job->inputs[i] = r->vs[v->inputs[i]].result;
    }
    return job;
}

static void job_free(struct sched_job *job)
{
    pthread_mutex_destroy(&job->mu);
    kn_buf_release(&job->line[0]);
    kn_buf_release(&job->line[1]);
    free(job->inputs);
    kn_err_free(job->err);
    free(job);
}

/* Cancels one running job: sets its flag and calls its callback once.
 * Called by the coordinator with run->mu held. */
static void job_cancel(struct sched_job *job)
{
    atomic_store(&job->canceled, true);
    pthread_mutex_lock(&job->mu);
    void (*fn)(void *) = job->on_cancel;
    void *arg = job->cancel_arg;
    job->on_cancel = NULL;
    job->cancel_arg = NULL;
    if (fn)
        fn(arg);
    pthread_mutex_unlock(&job->mu);
}

/* ---- one work item, on a worker thread ---------------------------------- */

static void job_run(struct run *r, struct sched_job *job)
{
    const struct sched_handlers *h = r->h;
    const struct ir_graph *g = r->g;
    uint32_t vi = job->vertex;
    const struct ir_vertex *v = &g->v[vi];
    struct kn_error *e = NULL;
    char key[SCHED_KEY_SIZE];
    bool started = false;
    int hit = 0, rc = 0;

    job->t0 = now_us(r);
    if (h->cache_key) {
        memset(key, 0, sizeof(key));
        rc = h->cache_key(h->ctx, g, vi, job->inputs, key, &e);
        key[SCHED_KEY_SIZE - 1] = '\0';
    } else {
        memcpy(key, v->digest, SCHED_KEY_SIZE);
    }
    if (rc == 0 && !r->no_cache && !v->no_cache && h->cache_lookup) {
        void *res = NULL;
        hit = h->cache_lookup(h->ctx, g, vi, key, &res, &e);
        if (hit < 0)
            rc = -1;
        else if (hit > 0)
            job->result = res;
    }
    if (rc == 0 && !hit && !sched_job_canceled(job)) {
        started = true;
        emit_simple(r, job, SCHED_EV_START, NULL);
        void *res = NULL;
        rc = h->execute(h->ctx, job, g, vi, job->inputs, key, &res, &e);
        if (rc == 0)
            job->result = res;
        job_flush_logs(job);
    }
    job->t1 = now_us(r);

    if (rc == 0 && !hit && !started) {
        job->outcome = OUT_SKIPPED; /* canceled before it began */
    } else if (rc < 0 && sched_job_canceled(job)) {
        kn_err_free(e);
        job->outcome = started ? OUT_CANCELED : OUT_SKIPPED;
        if (started)
            emit_simple(r, job, SCHED_EV_CANCELED, NULL);
    } else if (rc < 0) {
        if (!e) {
            char buf[128];
            e = kn_err_new(KN_E_INTERNAL, "'%s' failed without saying why",
                           sched_vertex_label(v, buf, sizeof(buf)));
        }
        job->err = e;
        job->outcome = OUT_FAILED;
        emit_simple(r, job, SCHED_EV_ERROR, e);
    } else {
        job->outcome = hit ? OUT_CACHED : OUT_DONE;
        emit_simple(r, job, hit ? SCHED_EV_CACHED : SCHED_EV_DONE, NULL);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && (r->hold || !r->ready[w->kind].n))
            pthread_cond_wait(&r->work_cv[w->kind], &r->mu);
        if (r->stop)
            break;
        uint32_t vi = heap_pop(r, &r->ready[w->kind]);
        struct sched_job *job = job_new(r, vi, w->slot);
        r->vs[vi].state = VS_RUNNING;
        r->vs[vi].job = job;
        r->running++;
        pthread_mutex_unlock(&r->mu);

        job_run(r, job);

        pthread_mutex_lock(&r->mu);
        if (r->done_tail)
            r->done_tail->next = job;
        else
            r->done_head = job;
        r->done_tail = job;
        /* a failure will cancel the run: start nothing new meanwhile */
        if (job->outcome == OUT_FAILED)
            r->hold = true;
        pthread_cond_signal(&r->coord_cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the coordinator ------------------------------------------------------ */

static void make_ready(struct run *r, uint32_t vi)
{
    struct vert *x = &r->vs[vi];
    x->state = VS_READY;
    int kind = x->io ? KIND_IO : KIND_CPU;
    heap_push(r, &r->ready[kind], vi);
    pthread_cond_signal(&r->work_cv[kind]);
}

static void cancel_all(struct run *r)
{
    if (r->canceling)
        return;
    r->canceling = true;
    for (int k = 0; k < 2; k++) {
        while (r->ready[k].n) {
            uint32_t vi = heap_pop(r, &r->ready[k]);
            r->vs[vi].state = VS_SKIPPED;
        }
    }
    for (size_t i = 0; i < r->g->nv; i++)
        if (r->vs[i].state == VS_RUNNING && r->vs[i].job)
            job_cancel(r->vs[i].job);
}

/* Processes one finished job. Called with run->mu held. */
static void complete(struct run *r, struct sched_job *job)
{
    uint32_t vi = job->vertex;
    struct vert *x = &r->vs[vi];
    const struct ir_vertex *v = &r->g->v[vi];

    r->running--;
    x->job = NULL;
    x->slot = job->slot;
    x->t0 = job->t0;
    x->t1 = job->t1;
    x->ran = job->outcome != OUT_SKIPPED;
    switch (job->outcome) {
    case OUT_DONE:
    case OUT_CACHED:
        x->state = job->outcome == OUT_DONE ? VS_DONE : VS_CACHED;
        x->result = job->result;
        r->finished++;
        if (r->canceling)
            break;
        for (uint32_t i = r->cons_off[vi]; i < r->cons_off[vi + 1]; i++) {
            uint32_t c = r->cons[i];
            if (--r->vs[c].pending == 0)
                make_ready(r, c);
        }
        break;
    case OUT_FAILED:
        x->state = VS_FAILED;
        if (!r->canceling) {
            r->first_err = job->err;
            job->err = NULL;
            if (v->loc.file || v->loc.line)
                kn_err_at(r->first_err, v->loc.file, v->loc.line, v->loc.col);
            cancel_all(r);
        }
        break;
    case OUT_CANCELED:
        x->state = VS_CANCELED;
        break;
    case OUT_SKIPPED:
        x->state = VS_SKIPPED;
        break;
    }
    /* this consumer no longer needs its inputs */
    for (size_t j = 0; j < v->ninputs; j++) {
        struct vert *in = &r->vs[v->inputs[j]];
        if (--in->users_left == 0 && !in->output && in->result) {
            kn_vec_push(&r->to_release, in->result);
            in->result = NULL;
        }
    }
    job_free(job);
}

/* Drops the lock to release what complete() collected. */
static void release_collected(struct run *r)
{
    if (!r->to_release.n)
        return;
    void **list = r->to_release.v;
    size_t n = r->to_release.n;
    r->to_release.v = NULL;
    r->to_release.n = r->to_release.cap = 0;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++)
        if (r->h->release)
            r->h->release(r->h->ctx, list[i]);
    free(list);
    pthread_mutex_lock(&r->mu);
}

static void coordinate(struct run *r, struct sched_cancel *cancel)
{
    bool ticking = r->rep && r->rep->tick && r->rep->tick_ms > 0;
    uint64_t tick_every = ticking ? (uint64_t)r->rep->tick_ms * 1000u : 100000u;
    uint64_t next_tick = tick_every;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->done_head) {
            struct sched_job *job = r->done_head;
            r->done_head = job->next;
            if (!r->done_head)
                r->done_tail = NULL;
            complete(r, job);
        }
        if (cancel && atomic_load(&cancel->requested) && !r->canceling) {
            r->first_err = kn_err_new(KN_E_CANCELED, "build canceled");
            cancel_all(r);
        }
        if (!r->running && (r->canceling || r->finished == r->needed))
            break;
        if (r->to_release.n) {
            release_collected(r);
            continue;
        }
        if (!ticking && !cancel) {
            pthread_cond_wait(&r->coord_cv, &r->mu);
            continue;
        }
        uint64_t now = now_us(r);
        if (now < next_tick && !r->done_head) {
            uint64_t at = ts_us(&r->start) + next_tick;
            struct timespec dl = {.tv_sec = (time_t)(at / 1000000u),
                                  .tv_nsec = (long)(at % 1000000u) * 1000};
            pthread_cond_timedwait(&r->coord_cv, &r->mu, &dl);
            now = now_us(r);
        }
        if (now >= next_tick) {
            next_tick = now + tick_every;
            if (ticking) {
                pthread_mutex_unlock(&r->mu);
                pthread_mutex_lock(&r->report_mu);
                r->rep->tick(r->rep, (double)now / 1e6);
                pthread_mutex_unlock(&r->report_mu);
                pthread_mutex_lock(&r->mu);
            }
        }
    }
    release_collected(r);
    pthread_mutex_unlock(&r->mu);
}

/* ---- set-up and tear-down ------------------------------------------------- */

static int check_opts(const struct ir_graph *g, const uint32_t *roots, size_t nroots,
                      const struct sched_handlers *h, const struct sched_opts *o,
                      struct kn_error **err)
{
    if (!h || !h->execute)
        return kn_err_set(err, KN_E_INTERNAL, "scheduler: no execute handler");
    if (o->jobs < 0 || o->jobs > SCHED_MAX_JOBS)
        return kn_err_set(err, KN_E_USAGE, "invalid number of jobs %d (want 0 to %d)", o->jobs,
                          SCHED_MAX_JOBS);
    if (o->io_jobs < 0 || o->io_jobs > SCHED_MAX_JOBS)
        return kn_err_set(err, KN_E_USAGE, "invalid number of I/O jobs %d (want 0 to %d)",
                          o->io_jobs, SCHED_MAX_JOBS);
    for (size_t i = 0; i < nroots; i++) {
        if (roots[i] >= g->nv)
            return kn_err_set(err, KN_E_INTERNAL,
                              "scheduler: root vertex %u out of range (graph has %zu)", roots[i],
                              g->nv);
        if (h->retain)
            continue;
        for (size_t j = 0; j < i; j++)
            if (roots[j] == roots[i])
                return kn_err_set(err, KN_E_INTERNAL,
                                  "scheduler: root vertex %u requested twice without a retain "
                                  "handler",
                                  roots[i]);
    }
    return 0;
}

/* Marks the needed vertices, counts edges and consumers, computes heights. */
static void prepare(struct run *r, const uint32_t *roots, size_t nroots)
{
    const struct ir_graph *g = r->g;
    size_t nv = g->nv;
    bool *need = ir_graph_reachable(g, roots, nroots);
    r->vs = kn_calloc(nv ? nv : 1, sizeof(*r->vs));
    r->num = kn_calloc(nv ? nv : 1, sizeof(*r->num));
    r->cons_off = kn_calloc(nv + 1, sizeof(*r->cons_off));
    for (size_t i = 0; i < nroots; i++)
        r->vs[roots[i]].output = true;

    size_t nedges = 0;
    for (size_t i = 0; i < nv; i++) {
        if (!need[i])
            continue;
        const struct ir_vertex *v = &g->v[i];
        r->vs[i].state = VS_WAITING;
        r->vs[i].pending = (uint32_t)v->ninputs;
        r->vs[i].io = r->h->is_io ? r->h->is_io(r->h->ctx, g, (uint32_t)i) : false;
        r->needed++;
        for (size_t j = 0; j < v->ninputs; j++) {
            r->cons_off[v->inputs[j] + 1]++;
            r->vs[v->inputs[j]].users_left++;
            nedges++;
        }
    }
    for (size_t i = 0; i < nv; i++)
        r->cons_off[i + 1] += r->cons_off[i];
    r->cons = kn_calloc(nedges ? nedges : 1, sizeof(*r->cons));
    uint32_t *fill = kn_calloc(nv ? nv : 1, sizeof(*fill));
    for (size_t i = 0; i < nv; i++) {
        if (!need[i])
            continue;
        const struct ir_vertex *v = &g->v[i];
        for (size_t j = 0; j < v->ninputs; j++) {
            uint32_t in = v->inputs[j];
            r->cons[r->cons_off[in] + fill[in]++] = (uint32_t)i;
        }
    }
    free(fill);
    /* consumers always come later: one backward pass computes heights */
    for (size_t i = nv; i-- > 0;) {
        if (!need[i])
            continue;
        uint32_t hmax = 0;
        for (uint32_t k = r->cons_off[i]; k < r->cons_off[i + 1]; k++)
            if (r->vs[r->cons[k]].height > hmax)
                hmax = r->vs[r->cons[k]].height;
        r->vs[i].height = hmax + 1;
    }
    free(need);
}

static void fill_stats(const struct run *r, struct sched_stats *st, uint64_t wall)
{
    memset(st, 0, sizeof(*st));
    st->vertices = r->needed;
    st->wall_us = wall;
    size_t nv = r->g->nv;
    uint64_t *cp = kn_calloc(nv ? nv : 1, sizeof(*cp));
    size_t *cplen = kn_calloc(nv ? nv : 1, sizeof(*cplen));
    for (size_t i = 0; i < nv; i++) {
        const struct vert *x = &r->vs[i];
        switch ((enum vstate)x->state) {
        case VS_UNNEEDED:
            continue;
        case VS_DONE:
            st->executed++;
            break;
        case VS_CACHED:
            st->cached++;
            break;
        case VS_FAILED:
            st->failed++;
            break;
        case VS_CANCELED:
            st->canceled++;
            break;
        case VS_WAITING:
        case VS_READY:
        case VS_RUNNING:
        case VS_SKIPPED:
            st->skipped++;
            break;
        }
        const struct ir_vertex *v = &r->g->v[i];
        uint64_t best = 0;
        size_t bestlen = 0;
        for (size_t j = 0; j < v->ninputs; j++) {
            if (cp[v->inputs[j]] > best ||
                (cp[v->inputs[j]] == best && cplen[v->inputs[j]] > bestlen)) {
                best = cp[v->inputs[j]];
                bestlen = cplen[v->inputs[j]];
            }
        }
        uint64_t dur = x->ran ? x->t1 - x->t0 : 0;
        st->busy_us += dur;
        cp[i] = best + dur;
        cplen[i] = bestlen + (x->ran ? 1 : 0);
        if (cp[i] > st->critical_path_us ||
            (cp[i] == st->critical_path_us && cplen[i] > st->critical_path_len)) {
            st->critical_path_us = cp[i];
            st->critical_path_len = cplen[i];
        }
    }
    free(cp);
    free(cplen);
}

static int write_trace(const struct run *r, FILE *f, const char *path, int jobs, int ncpu, int nio,
                       struct kn_error **err)
{
    KN_VEC(struct sched_trace_item) items = {0};
    for (size_t i = 0; i < r->g->nv; i++) {
        const struct vert *x = &r->vs[i];
        if (!x->ran)
            continue;
        struct sched_trace_item it = {
            .vertex = (uint32_t)i,
            .slot = x->slot,
            .start_us = x->t0,
            .end_us = x->t1,
            .cached = x->state == VS_CACHED,
        };
        kn_vec_push(&items, it);
    }
    int rc = sched_trace_write(f, path, r->g, items.v, items.n, jobs, ncpu, nio, err);
    free(items.v);
    return rc;
}

static int spawn(struct run *r, struct worker *w, int kind, int slot, struct kn_error **err)
{
    w->run = r;
    w->kind = kind;
    w->slot = slot;
    int e = pthread_create(&w->th, NULL, worker_main, w);
    if (e) {
        errno = e;
        return kn_err_sys(err, "cannot start a worker thread");
    }
    return 0;
}

int sched_run(const struct ir_graph *g, const uint32_t *roots, size_t nroots,
              const struct sched_handlers *h, const struct sched_opts *opts, void **results,
              struct sched_stats *stats, struct kn_error **err)
{
    static const struct sched_opts defaults;
    const struct sched_opts *o = opts ? opts : &defaults;
    for (size_t i = 0; i < nroots; i++)
        results[i] = NULL;
    if (stats)
        memset(stats, 0, sizeof(*stats));
    if (check_opts(g, roots, nroots, h, o, err) < 0)
        return -1;

    FILE *trace = NULL;
    if (o->trace_path) {
        trace = fopen(o->trace_path, "we");
        if (!trace)
            return kn_err_sys(err, "cannot open trace file '%s'", o->trace_path);
    }

    struct run *r = kn_calloc(1, sizeof(*r));
    r->g = g;
    r->h = h;
    r->no_cache = o->no_cache;
    r->rep = o->reporter;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->report_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->coord_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&r->work_cv[KIND_CPU], NULL);
    pthread_cond_init(&r->work_cv[KIND_IO], NULL);

    prepare(r, roots, nroots);
    size_t ncpu = 0, nio = 0;
    for (size_t i = 0; i < g->nv; i++) {
        if (r->vs[i].state != VS_WAITING)
            continue;
        if (r->vs[i].io)
            nio++;
        else
            ncpu++;
        if (!r->vs[i].pending)
            make_ready(r, (uint32_t)i);
    }

    int jobs = o->jobs;
    if (!jobs) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        jobs = n > 0 ? (n > SCHED_MAX_JOBS ? SCHED_MAX_JOBS : (int)n) : 1;
    }
    int io_jobs = o->io_jobs ? o->io_jobs : 4;
    size_t ncpu_threads = ncpu < (size_t)jobs ? ncpu : (size_t)jobs;
    size_t nio_threads = nio < (size_t)io_jobs ? nio : (size_t)io_jobs;
    struct worker *workers = kn_calloc(ncpu_threads + nio_threads + 1, sizeof(*workers));
    size_t nworkers = 0;
    int rc = 0;
    for (size_t i = 0; i < ncpu_threads && rc == 0; i++, nworkers++)
        rc = spawn(r, &workers[nworkers], KIND_CPU, (int)i + 1, err);
    for (size_t i = 0; i < nio_threads && rc == 0; i++, nworkers++)
        rc = spawn(r, &workers[nworkers], KIND_IO, jobs + (int)i + 1, err);
    if (rc < 0) {
        nworkers--; /* the one that failed did not start */
        pthread_mutex_lock(&r->mu);
        cancel_all(r);
        pthread_mutex_unlock(&r->mu);
    }

    coordinate(r, o->cancel);

    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->work_cv[KIND_CPU]);
    pthread_cond_broadcast(&r->work_cv[KIND_IO]);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < nworkers; i++)
        pthread_join(workers[i].th, NULL);
    free(workers);

    struct kn_error *run_err = r->first_err;
    r->first_err = NULL;
    if (rc < 0 && run_err) {
        kn_err_free(run_err);
        run_err = NULL;
    }
    if (rc == 0 && !run_err) {
        for (size_t i = 0; i < nroots; i++) {
            struct vert *x = &r->vs[roots[i]];
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = roots[j] == roots[i];
            if (dup)
                results[i] = x->result ? h->retain(h->ctx, x->result) : NULL;
            else
                results[i] = x->result;
        }
        for (size_t i = 0; i < nroots; i++)
            r->vs[roots[i]].result = NULL;
    }
    for (size_t i = 0; i < g->nv; i++)
        if (r->vs[i].result && h->release)
            h->release(h->ctx, r->vs[i].result);

    struct sched_stats st;
    fill_stats(r, &st, now_us(r));
    if (trace) {
        struct kn_error *terr = NULL;
        if (write_trace(r, trace, o->trace_path, jobs, (int)ncpu_threads, (int)nio_threads, &terr) <
                0 &&
            !run_err && rc == 0)
            run_err = terr;
        else
            kn_err_free(terr);
        if (fclose(trace) != 0 && !run_err && rc == 0)
            run_err = kn_err_new(KN_E_IO, "cannot write trace file '%s': %s", o->trace_path,
                                 strerror(errno));
    }
    if (run_err && rc == 0) {
        /* a trace error after success: give the results back */
        for (size_t i = 0; i < nroots; i++) {
            if (results[i] && h->release)
                h->release(h->ctx, results[i]);
            results[i] = NULL;
        }
    }
    if (r->rep && r->rep->finish) {
        pthread_mutex_lock(&r->report_mu);
        r->rep->finish(r->rep, &st, run_err);
        pthread_mutex_unlock(&r->report_mu);
    }
    if (stats)
        *stats = st;

    free(r->vs);
    free(r->num);
    free(r->cons_off);
    free(r->cons);
    free(r->ready[0].v);
    free(r->ready[1].v);
    free(r->to_release.v);
    pthread_cond_destroy(&r->coord_cv);
    pthread_cond_destroy(&r->work_cv[KIND_CPU]);
    pthread_cond_destroy(&r->work_cv[KIND_IO]);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->report_mu);
    free(r);

    if (rc < 0)
        return -1;
    if (run_err) {
        if (err && !*err)
            *err = run_err;
        else
            kn_err_free(run_err);
        return -1;
    }
    return 0;
}
