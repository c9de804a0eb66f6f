/*
 * exec/ops: the exec op (RUN). Materializes the input's layers, lays a
 * fresh writable layer over them, runs the process in the sandbox with the
 * step's mounts, and turns the writable layer into a layer blob. The upper
 * directory is moved into the store as the unpacked form of that same
 * layer, so the next RUN stacks on it without unpacking anything.
 *
 * Secrets reach the step only as a file on a private tmpfs or an
 * environment variable of that one process; they are never in the diff,
 * the cache key or the history.
 */
#include "internal.h"

#include "exec/fileop/fileop.h"

#include "ir/base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct run_state {
    struct kn_strv env;
    struct ex_mount *mounts;
    size_t nmounts;
    struct kn_strv tmpdirs; /* removed after the step */
    struct kn_strv strs;    /* strings the mounts point to */
    KN_VEC(int) lockfds;    /* cache mounts held with sharing=locked */
};

static void run_state_release(struct ex_ops *ops, struct run_state *st)
{
    /* a flattened stage or a private cache may hold dirs private to one of
     * the subordinate ids: removed in the namespace */
    for (size_t i = 0; i < st->tmpdirs.n; i++)
        ex_ops_remove_tree(ops, st->tmpdirs.v[i], NULL);
    kn_strv_release(&st->tmpdirs);
    kn_strv_release(&st->env);
    kn_strv_release(&st->strs);
    for (size_t i = 0; i < st->lockfds.n; i++)
        close(st->lockfds.v[i]);
    free(st->lockfds.v);
    free(st->mounts);
}

static const char *keep(struct run_state *st, char *s)
{
    kn_strv_take(&st->strs, s);
    return s;
}

static const struct ex_secret *find_secret(struct ex_ops *ops, const char *id)
{
    for (size_t i = 0; i < ops->nsecrets; i++)
        if (strcmp(ops->secrets[i].id, id) == 0)
            return &ops->secrets[i];
    return NULL;
}

/* base/subpath, checked to stay inside base even through symlinks; the
 * resolved path in out (PATH_MAX bytes). */
static int resolve_under(const char *base, const char *subpath, char *out, struct kn_error **err)
{
    _cleanup_free_ char *clean = kn_path_clean(subpath && *subpath ? subpath : "/");
    const char *rel = clean;
    while (*rel == '/')
        rel++;
    if (strcmp(rel, "..") == 0 || kn_str_startswith(rel, "../"))
        return kn_err_set(err, KN_E_UNSAFE, "mount source '%s' is outside its input", subpath);
    _cleanup_free_ char *path = *rel ? kn_asprintf("%s/%s", base, rel) : kn_strdup(base);
    _cleanup_free_ char *realbase = realpath(base, NULL);
    if (!realpath(path, out))
        return kn_err_set(err, KN_E_NOTFOUND, "mount source '%s' not found", subpath);
    bool inside = realbase && (strcmp(out, realbase) == 0 ||
                               (kn_str_startswith(out, realbase) && out[strlen(realbase)] == '/'));
    if (!inside)
        return kn_err_set(err, KN_E_UNSAFE, "mount source '%s' is outside its input", subpath);
    return 0;
}

struct flatten_arg {
    const struct ex_snapshot *snap;
    const char *dir;
    const char *subpath;
};

/* Flattens a stage for a mount and resolves the mounted path in it. Rootless
 * this runs in the user namespace: the copy keeps the owners the step will
 * see (the store's subordinate ids), and the path may cross directories
 * private to one of them. */
static int flatten_resolve(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    (void)ops;
    const struct flatten_arg *a = arg;
    if (ex_snapshot_flatten(a->snap, a->dir, err) < 0)
        return -1;
    return resolve_under(a->dir, a->subpath, out, err);
}

/* A host directory holding the content of a mount's source input. */
/* Copies the context into dir (an empty directory) without the files its
 * exclude patterns (.dockerignore) leave out, with COPY's own machinery. */
