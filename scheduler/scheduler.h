/*
 * scheduler: runs an IR graph in parallel.
 *
 * sched_run() takes a graph and the vertices the caller wants (the roots),
 * and runs every vertex those need exactly once, each as soon as its inputs
 * are done, up to `jobs` CPU-bound work items at a time plus `io_jobs`
 * I/O-bound ones (pulls, pushes) on separate slots, so a slow download never
 * holds a CPU slot. The scheduler knows nothing of what an op does: it calls
 * a table of handlers (struct sched_handlers) that tools/ fills with exec's
 * functions and unit tests fill with fakes.
 *
 * For each vertex, on a worker thread: compute its cache key from the
 * inputs' results, look the key up (unless caching is off), and on a miss
 * execute it. Results are opaque pointers owned by the handlers; the
 * scheduler passes them to consumers and releases each once nothing needs it
 * any more. The first failure cancels what has not started and stops what
 * runs; sched_run() returns that failure, stamped with the vertex's source
 * location. Progress goes to a reporter (plain, tty, json, quiet) and,
 * optionally, to a Chrome trace file.
 *
 * Thread safety: sched_run() may be called from any thread (that thread
 * becomes the run's coordinator); several runs may proceed at once if the
 * handlers allow it. The graph must not change during a run.
 */
#ifndef KILN_SCHEDULER_H
#define KILN_SCHEDULER_H

#include <stdio.h>

#include "ir/ir.h"

struct sched_stats;

#define SCHED_KEY_SIZE     KN_DIGEST_SIZE /* a cache key is a "sha256:<hex>" string */
#define SCHED_MAX_JOBS     1024           /* cap on jobs and io_jobs */
#define SCHED_MAX_LOG_LINE 16384          /* longer log lines are split */

/* ---- jobs: what a running execute() sees ---------------------------------
 *
 * A job is the one execution of one vertex. It lives from just before
 * execute() is called until execute() returns; do not keep it after. */
struct sched_job;

/* True once the run is being canceled (another vertex failed, or the caller
 * asked). execute() should then stop as soon as it can and return -1 (the
 * error it returns is dropped: the run reports the failure that caused the
 * cancellation). Thread-safe, lock-free. */
bool sched_job_canceled(const struct sched_job *job);

/* Registers fn(arg) to be called once when the job is canceled, e.g. to
 * SIGKILL a sandbox; it replaces a previous registration, and fn == NULL
 * unregisters. fn runs on the coordinator thread (or right here, on the
 * caller's thread, when the job is already canceled) and must be quick and
 * must not call sched_job_* functions of this job. When this function
 * returns after unregistering, fn is not running and will not run: so
 * unregister before reaping the process fn would kill. Thread-safe. */
void sched_job_on_cancel(struct sched_job *job, void (*fn)(void *arg), void *arg);

enum sched_stream { SCHED_STDOUT = 1, SCHED_STDERR = 2 };

/* Output of the vertex's process, any amount, split into lines by the
 * scheduler (a partial last line is kept until more comes or the job ends)
 * and delivered to the reporter as log events. Thread-safe, but calls for
 * one job must not overlap if their order matters. */
void sched_job_log(struct sched_job *job, enum sched_stream stream, const void *data, size_t len);

/* The vertex index this job runs, and its worker slot (1-based: CPU slots
 * 1..jobs, then I/O slots), e.g. to name per-slot scratch space. */
uint32_t sched_job_vertex(const struct sched_job *job);
int sched_job_slot(const struct sched_job *job);

/* ---- handlers: what the scheduler calls ----------------------------------
 *
 * All but release() and is_io() are called on worker threads, concurrently
 * for different vertices: they must be thread-safe. release() and is_io()
 * are called on the coordinator thread (the one that called sched_run).
 * `inputs` holds one result per entry of the vertex's `inputs` array, in the
 * same order (a vertex listed twice appears twice); the results are
 * borrowed for the duration of the call. Errors: return -1 and set *err. */
struct sched_handlers {
    void *ctx;
    /* The cache key of vertex vi: its digest plus the content of what it
     * reads (the inputs' identities, for a COPY the checksums of the source
     * paths it copies). Writes a NUL-terminated string of at most
     * SCHED_KEY_SIZE - 1 bytes to key. Optional: NULL uses the vertex
     * digest. */
    int (*cache_key)(void *ctx, const struct ir_graph *g, uint32_t vi, void *const *inputs,
                     char key[SCHED_KEY_SIZE], struct kn_error **err);
    /* Looks the key up. Returns 1 on a hit with *result set (a new reference
     * the scheduler will release), 0 on a miss, -1 on error (fails the run).
     * Optional: NULL never hits. Not called when caching is off for the
     * vertex (sched_opts.no_cache, ir_vertex.no_cache). */
    int (*cache_lookup)(void *ctx, const struct ir_graph *g, uint32_t vi, const char *key,
                        void **result, struct kn_error **err);
    /* Does the work of vertex vi. On success returns 0 with *result set (a
     * new reference, may be NULL), on failure -1 with *err. key is the cache
     * key (to record the result under it). Required. */
    int (*execute)(void *ctx, struct sched_job *job, const struct ir_graph *g, uint32_t vi,
                   void *const *inputs, const char *key, void **result, struct kn_error **err);
    /* Drops one reference to a result. Optional (NULL: results need no
     * release). Never called with NULL. */
    void (*release)(void *ctx, void *result);
    /* Takes one more reference, for a vertex requested more than once in
     * roots (each results[] entry owns one reference). Optional: when NULL,
     * duplicate roots are refused. */
    void *(*retain)(void *ctx, void *result);
    /* True if the vertex is I/O-bound (runs on an I/O slot). Optional: NULL
     * means everything is CPU-bound. */
    bool (*is_io)(void *ctx, const struct ir_graph *g, uint32_t vi);
};

