/*
 * The two back-ends of a file op: the same plan, emitted as a stream of
 * sorted layer entries (no file written: contents are read from the source
 * fds straight into the layer writer) or materialized as an overlay upper
 * directory on disk (for when a later RUN needs a filesystem).
 *
 * Both give the same layer: the stream writes whiteouts and opaque markers
 * the way exec/layer's packer turns the upper dir's 0/0 devices and opaque
 * xattrs into OCI entries (an empty ".wh.NAME" file, mode 0, owner 0:0,
 * with the whiteout's mtime; ".wh..wh..opq" right after its directory with
 * the directory's mtime), and the upper dir gets the same modes, owners,
 * mtimes, xattrs (overlay-private ones excepted, as the packer drops them)
 * and hard links.
 */
#include "exec/fileop/plan.h"
#include "exec/layer/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static int plan_for(const struct ex_fileop_req *req, const struct plan_flush *flush, struct plan *p,
                    struct pentry ***v, size_t *n, struct kn_error **err)
{
    if (plan_build(p, req, flush, err) < 0) {
        plan_release(p);
        return -1;
    }
    *v = plan_finish(p, n, err);
    if (!*v) {
        plan_release(p);
        return -1;
    }
    return 0;
}

/* ---- xattrs ------------------------------------------------------------------ */

#define FO_XATTR_MAX (64u << 10) /* the kernel's limit for one value */

typedef int (*xattr_fn)(void *ctx, const char *name, const void *value, size_t size,
                        struct kn_error **err);

static bool overlay_private(const char *name)
{
    return kn_str_startswith(name, "trusted.overlay.") || kn_str_startswith(name, "user.overlay.");
}

/* Calls fn for each xattr of fd (sorted by the writer, so any order), except
 * overlay-private ones. */
static int each_xattr(int fd, const char *what, xattr_fn fn, void *ctx, struct kn_error **err)
{
    ssize_t n = flistxattr(fd, NULL, 0);
    if (n < 0) {
        if (errno == EOPNOTSUPP)
            return 0;
        return kn_err_sys(err, "cannot list the xattrs of '%s'", what);
    }
    if (n == 0)
        return 0;
    char *names = kn_malloc((size_t)n + 1);
    n = flistxattr(fd, names, (size_t)n);
    if (n < 0) {
        free(names);
        return kn_err_sys(err, "cannot list the xattrs of '%s'", what);
    }
    char *value = kn_malloc(FO_XATTR_MAX);
    int rc = 0;
    for (char *name = names; name < names + n && rc == 0; name += strlen(name) + 1) {
        if (overlay_private(name))
            continue;
        ssize_t vn = fgetxattr(fd, name, value, FO_XATTR_MAX);
        if (vn < 0) {
            if (errno == ENODATA)
                continue;
            rc = kn_err_sys(err, "cannot read xattr '%s' of '%s'", name, what);
            break;
        }
        rc = fn(ctx, name, value, (size_t)vn, err);
    }
    free(value);
    free(names);
    return rc;
}

static void entry_stat(const struct pentry *e, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_uid = e->uid;
    st->st_gid = e->gid;
    st->st_mtim = e->mtime;
    switch (e->kind) {
    case PE_DIR:
        st->st_mode = S_IFDIR | (e->mode & 07777);
        break;
    case PE_FILE:
        st->st_mode = S_IFREG | (e->mode & 07777);
        st->st_size = e->hardlink ? 0 : e->size;
        break;
    case PE_LINK:
        st->st_mode = S_IFLNK | 0777;
        break;
    case PE_SPECIAL:
        st->st_mode = e->mode;
        st->st_rdev = e->rdev;
        break;
    case PE_WHITEOUT:
        st->st_mode = S_IFREG;
        st->st_uid = 0;
        st->st_gid = 0;
        break;
    }
}

static char *whiteout_name(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s)
        return kn_asprintf(FO_WH_PREFIX "%s", path);
    return kn_asprintf("%.*s/" FO_WH_PREFIX "%s", (int)(s - path), path, s + 1);
}

/* An fd holding mkfile data (memfd: nothing on disk). */
static int data_fd(const struct pentry *e, struct kn_error **err)
{
    int fd = memfd_create("kiln-mkfile", MFD_CLOEXEC);
    if (fd < 0)
        return kn_err_sys(err, "cannot create a memory file");
    size_t off = 0;
    while (off < e->datalen) {
        ssize_t n = write(fd, e->data + off, e->datalen - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = kn_err_sys(err, "cannot write a memory file");
            close(fd);
            return rc;
        }
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int rc = kn_err_sys(err, "cannot seek a memory file");
        close(fd);
        return rc;
    }
    return fd;
}