static int filtered_context(struct ex_result *in, const char *dir, struct kn_error **err)
{
    struct ex_view *src =
        ex_view_new_dir(in->dir, "build context", NULL, 0, in->excludes.v, in->excludes.n, err);
    struct ex_view *dest = src ? ex_view_new_chain(NULL, 0, "scratch", err) : NULL;
    int rc = -1;
    if (dest) {
        struct ir_file_action a = {.kind = IR_FILE_COPY,
                                   .src_input = 1,
                                   .src = (char *)".",
                                   .dest = (char *)"/",
                                   .mode = -1,
                                   .flags = IR_FF_DIR_CONTENTS | IR_FF_CREATE_PARENTS};
        struct ir_file op = {.actions = &a, .nactions = 1};
        const struct ex_view *inputs[] = {dest, src};
        struct ex_fileop_req req = {
            .op = &op, .dest = dest, .inputs = inputs, .ninputs = 2, .mtime = 0};
        rc = ex_fileop_materialize(&req, dir, err);
    }
    ex_view_free(dest);
    ex_view_free(src);
    if (rc < 0)
        kn_err_wrap(err, "cannot prepare the build context for a bind mount");
    return rc;
}

static int mount_source_dir(struct ex_ops *ops, struct run_state *st, struct ex_result *in,
                            const char *subpath, const char **out, struct kn_error **err)
{
    char real[PATH_MAX];
    if (in->kind == EX_RESULT_CONTEXT && in->excludes.n) {
        /* the step must see the context as COPY does: without what
         * .dockerignore excludes, so it gets a filtered copy */
        char *tmp = ex_store_mkdtemp(ops->o.store, "ctx", err);
        if (!tmp)
            return -1;
        kn_strv_take(&st->tmpdirs, tmp);
        if (filtered_context(in, tmp, err) < 0 || resolve_under(tmp, subpath, real, err) < 0)
            return -1;
    } else if (in->kind == EX_RESULT_CONTEXT) {
        if (resolve_under(in->dir, subpath, real, err) < 0)
            return -1;
    } else if (in->kind == EX_RESULT_ROOTFS) {
        struct ex_snapshot *snap = ex_result_snapshot(ops, in, err);
        if (!snap)
            return -1;
        char *tmp = ex_store_mkdtemp(ops->o.store, "mnt", err);
        if (!tmp)
            return -1;
        kn_strv_take(&st->tmpdirs, tmp);
        struct flatten_arg a = {.snap = snap, .dir = tmp, .subpath = subpath};
        if (ex_ops_userns_call(ops, flatten_resolve, &a, real, sizeof(real), err) < 0)
            return -1;
    } else {
        return kn_err_set(err, KN_E_INTERNAL, "cannot mount a downloaded file");
    }
    *out = keep(st, kn_strdup(real));
    return 0;
}

struct seed_arg {
    const char *dir;
    const char *src; /* NULL: nothing to copy in */
    int uid, gid, mode;
};

/* Sets up a fresh cache mount directory: owner and mode as asked, content
 * copied from the mount's source. Rootless, in the user namespace, so that
 * uid=1000 and the source's owners are the subordinate ids the step sees;
 * without a subordinate range only 0 exists there and the chown is left
 * out, as before. */
static int seed_cache(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    (void)ops;
    (void)out;
    const struct seed_arg *a = arg;
    uid_t uid = a->uid >= 0 ? (uid_t)a->uid : 0;
    gid_t gid = a->gid >= 0 ? (gid_t)a->gid : 0;
    if ((uid || gid) && chown(a->dir, uid, gid) < 0 && (ops->as_root || errno != EINVAL))
        return kn_err_sys(err, "cannot chown cache mount '%s'", a->dir);
    if (chmod(a->dir, a->mode >= 0 ? (mode_t)a->mode : 0755) < 0)
        return kn_err_sys(err, "cannot chmod cache mount '%s'", a->dir);
    if (!a->src)
        return 0;
    struct ex_snapshot *one = ex_snapshot_new(&a->src, 1, err);
    int rc = one ? ex_snapshot_flatten(one, a->dir, err) : -1;
    ex_snapshot_unref(one);
    return rc;
}

