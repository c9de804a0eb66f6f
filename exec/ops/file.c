/*
 * exec/ops: the file op (COPY, ADD, WORKDIR, heredoc files). The op's diff
 * is streamed straight into a layer blob: the copied files are never
 * written to disk here. They reach the disk only if a later RUN needs a
 * filesystem, when the layer is unpacked into the store like any other.
 *
 * The cache key adds, for each copy action reading a local context or a
 * download, the checksum of exactly the paths it copies; a source that is
 * another stage's filesystem is already named by its chain of diff_ids.
 */
#include "internal.h"

#include "exec/fileop/fileop.h"
#include "ir/base/cleanup.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct views {
    struct ex_view **v;
    size_t n;
    struct kn_strv tmpdirs;
};

static void views_release(struct views *vs)
{
    for (size_t i = 0; i < vs->n; i++)
        ex_view_free(vs->v[i]);
    free(vs->v);
    for (size_t i = 0; i < vs->tmpdirs.n; i++)
        ex_store_remove_tree(vs->tmpdirs.v[i], NULL);
    kn_strv_release(&vs->tmpdirs);
}

/* A directory holding a downloaded file under its name, for a view. */
static char *http_dir(struct ex_ops *ops, struct views *vs, struct ex_result *r,
                      struct kn_error **err)
{
    char *tmp = ex_store_mkdtemp(ops->o.store, "http", err);
    if (!tmp)
        return NULL;
    kn_strv_take(&vs->tmpdirs, tmp);
    _cleanup_free_ char *blob = ex_store_blob_path(ops->o.store, r->blob);
    _cleanup_free_ char *dst = kn_asprintf("%s/%s", tmp, r->filename);
    if (link(blob, dst) < 0) {
        /* other file system or hard links refused: copy */
        struct kn_buf b = KN_BUF_INIT;
        if (kn_buf_read_file(&b, blob, SIZE_MAX, err) < 0 ||
            ex_write_file_atomic(dst, b.data, b.len, err) < 0) {
            kn_buf_release(&b);
            return NULL;
        }
        kn_buf_release(&b);
    }
    return tmp;
}

/* snap: r's snapshot when its filesystem is read (resolved by the caller,
 * in the parent: see stream_layer), else NULL for an empty view. */
static struct ex_view *view_for(struct ex_ops *ops, struct views *vs, struct ex_result *r,
                                const struct ex_snapshot *snap, struct kn_error **err)
{
    switch (r->kind) {
    case EX_RESULT_CONTEXT:
        return ex_view_new_dir(r->dir, "build context", NULL, 0, r->excludes.v, r->excludes.n, err);
    case EX_RESULT_FILE: {
        char *dir = http_dir(ops, vs, r, err);
        return dir ? ex_view_new_dir(dir, "download", NULL, 0, NULL, 0, err) : NULL;
    }
    case EX_RESULT_ROOTFS:
        if (!snap)
            return ex_view_new_chain(NULL, 0, "scratch", err);
        return ex_view_new_snapshot(snap, "stage", err);
    }
    kn_err_set(err, KN_E_INTERNAL, "unknown result kind");
    return NULL;
}

/* Which inputs the op reads as sources (copy actions' src_input). */
static bool input_is_source(const struct ir_file *f, size_t idx)
{
    for (size_t i = 0; i < f->nactions; i++)
        if (f->actions[i].kind == IR_FILE_COPY && (size_t)f->actions[i].src_input == idx)
            return true;
    return false;
}

/* Whether the op reads input i: the destination is read for --chown names
 * and existing paths (a scratch destination has nothing to read), the
 * other inputs when a copy action reads them. */
static bool input_needed(const struct ir_vertex *v, struct ex_result *const *inputs, size_t i)
{
    return i == 0 ? inputs[0]->nlayers > 0 : input_is_source(&v->u.file, i);
}

static int make_views(struct ex_ops *ops, const struct ir_vertex *v,
                      struct ex_result *const *inputs, struct ex_snapshot *const *snaps,
                      struct views *vs, struct kn_error **err)
{
    vs->v = kn_calloc(v->ninputs + 1, sizeof(*vs->v));
    vs->n = v->ninputs;
    for (size_t i = 0; i < v->ninputs; i++) {
        if (i > 0 && !input_needed(v, inputs, i))
            continue;
        vs->v[i] = view_for(ops, vs, inputs[i], snaps[i], err);
        if (!vs->v[i])
            return -1;
    }
    return 0;
}

