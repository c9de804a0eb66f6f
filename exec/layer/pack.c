/*
 * Packing a diff directory into a layer: a depth-first walk with openat /
 * fdopendir (never chdir, never libarchive's disk reader), each directory's
 * names sorted byte-wise so parents come before children and the same tree
 * always gives the same tar. Overlay whiteouts become OCI ones: a 0/0 char
 * device NAME becomes ".wh.NAME", a directory with an overlay opaque xattr
 * gets a ".wh..wh..opq" entry right after its own. Overlay-internal xattrs
 * are dropped, all others kept. A regular file seen again under another
 * name (same dev+ino) becomes a hard link entry to the first name.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

struct link_slot {
    dev_t dev;
    ino_t ino;
    char *path; /* NULL: empty slot */
};

struct link_map {
    struct link_slot *v;
    size_t cap, n; /* cap: power of two */
};

static size_t link_hash(dev_t dev, ino_t ino, size_t cap)
{
    uint64_t h = ((uint64_t)dev * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)ino * 0xc2b2ae3d27d4eb4full);
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* Returns the first path of (dev, ino), or records path and returns NULL. */
static const char *link_seen(struct link_map *m, dev_t dev, ino_t ino, const char *path)
{
    if ((m->n + 1) * 2 > m->cap) {
        struct link_map g = {.cap = m->cap ? m->cap * 2 : 64};
        g.v = kn_calloc(g.cap, sizeof(*g.v));
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->v[i].path)
                continue;
            size_t j = link_hash(m->v[i].dev, m->v[i].ino, g.cap);
            while (g.v[j].path)
                j = (j + 1) & (g.cap - 1);
            g.v[j] = m->v[i];
        }
        g.n = m->n;
        free(m->v);
        *m = g;
    }
    size_t j = link_hash(dev, ino, m->cap);
    for (; m->v[j].path; j = (j + 1) & (m->cap - 1))
        if (m->v[j].dev == dev && m->v[j].ino == ino)
            return m->v[j].path;
    m->v[j] = (struct link_slot){dev, ino, kn_strdup(path)};
    m->n++;
    return NULL;
}

static void link_map_release(struct link_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].path);
    free(m->v);
}

struct packer {
    struct ex_layer_writer *w;
    struct link_map links;
    char *names; /* xattr name list buffer */
    size_t names_cap;
    char *value; /* xattr value buffer (EX_XATTR_MAX) */
};

static bool is_overlay_xattr(const char *name)
{
    return kn_str_startswith(name, "trusted.overlay.") || kn_str_startswith(name, "user.overlay.");
}

/* Queues the xattrs of fd (or of the path at procpath when fd < 0) on the
 * writer; *opaque tells whether an overlay opaque xattr is set. */
static int add_xattrs(struct packer *p, int fd, const char *procpath, const char *path,
                      bool *opaque, struct kn_error **err)
{
    *opaque = false;
    ssize_t n;
    for (;;) {
        n = fd >= 0 ? flistxattr(fd, p->names, p->names_cap)
                    : llistxattr(procpath, p->names, p->names_cap);
        if (n >= 0)
            break;
        if (errno == ENOTSUP || errno == ENOENT)
            return 0;
        if (errno != ERANGE)
            return kn_err_sys(err, "cannot list the xattrs of '%s'", path);
        ssize_t need = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(procpath, NULL, 0);
        if (need < 0)
            return kn_err_sys(err, "cannot list the xattrs of '%s'", path);
        p->names_cap = (size_t)need + 256;
        p->names = kn_realloc(p->names, p->names_cap);
    }
    for (const char *name = p->names; name < p->names + n; name += strlen(name) + 1) {
        if (!*name)
            continue;
        bool ovl = is_overlay_xattr(name);
        if (ovl && !(strcmp(name, "trusted.overlay.opaque") == 0 ||
                     strcmp(name, "user.overlay.opaque") == 0))
            continue;
        ssize_t vn = fd >= 0 ? fgetxattr(fd, name, p->value, EX_XATTR_MAX)
                             : lgetxattr(procpath, name, p->value, EX_XATTR_MAX);
        if (vn < 0) {
            if (errno == ENODATA)
                continue;
            return kn_err_sys(err, "cannot read xattr '%s' of '%s'", name, path);
        }
        if (ovl) {
            if (vn == 1 && p->value[0] == 'y')
                *opaque = true;
            continue;
        }
        if (ex_layer_writer_add_xattr(p->w, name, p->value, (size_t)vn, err) < 0)
            return -1;
    }
    return 0;
}

static int add_marker(struct packer *p, const char *path, const struct stat *like,
                      struct kn_error **err)
{
    struct stat st = {.st_mode = S_IFREG, .st_mtim = like->st_mtim};
    return ex_layer_writer_add(p->w, path, &st, -1, NULL, err);
}

static int walk(struct packer *p, int dfd, const char *prefix, int depth, bool skip_opq,
                struct kn_error **err);