static int cache_mount_dir(struct ex_ops *ops, struct run_state *st, const struct ir_mount *m,
                           struct ex_result *from, const char **out, struct kn_error **err)
{
    char id_digest[KN_DIGEST_SIZE];
    const char *id = m->id ? m->id : m->target;
    kn_sha256_digest(id, strlen(id), id_digest);
    _cleanup_free_ char *parent = kn_asprintf("%s/mounts", ex_store_root(ops->o.store));
    if (mkdir(parent, 0700) < 0 && errno != EEXIST)
        return kn_err_sys(err, "cannot create '%s'", parent);
    char *dir = kn_asprintf("%s/%.16s", parent, kn_digest_hex(id_digest));
    bool fresh = mkdir(dir, 0755) == 0;
    if (!fresh && errno != EEXIST) {
        kn_err_sys(err, "cannot create cache mount '%s'", dir);
        free(dir);
        return -1;
    }
    _cleanup_free_ char *lockpath = kn_asprintf("%s.lock", dir);
    int lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0) {
        free(dir);
        return kn_err_sys(err, "cannot open '%s'", lockpath);
    }
    if (m->sharing == IR_SHARING_LOCKED) {
        while (flock(lfd, LOCK_EX) < 0 && errno == EINTR)
            ;
    } else if (m->sharing == IR_SHARING_PRIVATE) {
        if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
            /* in use by another step: this one gets a cache of its own */
            free(dir);
            close(lfd);
            char *tmp = ex_store_mkdtemp(ops->o.store, "cache", err);
            if (!tmp)
                return -1;
            kn_strv_take(&st->tmpdirs, tmp);
            *out = tmp;
            return 0;
        }
    } else {
        while (flock(lfd, LOCK_SH) < 0 && errno == EINTR)
            ;
    }
    kn_vec_push(&st->lockfds, lfd);
    if (fresh) {
        struct seed_arg a = {.dir = dir, .uid = m->uid, .gid = m->gid, .mode = m->mode};
        if (from && mount_source_dir(ops, st, from, m->source, &a.src, err) < 0) {
            free(dir);
            return -1;
        }
        if (ex_ops_userns_call(ops, seed_cache, &a, NULL, 0, err) < 0) {
            free(dir);
            return -1;
        }
    }
    *out = keep(st, dir);
    return 0;
}

static int add_secret(struct ex_ops *ops, struct run_state *st, const struct ir_mount *m,
                      struct ex_mount *em, bool *skip, struct kn_error **err)
{
    const char *id = m->id ? m->id : (m->target ? strrchr(m->target, '/') + 1 : NULL);
    if (!id || !*id)
        return kn_err_set(err, KN_E_USAGE, "secret mount needs an id or a target");
    const struct ex_secret *sec = find_secret(ops, id);
    if (!sec) {
        if (m->required)
            return kn_err_set(err, KN_E_NOTFOUND, "secret '%s' not found (pass --secret id=%s,...)",
                              id, id);
        *skip = true;
        return 0;
    }
    const char *src = sec->src;
    if (!src && sec->env) {
        const char *val = getenv(sec->env);
        if (!val)
            return kn_err_set(err, KN_E_NOTFOUND,
                              "secret '%s': environment variable '%s' is not set", id, sec->env);
        /* write it to a private file the sandbox copies onto its tmpfs */
        char *tmp = ex_store_mkdtemp(ops->o.store, "secret", err);
        if (!tmp)
            return -1;
        kn_strv_take(&st->tmpdirs, tmp);
        char *path = kn_asprintf("%s/value", tmp);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val)) {
            if (fd >= 0)
                close(fd);
            free(path);
            return kn_err_sys(err, "cannot stage secret '%s'", id);
        }
        close(fd);
        src = keep(st, path);
    }
    if (m->env) {
        /* RUN --mount=type=secret,env=NAME: the value in the process env only */
        struct kn_buf b = KN_BUF_INIT;
        if (kn_buf_read_file(&b, src, 1 << 20, err) < 0) {
            kn_buf_release(&b);
            return kn_err_wrap(err, "secret '%s'", id);
        }
        kn_strv_take(&st->env, kn_asprintf("%s=%s", m->env, b.data));
        kn_buf_release(&b);
        if (!m->target) {
            *skip = true;
            return 0;
        }
    }
    em->type = EX_MOUNT_SECRET;
    em->source = src;
    em->target = m->target ? m->target : keep(st, kn_asprintf("/run/secrets/%s", id));
    em->readonly = true;
    em->mode = m->mode >= 0 ? (unsigned)m->mode : 0400;
    em->uid = m->uid >= 0 ? (uid_t)m->uid : 0;
    em->gid = m->gid >= 0 ? (gid_t)m->gid : 0;
    return 0;
}