int ex_ops_file_key(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                    struct ex_result *const *inputs, struct kn_sha256 *h, struct kn_error **err)
{
    const struct ir_vertex *v = &g->v[vi];
    const struct ir_file *f = &v->u.file;
    struct views vs = {0};
    vs.v = kn_calloc(v->ninputs + 1, sizeof(*vs.v));
    vs.n = v->ninputs;
    int rc = 0;
    ex_ops_nofork_begin(); /* file hashing: see ex_ops_nofork_begin */
    for (size_t i = 0; i < f->nactions && rc == 0; i++) {
        const struct ir_file_action *a = &f->actions[i];
        if (a->kind != IR_FILE_COPY)
            continue;
        struct ex_result *src = inputs[a->src_input];
        if (src->kind == EX_RESULT_ROOTFS)
            continue; /* named by its chain id, already in the key */
        if (!vs.v[a->src_input]) {
            vs.v[a->src_input] = view_for(ops, &vs, src, NULL, err);
            if (!vs.v[a->src_input]) {
                rc = -1;
                break;
            }
        }
        char sum[KN_DIGEST_SIZE];
        rc = ex_fileop_checksum(vs.v[a->src_input], a, sum, err);
        if (rc == 0)
            kn_sha256_update(h, sum, KN_DIGEST_LEN);
    }
    ex_ops_nofork_end();
    views_release(&vs);
    return rc;
}

int ex_ops_mount_key(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                     struct ex_result *const *inputs, struct kn_sha256 *h, struct kn_error **err)
{
    const struct ir_vertex *v = &g->v[vi];
    const struct ir_exec *e = &v->u.exec;
    struct views vs = {0};
    vs.v = kn_calloc(v->ninputs + 1, sizeof(*vs.v));
    vs.n = v->ninputs;
    int rc = 0;
    ex_ops_nofork_begin(); /* file hashing: see ex_ops_nofork_begin */
    for (size_t i = 0; i < e->nmounts && rc == 0; i++) {
        const struct ir_mount *m = &e->mounts[i];
        int idx = m->input >= 0 ? m->input : 0;
        if (m->type != IR_MOUNT_BIND || (size_t)idx >= v->ninputs ||
            inputs[idx]->kind != EX_RESULT_CONTEXT)
            continue; /* a filesystem or a download is named by its id already */
        if (!vs.v[idx]) {
            vs.v[idx] = view_for(ops, &vs, inputs[idx], NULL, err);
            if (!vs.v[idx]) {
                rc = -1;
                break;
            }
        }
        /* the mounted subtree, read as a COPY of it would read it */
        struct ir_file_action a = {
            .kind = IR_FILE_COPY,
            .src_input = idx,
            .src = (char *)(m->source && *m->source ? m->source : "/"),
            .dest = "/",
            .mode = -1,
            .flags = IR_FF_DIR_CONTENTS | IR_FF_FOLLOW_SYMLINKS,
        };
        char sum[KN_DIGEST_SIZE];
        struct kn_error *cerr = NULL;
        char tag[32];
        snprintf(tag, sizeof(tag), "mount/%zu", i);
        kn_sha256_update(h, tag, strlen(tag) + 1);
        if (ex_fileop_checksum(vs.v[idx], &a, sum, &cerr) == 0) {
            kn_sha256_update(h, sum, KN_DIGEST_LEN);
        } else if (cerr->code == KN_E_NOTFOUND) {
            /* the step reports a missing source itself, with its own words */
            kn_err_free(cerr);
            kn_sha256_update(h, "missing", 8);
        } else {
            kn_err_propagate(err, &cerr);
            rc = -1;
        }
    }
    ex_ops_nofork_end();
    views_release(&vs);
    return rc;
}

static int sink_add(void *ctx, const char *path, const struct stat *st, int fd,
                    const char *linkname, struct kn_error **err)
{
    return ex_layer_writer_add(ctx, path, st, fd, linkname, err);
}

