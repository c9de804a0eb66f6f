/*
 * exec/ops: work on a RUN's writable layer rootless (finishing it, packing
 * it, removing it), inside a user namespace with the sandbox's id map.
 *
 * Rootless, a RUN's upper directory holds host ids: what uid 0 wrote in the
 * step belongs to the caller on disk, what uid 1000 wrote to the caller's
 * subordinate id START+999. Packed as they are, the layer would carry those
 * host ids. Packed from inside a user namespace with the same map as the
 * sandbox's (caller -> 0, /etc/subuid START.. -> 1..), stat() reports the ids
 * the step saw, and root in that namespace may read the files the step made
 * private to another of its users.
 *
 * A forked child joins the new namespace; the parent writes its maps
 * (newuidmap/newgidmap for a subordinate range, else a single "0 UID 1"
 * line) and waits for the result, which comes back through a pipe.
 *
 * Forking a multithreaded process: the child has only the forking thread,
 * and any lock another thread held at the fork stays held forever. What
 * runs in the child (unpacking, packing, flattening, streaming a file op,
 * removing trees, committing into the store) therefore takes no lock of
 * kiln's own: no result's mu (the callers resolve snapshots in the parent
 * and pass them in), no store mutex (only prune takes one; temporary
 * directories, blob writers and layer commits are plain mkdtemp/rename).
 * glibc resets malloc's and stdio's locks in the child; libarchive and zstd
 * keep no global locks (zstd's worker threads are created by the child
 * itself); OpenSSL's SHA-256 fetch takes its method store's lock for
 * reading only once the parent has used SHA-256 (every build has, for its
 * cache keys), and glibc's reader-preferring rwlocks grant that even while
 * another thread holds it. The layer writer's once-only locale set-up is
 * made in the parent before any fork (ex_ops_userns_call). exec/fileop's
 * file hash cache has a global mutex, taken when ADD --checksum verifies a
 * file (in a child) and when cache keys hash context files (in the parent):
 * the parent's hashing holds fork_lock for reading, fork() for writing.
 * The child leaves with _exit.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Held for writing across fork(), for reading around exec/fileop's file
 * hashing, whose global hash cache has a mutex (ex_ops_nofork_begin). */
static pthread_rwlock_t fork_lock = PTHREAD_RWLOCK_INITIALIZER;

void ex_ops_nofork_begin(void)
{
    pthread_rwlock_rdlock(&fork_lock);
}

void ex_ops_nofork_end(void)
{
    pthread_rwlock_unlock(&fork_lock);
}

/* What the child sends back: the function's result, its error, and up to
 * REPLY_OUT bytes of plain data (no pointers into the child's heap; pointers
 * to static data, such as a layer's media type string, stay valid). Large
 * enough for a path. */
#define REPLY_OUT (PATH_MAX + 64)
struct ns_reply {
    int rc;
    int code;
    int sys_errno;
    char msg[1024];
    _Alignas(16) unsigned char out[REPLY_OUT]; /* holds structs: aligned for any */
};

static bool read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static void write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void ns_child(struct ex_ops *ops, ex_userns_fn fn, void *arg, size_t outlen, int ready,
                     int go, int reply)
{
    struct ns_reply r = {.rc = -1, .code = KN_E_IO};
    char c = 'r';
    if (unshare(CLONE_NEWUSER) < 0) {
        r.sys_errno = errno;
        snprintf(r.msg, sizeof(r.msg), "cannot create a user namespace: %s", strerror(errno));
        write_full(reply, &r, sizeof(r));
        _exit(1);
    }
    write_full(ready, &c, 1);
    if (!read_full(go, &c, 1) || c != 'g')
        _exit(1); /* the parent could not map us and says why */
    struct kn_error *e = NULL;
    r.rc = fn(ops, arg, outlen ? r.out : NULL, &e);
    if (r.rc < 0) {
        r.code = e ? e->code : KN_E_INTERNAL;
        r.sys_errno = e ? e->sys_errno : 0;
        snprintf(r.msg, sizeof(r.msg), "%s", e ? e->msg : "failed in the user namespace");
    }
    write_full(reply, &r, sizeof(r));
    _exit(r.rc == 0 ? 0 : 1);
}