/* Opens a planned file's source and checks it did not change size since
 * it was planned. */
static int source_fd(const struct pentry *e, struct kn_error **err)
{
    int fd = view_open_at(e->src, e->layer, e->srcpath, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = kn_err_sys(err, "cannot stat '%s'", e->srcpath);
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != e->size) {
        close(fd);
        return kn_err_set(err, KN_E_FAILED, "source file '%s' changed while it was copied",
                          e->srcpath);
    }
    return fd;
}

/* ---- stream ----------------------------------------------------------------- */

/* Hands planned entries, in emit order, to the sink. */
static int stream_entries(void *ctx, struct pentry **v, size_t n, struct kn_error **err)
{
    const struct ex_fileop_sink *sink = ctx;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct pentry *e = v[i];
        struct stat st;
        entry_stat(e, &st);
        switch (e->kind) {
        case PE_DIR:
            if (e->src && sink->add_xattr) {
                int dfd = view_open_at(e->src, e->layer, e->srcpath, err);
                if (dfd < 0) {
                    rc = -1;
                    break;
                }
                rc = each_xattr(dfd, e->srcpath, sink->add_xattr, sink->ctx, err);
                close(dfd);
            }
            if (rc == 0)
                rc = sink->add(sink->ctx, e->path, &st, -1, NULL, err);
            if (rc == 0 && e->opaque) {
                struct stat ost = {.st_mode = S_IFREG, .st_mtim = e->mtime};
                char *opq = kn_asprintf("%s/" FO_WH_OPAQUE, e->path);
                rc = sink->add(sink->ctx, opq, &ost, -1, NULL, err);
                free(opq);
            }
            break;
        case PE_FILE: {
            if (e->hardlink) {
                rc = sink->add(sink->ctx, e->path, &st, -1, e->link, err);
                break;
            }
            int fd = e->is_data ? data_fd(e, err) : source_fd(e, err);
            if (fd < 0) {
                rc = -1;
                break;
            }
            if (!e->is_data && sink->add_xattr)
                rc = each_xattr(fd, e->srcpath, sink->add_xattr, sink->ctx, err);
            if (rc == 0)
                rc = sink->add(sink->ctx, e->path, &st, fd, NULL, err);
            close(fd);
            break;
        }
        case PE_LINK:
            rc = sink->add(sink->ctx, e->path, &st, -1, e->link, err);
            break;
        case PE_SPECIAL:
            rc = sink->add(sink->ctx, e->path, &st, -1, NULL, err);
            break;
        case PE_WHITEOUT: {
            char *wh = whiteout_name(e->path);
            rc = sink->add(sink->ctx, wh, &st, -1, NULL, err);
            free(wh);
            break;
        }
        }
    }
    return rc;
}

int ex_fileop_stream(const struct ex_fileop_req *req, const struct ex_fileop_sink *sink,
                     struct kn_error **err)
{
    struct plan p;
    struct pentry **v = NULL;
    size_t n = 0;
    /* the sink is only read: the flush context is the same pointer */
    struct plan_flush flush = {stream_entries, (void *)(uintptr_t)sink};
    if (plan_for(req, &flush, &p, &v, &n, err) < 0)
        return -1;
    int rc = stream_entries(flush.ctx, v, n, err);
    free(v);
    plan_release(&p);
    return rc;
}

static int layer_sink_add(void *ctx, const char *path, const struct stat *st, int fd,
                          const char *linkname, struct kn_error **err)
{
    return ex_layer_writer_add(ctx, path, st, fd, linkname, err);
}

static int layer_sink_xattr(void *ctx, const char *name, const void *value, size_t size,
                            struct kn_error **err)
{
    return ex_layer_writer_add_xattr(ctx, name, value, size, err);
}

int ex_fileop_stream_layer(const struct ex_fileop_req *req, struct ex_layer_writer *w,
                           struct kn_error **err)
{
    struct ex_fileop_sink sink = {.add = layer_sink_add, .add_xattr = layer_sink_xattr, .ctx = w};
    return ex_fileop_stream(req, &sink, err);
}

/* ---- materialize ------------------------------------------------------------- */

struct mat {
    int upper;
    char *pdir; /* the cached parent's path */
    int pfd;
    bool can_chown;
};