/* ---- progress -------------------------------------------------------------
 *
 * Events reach a reporter one at a time (never concurrently), and for one
 * vertex in order: start, log*, then exactly one of done / error /
 * canceled; or just cached; or just error when computing the cache key or
 * the lookup failed. Vertices the run never started (because it was
 * canceled) get no event. Events come from worker threads and the
 * coordinator: a reporter must not block for long. */
enum sched_event_kind {
    SCHED_EV_START,    /* execute() begins (after a cache miss) */
    SCHED_EV_CACHED,   /* answered by the cache, never executed */
    SCHED_EV_LOG,      /* one line of output (without its newline) */
    SCHED_EV_DONE,     /* executed successfully */
    SCHED_EV_ERROR,    /* failed */
    SCHED_EV_CANCELED, /* stopped because the run was canceled */
};

struct sched_event {
    enum sched_event_kind kind;
    const struct ir_graph *g;
    uint32_t vertex;
    const struct ir_vertex *v; /* &g->v[vertex] */
    unsigned num;              /* 1-based number of the vertex in the order vertices first
                                  appeared in events (BuildKit's #N) */
    double time;               /* seconds since the run started */
    double duration;           /* done / error / canceled / cached: seconds the work took */
    enum sched_stream stream;  /* log */
    const char *data;          /* log: the line, not NUL-terminated (may hold any byte) */
    size_t len;
    const struct kn_error *err; /* error: what failed (location not yet stamped) */
    int slot;                   /* worker slot */
};

/* A reporter: a struct of callbacks an implementation embeds as its first
 * member. Tests may supply their own. */
struct sched_reporter {
    void (*event)(struct sched_reporter *r, const struct sched_event *ev);
    /* Optional: called about every tick_ms while the run goes on (live
     * displays redraw here), serialized with event(). */
    void (*tick)(struct sched_reporter *r, double now);
    int tick_ms;
    /* Optional: the run is over (err is the run's error or NULL). */
    void (*finish)(struct sched_reporter *r, const struct sched_stats *stats,
                   const struct kn_error *err);
    void (*destroy)(struct sched_reporter *r);
};

/* A built-in reporter writing to out (borrowed, usually stderr):
 *   "plain"  BuildKit-like lines: "#3 [build 2/5] RUN make", "#3 0.412 cc -c a.c",
 *            "#3 DONE 1.2s", "#4 CACHED", "#5 ERROR: msg", "#6 CANCELED"
 *   "tty"    live: a line per running vertex with its elapsed time, redrawn
 *            ~10 times a second, finished ones scrolled above; "plain" when
 *            TERM is "dumb"
 *   "json"   one JSON object a line: {"time":0.412,"vertex":"sha256:...",
 *            "name":"...","event":"start|cached|log|done|error|canceled",...}
 *   "quiet"  nothing
 *   "auto"   "tty" when out is a terminal, else "plain"
 * Fails with KN_E_USAGE on another mode. Free with sched_reporter_free. */
struct sched_reporter *sched_reporter_new(const char *mode, FILE *out, struct kn_error **err);
void sched_reporter_free(struct sched_reporter *r);

/* ---- cancellation from outside (signals) ---------------------------------
 * sched_cancel_request() is async-signal-safe: call it from a SIGINT
 * handler. The run notices within ~100 ms, cancels as on a failure and
 * returns a KN_E_CANCELED "build canceled" error. Zero-initialize it. */
struct sched_cancel {
    volatile _Atomic int requested;
};
void sched_cancel_request(struct sched_cancel *c);

/* ---- running -------------------------------------------------------------- */
struct sched_opts {
    int jobs;                        /* CPU slots; 0 = number of online CPUs */
    int io_jobs;                     /* I/O slots; 0 = 4 */
    bool no_cache;                   /* never look up (keys are still computed) */
    struct sched_reporter *reporter; /* NULL: no progress */
    const char *trace_path;          /* write a Chrome trace here, or NULL */
    struct sched_cancel *cancel;     /* NULL, or a token the caller may trigger */
};

struct sched_stats {
    size_t vertices;           /* needed by the roots */
    size_t executed;           /* execute() succeeded */
    size_t cached;             /* answered by the cache */
    size_t failed;             /* failed on their own */
    size_t canceled;           /* stopped while running */
    size_t skipped;            /* never started because the run was canceled */
    uint64_t wall_us;          /* sched_run from start to end */
    uint64_t busy_us;          /* sum of every work item's duration */
    uint64_t critical_path_us; /* longest chain of dependent work items */
    size_t critical_path_len;  /* vertices on that chain */
};

/* Runs what roots[0..nroots) need. On success returns 0 and results[i]
 * holds the result of roots[i] (one reference each, the caller releases
 * them with handlers->release). On failure returns -1 with *err (results[]
 * all NULL; the scheduler released everything): the first failing vertex's
 * error stamped with its source location, KN_E_CANCELED "build canceled"
 * when the caller canceled, or a usage / trace file error before anything
 * ran. stats (optional) is filled in either case. The graph, handlers and
 * opts are borrowed. opts may be NULL (defaults). */
int sched_run(const struct ir_graph *g, const uint32_t *roots, size_t nroots,
              const struct sched_handlers *h, const struct sched_opts *opts, void **results,
              struct sched_stats *stats, struct kn_error **err);

#endif