int ex_ops_userns_call(struct ex_ops *ops, ex_userns_fn fn, void *arg, void *out, size_t outlen,
                       struct kn_error **err)
{
    if (outlen > REPLY_OUT)
        return kn_err_set(err, KN_E_INTERNAL, "user namespace reply too large");
    if (ops->as_root)
        return fn(ops, arg, out, err);
    int ready[2] = {-1, -1}, go[2] = {-1, -1}, reply[2] = {-1, -1};
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(reply, O_CLOEXEC) < 0) {
        kn_err_sys(err, "cannot create a pipe");
        for (int i = 0; i < 2; i++) {
            if (ready[i] >= 0)
                close(ready[i]);
            if (go[i] >= 0)
                close(go[i]);
            if (reply[i] >= 0)
                close(reply[i]);
        }
        return -1;
    }
    ex_layer_init(); /* its pthread_once must not be mid-run in another thread */
    fflush(NULL);
    pthread_rwlock_wrlock(&fork_lock);
    pid_t pid = fork();
    if (pid != 0)
        pthread_rwlock_unlock(&fork_lock);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        close(reply[0]);
        ns_child(ops, fn, arg, outlen, ready[1], go[0], reply[1]);
    }
    close(ready[1]);
    close(go[0]);
    close(reply[1]);
    int rc = 0;
    if (pid < 0)
        rc = kn_err_sys(err, "cannot fork");
    char c = 0;
    bool child_ready = rc == 0 && read_full(ready[0], &c, 1);
    if (rc == 0 && child_ready && ex_sandbox_write_idmap(pid, err) < 0)
        rc = -1;
    if (rc == 0 && child_ready)
        write_full(go[1], "g", 1);
    close(go[1]);
    close(ready[0]);
    struct ns_reply r = {.rc = -1};
    bool got = pid > 0 && read_full(reply[0], &r, sizeof(r));
    close(reply[0]);
    if (pid > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    if (rc < 0)
        return kn_err_wrap(err, "cannot enter a user namespace");
    if (!got)
        return kn_err_set(err, KN_E_IO, "the helper process in the user namespace died");
    if (r.rc < 0) {
        r.msg[sizeof(r.msg) - 1] = '\0';
        struct kn_error *e = kn_err_new(r.code, "%s", r.msg);
        e->sys_errno = r.sys_errno;
        kn_err_propagate(err, &e);
        return -1;
    }
    if (outlen)
        memcpy(out, r.out, outlen);
    return 0;
}

/* ---- what runs there ---------------------------------------------------- */

static int finish_pack(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    struct ex_snapshot_rw *rw = arg;
    if (ex_snapshot_rw_finish(rw, err) < 0)
        return -1;
    return ex_layer_pack_dir(ops->o.store, ex_snapshot_rw_upper(rw), &ops->o.layer, out, err);
}

int ex_ops_finish_pack(struct ex_ops *ops, struct ex_snapshot_rw *rw, struct ex_layer_info *info,
                       struct kn_error **err)
{
    return ex_ops_userns_call(ops, finish_pack, rw, info, sizeof(*info), err);
}

static int remove_tree(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    (void)ops;
    (void)out;
    return ex_store_remove_tree(arg, err);
}

int ex_ops_remove_tree(struct ex_ops *ops, const char *path, struct kn_error **err)
{
    return ex_ops_userns_call(ops, remove_tree, (void *)path, NULL, 0, err);
}

/* ---- the store, for kiln prune ------------------------------------------ */

struct prune_out {
    uint64_t freed, left;
};

static int prune_store(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    const uint64_t *keep = arg;
    struct prune_out *po = out;
    if (ex_store_prune(ops->o.store, *keep, &po->freed, err) < 0)
        return -1;
    return ex_store_usage(ops->o.store, &po->left, err);
}

int ex_ops_store_prune(struct ex_store *s, uint64_t keep, uint64_t *freed, uint64_t *left,
                       struct kn_error **err)
{
    struct ex_ops_opts o = {.store = s};
    struct ex_ops *ops = ex_ops_new(&o, err);
    if (!ops)
        return -1;
    struct prune_out po = {0};
    int rc = ex_ops_userns_call(ops, prune_store, &keep, &po, sizeof(po), err);
    ex_ops_free(ops);
    if (rc == 0) {
        *freed = po.freed;
        *left = po.left;
    }
    return rc;
}
