/*
 * The composition at the heart of kiln build: the scheduler's handler table
 * filled with exec's op functions. The scheduler and exec never see each
 * other; this file translates a sched_job into an ex_job.
 */
#include "build.h"

static void job_log(void *ctx, int stream, const char *data, size_t len)
{
    sched_job_log(ctx, stream == 2 ? SCHED_STDERR : SCHED_STDOUT, data, len);
}

static void job_on_cancel(void *ctx, void (*fn)(void *arg), void *arg)
{
    sched_job_on_cancel(ctx, fn, arg);
}

static bool job_canceled(void *ctx)
{
    return sched_job_canceled(ctx);
}

static int h_cache_key(void *ctx, const struct ir_graph *g, uint32_t vi, void *const *inputs,
                       char key[SCHED_KEY_SIZE], struct kn_error **err)
{
    return ex_ops_cache_key(ctx, g, vi, (struct ex_result *const *)inputs, key, err);
}

static int h_cache_lookup(void *ctx, const struct ir_graph *g, uint32_t vi, const char *key,
                          void **result, struct kn_error **err)
{
    struct ex_result *r = NULL;
    int rc = ex_ops_cache_lookup(ctx, g, vi, key, &r, err);
    if (rc == 1)
        *result = r;
    return rc;
}

static int h_execute(void *ctx, struct sched_job *job, const struct ir_graph *g, uint32_t vi,
                     void *const *inputs, const char *key, void **result, struct kn_error **err)
{
    struct ex_job ej = {
        .ctx = job,
        .log = job_log,
        .on_cancel = job_on_cancel,
        .canceled = job_canceled,
    };
    struct ex_result *r = NULL;
    if (ex_ops_execute(ctx, &ej, g, vi, (struct ex_result *const *)inputs, key, &r, err) < 0)
        return -1;
    *result = r;
    return 0;
}

static void h_release(void *ctx, void *result)
{
    (void)ctx;
    ex_result_unref(result);
}

static void *h_retain(void *ctx, void *result)
{
    (void)ctx;
    return ex_result_ref(result);
}

static bool h_is_io(void *ctx, const struct ir_graph *g, uint32_t vi)
{
    (void)ctx;
    return ex_ops_is_io(g, vi);
}

void kiln_build_handlers(struct ex_ops *ops, struct sched_handlers *h)
{
    *h = (struct sched_handlers){
        .ctx = ops,
        .cache_key = h_cache_key,
        .cache_lookup = h_cache_lookup,
        .execute = h_execute,
        .release = h_release,
        .retain = h_retain,
        .is_io = h_is_io,
    };
}
