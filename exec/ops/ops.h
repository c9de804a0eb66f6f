/*
 * exec/ops: what each IR op does, for the scheduler's handler table.
 *
 * tools/ adapts these functions to struct sched_handlers; exec never sees
 * the scheduler (a job is reached only through the callbacks below).
 *
 * A vertex's result (struct ex_result) is one of:
 *   - a root filesystem: a list of layers (blob descriptor + diff_id), bottom
 *     first, and the config of the base image it started from. Layers are
 *     lazy: a layer's blob may not be in the store yet (a base image that was
 *     only resolved) and its unpacked directory may not exist (a COPY layer
 *     that was streamed straight into a blob). Nothing is pulled or unpacked
 *     until a RUN needs a filesystem (ex_result_snapshot) or an exporter
 *     needs the blobs (ex_ops_image).
 *   - a local context: a host directory with exclude patterns;
 *   - a downloaded file (source.http).
 *
 * Cache keys are content-based: the vertex digest plus the identity of what
 * it reads (the chain of diff_ids of its inputs, for a COPY the checksum of
 * exactly the source paths it copies, for an image the manifest digest).
 * Cached values (in the store's cache index) list the layers the vertex
 * added on top of its first input.
 *
 * Thread-safety: every function may be called from several threads at once;
 * results are immutable once returned and refcounted.
 */
#ifndef KILN_EXEC_OPS_H
#define KILN_EXEC_OPS_H

#include "exec/image/image.h"
#include "exec/rcache/rcache.h"
#include "exec/sandbox/sandbox.h"

struct ex_secret {
    const char *id;
    const char *src; /* file path, or NULL */
    const char *env; /* environment variable holding the value, or NULL */
};

/* An ssh agent a build forwards (--ssh ID[=SOCKET]). */
struct ex_ssh_agent {
    const char *id;
    const char *sock;
};

struct ex_named_dir {
    const char *name;
    const char *dir;
};

struct ex_ops_opts {
    struct ex_store *store;       /* borrowed */
    struct ex_registry *registry; /* borrowed; NULL: registry refs are errors */
    enum ex_isolation isolation;
    enum ex_network network; /* default for RUN without --network (host) */
    struct ex_layer_opts layer;
    const char *context_dir;             /* the main build context */
    const struct ex_named_dir *contexts; /* --build-context NAME=DIR */
    size_t ncontexts;
    const struct ex_secret *secrets;
    size_t nsecrets;
    /* the agents RUN --mount=type=ssh,id=ID may reach (and git fetches over
     * ssh use "default"); none unless the caller forwards them */
    const struct ex_ssh_agent *ssh;
    size_t nssh;
    bool allow_insecure; /* RUN --security=insecure may run (--allow security.insecure) */
    struct ir_platform platform;
    /* registry caches (--cache-from / --cache-to type=registry), borrowed:
     * looked up, in order, after a miss in the store's own cache index;
     * every result of a RUN or COPY (and every hit) is written to cache_to */
    struct ex_rcache *const *cache_from;
    size_t ncache_from;
    struct ex_rcache *cache_to;
};

struct ex_ops;
struct ex_ops *ex_ops_new(const struct ex_ops_opts *opts, struct kn_error **err);
void ex_ops_free(struct ex_ops *ops);

struct ex_result;
struct ex_result *ex_result_ref(struct ex_result *r);
void ex_result_unref(struct ex_result *r);

/* What a running vertex can tell the scheduler. */
struct ex_job {
    void *ctx;
    void (*log)(void *ctx, int stream, const char *data, size_t len);
    /* Registers fn(arg) to run when the build is canceled (NULL: unregister). */
    void (*on_cancel)(void *ctx, void (*fn)(void *arg), void *arg);
    bool (*canceled)(void *ctx);
};

int ex_ops_cache_key(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                     struct ex_result *const *inputs, char key[KN_DIGEST_SIZE],
                     struct kn_error **err);
/* 1 hit (*out set), 0 miss, -1 error. */
int ex_ops_cache_lookup(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi, const char *key,
                        struct ex_result **out, struct kn_error **err);
/* Records a result under key (done by ex_ops_execute itself). */
int ex_ops_cache_store(struct ex_ops *ops, const char *key, const struct ex_result *r,
                       struct kn_error **err);
int ex_ops_execute(struct ex_ops *ops, const struct ex_job *job, const struct ir_graph *g,
                   uint32_t vi, struct ex_result *const *inputs, const char *key,
                   struct ex_result **out, struct kn_error **err);
bool ex_ops_is_io(const struct ir_graph *g, uint32_t vi);

/* Assembles the image of an output: the base image's config, rootfs and
 * history, plus the build's layers and history; every blob is made present
 * in the store (pulling lazily-resolved base layers). */
int ex_ops_image(struct ex_ops *ops, struct ex_result *root, const struct ir_output *out,
                 int64_t source_date_epoch, struct ex_image *img, struct kn_error **err);

/* Materializes a root-filesystem result into dir (an existing empty
 * directory; for -o type=local) without building an image. As root, owners
 * are kept; rootless, every file is the caller's, with the image's modes
 * (export.c). */
int ex_ops_export_rootfs(struct ex_ops *ops, struct ex_result *root, const char *dir,
                         struct kn_error **err);

/* kiln prune: ex_store_prune(s, keep) then ex_store_usage(s). Rootless,
 * inside a user namespace with the sandbox's id map: unpacked layers hold
 * the caller's subordinate ids, and their private directories (a base
 * image's /root, a RUN's chmod 700 dir of uid 1000) can only be entered and
 * removed there. As root, the two calls as they are. For kiln prune, which
 * runs no other thread (the prune itself runs in a forked child). */
int ex_ops_store_prune(struct ex_store *s, uint64_t keep, uint64_t *freed, uint64_t *left,
                       struct kn_error **err);

#endif
