/*
 * Writable layers over a chain: the overlay snapshotter (a fresh upper dir,
 * mounted by the sandbox child with the async-signal-safe
 * ex_snapshot_rw_mount) and the scan snapshotter's wrapper (a stat-walk
 * before and a diff after). Everything the mount needs is computed at
 * prepare time so the child only makes system calls.
 */
#include "exec/snapshot/internal.h"
#include "exec/store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

struct ex_snapshot_rw {
    enum ex_snapshot_kind kind;
    char *dir;    /* WORKROOT/rw-XXXXXX */
    char *upper;  /* DIR/upper: the diff */
    char *work;   /* DIR/work (overlay) */
    char *merged; /* DIR/merged (overlay) */
    const char *root;
    struct ex_snapshot *base;
    /* overlay mount plan, top layer first */
    char **lowers;
    size_t n_lowers;
    char *legacy_data; /* mount(2) data */
    char *legacy_cwd;  /* chdir here first when the lowers are relative, else NULL */
    bool force_legacy; /* KILN_OVERLAY_LEGACY=1: test the mount(2) path */
    /* scan */
    char *rootfs;
    struct ex_scan *scan;
    bool finished;
};

static char *mkdir_rw(const char *workroot, struct kn_error **err)
{
    char *dir = kn_asprintf("%s/rw-XXXXXX", workroot);
    if (!mkdtemp(dir)) {
        kn_err_sys(err, "cannot create a writable layer in '%s'", workroot);
        free(dir);
        return NULL;
    }
    chmod(dir, 0700);
    return dir;
}

/* Flattens the bottom `k` layers of base into WORKROOT/flat/HEX (cached). */
static char *flatten_bottom(const struct ex_snapshot *base, size_t k, const char *workroot,
                            struct kn_error **err)
{
    struct ex_snapshot *bottom = ex_snapshot_new((const char *const *)NULL, 0, err);
    for (size_t i = 0; i < k && bottom; i++) {
        struct ex_snapshot *nb = ex_snapshot_push(bottom, ex_snapshot_layer(base, i), err);
        ex_snapshot_unref(bottom);
        bottom = nb;
    }
    if (!bottom)
        return NULL;
    char *flatdir = kn_asprintf("%s/flat", workroot);
    mkdir(flatdir, 0700);
    char *dest = kn_asprintf("%s/%s", flatdir, kn_digest_hex(ex_snapshot_digest(bottom)));
    struct stat st;
    if (stat(dest, &st) == 0) {
        ex_snapshot_unref(bottom);
        free(flatdir);
        return dest;
    }
    char *tmp = kn_asprintf("%s/tmp-XXXXXX", flatdir);
    int rc = -1;
    if (!mkdtemp(tmp)) {
        kn_err_sys(err, "cannot create '%s'", tmp);
    } else if (ex_snapshot_flatten_shared(bottom, tmp, err) == 0) {
        if (rename(tmp, dest) == 0) {
            rc = 0;
        } else if (errno == EEXIST || errno == ENOTEMPTY) {
            ex_store_remove_tree(tmp, NULL); /* another build won the race */
            rc = 0;
        } else {
            kn_err_sys(err, "cannot rename '%s'", tmp);
        }
    }
    if (rc < 0)
        ex_store_remove_tree(tmp, NULL);
    free(tmp);
    free(flatdir);
    ex_snapshot_unref(bottom);
    if (rc < 0) {
        free(dest);
        return NULL;
    }
    return dest;
}

/* The mount(2) option string, with the lowers relative to their common
 * parent when the absolute form does not fit in a page. */
static void plan_legacy(struct ex_snapshot_rw *rw)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "lowerdir=");
    for (size_t i = 0; i < rw->n_lowers; i++)
        kn_buf_addf(&b, "%s%s", i ? ":" : "", rw->lowers[i]);
    kn_buf_addf(&b, ",upperdir=%s,workdir=%s,userxattr", rw->upper, rw->work);
    if (b.len < 4000 || rw->n_lowers == 0) {
        rw->legacy_data = kn_buf_detach(&b);
        return;
    }
    size_t common = strlen(rw->lowers[0]);
    for (size_t i = 1; i < rw->n_lowers; i++) {
        size_t j = 0;
        while (j < common && rw->lowers[i][j] == rw->lowers[0][j])
            j++;
        common = j;
    }
    while (common > 0 && rw->lowers[0][common - 1] != '/')
        common--;
    kn_buf_reset(&b);
    kn_buf_adds(&b, "lowerdir=");
    for (size_t i = 0; i < rw->n_lowers; i++)
        kn_buf_addf(&b, "%s%s", i ? ":" : "", rw->lowers[i] + common);
    kn_buf_addf(&b, ",upperdir=%s,workdir=%s,userxattr", rw->upper, rw->work);
    rw->legacy_cwd = kn_strndup(rw->lowers[0], common ? common : 1);
    rw->legacy_data = kn_buf_detach(&b);
}