static int mat_parent(struct mat *m, const char *path, const char **base, struct kn_error **err)
{
    const char *s = strrchr(path, '/');
    char *dir = s ? kn_strndup(path, (size_t)(s - path)) : kn_strdup("");
    *base = s ? s + 1 : path;
    if (m->pdir && strcmp(m->pdir, dir) == 0) {
        free(dir);
        return m->pfd;
    }
    if (m->pfd >= 0 && m->pfd != m->upper)
        close(m->pfd);
    free(m->pdir);
    m->pdir = dir;
    if (!*dir) {
        m->pfd = m->upper;
        return m->pfd;
    }
    m->pfd = fo_openat2(m->upper, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, FO_RESOLVE);
    if (m->pfd < 0)
        return kn_err_sys(err, "cannot open '%s' in the upper directory", dir);
    return m->pfd;
}

static int set_owner(struct mat *m, int dfd, const char *name, const struct pentry *e,
                     struct kn_error **err)
{
    if (!m->can_chown)
        return 0;
    if (fchownat(dfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == EPERM || errno == EINVAL) {
            m->can_chown = false; /* rootless without a mapping: keep the caller's */
            return 0;
        }
        return kn_err_sys(err, "cannot chown '%s'", e->path);
    }
    return 0;
}

static int set_time(int dfd, const char *name, const struct timespec *t, const char *path,
                    struct kn_error **err)
{
    struct timespec ts[2] = {*t, *t};
    if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return kn_err_sys(err, "cannot set the mtime of '%s'", path);
    return 0;
}

struct setx {
    int fd;
    const char *path;
};

static int set_xattr(void *ctx, const char *name, const void *value, size_t size,
                     struct kn_error **err)
{
    struct setx *x = ctx;
    if (fsetxattr(x->fd, name, value, size, 0) < 0) {
        if (errno == EPERM || errno == EOPNOTSUPP) {
            kn_debug("fileop: xattr '%s' of '%s' not kept: %s", name, x->path, strerror(errno));
            return 0;
        }
        return kn_err_sys(err, "cannot set xattr '%s' on '%s'", name, x->path);
    }
    return 0;
}

static int mat_file(struct mat *m, int dfd, const char *name, const struct pentry *e,
                    struct kn_error **err)
{
    int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0)
        return kn_err_sys(err, "cannot create '%s'", e->path);
    int rc = 0;
    if (e->is_data) {
        size_t off = 0;
        while (off < e->datalen && rc == 0) {
            ssize_t n = write(out, e->data + off, e->datalen - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                rc = kn_err_sys(err, "cannot write '%s'", e->path);
            else
                off += (size_t)n;
        }
    } else {
        int in = source_fd(e, err);
        if (in < 0)
            rc = -1;
        else {
            rc = ex_store_copy_fd(in, out, e->srcpath, err);
            struct setx x = {.fd = out, .path = e->path};
            if (rc == 0)
                rc = each_xattr(in, e->srcpath, set_xattr, &x, err);
            close(in);
        }
    }
    if (rc == 0 && m->can_chown && fchown(out, e->uid, e->gid) < 0) {
        if (errno == EPERM || errno == EINVAL)
            m->can_chown = false;
        else
            rc = kn_err_sys(err, "cannot chown '%s'", e->path);
    }
    if (rc == 0 && fchmod(out, e->mode & 07777) < 0)
        rc = kn_err_sys(err, "cannot chmod '%s'", e->path);
    if (rc == 0) {
        struct timespec ts[2] = {e->mtime, e->mtime};
        if (futimens(out, ts) < 0)
            rc = kn_err_sys(err, "cannot set the mtime of '%s'", e->path);
    }
    close(out);
    return rc;
}

static int mat_whiteout(int dfd, const char *name, const struct pentry *e, struct kn_error **err)
{
    if (mknodat(dfd, name, S_IFCHR | 0, makedev(0, 0)) == 0)
        return set_time(dfd, name, &e->mtime, e->path, err);
    if (errno != EPERM && errno != EOPNOTSUPP)
        return kn_err_sys(err, "cannot create the whiteout '%s'", e->path);
    /* rootless: an empty ".wh.NAME" file, which the packer keeps as-is */
    char *wh = kn_asprintf(FO_WH_PREFIX "%s", name);
    int fd = openat(dfd, wh, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0);
    int rc = 0;
    if (fd < 0)
        rc = kn_err_sys(err, "cannot create the whiteout '%s'", e->path);
    else {
        (void)fchmod(fd, 0);
        close(fd);
        rc = set_time(dfd, wh, &e->mtime, e->path, err);
    }
    free(wh);
    return rc;
}