static int build_mounts(struct ex_ops *ops, struct run_state *st, const struct ir_vertex *v,
                        struct ex_result *const *inputs, struct kn_error **err)
{
    const struct ir_exec *e = &v->u.exec;
    st->mounts = kn_calloc(e->nmounts + 1, sizeof(*st->mounts));
    for (size_t i = 0; i < e->nmounts; i++) {
        const struct ir_mount *m = &e->mounts[i];
        struct ex_mount *em = &st->mounts[st->nmounts];
        struct ex_result *in = m->input >= 0 ? inputs[m->input] : NULL;
        bool skip = false;
        em->target = m->target;
        switch (m->type) {
        case IR_MOUNT_BIND:
            if (!in)
                in = inputs[0];
            em->type = EX_MOUNT_BIND;
            if (mount_source_dir(ops, st, in, m->source, &em->source, err) < 0)
                return kn_err_wrap(err, "bind mount at '%s'", m->target);
            em->readonly = m->readonly;
            em->discard_writes = !m->readonly;
            break;
        case IR_MOUNT_CACHE:
            em->type = EX_MOUNT_CACHE;
            if (cache_mount_dir(ops, st, m, in, &em->source, err) < 0)
                return kn_err_wrap(err, "cache mount at '%s'", m->target);
            em->readonly = m->readonly;
            break;
        case IR_MOUNT_TMPFS:
            em->type = EX_MOUNT_TMPFS;
            em->size = m->size;
            break;
        case IR_MOUNT_SECRET:
            if (add_secret(ops, st, m, em, &skip, err) < 0)
                return -1;
            break;
        case IR_MOUNT_SSH: {
            const char *id = m->id ? m->id : "default";
            const char *sock = ex_ops_ssh_agent(ops, id);
            if (!sock) {
                if (m->required)
                    return kn_err_set(err, KN_E_NOTFOUND,
                                      "ssh agent '%s' requested but not forwarded: build with "
                                      "--ssh %s",
                                      id, id);
                skip = true;
                break;
            }
            em->type = EX_MOUNT_SSH;
            em->source = sock;
            if (!em->target)
                em->target = "/run/buildkit/ssh_agent.0";
            em->mode = m->mode >= 0 ? (unsigned)m->mode : 0600;
            em->uid = m->uid >= 0 ? (uid_t)m->uid : 0;
            em->gid = m->gid >= 0 ? (gid_t)m->gid : 0;
            kn_strv_take(&st->env, kn_asprintf("SSH_AUTH_SOCK=%s", em->target));
            break;
        }
        }
        if (!skip)
            st->nmounts++;
    }
    return 0;
}

struct job_output {
    const struct ex_job *job;
};

static void on_output(void *ctx, int stream, const char *data, size_t len)
{
    const struct ex_job *job = ctx;
    if (job && job->log)
        job->log(job->ctx, stream, data, len);
}

static void cancel_sandbox(void *arg)
{
    ex_sandbox_cancel(arg);
}

int ex_ops_run_exec(struct ex_ops *ops, const struct ex_job *job, const struct ir_graph *g,
                    uint32_t vi, struct ex_result *const *inputs, struct ex_result **out,
                    struct kn_error **err)
{
    const struct ir_vertex *v = &g->v[vi];
    const struct ir_exec *e = &v->u.exec;
    struct ex_result *root = inputs[0];
    if (root->kind != EX_RESULT_ROOTFS)
        return kn_err_set(err, KN_E_INTERNAL, "RUN needs a filesystem as its first input");
    struct ex_snapshot *snap = ex_result_snapshot(ops, root, err);
    if (!snap)
        return -1;