struct ex_snapshot_rw *ex_snapshot_rw_overlay(const struct ex_snapshot *base, const char *workroot,
                                              struct kn_error **err)
{
    char *dir = mkdir_rw(workroot, err);
    if (!dir)
        return NULL;
    struct ex_snapshot_rw *rw = kn_calloc(1, sizeof(*rw));
    rw->kind = EX_SNAPSHOT_OVERLAY;
    rw->dir = dir;
    rw->upper = kn_asprintf("%s/upper", dir);
    rw->work = kn_asprintf("%s/work", dir);
    rw->merged = kn_asprintf("%s/merged", dir);
    rw->root = rw->merged;
    rw->base = ex_snapshot_ref((struct ex_snapshot *)base);
    const char *legacy = getenv("KILN_OVERLAY_LEGACY");
    rw->force_legacy = legacy && strcmp(legacy, "1") == 0;
    if (mkdir(rw->upper, 0755) < 0 || mkdir(rw->work, 0700) < 0 || mkdir(rw->merged, 0755) < 0) {
        kn_err_sys(err, "cannot create a writable layer in '%s'", dir);
        ex_snapshot_rw_free(rw, false);
        return NULL;
    }
    size_t n = ex_snapshot_len(base);
    size_t first = 0; /* bottom-most layer taken as it is */
    char *flat = NULL;
    if (n > EX_SNAPSHOT_MAX_LOWERS) {
        first = n - EX_SNAPSHOT_MAX_LOWERS + 1;
        flat = flatten_bottom(base, first, workroot, err);
        if (!flat) {
            ex_snapshot_rw_free(rw, false);
            return NULL;
        }
    }
    rw->lowers = kn_calloc(n + 2, sizeof(char *));
    for (size_t i = n; i-- > first;)
        rw->lowers[rw->n_lowers++] = kn_strdup(ex_snapshot_layer(base, i));
    if (flat)
        rw->lowers[rw->n_lowers++] = flat;
    if (rw->n_lowers == 0) {
        /* FROM scratch: overlayfs needs one lower */
        char *empty = kn_asprintf("%s/empty", dir);
        if (mkdir(empty, 0755) < 0) {
            kn_err_sys(err, "cannot create '%s'", empty);
            free(empty);
            ex_snapshot_rw_free(rw, false);
            return NULL;
        }
        rw->lowers[rw->n_lowers++] = empty;
    }
    plan_legacy(rw);
    return rw;
}

struct ex_snapshot_rw *ex_snapshot_rw_scan(const char *rootfs, const char *workroot,
                                           struct kn_error **err)
{
    struct ex_scan *sc = ex_scan_record(rootfs, err);
    if (!sc)
        return NULL;
    char *dir = mkdir_rw(workroot, err);
    if (!dir) {
        ex_scan_free(sc);
        return NULL;
    }
    struct ex_snapshot_rw *rw = kn_calloc(1, sizeof(*rw));
    rw->kind = EX_SNAPSHOT_SCAN;
    rw->dir = dir;
    rw->upper = kn_asprintf("%s/upper", dir);
    rw->rootfs = kn_strdup(rootfs);
    rw->root = rw->rootfs;
    rw->scan = sc;
    if (mkdir(rw->upper, 0755) < 0) {
        kn_err_sys(err, "cannot create '%s'", rw->upper);
        ex_snapshot_rw_free(rw, false);
        return NULL;
    }
    return rw;
}

enum ex_snapshot_kind ex_snapshot_rw_kind(const struct ex_snapshot_rw *rw)
{
    return rw->kind;
}

const char *ex_snapshot_rw_root(const struct ex_snapshot_rw *rw)
{
    return rw->root;
}

const char *ex_snapshot_rw_upper(const struct ex_snapshot_rw *rw)
{
    return rw->upper;
}

const struct ex_snapshot *ex_snapshot_rw_base(const struct ex_snapshot_rw *rw)
{
    return rw->base;
}

