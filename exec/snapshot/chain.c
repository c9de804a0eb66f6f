/*
 * Snapshot chains: an immutable, refcounted list of layer directories, the
 * merged-view lookup used to read an image's /etc/passwd without mounting
 * anything, and flattening a chain into one directory (for chains longer
 * than overlayfs can stack, and to materialize a rootfs for chroot mode).
 */
#include "exec/snapshot/internal.h"
#include "exec/store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ex_snapshot {
    _Atomic int refs;
    size_t n;
    char **layers; /* bottom first */
    char digest[KN_DIGEST_SIZE];
};

static struct ex_snapshot *chain_build(char **layers, size_t n)
{
    struct ex_snapshot *s = kn_calloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->n = n;
    s->layers = layers;
    struct kn_sha256 h;
    kn_sha256_init(&h);
    for (size_t i = 0; i < n; i++)
        kn_sha256_update(&h, layers[i], strlen(layers[i]) + 1);
    kn_sha256_final(&h, s->digest);
    return s;
}

static int check_layer(const char *p, struct kn_error **err)
{
    struct stat st;
    if (!p || p[0] != '/')
        return kn_err_set(err, KN_E_USAGE, "layer path is not absolute '%s'", p ? p : "");
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
        return kn_err_set(err, KN_E_NOTFOUND, "layer directory not found '%s'", p);
    return 0;
}

struct ex_snapshot *ex_snapshot_new(const char *const *layers, size_t n, struct kn_error **err)
{
    for (size_t i = 0; i < n; i++)
        if (check_layer(layers[i], err) < 0)
            return NULL;
    char **v = kn_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        v[i] = kn_strdup(layers[i]);
    return chain_build(v, n);
}