    struct run_state st = {0};
    for (size_t i = 0; i < e->nenv; i++)
        kn_strv_push(&st.env, e->env[i]);
    int rc = build_mounts(ops, &st, v, inputs, err);
    char *work = rc == 0 ? ex_store_mkdtemp(ops->o.store, "run", err) : NULL;
    struct ex_snapshot_rw *rw = NULL;
    enum ex_isolation iso = ex_sandbox_resolve(ops->o.isolation, ex_store_root(ops->o.store));
    char *rootfs = NULL;
    if (work) {
        if (iso == EX_ISOLATION_CHROOT) {
            rootfs = kn_asprintf("%s/rootfs", work);
            if (mkdir(rootfs, 0755) < 0)
                rc = kn_err_sys(err, "cannot create '%s'", rootfs);
            else if (ex_snapshot_flatten(snap, rootfs, err) < 0)
                rc = -1;
            else
                rw = ex_snapshot_rw_scan(rootfs, work, err);
        } else {
            rw = ex_snapshot_rw_overlay(snap, work, err);
        }
        if (!rw)
            rc = -1;
    } else {
        rc = -1;
    }
    /* a step with no environment at all (FROM scratch, no ENV) still gets
     * a valid, empty list: the sandbox defaults PATH and HOME */
    static const char *const no_env[] = {NULL};
    if (rc == 0) {
        struct ex_sandbox *sb = ex_sandbox_new();
        struct ex_sandbox_spec spec = {
            .isolation = iso,
            .root = rw,
            .argv = (const char *const *)e->argv,
            .env = st.env.n ? (const char *const *)st.env.v : no_env,
            .user = e->user,
            .workdir = e->cwd,
            .network = e->network == IR_NET_NONE   ? EX_NETWORK_NONE
                       : e->network == IR_NET_HOST ? EX_NETWORK_HOST
                                                   : ops->o.network,
            .mounts = st.mounts,
            .n_mounts = st.nmounts,
            .output = on_output,
            .output_ctx = (void *)job,
            .insecure = e->security == IR_SEC_INSECURE,
        };
        if (job && job->on_cancel)
            job->on_cancel(job->ctx, cancel_sandbox, sb);
        rc = ex_sandbox_run(sb, &spec, NULL, err);
        if (job && job->on_cancel)
            job->on_cancel(job->ctx, NULL, NULL);
        ex_sandbox_free(sb);
    }
    struct ex_layer_info info;
    if (rc == 0)
        rc = ex_ops_finish_pack(ops, rw, &info, err);
    if (rc == 0) {
        /* the upper dir is the unpacked form of the new layer: keep it */
        char *upper = kn_strdup(ex_snapshot_rw_upper(rw));
        ex_snapshot_rw_free(rw, true);
        rw = NULL;
        if (!ex_store_has_layer(ops->o.store, info.diff_id))
            rc = ex_store_layer_commit(ops->o.store, info.diff_id, upper, err);
        else
            ex_ops_remove_tree(ops, upper, NULL);
        free(upper);
    }
    if (rc == 0) {
        struct ex_rlayer l = {.desc = {.media_type = (char *)info.media_type, .size = info.size},
                              .created = (int64_t)time(NULL)};
        memcpy(l.desc.digest, info.digest, KN_DIGEST_SIZE);
        memcpy(l.diff_id, info.diff_id, KN_DIGEST_SIZE);
        *out = ex_result_rootfs(root, &l, 1);
    }
    /* a failed step's upper dir may hold dirs private to one of the
     * subordinate ids: removed in the namespace before the rest */
    if (rw && !ops->as_root)
        ex_ops_remove_tree(ops, ex_snapshot_rw_upper(rw), NULL);
    ex_snapshot_rw_free(rw, false);
    if (work) {
        ex_ops_remove_tree(ops, work, NULL);
        free(work);
    }
    free(rootfs);
    run_state_release(ops, &st);
    return rc;
}