/* Async-signal-safe from here to the end of ex_snapshot_rw_mount. */
static int mount_fsconfig(const struct ex_snapshot_rw *rw, const char *target)
{
    int fd = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (size_t i = 0; i < rw->n_lowers && rc == 0; i++)
        if (fsconfig(fd, FSCONFIG_SET_STRING, "lowerdir+", rw->lowers[i], 0) < 0)
            rc = -errno;
    if (rc == 0 && (fsconfig(fd, FSCONFIG_SET_STRING, "upperdir", rw->upper, 0) < 0 ||
                    fsconfig(fd, FSCONFIG_SET_STRING, "workdir", rw->work, 0) < 0 ||
                    fsconfig(fd, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0 ||
                    fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0))
        rc = -errno;
    if (rc == 0) {
        int mfd = fsmount(fd, FSMOUNT_CLOEXEC, 0);
        if (mfd < 0) {
            rc = -errno;
        } else {
            if (move_mount(mfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                rc = -errno;
            close(mfd);
        }
    }
    close(fd);
    return rc;
}

static int mount_legacy(const struct ex_snapshot_rw *rw, const char *target)
{
    if (rw->legacy_cwd && chdir(rw->legacy_cwd) < 0)
        return -errno;
    int rc = mount("overlay", target, "overlay", 0, rw->legacy_data) < 0 ? -errno : 0;
    if (rw->legacy_cwd && chdir("/") < 0 && rc == 0)
        rc = -errno;
    return rc;
}

int ex_snapshot_rw_mount(const struct ex_snapshot_rw *rw, const char *target)
{
    if (rw->kind == EX_SNAPSHOT_SCAN)
        return mount(rw->rootfs, target, NULL, MS_BIND | MS_REC, NULL) < 0 ? -errno : 0;
    if (!rw->force_legacy) {
        int rc = mount_fsconfig(rw, target);
        /* ENOSYS: no new mount API; EINVAL: no "lowerdir+" (kernel < 6.8) */
        if (rc != -ENOSYS && rc != -EINVAL)
            return rc;
    }
    return mount_legacy(rw, target);
}

/* ---- finishing an overlay upper ---- */

static int strip_xattrs(int fd, const char *what, struct kn_error **err)
{
    char names[4096];
    ssize_t len = flistxattr(fd, names, sizeof(names));
    if (len < 0)
        return errno == ENOTSUP || errno == ERANGE ? 0 : kn_err_sys(err, "cannot list '%s'", what);
    for (ssize_t off = 0; off < len; off += (ssize_t)strlen(names + off) + 1) {
        const char *n = names + off;
        bool ovl =
            kn_str_startswith(n, "user.overlay.") || kn_str_startswith(n, "trusted.overlay.");
        if (!ovl || strcmp(n, EX_OPAQUE_XATTR) == 0 || strcmp(n, EX_TRUSTED_OPAQUE_XATTR) == 0)
            continue;
        if (fremovexattr(fd, n) < 0 && errno != ENODATA)
            return kn_err_sys(err, "cannot remove xattr '%s' of '%s'", n, what);
    }
    return 0;
}

static int finish_dir(int dfd, const char *what, int depth, struct kn_error **err)
{
    if (depth > 4096)
        return kn_err_set(err, KN_E_UNSAFE, "directory tree too deep in '%s'", what);
    if (strip_xattrs(dfd, what, err) < 0)
        return -1;
    int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
    if (!d) {
        if (rfd >= 0)
            close(rfd);
        return kn_err_sys(err, "cannot read '%s'", what);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
            continue;
        struct stat st;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = kn_err_sys(err, "cannot stat '%s' in '%s'", n, what);
        } else if (ex_is_whiteout(&st) && st.st_nlink > 1) {
            /* overlayfs links every whiteout to one inode: give each its own */
            if (unlinkat(dfd, n, 0) < 0 || mknodat(dfd, n, S_IFCHR | 0, makedev(0, 0)) < 0)
                rc = kn_err_sys(err, "cannot recreate whiteout '%s' in '%s'", n, what);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = kn_err_sys(err, "cannot open '%s' in '%s'", n, what);
            } else {
                rc = finish_dir(sub, what, depth + 1, err);
                close(sub);
            }
        } else if (S_ISREG(st.st_mode)) {
            /* copied-up files may carry user.overlay.origin */
            int f = openat(dfd, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
            if (f >= 0) {
                rc = strip_xattrs(f, what, err);
                close(f);
            }
        }
    }
    closedir(d);
    return rc;
}

int ex_snapshot_rw_finish(struct ex_snapshot_rw *rw, struct kn_error **err)
{
    if (rw->finished)
        return 0;
    if (rw->kind == EX_SNAPSHOT_SCAN) {
        if (ex_scan_diff(rw->scan, rw->upper, NULL, err) < 0)
            return -1;
        rw->finished = true;
        return 0;
    }
    if (ex_store_remove_tree(rw->work, err) < 0)
        return -1;
    int fd = open(rw->upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return kn_err_sys(err, "cannot open '%s'", rw->upper);
    int rc = finish_dir(fd, rw->upper, 0, err);
    close(fd);
    if (rc == 0)
        rw->finished = true;
    return rc;
}

void ex_snapshot_rw_free(struct ex_snapshot_rw *rw, bool keep_upper)
{
    if (!rw)
        return;
    if (rw->dir) {
        if (keep_upper) {
            const char *parts[] = {"work", "merged", "empty"};
            for (size_t i = 0; i < KN_ARRAY_SIZE(parts); i++) {
                char *p = kn_asprintf("%s/%s", rw->dir, parts[i]);
                ex_store_remove_tree(p, NULL);
                free(p);
            }
        } else {
            struct kn_error *e = NULL;
            if (ex_store_remove_tree(rw->dir, &e) < 0) {
                kn_warn("cannot remove writable layer: %s", e->msg);
                kn_err_free(e);
            }
        }
    }
    for (size_t i = 0; i < rw->n_lowers; i++)
        free(rw->lowers[i]);
    free(rw->lowers);
    free(rw->legacy_data);
    free(rw->legacy_cwd);
    free(rw->dir);
    free(rw->upper);
    free(rw->work);
    free(rw->merged);
    free(rw->rootfs);
    ex_scan_free(rw->scan);
    ex_snapshot_unref(rw->base);
    free(rw);
}