static int mat_dir_xattrs(int dfd, const char *name, const struct pentry *e, struct kn_error **err)
{
    int sfd = view_open_at(e->src, e->layer, e->srcpath, err);
    if (sfd < 0)
        return -1;
    int out = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (out < 0) {
        int rc = kn_err_sys(err, "cannot open '%s'", e->path);
        close(sfd);
        return rc;
    }
    struct setx x = {.fd = out, .path = e->path};
    int rc = each_xattr(sfd, e->srcpath, set_xattr, &x, err);
    close(out);
    close(sfd);
    return rc;
}

static int mat_opaque(int dfd, const char *name, const struct pentry *e, struct kn_error **err)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return kn_err_sys(err, "cannot open '%s'", e->path);
    int rc = 0;
    if (fsetxattr(fd, "user.overlay.opaque", "y", 1, 0) < 0) {
        int o = openat(fd, FO_WH_OPAQUE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
        if (o < 0)
            rc = kn_err_sys(err, "cannot mark '%s' opaque", e->path);
        else {
            close(o);
            rc = set_time(fd, FO_WH_OPAQUE, &e->mtime, e->path, err);
        }
    }
    close(fd);
    return rc;
}

int ex_fileop_materialize(const struct ex_fileop_req *req, const char *upper, struct kn_error **err)
{
    struct plan p;
    struct pentry **v = NULL;
    size_t n = 0;
    int ufd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ufd < 0)
        return kn_err_sys(err, "cannot open the upper directory '%s'", upper);
    if (plan_for(req, NULL, &p, &v, &n, err) < 0) {
        close(ufd);
        return -1;
    }
    struct mat m = {.upper = ufd, .pfd = -1, .can_chown = true};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct pentry *e = v[i];
        const char *name;
        int dfd = mat_parent(&m, e->path, &name, err);
        if (dfd < 0) {
            rc = -1;
            break;
        }
        switch (e->kind) {
        case PE_DIR:
            if (mkdirat(dfd, name, 0700) < 0)
                rc = kn_err_sys(err, "cannot create directory '%s'", e->path);
            if (rc == 0)
                rc = set_owner(&m, dfd, name, e, err);
            if (rc == 0 && e->src)
                rc = mat_dir_xattrs(dfd, name, e, err);
            if (rc == 0 && e->opaque)
                rc = mat_opaque(dfd, name, e, err);
            break;
        case PE_FILE:
            if (e->hardlink) {
                if (linkat(ufd, e->link, dfd, name, 0) < 0)
                    rc = kn_err_sys(err, "cannot create hard link '%s'", e->path);
                break;
            }
            rc = mat_file(&m, dfd, name, e, err);
            break;
        case PE_LINK:
            if (symlinkat(e->link, dfd, name) < 0)
                rc = kn_err_sys(err, "cannot create symlink '%s'", e->path);
            if (rc == 0)
                rc = set_owner(&m, dfd, name, e, err);
            if (rc == 0)
                rc = set_time(dfd, name, &e->mtime, e->path, err);
            break;
        case PE_SPECIAL:
            if (mknodat(dfd, name, e->mode, e->rdev) < 0)
                rc = kn_err_sys(err, "cannot create device '%s'", e->path);
            if (rc == 0)
                rc = set_owner(&m, dfd, name, e, err);
            if (rc == 0 && fchmodat(dfd, name, e->mode & 07777, 0) < 0)
                rc = kn_err_sys(err, "cannot chmod '%s'", e->path);
            if (rc == 0)
                rc = set_time(dfd, name, &e->mtime, e->path, err);
            break;
        case PE_WHITEOUT:
            rc = mat_whiteout(dfd, name, e, err);
            break;
        }
    }
    /* directories last, deepest first: their mode (which may forbid
     * writing) and mtime (which every child creation bumped) */
    for (size_t i = n; i-- > 0 && rc == 0;) {
        struct pentry *e = v[i];
        if (e->kind != PE_DIR)
            continue;
        if (fchmodat(ufd, e->path, e->mode & 07777, 0) < 0)
            rc = kn_err_sys(err, "cannot chmod '%s'", e->path);
        if (rc == 0)
            rc = set_time(ufd, e->path, &e->mtime, e->path, err);
    }
    if (m.pfd >= 0 && m.pfd != ufd)
        close(m.pfd);
    free(m.pdir);
    close(ufd);
    free(v);
    plan_release(&p);
    return rc;
}
