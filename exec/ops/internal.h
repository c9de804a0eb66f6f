/*
 * exec/ops internals: the result object and the per-op executors, shared by
 * the files of exec/ops and its unit tests.
 */
#ifndef KILN_EXEC_OPS_INTERNAL_H
#define KILN_EXEC_OPS_INTERNAL_H

#include "ops.h"

#include "ir/base/pattern.h"

#include <pthread.h>

enum ex_result_kind { EX_RESULT_ROOTFS, EX_RESULT_CONTEXT, EX_RESULT_FILE };

/* Where a lazily-resolved layer blob can be fetched from. */
struct ex_origin {
    _Atomic int refs;
    char *registry_ref; /* normalized reference of the image, or NULL */
    char *layout_dir;   /* an OCI layout directory holding the blobs, or NULL */
};

struct ex_rlayer {
    struct ex_descriptor desc; /* desc.media_type owned */
    char diff_id[KN_DIGEST_SIZE];
    struct ex_origin *origin; /* shared, may be NULL (the blob is in the store) */
    int64_t created;          /* when the step that made it ran (seconds since the
                               * epoch), kept in the cache so that a cached rebuild
                               * dates its history as the first build did; 0 for a
                               * base image's layers */
};

struct ex_result {
    _Atomic int refs;
    enum ex_result_kind kind;
    char id[KN_DIGEST_SIZE]; /* content identity, used in consumers' cache keys */

    /* EX_RESULT_ROOTFS */
    struct ex_rlayer *layers;
    size_t nlayers;
    char *base_config; /* the base image's config JSON, NULL for scratch */
    pthread_mutex_t mu;
    struct ex_snapshot *snap; /* built on first use, under mu */

    /* EX_RESULT_CONTEXT */
    char *dir;
    struct kn_strv excludes;
    struct kn_patterns *patterns;

    /* EX_RESULT_FILE: a blob in the store */
    char blob[KN_DIGEST_SIZE];
    char *filename;
};

struct ex_spec_key;

struct ex_ops {
    struct ex_ops_opts o;
    char *context_dir;
    struct ex_named_dir *contexts;
    size_t ncontexts;
    struct ex_secret *secrets;
    size_t nsecrets;
    struct ex_ssh_agent *ssh;
    size_t nssh;
    bool as_root;
    /* cache keys being computed while their step runs (ops.c), and
     * directories to remove when the build ends (git checkouts); under spec_mu */
    pthread_mutex_t spec_mu;
    struct kn_strv tmpdirs;
    struct ex_spec_key *spec;
    uint64_t spec_seq;
};

struct ex_result *ex_result_new(enum ex_result_kind kind);
/* A rootfs result: copies of layers[0..n) of base (may be NULL) plus extra. */
struct ex_result *ex_result_rootfs(const struct ex_result *base, const struct ex_rlayer *extra,
                                   size_t nextra);
void ex_result_compute_id(struct ex_result *r);

/* Serializes a rootfs result for the cache index, and back. */
char *ex_result_encode(const struct ex_result *r);
struct ex_result *ex_result_decode(struct ex_ops *ops, const char *json, struct kn_error **err);

/* Makes sure layer l's blob is in the store (fetching it from its origin). */
int ex_ops_ensure_blob(struct ex_ops *ops, const struct ex_rlayer *l, struct kn_error **err);
/* The chain of unpacked layer directories of a rootfs result (built once,
 * unpacking layers into the store as needed). Borrowed from r. */
struct ex_snapshot *ex_result_snapshot(struct ex_ops *ops, struct ex_result *r,
                                       struct kn_error **err);

int ex_ops_run_exec(struct ex_ops *ops, const struct ex_job *job, const struct ir_graph *g,
                    uint32_t vi, struct ex_result *const *inputs, struct ex_result **out,
                    struct kn_error **err);
int ex_ops_run_file(struct ex_ops *ops, const struct ex_job *job, const struct ir_graph *g,
                    uint32_t vi, struct ex_result *const *inputs, struct ex_result **out,
                    struct kn_error **err);
int ex_ops_run_http(struct ex_ops *ops, const struct ir_source_http *src, struct ex_result **out,
                    struct kn_error **err);
/* The socket of the forwarded ssh agent id, or NULL. */
const char *ex_ops_ssh_agent(const struct ex_ops *ops, const char *id);
int ex_ops_run_git(struct ex_ops *ops, const struct ir_source_git *src, struct ex_result **out,
                   struct kn_error **err);
/* Packs a RUN's upper directory into a layer blob; rootless, from inside a
 * user namespace with the sandbox's id map, so the layer holds the ids the
 * step saw (userns.c). */
/* Runs fn(ops, arg, out) in a forked child inside a user namespace with the
 * sandbox's id map (the caller as 0, its /etc/subuid range as 1..), where
 * the ids a RUN step saw are the ids on disk and its private files are
 * readable; as real root, runs fn directly. out: outlen bytes of plain data
 * copied back. */
typedef int (*ex_userns_fn)(struct ex_ops *ops, void *arg, void *out, struct kn_error **err);
int ex_ops_userns_call(struct ex_ops *ops, ex_userns_fn fn, void *arg, void *out, size_t outlen,
                       struct kn_error **err);
/* Around code of the parent that may take exec/fileop's hash cache mutex:
 * no fork happens in between, so no child inherits it held. */
void ex_ops_nofork_begin(void);
void ex_ops_nofork_end(void);
/* Finishes a RUN's writable layer and packs its upper dir, in the namespace. */
int ex_ops_finish_pack(struct ex_ops *ops, struct ex_snapshot_rw *rw, struct ex_layer_info *info,
                       struct kn_error **err);
/* Removes a tree a RUN step wrote (it may hold dirs private to its users). */
int ex_ops_remove_tree(struct ex_ops *ops, const char *path, struct kn_error **err);
/* Identity of the context content an exec op's bind mounts read (the
 * mounted subtree's checksum, per mount). */
int ex_ops_mount_key(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                     struct ex_result *const *inputs, struct kn_sha256 *h, struct kn_error **err);
/* Identity of the content a file op reads (per-action source checksums). */
int ex_ops_file_key(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                    struct ex_result *const *inputs, struct kn_sha256 *h, struct kn_error **err);

#endif