static int pack_path(struct packer *p, int dfd, const char *name, const char *prefix,
                     const char *path, int depth, struct kn_error **err)
{
    struct stat st;
    int rc = 0;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return kn_err_sys(err, "cannot stat '%s'", path);
    mode_t type = st.st_mode & S_IFMT;
    if (type == S_IFCHR && st.st_rdev == 0) {
        /* an overlay whiteout */
        char *wh = kn_asprintf("%s" EX_WH_PREFIX "%s", prefix, name);
        rc = add_marker(p, wh, &st, err);
        free(wh);
        return rc;
    }
    if (type == S_IFSOCK) {
        kn_debug("layer: skipping socket '%s'", path);
        return rc;
    }
    bool opaque = false;
    if (type == S_IFDIR) {
        int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0) {
            return kn_err_sys(err, "cannot open directory '%s'", path);
        }
        rc = add_xattrs(p, cfd, NULL, path, &opaque, err);
        if (rc == 0)
            rc = ex_layer_writer_add(p->w, path, &st, -1, NULL, err);
        char *sub = kn_asprintf("%s/", path);
        if (rc == 0 && opaque) {
            char *opq = kn_asprintf("%s" EX_WH_OPAQUE, sub);
            rc = add_marker(p, opq, &st, err);
            free(opq);
        }
        if (rc == 0)
            rc = walk(p, cfd, sub, depth + 1, opaque, err);
        free(sub);
        close(cfd);
        return rc;
    }
    if (type == S_IFREG) {
        const char *first =
            st.st_nlink > 1 ? link_seen(&p->links, st.st_dev, st.st_ino, path) : NULL;
        if (first) {
            rc = ex_layer_writer_add(p->w, path, &st, -1, first, err);
            return rc;
        }
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            return kn_err_sys(err, "cannot open '%s'", path);
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        rc = add_xattrs(p, fd, NULL, path, &opaque, err);
        if (rc == 0)
            rc = ex_layer_writer_add(p->w, path, &st, fd, NULL, err);
        close(fd);
        return rc;
    }
    /* symlinks, fifos, devices: no fd to open safely (a fifo would block) */
    char proc[64 + NAME_MAX];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d/%s", dfd, name);
    rc = add_xattrs(p, -1, proc, path, &opaque, err);
    if (rc < 0)
        return rc;
    if (type == S_IFLNK) {
        char target[EX_PATH_MAX + 2];
        ssize_t n = readlinkat(dfd, name, target, sizeof(target));
        if (n < 0) {
            return kn_err_sys(err, "cannot read symlink '%s'", path);
        }
        if ((size_t)n >= sizeof(target) - 1) {
            return kn_err_set(err, KN_E_UNSAFE, "symlink '%s' has a target longer than %d bytes",
                              path, EX_PATH_MAX);
        }
        target[n] = '\0';
        rc = ex_layer_writer_add(p->w, path, &st, -1, target, err);
    } else {
        rc = ex_layer_writer_add(p->w, path, &st, -1, NULL, err);
    }
    return rc;
}

static int pack_one(struct packer *p, int dfd, const char *name, const char *prefix, int depth,
                    struct kn_error **err)
{
    char *path = kn_asprintf("%s%s", prefix, name);
    int rc = pack_path(p, dfd, name, prefix, path, depth, err);
    free(path);
    return rc;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(struct packer *p, int dfd, const char *prefix, int depth, bool skip_opq,
                struct kn_error **err)
{
    if (depth > EX_PATH_DEPTH_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "directory '%s' is nested too deeply", prefix);
    int dup_fd = dup(dfd);
    if (dup_fd < 0)
        return kn_err_sys(err, "cannot read directory '%s'", prefix);
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        close(dup_fd);
        return kn_err_sys(err, "cannot read directory '%s'", prefix);
    }
    struct kn_strv names = {0};
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (skip_opq && strcmp(de->d_name, EX_WH_OPAQUE) == 0)
            continue; /* already emitted from the opaque xattr */
        kn_strv_push(&names, de->d_name);
    }
    int rc = 0;
    if (errno)
        rc = kn_err_sys(err, "cannot read directory '%s'", prefix);
    closedir(d);
    if (names.n)
        qsort(names.v, names.n, sizeof(*names.v), cmp_name);
    for (size_t i = 0; i < names.n && rc == 0; i++)
        rc = pack_one(p, dfd, names.v[i], prefix, depth, err);
    kn_strv_release(&names);
    return rc;
}

int ex_layer_pack_dir(struct ex_store *s, const char *dir, const struct ex_layer_opts *opts,
                      struct ex_layer_info *out, struct kn_error **err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kn_err_sys(err, "cannot open directory '%s'", dir);
    struct packer p = {0};
    p.w = ex_layer_writer_new(s, opts, err);
    if (!p.w) {
        close(dfd);
        return -1;
    }
    p.value = kn_malloc(EX_XATTR_MAX);
    p.names_cap = 4096;
    p.names = kn_malloc(p.names_cap);
    int rc = walk(&p, dfd, "", 0, false, err);
    close(dfd);
    if (rc == 0)
        rc = ex_layer_writer_finish(p.w, out, err);
    else
        ex_layer_writer_abort(p.w);
    link_map_release(&p.links);
    free(p.names);
    free(p.value);
    if (rc < 0)
        kn_err_wrap(err, "cannot pack '%s'", dir);
    return rc;
}