struct stream_arg {
    const struct ir_vertex *v;
    struct ex_result *const *inputs;
    struct ex_snapshot *const *snaps;
};

/* Streams the op's diff into a layer blob. Rootless, when it reads a
 * filesystem of the store, this runs in the user namespace: the unpacked
 * layers hold subordinate ids, and files private to one of them (a 0700
 * directory of uid 1000) are readable only there. The blob is written by
 * ns-root, which is the caller on disk, so the store stays the caller's. */
static int stream_layer(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    const struct stream_arg *a = arg;
    struct views vs = {0};
    int rc = make_views(ops, a->v, a->inputs, a->snaps, &vs, err);
    struct ex_layer_writer *w = NULL;
    if (rc == 0) {
        w = ex_layer_writer_new(ops->o.store, &ops->o.layer, err);
        if (!w)
            rc = -1;
    }
    struct ex_view *scratch = NULL;
    if (rc == 0 && !vs.v[0]) {
        scratch = ex_view_new_chain(NULL, 0, "scratch", err);
        if (!scratch)
            rc = -1;
    }
    char *tmp = NULL;
    if (rc == 0) {
        tmp = ex_store_mkdtemp(ops->o.store, "fileop", err);
        if (!tmp)
            rc = -1;
    }
    if (rc == 0) {
        int64_t sde = ops->o.layer.source_date_epoch;
        struct ex_fileop_req req = {
            .op = &a->v->u.file,
            .dest = vs.v[0] ? vs.v[0] : scratch,
            .inputs = (const struct ex_view *const *)vs.v,
            .ninputs = vs.n,
            .mtime = sde >= 0 ? sde : (int64_t)time(NULL),
            .tmpdir = tmp,
        };
        struct ex_fileop_sink sink = {.add = sink_add, .ctx = w};
        rc = ex_fileop_stream(&req, &sink, err);
    }
    if (rc == 0) {
        rc = ex_layer_writer_finish(w, out, err);
        w = NULL;
    }
    if (w)
        ex_layer_writer_abort(w);
    if (tmp)
        ex_store_remove_tree(tmp, NULL);
    free(tmp);
    ex_view_free(scratch);
    views_release(&vs);
    return rc;
}

int ex_ops_run_file(struct ex_ops *ops, const struct ex_job *job, const struct ir_graph *g,
                    uint32_t vi, struct ex_result *const *inputs, struct ex_result **out,
                    struct kn_error **err)
{
    (void)job;
    const struct ir_vertex *v = &g->v[vi];
    if (inputs[0]->kind != EX_RESULT_ROOTFS)
        return kn_err_set(err, KN_E_INTERNAL, "a file op needs a filesystem as its first input");
    /* the filesystems read are unpacked here, in the parent: the child
     * must not take a result's lock (userns.c) */
    struct ex_snapshot **snaps = kn_calloc(v->ninputs + 1, sizeof(*snaps));
    bool reads_store = false;
    int rc = 0;
    for (size_t i = 0; i < v->ninputs && rc == 0; i++) {
        if (inputs[i]->kind != EX_RESULT_ROOTFS || !input_needed(v, inputs, i))
            continue;
        snaps[i] = ex_result_snapshot(ops, inputs[i], err);
        if (!snaps[i])
            rc = -1;
        else if (ex_snapshot_len(snaps[i]) > 0)
            reads_store = true;
    }
    struct ex_layer_info info;
    struct stream_arg a = {.v = v, .inputs = inputs, .snaps = snaps};
    if (rc == 0 && reads_store) {
        rc = ex_ops_userns_call(ops, stream_layer, &a, &info, sizeof(info), err);
    } else if (rc == 0) {
        ex_ops_nofork_begin(); /* ADD --checksum hashes here */
        rc = stream_layer(ops, &a, &info, err);
        ex_ops_nofork_end();
    }
    free(snaps);
    if (rc < 0)
        return -1;
    struct ex_rlayer l = {.desc = {.media_type = (char *)info.media_type, .size = info.size},
                          .created = (int64_t)time(NULL)};
    memcpy(l.desc.digest, info.digest, KN_DIGEST_SIZE);
    memcpy(l.diff_id, info.diff_id, KN_DIGEST_SIZE);
    *out = ex_result_rootfs(inputs[0], &l, 1);
    return 0;
}