struct ex_snapshot *ex_snapshot_push(const struct ex_snapshot *base, const char *layer,
                                     struct kn_error **err)
{
    if (check_layer(layer, err) < 0)
        return NULL;
    size_t n = base ? base->n : 0;
    char **v = kn_calloc(n + 2, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        v[i] = kn_strdup(base->layers[i]);
    v[n] = kn_strdup(layer);
    return chain_build(v, n + 1);
}

struct ex_snapshot *ex_snapshot_ref(struct ex_snapshot *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void ex_snapshot_unref(struct ex_snapshot *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->layers[i]);
    free(s->layers);
    free(s);
}

size_t ex_snapshot_len(const struct ex_snapshot *s)
{
    return s ? s->n : 0;
}

const char *ex_snapshot_layer(const struct ex_snapshot *s, size_t i)
{
    return s && i < s->n ? s->layers[i] : NULL;
}

const char *ex_snapshot_digest(const struct ex_snapshot *s)
{
    return s->digest;
}

/* What layer `dirfd` says about `path`: 1 found (fd in *out), 0 absent here
 * (look lower), -1 hidden (a whiteout, or an opaque ancestor: stop). */
static int layer_lookup(int dirfd, const char *path, int *out)
{
    char prefix[4096];
    size_t len = strlen(path);
    if (len >= sizeof(prefix))
        return -1;
    /* whiteouts and opaque dirs on the way down, this layer only */
    bool opaque_above = false;
    for (size_t i = 0; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        memcpy(prefix, path, i);
        prefix[i] = 0;
        struct stat st;
        if (fstatat(dirfd, prefix, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            /* ".wh.NAME" marker for this component */
            const char *slash = memrchr(prefix, '/', i);
            size_t dl = slash ? (size_t)(slash - prefix) + 1 : 0;
            char wh[4096];
            if (snprintf(wh, sizeof(wh), "%.*s" EX_WH_PREFIX "%s", (int)dl, prefix, prefix + dl) <
                    (int)sizeof(wh) &&
                fstatat(dirfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return -1;
            break;
        }
        if (ex_is_whiteout(&st))
            return -1;
        if (S_ISDIR(st.st_mode) && i < len && ex_dir_is_opaque(dirfd, prefix))
            opaque_above = true;
        if (!S_ISDIR(st.st_mode))
            break;
    }
    int fd = ex_openat_in_root(dirfd, path, O_RDONLY, 0);
    if (fd >= 0) {
        *out = fd;
        return 1;
    }
    return opaque_above ? -1 : 0;
}

int ex_snapshot_open(const struct ex_snapshot *s, const char *path, struct kn_error **err)
{
    while (*path == '/')
        path++;
    for (size_t i = s ? s->n : 0; i-- > 0;) {
        int dfd = open(s->layers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return kn_err_sys(err, "cannot open layer '%s'", s->layers[i]);
        int fd = -1;
        int r = layer_lookup(dfd, path, &fd);
        close(dfd);
        if (r > 0)
            return fd;
        if (r < 0)
            break;
    }
    return kn_err_set(err, KN_E_NOTFOUND, "file not found in the image '/%s'", path);
}

/* ---- flatten ---- */

struct flat {
    bool can_chown;
    bool can_link;
    const char *layer;
};

static int remove_at(int dfd, const char *name, struct kn_error **err)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return kn_err_sys(err, "cannot remove '%s'", name);
    int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return kn_err_sys(err, "cannot remove '%s'", name);
    int rc = ex_rmtree_at(sub, name, err);
    close(sub);
    if (rc < 0)
        return -1;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return kn_err_sys(err, "cannot remove '%s'", name);
    return 0;
}

static void set_meta(int dfd, const char *name, const struct stat *st, bool can_chown)
{
    if (can_chown)
        fchownat(dfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
    if (!S_ISLNK(st->st_mode))
        fchmodat(dfd, name, st->st_mode & 07777, 0);
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

static int flat_entry(struct flat *f, int src, int dst, const char *name, const struct stat *st,
                      int depth, struct kn_error **err);

static int flat_dir(struct flat *f, int src, int dst, int depth, struct kn_error **err)
{
    if (depth > 4096)
        return kn_err_set(err, KN_E_UNSAFE, "directory tree too deep in layer '%s'", f->layer);
    int rfd = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return kn_err_sys(err, "cannot read layer '%s'", f->layer);
    DIR *d = fdopendir(rfd);
    if (!d) {
        close(rfd);
        return kn_err_sys(err, "cannot read layer '%s'", f->layer);
    }
    int rc = 0;
    /* pass 0: ".wh." markers; pass 1: everything else */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        rewinddir(d);
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            const char *n = de->d_name;
            if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
                continue;
            bool wh = kn_str_startswith(n, EX_WH_PREFIX);
            if ((pass == 0) != wh)
                continue;
            if (wh) {
                if (strcmp(n, EX_WH_OPAQUE) != 0 && remove_at(dst, n + 4, err) < 0) {
                    rc = -1;
                    break;
                }
                continue;
            }
            struct stat st;
            if (fstatat(src, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                rc = kn_err_sys(err, "cannot stat '%s' in layer '%s'", n, f->layer);
                break;
            }
            if (flat_entry(f, src, dst, n, &st, depth, err) < 0) {
                rc = -1;
                break;
            }
        }
    }
    closedir(d);
    return rc;
}

static int flat_entry(struct flat *f, int src, int dst, const char *n, const struct stat *st,
                      int depth, struct kn_error **err)
{
    if (ex_is_whiteout(st))
        return remove_at(dst, n, err);
    struct stat old;
    bool exists = fstatat(dst, n, &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (S_ISDIR(st->st_mode)) {
        if (exists && !S_ISDIR(old.st_mode)) {
            if (remove_at(dst, n, err) < 0)
                return -1;
            exists = false;
        }
        if (!exists && mkdirat(dst, n, 0700) < 0)
            return kn_err_sys(err, "cannot create directory '%s'", n);
        int s2 = openat(src, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int d2 = openat(dst, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc = 0;
        if (s2 < 0 || d2 < 0)
            rc = kn_err_sys(err, "cannot open directory '%s' of layer '%s'", n, f->layer);
        if (rc == 0 && exists && ex_dir_is_opaque(src, n))
            rc = ex_rmtree_at(d2, n, err);
        if (rc == 0)
            rc = flat_dir(f, s2, d2, depth + 1, err);
        if (s2 >= 0)
            close(s2);
        if (d2 >= 0)
            close(d2);
        if (rc == 0)
            set_meta(dst, n, st, f->can_chown);
        return rc;
    }
    if (exists && remove_at(dst, n, err) < 0)
        return -1;
    if (S_ISREG(st->st_mode)) {
        if (f->can_link && linkat(src, n, dst, n, 0) == 0)
            return 0;
        if (errno == EXDEV)
            f->can_link = false;
        int in = openat(src, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
            return kn_err_sys(err, "cannot open '%s' in layer '%s'", n, f->layer);
        int out = openat(dst, n, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0 || ex_store_copy_fd(in, out, "", NULL) < 0) {
            int rc = kn_err_sys(err, "cannot copy '%s' of layer '%s'", n, f->layer);
            close(in);
            if (out >= 0)
                close(out);
            return rc;
        }
        close(in);
        close(out);
    } else if (S_ISLNK(st->st_mode)) {
        char target[4096];
        ssize_t len = readlinkat(src, n, target, sizeof(target) - 1);
        if (len < 0)
            return kn_err_sys(err, "cannot read link '%s' of layer '%s'", n, f->layer);
        target[len] = 0;
        if (symlinkat(target, dst, n) < 0)
            return kn_err_sys(err, "cannot create link '%s'", n);
    } else if (S_ISSOCK(st->st_mode)) {
        return 0;
    } else if (mknodat(dst, n, st->st_mode & (S_IFMT | 07777), st->st_rdev) < 0) {
        return kn_err_sys(err, "cannot create node '%s'", n);
    }
    set_meta(dst, n, st, f->can_chown);
    return 0;
}

static int flatten(const struct ex_snapshot *s, const char *dest, bool link, struct kn_error **err)
{
    int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kn_err_sys(err, "cannot open '%s'", dest);
    struct flat f = {.can_chown = geteuid() == 0, .can_link = link};
    int rc = 0;
    for (size_t i = 0; i < ex_snapshot_len(s) && rc == 0; i++) {
        f.layer = s->layers[i];
        int sfd = open(s->layers[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sfd < 0) {
            rc = kn_err_sys(err, "cannot open layer '%s'", s->layers[i]);
            break;
        }
        rc = flat_dir(&f, sfd, dfd, 0, err);
        close(sfd);
    }
    close(dfd);
    if (rc < 0)
        kn_err_wrap(err, "cannot flatten into '%s'", dest);
    return rc;
}

/* Files are copied (reflinked where the file system can): the result is
 * the caller's to change, and the layers it came from are the store's,
 * shared by every later build. */
int ex_snapshot_flatten(const struct ex_snapshot *s, const char *dest, struct kn_error **err)
{
    return flatten(s, dest, false, err);
}

int ex_snapshot_flatten_shared(const struct ex_snapshot *s, const char *dest, struct kn_error **err)
{
    return flatten(s, dest, true, err);
}
