/*
 * Fake handlers for the scheduler's unit tests: vertices that sleep, log,
 * fail or wait to be canceled as a test configures them, and that record
 * what the scheduler made them do (start/end times and order, how often
 * each handler ran, every result's references) so tests can assert on it.
 *
 * A fake result carries a "content" string (by default the vertex's name);
 * the fake cache key is sha256 over the vertex digest and the contents of
 * the inputs' results, so a vertex below a re-executed one can still hit.
 */
#ifndef KILN_TEST_SCHED_FAKE_H
#define KILN_TEST_SCHED_FAKE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler/scheduler.h"

struct fres {
    uint32_t vertex;
    bool from_cache;
    char *content;
    atomic_int refs;     /* references held (1 at creation) */
    atomic_int releases; /* release() calls */
    atomic_int retains;
};

struct fake_log {
    char kind; /* 'S' start of execute, 'E' end */
    uint32_t vertex;
};

struct fake {
    const struct ir_graph *g;
    size_t nv;
    /* configuration, per vertex */
    int *sleep_ms;
    bool *io;
    const char **fail;     /* execute fails with this message */
    const char **key_fail; /* cache_key fails with this message */
    const char **logtext;  /* written with sched_job_log before finishing */
    bool *wait_cancel;     /* sleeps up to 10 s unless canceled */
    bool fail_no_err;      /* failing vertices return -1 without an error */
    const char *fail_file; /* when set, the failure carries this location */
    /* the cache: keys that hit, with the content of their result */
    char (*cache_keys)[SCHED_KEY_SIZE];
    const char **cache_content;
    size_t ncache;
    /* what happened */
    atomic_int *executes, *lookups, *keys, *cancel_calls;
    atomic_int violations; /* an input not finished, released or wrong */
    struct fres **res;     /* the result created for each vertex */
    uint64_t *t_start, *t_end;
    atomic_bool *ended;
    pthread_mutex_t mu;
    struct fake_log *log;
    size_t nlog, logcap;
};

static inline uint64_t fake_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static inline void fake_sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static inline struct fake *fake_new(const struct ir_graph *g)
{
    struct fake *f = kn_calloc(1, sizeof(*f));
    size_t n = g->nv ? g->nv : 1;
    f->g = g;
    f->nv = g->nv;
    f->sleep_ms = kn_calloc(n, sizeof(int));
    f->io = kn_calloc(n, sizeof(bool));
    f->fail = kn_calloc(n, sizeof(char *));
    f->key_fail = kn_calloc(n, sizeof(char *));
    f->logtext = kn_calloc(n, sizeof(char *));
    f->wait_cancel = kn_calloc(n, sizeof(bool));
    f->cache_keys = kn_calloc(16, SCHED_KEY_SIZE);
    f->cache_content = kn_calloc(16, sizeof(char *));
    f->executes = kn_calloc(n, sizeof(atomic_int));
    f->lookups = kn_calloc(n, sizeof(atomic_int));
    f->keys = kn_calloc(n, sizeof(atomic_int));
    f->cancel_calls = kn_calloc(n, sizeof(atomic_int));
    f->res = kn_calloc(n, sizeof(struct fres *));
    f->t_start = kn_calloc(n, sizeof(uint64_t));
    f->t_end = kn_calloc(n, sizeof(uint64_t));
    f->ended = kn_calloc(n, sizeof(atomic_bool));
    pthread_mutex_init(&f->mu, NULL);
    return f;
}

