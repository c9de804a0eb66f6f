/*
 * exec/ops: -o type=local, a root filesystem materialized into a host
 * directory.
 *
 * As root the chain is flattened straight into the directory, owners kept.
 * Rootless, the store's layer directories hold the caller's subordinate ids
 * (see ensure_layer_dir in ops.c), some of them private to one of them
 * (/root, /etc/shadow), which the caller cannot read. The chain is then
 * flattened inside the user namespace into a temporary directory of the
 * store (hard links, nothing copied), and that tree is copied into the
 * output by ns-root, so every output file belongs to the caller, with the
 * image's modes and times: what BuildKit's rootless local exporter writes,
 * a tree the user can read, change and delete (a `podman unshare`-style
 * tree of subordinate owners could not be removed without the namespace).
 * The image's owners are not kept, nor are hard links between its files,
 * nor device nodes (which a rootless layer cannot hold anyway).
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_DEPTH_MAX 4096

static int copy_dir(int src, int dst, int depth, struct kn_error **err);

static void set_times(int dst, const char *n, const struct stat *st)
{
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    (void)utimensat(dst, n, ts, AT_SYMLINK_NOFOLLOW);
}

/* Makes room for n in an output that already holds files (an export into
 * an existing directory replaces what is there, as the flatten as root
 * does): a directory stays for a directory, anything else goes. */
static int clear_slot(int dst, const char *n, bool for_dir, bool *is_dir, struct kn_error **err)
{
    struct stat old;
    *is_dir = false;
    if (fstatat(dst, n, &old, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : kn_err_sys(err, "cannot stat '%s'", n);
    if (S_ISDIR(old.st_mode) && for_dir) {
        *is_dir = true;
        return 0;
    }
    if (S_ISDIR(old.st_mode))
        return ex_store_remove_tree_at(dst, n, err);
    if (unlinkat(dst, n, 0) < 0 && errno != ENOENT)
        return kn_err_sys(err, "cannot remove '%s'", n);
    return 0;
}

static int copy_entry(int src, int dst, const char *n, const struct stat *st, int depth,
                      struct kn_error **err)
{
    mode_t perm = st->st_mode & 07777;
    bool is_dir;
    if (clear_slot(dst, n, S_ISDIR(st->st_mode), &is_dir, err) < 0)
        return -1;
    if (S_ISDIR(st->st_mode)) {
        if (!is_dir && mkdirat(dst, n, 0700) < 0)
            return kn_err_sys(err, "cannot create directory '%s'", n);
        int s2 = openat(src, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int d2 = openat(dst, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc = s2 < 0 || d2 < 0 ? kn_err_sys(err, "cannot open directory '%s'", n)
                                  : copy_dir(s2, d2, depth + 1, err);
        if (s2 >= 0)
            close(s2);
        if (d2 >= 0)
            close(d2);
        if (rc == 0) {
            /* the mode last: a read-only directory has been filled by now */
            (void)fchmodat(dst, n, perm, 0);
            set_times(dst, n, st);
        }
        return rc;
    }
    if (S_ISREG(st->st_mode)) {
        int in = openat(src, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
            return kn_err_sys(err, "cannot open '%s'", n);
        int out = openat(dst, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        int rc =
            out < 0 ? kn_err_sys(err, "cannot create '%s'", n) : ex_store_copy_fd(in, out, n, err);
        if (rc == 0 && fchmod(out, perm) < 0)
            rc = kn_err_sys(err, "cannot chmod '%s'", n);
        if (rc == 0) {
            struct timespec ts[2] = {st->st_atim, st->st_mtim};
            (void)futimens(out, ts);
        }
        close(in);
        if (out >= 0)
            close(out);
        return rc;
    }
    if (S_ISLNK(st->st_mode)) {
        char target[4096];
        ssize_t len = readlinkat(src, n, target, sizeof(target) - 1);
        if (len < 0)
            return kn_err_sys(err, "cannot read link '%s'", n);
        target[len] = '\0';
        if (symlinkat(target, dst, n) < 0)
            return kn_err_sys(err, "cannot create link '%s'", n);
        set_times(dst, n, st);
        return 0;
    }
    if (S_ISFIFO(st->st_mode)) {
        if (mknodat(dst, n, S_IFIFO | perm, 0) < 0)
            return kn_err_sys(err, "cannot create fifo '%s'", n);
        (void)fchmodat(dst, n, perm, 0);
        set_times(dst, n, st);
        return 0;
    }
    kn_debug("export: skipping special file '%s'", n);
    return 0;
}

static int copy_dir(int src, int dst, int depth, struct kn_error **err)
{
    if (depth > COPY_DEPTH_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "directory tree deeper than %d levels", COPY_DEPTH_MAX);
    int rfd = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return kn_err_sys(err, "cannot read a directory");
    DIR *d = fdopendir(rfd);
    if (!d) {
        close(rfd);
        return kn_err_sys(err, "cannot read a directory");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        struct stat st;
        if (fstatat(src, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = kn_err_sys(err, "cannot stat '%s'", n);
        else
            rc = copy_entry(src, dst, n, &st, depth, err);
    }
    closedir(d);
    return rc;
}

struct export_arg {
    const struct ex_snapshot *snap;
    const char *tmp;
    const char *dir;
};

static int export_in_ns(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    (void)ops;
    (void)out;
    const struct export_arg *a = arg;
    /* a throwaway tree only copied from: linked, not copied twice */
    int rc = ex_snapshot_flatten_shared(a->snap, a->tmp, err);
    if (rc == 0) {
        int src = open(a->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int dst = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (src < 0 || dst < 0)
            rc = kn_err_sys(err, "cannot open '%s'", src < 0 ? a->tmp : a->dir);
        else
            rc = copy_dir(src, dst, 0, err);
        if (rc < 0)
            kn_err_wrap(err, "cannot export into '%s'", a->dir);
        if (src >= 0)
            close(src);
        if (dst >= 0)
            close(dst);
    }
    if (ex_store_remove_tree(a->tmp, NULL) < 0)
        kn_debug("export: cannot remove '%s'", a->tmp);
    return rc;
}

int ex_ops_export_rootfs(struct ex_ops *ops, struct ex_result *root, const char *dir,
                         struct kn_error **err)
{
    struct ex_snapshot *snap = ex_result_snapshot(ops, root, err);
    if (!snap)
        return -1;
    if (ops->as_root)
        return ex_snapshot_flatten(snap, dir, err);
    char *tmp = ex_store_mkdtemp(ops->o.store, "export", err);
    if (!tmp)
        return -1;
    struct export_arg a = {.snap = snap, .tmp = tmp, .dir = dir};
    int rc = ex_ops_userns_call(ops, export_in_ns, &a, NULL, 0, err);
    if (access(tmp, F_OK) == 0)
        ex_ops_remove_tree(ops, tmp, NULL);
    free(tmp);
    return rc;
}