static inline void fake_free(struct fake *f)
{
    for (size_t i = 0; i < f->nv; i++) {
        if (f->res[i]) {
            free(f->res[i]->content);
            free(f->res[i]);
        }
    }
    free(f->sleep_ms);
    free(f->io);
    free(f->fail);
    free(f->key_fail);
    free(f->logtext);
    free(f->wait_cancel);
    free(f->cache_keys);
    free(f->cache_content);
    free((void *)f->executes);
    free((void *)f->lookups);
    free((void *)f->keys);
    free((void *)f->cancel_calls);
    free(f->res);
    free(f->t_start);
    free(f->t_end);
    free((void *)f->ended);
    free(f->log);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static inline void fake_record(struct fake *f, char kind, uint32_t vi)
{
    pthread_mutex_lock(&f->mu);
    f->log = kn_grow(f->log, &f->logcap, f->nlog + 1, sizeof(*f->log));
    f->log[f->nlog].kind = kind;
    f->log[f->nlog].vertex = vi;
    f->nlog++;
    pthread_mutex_unlock(&f->mu);
}

/* Position of (kind, vi) in the log, -1 if absent. */
static inline long fake_pos(struct fake *f, char kind, uint32_t vi)
{
    for (size_t i = 0; i < f->nlog; i++)
        if (f->log[i].kind == kind && f->log[i].vertex == vi)
            return (long)i;
    return -1;
}

static inline struct fres *fake_result(struct fake *f, uint32_t vi, bool cached,
                                       const char *content)
{
    struct fres *r = kn_calloc(1, sizeof(*r));
    r->vertex = vi;
    r->from_cache = cached;
    r->content = kn_strdup(content);
    atomic_init(&r->refs, 1);
    if (f->res[vi])
        atomic_fetch_add(&f->violations, 1); /* a vertex ran twice */
    else
        f->res[vi] = r;
    return r;
}

/* The key the fake computes: digest + inputs' contents. */
static inline void fake_key(const struct ir_graph *g, uint32_t vi, const char *const *contents,
                            char key[SCHED_KEY_SIZE])
{
    const struct ir_vertex *v = &g->v[vi];
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, v->digest, strlen(v->digest));
    for (size_t i = 0; i < v->ninputs; i++) {
        kn_sha256_update(&h, "|", 1);
        kn_sha256_update(&h, contents[i], strlen(contents[i]));
    }
    kn_sha256_final(&h, key);
}

static inline void fake_cache_add(struct fake *f, const char *key, const char *content)
{
    memcpy(f->cache_keys[f->ncache], key, SCHED_KEY_SIZE);
    f->cache_content[f->ncache] = content;
    f->ncache++;
}

/* Checks the inputs a handler got: the right vertices' live results. */
static inline void fake_check_inputs(struct fake *f, uint32_t vi, void *const *inputs)
{
    const struct ir_vertex *v = &f->g->v[vi];
    for (size_t i = 0; i < v->ninputs; i++) {
        const struct fres *in = inputs[i];
        if (!in || in->vertex != v->inputs[i] || atomic_load(&in->refs) <= 0)
            atomic_fetch_add(&f->violations, 1);
        if (in && !in->from_cache && !atomic_load(&f->ended[v->inputs[i]]))
            atomic_fetch_add(&f->violations, 1);
    }
}

static inline int fake_cache_key(void *ctx, const struct ir_graph *g, uint32_t vi,
                                 void *const *inputs, char key[SCHED_KEY_SIZE],
                                 struct kn_error **err)
{
    struct fake *f = ctx;
    atomic_fetch_add(&f->keys[vi], 1);
    if (f->key_fail[vi])
        return kn_err_set(err, KN_E_IO, "%s", f->key_fail[vi]);
    fake_check_inputs(f, vi, inputs);
    const struct ir_vertex *v = &g->v[vi];
    const char **contents = kn_calloc(v->ninputs + 1, sizeof(char *));
    for (size_t i = 0; i < v->ninputs; i++)
        contents[i] = inputs[i] ? ((const struct fres *)inputs[i])->content : "";
    fake_key(g, vi, contents, key);
    free(contents);
    return 0;
}

static inline int fake_lookup(void *ctx, const struct ir_graph *g, uint32_t vi, const char *key,
                              void **result, struct kn_error **err)
{
    (void)g;
    (void)err;
    struct fake *f = ctx;
    atomic_fetch_add(&f->lookups[vi], 1);
    for (size_t i = 0; i < f->ncache; i++) {
        if (strcmp(f->cache_keys[i], key) == 0) {
            *result = fake_result(f, vi, true, f->cache_content[i]);
            return 1;
        }
    }
    return 0;
}

static inline void fake_on_cancel(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static inline int fake_execute(void *ctx, struct sched_job *job, const struct ir_graph *g,
                               uint32_t vi, void *const *inputs, const char *key, void **result,
                               struct kn_error **err)
{
    struct fake *f = ctx;
    (void)key;
    f->t_start[vi] = fake_now_us();
    fake_record(f, 'S', vi);
    atomic_fetch_add(&f->executes[vi], 1);
    fake_check_inputs(f, vi, inputs);
    if (sched_job_vertex(job) != vi || sched_job_slot(job) < 1)
        atomic_fetch_add(&f->violations, 1);
    int rc = 0;
    if (f->wait_cancel[vi]) {
        sched_job_on_cancel(job, fake_on_cancel, &f->cancel_calls[vi]);
        for (int i = 0; i < 2000 && !sched_job_canceled(job); i++)
            fake_sleep_ms(5);
        sched_job_on_cancel(job, NULL, NULL);
        if (sched_job_canceled(job))
            rc = kn_err_set(err, KN_E_CANCELED, "canceled");
    } else if (f->sleep_ms[vi]) {
        fake_sleep_ms(f->sleep_ms[vi]);
    }
    if (f->logtext[vi])
        sched_job_log(job, SCHED_STDOUT, f->logtext[vi], strlen(f->logtext[vi]));
    if (rc == 0 && f->fail[vi]) {
        rc = -1;
        if (!f->fail_no_err) {
            kn_err_set(err, KN_E_EXEC, "%s", f->fail[vi]);
            if (f->fail_file)
                kn_err_at(*err, f->fail_file, 3, 9);
        }
    }
    if (rc == 0) {
        const char *name = g->v[vi].name ? g->v[vi].name : "";
        *result = fake_result(f, vi, false, name);
    }
    f->t_end[vi] = fake_now_us();
    atomic_store(&f->ended[vi], true);
    fake_record(f, 'E', vi);
    return rc;
}

static inline void fake_release(void *ctx, void *result)
{
    struct fake *f = ctx;
    struct fres *r = result;
    atomic_fetch_add(&r->releases, 1);
    if (atomic_fetch_sub(&r->refs, 1) <= 0)
        atomic_fetch_add(&f->violations, 1);
}

static inline void *fake_retain(void *ctx, void *result)
{
    (void)ctx;
    struct fres *r = result;
    atomic_fetch_add(&r->retains, 1);
    atomic_fetch_add(&r->refs, 1);
    return r;
}

static inline bool fake_is_io(void *ctx, const struct ir_graph *g, uint32_t vi)
{
    (void)g;
    return ((struct fake *)ctx)->io[vi];
}

static inline struct sched_handlers fake_handlers(struct fake *f)
{
    struct sched_handlers h = {
        .ctx = f,
        .cache_key = fake_cache_key,
        .cache_lookup = fake_lookup,
        .execute = fake_execute,
        .release = fake_release,
        .retain = fake_retain,
        .is_io = fake_is_io,
    };
    return h;
}

/* Every result created so far has no reference left. */
static inline bool fake_all_released(struct fake *f)
{
    for (size_t i = 0; i < f->nv; i++)
        if (f->res[i] && atomic_load(&f->res[i]->refs) != 0)
            return false;
    return true;
}

/* ---- graphs ---------------------------------------------------------------
 * A vertex without inputs is a source.local named NAME; one with inputs an
 * exec running NAME, so every name gives a distinct digest. */
static inline uint32_t gadd(struct ir_graph *g, const char *name, const uint32_t *inputs, size_t n)
{
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    if (!n) {
        v.op = IR_SOURCE_LOCAL;
        v.u.local.name = ir_graph_strdup(g, name);
    } else {
        char *argv[] = {(char *)name};
        v.op = IR_EXEC;
        v.u.exec.argv = ir_graph_strv(g, argv, 1);
        v.u.exec.argc = 1;
        v.u.exec.cwd = "/";
        v.inputs = ir_graph_alloc(g, n * sizeof(uint32_t));
        memcpy(v.inputs, inputs, n * sizeof(uint32_t));
        v.ninputs = n;
    }
    v.name = ir_graph_strdup(g, name);
    struct kn_error *err = NULL;
    int64_t vi = ir_graph_add(g, &v, &err);
    if (vi < 0) {
        fprintf(stderr, "gadd: %s\n", err->msg);
        exit(1);
    }
    return (uint32_t)vi;
}

static inline uint32_t gadd1(struct ir_graph *g, const char *name, uint32_t in)
{
    return gadd(g, name, &in, 1);
}

static inline uint32_t gadd2(struct ir_graph *g, const char *name, uint32_t a, uint32_t b)
{
    uint32_t in[2] = {a, b};
    return gadd(g, name, in, 2);
}

#endif
