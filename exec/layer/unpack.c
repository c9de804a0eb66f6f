/*
 * Unpacking a layer blob into a directory, treating the tar as hostile.
 *
 * The compression is detected from the first bytes and must agree with the
 * media type. Entries are read with archive_read (never archive_write_disk:
 * it changes the umask process-wide and follows symlinks on its own terms)
 * and created one by one relative to a directory fd of dest:
 *   - a path is cleaned lexically ("/a" and "./a" are "a"; "a/../b" is "b");
 *     one that climbs above the root is refused;
 *   - the parent directory is opened with openat2(RESOLVE_IN_ROOT |
 *     RESOLVE_NO_MAGICLINKS), so a symlink in the layer (absolute or full of
 *     "..") is resolved inside dest and can never lead out of it; without
 *     openat2 each component is opened with O_NOFOLLOW instead (a symlinked
 *     parent is refused);
 *   - the last component is created with *at calls that do not follow it
 *     (O_EXCL, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW), replacing what was there;
 *   - hard link targets must be inside the tree and reached without any
 *     symlink; device nodes need EX_UNPACK_DEVICES; overlay xattrs in the
 *     tar are dropped (they could redirect an overlay mount);
 *   - entry count and total size are bounded (ex_unpack_limits).
 * Modes (setuid included) are applied after the content and ownership,
 * directory modes and mtimes at the very end.
 *
 * Whiteouts: with EX_UNPACK_OVERLAY they become overlay whiteouts (0/0 char
 * devices, opaque xattrs) where the kernel lets us, else stay ".wh." marker
 * files (rootless); without it they are applied (the named path, or the
 * directory's previous contents, are deleted).
 */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

bool ex_layer_no_openat2 = false;

#define READBUF_SIZE (1u << 20)

enum comp { C_NONE, C_GZIP, C_ZSTD };
static const char *const comp_name[] = {"uncompressed", "gzip-compressed", "zstd-compressed"};

struct src {
    int fd;
    unsigned char *buf;
    size_t peeked; /* bytes already in buf from detection, handed out first */
};

struct dirfix {
    char *path;
    mode_t mode;
    struct timespec mtime;
};

struct unpacker {
    const char *name;  /* the layer, for messages */
    const char *entry; /* the current entry, for messages */
    int rootfd;
    unsigned flags;
    uint64_t max_bytes, max_entries, bytes, entries;
    /* cached parent directory of the previous entry */
    char *parent_path;
    int parent_fd;
    KN_VEC(struct dirfix) dirs;
    struct kn_strv created; /* apply mode: paths this layer created (for opaque dirs) */
    bool created_sorted;
};

static la_ssize_t src_read(struct archive *a, void *ctx, const void **out)
{
    (void)a;
    struct src *s = ctx;
    *out = s->buf;
    if (s->peeked) {
        size_t n = s->peeked;
        s->peeked = 0;
        return (la_ssize_t)n;
    }
    for (;;) {
        ssize_t n = read(s->fd, s->buf, READBUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            archive_set_error(a, errno, "read error");
        return n;
    }
}

/* ---- paths ---- */

/* Cleans p lexically into out: no leading "/", no "." or empty components,
 * ".." folded. Returns -1 when ".." climbs above the root, else the depth. */
static int clean_path(const char *p, struct kn_buf *out)
{
    kn_buf_reset(out);
    kn_buf_adds(out, "");
    int depth = 0;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0)
            break;
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (depth == 0)
                return -1;
            char *slash = strrchr(out->data, '/');
            out->len = slash ? (size_t)(slash - out->data) : 0;
            out->data[out->len] = '\0';
            depth--;
        } else {
            if (out->len)
                kn_buf_addc(out, '/');
            kn_buf_add(out, p, n);
            depth++;
        }
        p += n;
    }
    return depth;
}

static long sys_openat2(int dirfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)flags, .resolve = resolve};
    return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* Opens the directory path (cleaned, relative) inside root. With
 * no_symlinks, a symlink anywhere on the way is an error (ELOOP). */
static int open_in_root(int rootfd, const char *path, bool no_symlinks)
{
    if (!*path)
        return fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    if (!ex_layer_no_openat2) {
        uint64_t res = RESOLVE_NO_MAGICLINKS |
                       (no_symlinks ? RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH : RESOLVE_IN_ROOT);
        for (;;) {
            long fd = sys_openat2(rootfd, path, flags, res);
            if (fd >= 0)
                return (int)fd;
            if (errno == EAGAIN || errno == EINTR)
                continue; /* a concurrent rename: retry */
            if (errno != ENOSYS)
                return -1;
            break;
        }
    }
    /* by hand: each component without following symlinks (".." is gone) */
    int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    char *copy = kn_strdup(path), *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c && fd >= 0; c = strtok_r(NULL, "/", &save)) {
        int next = openat(fd, c, flags | O_NOFOLLOW);
        int saved = errno;
        close(fd);
        fd = next;
        errno = saved;
    }
    free(copy);
    return fd;
}

static int unsafe(struct unpacker *u, struct kn_error **err, const char *fmt, ...) KN_PRINTF(3, 4);
static int unsafe(struct unpacker *u, struct kn_error **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = kn_vasprintf(fmt, ap);
    va_end(ap);
    kn_err_set(err, KN_E_UNSAFE, "layer '%s': entry '%s' %s", u->name, u->entry, m);
    free(m);
    return -1;
}

static int entry_sys(struct unpacker *u, struct kn_error **err, const char *what)
{
    int e = errno;
    kn_err_set(err, KN_E_IO, "layer '%s': entry '%s': %s: %s", u->name, u->entry, what,
               strerror(e));
    if (err && *err)
        (*err)->sys_errno = e;
    return -1;
}

static void drop_parent(struct unpacker *u)
{
    if (u->parent_fd >= 0)
        close(u->parent_fd);
    u->parent_fd = -1;
    free(u->parent_path);
    u->parent_path = NULL;
}

/* Creates the missing directories of path (cleaned) inside root. */
static int mkdir_parents(struct unpacker *u, const char *path, struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    const char *p = path;
    int rc = 0;
    while (rc == 0 && *p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (b.len)
            kn_buf_addc(&b, '/');
        kn_buf_add(&b, p, n);
        int fd = open_in_root(u->rootfd, b.data, false);
        if (fd >= 0) {
            close(fd);
        } else if (errno == ENOENT) {
            char *slash = strrchr(b.data, '/');
            char *dir = slash ? kn_strndup(b.data, (size_t)(slash - b.data)) : kn_strdup("");
            int pfd = open_in_root(u->rootfd, dir, false);
            free(dir);
            if (pfd < 0 || (mkdirat(pfd, slash ? slash + 1 : b.data, 0755) < 0 && errno != EEXIST))
                rc = entry_sys(u, err, "cannot create its parent directory");
            if (pfd >= 0)
                close(pfd);
        } else if (errno == ELOOP || errno == EXDEV) {
            rc = unsafe(u, err, "is behind a symlink");
        } else {
            rc = entry_sys(u, err, "cannot open its parent directory");
        }
        p += n;
        while (*p == '/')
            p++;
    }
    kn_buf_release(&b);
    return rc;
}

/* The parent directory fd of the entry at path (cleaned, non-empty). */
static int parent_of(struct unpacker *u, const char *path, const char **base, struct kn_error **err)
{
    const char *slash = strrchr(path, '/');
    *base = slash ? slash + 1 : path;
    size_t plen = slash ? (size_t)(slash - path) : 0;
    if (u->parent_path && strlen(u->parent_path) == plen && memcmp(u->parent_path, path, plen) == 0)
        return u->parent_fd;
    drop_parent(u);
    char *dir = kn_strndup(path, plen);
    int fd = open_in_root(u->rootfd, dir, false);
    if (fd < 0 && errno == ENOENT) {
        if (mkdir_parents(u, dir, err) < 0) {
            free(dir);
            return -1;
        }
        fd = open_in_root(u->rootfd, dir, false);
    }
    if (fd < 0) {
        if (errno == ELOOP || errno == EXDEV || errno == ENOTDIR)
            unsafe(u, err, "is behind a symlink or a non-directory");
        else
            entry_sys(u, err, "cannot open its parent directory");
        free(dir);
        return -1;
    }
    u->parent_path = dir;
    u->parent_fd = fd;
    return fd;
}

/* Removes what is at base (anything but a directory when keep_dir). */
static int clear_slot(struct unpacker *u, int pfd, const char *base, bool keep_dir,
                      struct kn_error **err)
{
    struct stat st;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : entry_sys(u, err, "cannot stat");
    if (S_ISDIR(st.st_mode) && keep_dir)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(pfd, base, 0) < 0 && errno != ENOENT)
            return entry_sys(u, err, "cannot replace");
        return 0;
    }
    /* the cached parent could be inside what goes away */
    int keep = u->parent_fd == pfd ? dup(pfd) : -1;
    if (keep >= 0) {
        drop_parent(u);
        pfd = keep;
    }
    int rc = ex_store_remove_tree_at(pfd, base, err);
    if (keep >= 0)
        close(keep);
    else
        drop_parent(u);
    if (rc < 0)
        return kn_err_wrap(err, "layer '%s': entry '%s'", u->name, u->entry);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool created_by_layer(struct unpacker *u, const char *path)
{
    if (!u->created_sorted && u->created.n) {
        qsort(u->created.v, u->created.n, sizeof(char *), cmp_str);
        u->created_sorted = true;
    }
    return u->created.n &&
           bsearch(&path, u->created.v, u->created.n, sizeof(char *), cmp_str) != NULL;
}

/* Apply mode: removes the children of dir (cleaned) this layer did not
 * create, recursively keeping the directories on the way to ones it did. */
static int clear_opaque(struct unpacker *u, const char *dir, int depth, struct kn_error **err)
{
    if (depth > EX_PATH_DEPTH_MAX)
        return unsafe(u, err, "is nested too deeply");
    int dfd = open_in_root(u->rootfd, dir, false);
    if (dfd < 0)
        return errno == ENOENT ? 0 : entry_sys(u, err, "cannot open the opaque directory");
    struct kn_strv names = {0};
    int dup_fd = dup(dfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        close(dfd);
        return entry_sys(u, err, "cannot read the opaque directory");
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            kn_strv_push(&names, de->d_name);
    closedir(d);
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        char *child = *dir ? kn_asprintf("%s/%s", dir, names.v[i]) : kn_strdup(names.v[i]);
        if (!created_by_layer(u, child)) {
            drop_parent(u);
            rc = ex_store_remove_tree_at(dfd, names.v[i], err);
        } else {
            struct stat st;
            if (fstatat(dfd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
                rc = clear_opaque(u, child, depth + 1, err);
        }
        free(child);
    }
    kn_strv_release(&names);
    close(dfd);
    return rc;
}

static void record_created(struct unpacker *u, const char *path)
{
    if (u->flags & EX_UNPACK_OVERLAY)
        return;
    kn_strv_push(&u->created, path);
    u->created_sorted = false;
}

static int whiteout(struct unpacker *u, struct archive_entry *e, const char *path, int pfd,
                    const char *base, struct kn_error **err)
{
    struct timespec mtime[2] = {{.tv_nsec = UTIME_OMIT},
                                {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    const char *dir_end = strrchr(path, '/');
    char *dir = dir_end ? kn_strndup(path, (size_t)(dir_end - path)) : kn_strdup("");
    int rc = 0;
    if (strcmp(base, EX_WH_OPAQUE) == 0) {
        if (u->flags & EX_UNPACK_OVERLAY) {
            /* user.: the sandbox mounts overlayfs with "userxattr" (required
             * in a user namespace), which ignores trusted.overlay.* */
            if (fsetxattr(pfd, "user.overlay.opaque", "y", 1, 0) < 0) {
                int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0);
                if (fd < 0)
                    rc = entry_sys(u, err, "cannot create the opaque marker");
                else
                    close(fd);
            }
        } else {
            rc = clear_opaque(u, dir, 0, err);
        }
    } else if (strncmp(base, EX_WH_PREFIX EX_WH_PREFIX, 8) == 0) {
        kn_debug("layer '%s': ignoring '%s'", u->name, path);
    } else {
        const char *victim = base + strlen(EX_WH_PREFIX);
        if (!*victim || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0) {
            rc = unsafe(u, err, "is an invalid whiteout");
        } else if (u->flags & EX_UNPACK_OVERLAY) {
            rc = clear_slot(u, pfd, victim, false, err);
            pfd = rc == 0 ? parent_of(u, path, &base, err) : -1;
            if (pfd < 0) {
                rc = -1;
            } else if (mknodat(pfd, victim, S_IFCHR | 0, makedev(0, 0)) == 0) {
                (void)utimensat(pfd, victim, mtime, AT_SYMLINK_NOFOLLOW);
            } else {
                /* unprivileged: keep the OCI marker file */
                int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0);
                if (fd < 0)
                    rc = entry_sys(u, err, "cannot create the whiteout marker");
                else
                    close(fd);
                if (fd >= 0)
                    (void)utimensat(pfd, base, mtime, AT_SYMLINK_NOFOLLOW);
            }
        } else {
            rc = clear_slot(u, pfd, victim, false, err);
        }
    }
    free(dir);
    return rc;
}

static bool is_overlay_xattr(const char *name)
{
    return strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0;
}

static int apply_xattrs(struct unpacker *u, struct archive_entry *e, int fd, struct kn_error **err)
{
    const char *name;
    const void *value;
    size_t size;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (is_overlay_xattr(name)) {
            kn_debug("layer '%s': dropping xattr '%s' of '%s'", u->name, name, u->entry);
            continue;
        }
        if (size > EX_XATTR_MAX)
            return unsafe(u, err, "has an xattr larger than %u bytes", EX_XATTR_MAX);
        if (fsetxattr(fd, name, value, size, 0) < 0) {
            if (errno == EPERM || errno == ENOTSUP || errno == EACCES) {
                kn_debug("layer '%s': cannot set xattr '%s' on '%s': %s", u->name, name, u->entry,
                         strerror(errno));
                continue;
            }
            return entry_sys(u, err, "cannot set an xattr");
        }
    }
    return 0;
}

static int write_content(struct unpacker *u, struct archive *a, int fd, int64_t size,
                         struct kn_error **err)
{
    const void *buf;
    size_t n;
    la_int64_t off;
    int r;
    while ((r = archive_read_data_block(a, &buf, &n, &off)) == ARCHIVE_OK) {
        if (off < 0 || off > size || (int64_t)n > size - off)
            return unsafe(u, err, "has data beyond its size");
        const char *p = buf;
        while (n > 0) {
            ssize_t w = pwrite(fd, p, n, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return entry_sys(u, err, "cannot write");
            p += w;
            n -= (size_t)w;
            off += w;
        }
    }
    if (r != ARCHIVE_EOF)
        return kn_err_set(err, KN_E_PARSE, "layer '%s': cannot read entry '%s': %s", u->name,
                          u->entry, archive_error_string(a));
    if (ftruncate(fd, size) < 0) /* trailing hole of a sparse file */
        return entry_sys(u, err, "cannot write");
    return 0;
}

static void set_owner_mode_time(struct unpacker *u, int pfd, const char *base,
                                struct archive_entry *e, bool is_link)
{
    if (u->flags & EX_UNPACK_OWNERS) {
        if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                     AT_SYMLINK_NOFOLLOW) < 0)
            kn_debug("layer '%s': cannot chown '%s': %s", u->name, u->entry, strerror(errno));
    }
    if (!is_link) /* just created by us, not a symlink */
        (void)fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0);
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    (void)utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
}

static int unpack_entry(struct unpacker *u, struct archive *a, struct archive_entry *e,
                        const char *path, struct kn_error **err)
{
    const char *base;
    int pfd = parent_of(u, path, &base, err);
    if (pfd < 0)
        return -1;
    if (strncmp(base, EX_WH_PREFIX, strlen(EX_WH_PREFIX)) == 0) {
        int rc = whiteout(u, e, path, pfd, base, err);
        return rc;
    }
    const char *hl = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (hl) {
        struct kn_buf t = KN_BUF_INIT;
        int rc = 0;
        if (clean_path(hl, &t) <= 0) {
            rc = unsafe(u, err, "is a hard link to '%s', outside the layer", hl);
        } else {
            const char *tslash = strrchr(t.data, '/');
            char *tdir = tslash ? kn_strndup(t.data, (size_t)(tslash - t.data)) : kn_strdup("");
            int tfd = open_in_root(u->rootfd, tdir, true);
            free(tdir);
            if (tfd < 0) {
                if (errno == ELOOP || errno == EXDEV || errno == ENOTDIR)
                    rc = unsafe(u, err, "is a hard link to '%s', behind a symlink", hl);
                else
                    rc = unsafe(u, err, "is a hard link to '%s', which does not exist", hl);
            } else {
                const char *tbase = tslash ? tslash + 1 : t.data;
                struct stat st;
                if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
                    rc = unsafe(u, err, "is a hard link to '%s', which does not exist", hl);
                else if (S_ISDIR(st.st_mode))
                    rc = unsafe(u, err, "is a hard link to directory '%s'", hl);
                else if (strcmp(t.data, path) == 0)
                    rc = 0; /* a link to itself: nothing to do */
                else if ((rc = clear_slot(u, pfd, base, false, err)) == 0) {
                    pfd = parent_of(u, path, &base, err);
                    if (pfd < 0)
                        rc = -1;
                    else if (linkat(tfd, tbase, pfd, base, 0) < 0)
                        rc = entry_sys(u, err, "cannot create the hard link");
                }
                close(tfd);
            }
        }
        kn_buf_release(&t);
        if (rc == 0)
            record_created(u, path);
        return rc;
    }
    if (type == AE_IFDIR) {
        if (clear_slot(u, pfd, base, true, err) < 0)
            return -1;
        pfd = parent_of(u, path, &base, err);
        if (pfd < 0)
            return -1;
        if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
            return entry_sys(u, err, "cannot create the directory");
        int dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            return entry_sys(u, err, "cannot open the directory");
        struct stat st;
        if (fstat(dfd, &st) == 0 && (st.st_mode & 0700) != 0700)
            (void)fchmod(dfd, 0700); /* until the end: we may need to write into it */
        if (u->flags & EX_UNPACK_OWNERS)
            if (fchown(dfd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
                kn_debug("layer '%s': cannot chown '%s': %s", u->name, path, strerror(errno));
        int rc = apply_xattrs(u, e, dfd, err);
        close(dfd);
        struct dirfix f = {kn_strdup(path),
                           archive_entry_perm(e) & 07777,
                           {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
        kn_vec_push(&u->dirs, f);
        record_created(u, path);
        return rc;
    }
    if (clear_slot(u, pfd, base, false, err) < 0)
        return -1;
    pfd = parent_of(u, path, &base, err);
    if (pfd < 0)
        return -1;
    int rc = 0;
    if (type == AE_IFREG) {
        int64_t size = archive_entry_size(e);
        if (size >= 0)
            u->bytes += (uint64_t)size; /* declared: a sparse file counts in full */
        if (size < 0 || (uint64_t)size > u->max_bytes || u->bytes > u->max_bytes)
            return unsafe(u, err, "exceeds the limit of %llu bytes uncompressed",
                          (unsigned long long)u->max_bytes);
        int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return entry_sys(u, err, "cannot create the file");
        rc = write_content(u, a, fd, size, err);
        if (rc == 0 && (u->flags & EX_UNPACK_OWNERS) &&
            fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0)
            kn_debug("layer '%s': cannot chown '%s': %s", u->name, path, strerror(errno));
        if (rc == 0)
            rc = apply_xattrs(u, e, fd, err);
        /* after content and chown (which clears setuid) */
        if (rc == 0 && fchmod(fd, archive_entry_perm(e) & 07777) < 0)
            rc = entry_sys(u, err, "cannot set the mode");
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT},
                                 {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
        if (rc == 0)
            (void)futimens(fd, ts);
        close(fd);
    } else if (type == AE_IFLNK) {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target)
            return unsafe(u, err, "is a symlink without a target");
        if (strlen(target) > EX_PATH_MAX)
            return unsafe(u, err, "has a symlink target longer than %d bytes", EX_PATH_MAX);
        if (symlinkat(target, pfd, base) < 0)
            return entry_sys(u, err, "cannot create the symlink");
        set_owner_mode_time(u, pfd, base, e, true);
    } else if (type == AE_IFIFO) {
        if (mknodat(pfd, base, S_IFIFO | 0600, 0) < 0)
            return entry_sys(u, err, "cannot create the fifo");
        set_owner_mode_time(u, pfd, base, e, false);
    } else if (type == AE_IFCHR || type == AE_IFBLK) {
        if (!(u->flags & EX_UNPACK_DEVICES))
            return unsafe(u, err, "is a device node, which is not allowed here");
        dev_t dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
        if (mknodat(pfd, base, (type == AE_IFCHR ? S_IFCHR : S_IFBLK) | 0600, dev) < 0)
            return entry_sys(u, err, "cannot create the device node");
        set_owner_mode_time(u, pfd, base, e, false);
    } else {
        return unsafe(u, err, "has an unsupported file type");
    }
    if (rc == 0)
        record_created(u, path);
    return rc;
}

static int finish_dirs(struct unpacker *u, struct kn_error **err)
{
    int rc = 0;
    /* deepest first, so a parent's mode never blocks a child's fixup */
    for (size_t i = u->dirs.n; i-- > 0;) {
        struct dirfix *f = &u->dirs.v[i];
        int fd = open_in_root(u->rootfd, f->path, true);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP || errno == EXDEV)
                continue; /* replaced or whited out later in the layer */
            u->entry = f->path;
            rc = entry_sys(u, err, "cannot open the directory");
            break;
        }
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, f->mtime};
        if (fchmod(fd, f->mode) < 0 || futimens(fd, ts) < 0) {
            u->entry = f->path;
            rc = entry_sys(u, err, "cannot set the mode and time");
        }
        close(fd);
        if (rc < 0)
            break;
    }
    return rc;
}

static enum comp detect(const unsigned char *b, size_t n)
{
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
        return C_GZIP;
    if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
        return C_ZSTD;
    return C_NONE;
}

static int media_comp(const char *mt, enum comp *out)
{
    if (kn_str_endswith(mt, "gzip"))
        *out = C_GZIP;
    else if (kn_str_endswith(mt, "zstd"))
        *out = C_ZSTD;
    else if (kn_str_endswith(mt, ".tar") || kn_str_endswith(mt, "tar"))
        *out = C_NONE;
    else
        return -1;
    return 0;
}

static int run(struct unpacker *u, struct archive *a, struct kn_error **err)
{
    struct kn_buf path = KN_BUF_INIT;
    char *last = kn_strdup("(first entry)");
    u->entry = last;
    int rc = 0;
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            rc = kn_err_set(err, KN_E_PARSE, "layer '%s': cannot read the entry after '%s': %s",
                            u->name, last, archive_error_string(a));
            break;
        }
        const char *raw = archive_entry_pathname(e);
        if (!raw) {
            rc = kn_err_set(err, KN_E_PARSE,
                            "layer '%s': the entry after '%s' has a name that cannot be decoded",
                            u->name, last);
            break;
        }
        free(last);
        last = kn_strdup(raw);
        u->entry = last;
        if (++u->entries > u->max_entries) {
            rc = unsafe(u, err, "exceeds the limit of %llu entries",
                        (unsigned long long)u->max_entries);
            break;
        }
        if (strlen(raw) > EX_PATH_MAX) {
            rc = unsafe(u, err, "has a path longer than %d bytes", EX_PATH_MAX);
            break;
        }
        int depth = clean_path(raw, &path);
        if (depth < 0) {
            rc = unsafe(u, err, "escapes the layer root");
            break;
        }
        if (depth > EX_PATH_DEPTH_MAX) {
            rc = unsafe(u, err, "is nested more than %d levels deep", EX_PATH_DEPTH_MAX);
            break;
        }
        if (depth == 0) {
            if (archive_entry_filetype(e) != AE_IFDIR) {
                rc = unsafe(u, err, "replaces the layer root");
                break;
            }
            continue; /* the root itself: dest keeps its own metadata */
        }
        if ((rc = unpack_entry(u, a, e, path.data, err)) < 0)
            break;
    }
    if (rc == 0)
        rc = finish_dirs(u, err);
    u->entry = NULL;
    free(last);
    kn_buf_release(&path);
    return rc;
}

int ex_layer_unpack_fd(int fd, const char *name, const char *media_type, const char *dest,
                       unsigned flags, const struct ex_unpack_limits *limits, struct kn_error **err)
{
    struct src src = {.fd = fd, .buf = kn_malloc(READBUF_SIZE)};
    /* peek the magic bytes (fd may be a pipe: keep them for libarchive) */
    while (src.peeked < 4) {
        ssize_t n = read(fd, src.buf + src.peeked, 4 - src.peeked);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            kn_err_sys(err, "cannot read layer '%s'", name);
            free(src.buf);
            return -1;
        }
        if (n == 0)
            break;
        src.peeked += (size_t)n;
    }
    enum comp c = detect(src.buf, src.peeked), want;
    if (media_type && media_comp(media_type, &want) < 0) {
        free(src.buf);
        return kn_err_set(err, KN_E_PARSE, "layer '%s' has an unsupported media type '%s'", name,
                          media_type);
    }
    if (media_type && want != c) {
        free(src.buf);
        return kn_err_set(err, KN_E_PARSE, "layer '%s' is %s but its media type is '%s'", name,
                          comp_name[c], media_type);
    }
    int rootfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        kn_err_sys(err, "cannot open '%s'", dest);
        free(src.buf);
        return -1;
    }
    struct archive *a = archive_read_new();
    if (!a)
        kn_die("out of memory");
    archive_read_support_format_tar(a);
    if (c == C_GZIP)
        archive_read_support_filter_gzip(a);
    else if (c == C_ZSTD)
        archive_read_support_filter_zstd(a);
    struct unpacker u = {
        .name = name,
        .rootfd = rootfd,
        .flags = flags,
        .parent_fd = -1,
        .max_bytes = limits && limits->max_bytes ? limits->max_bytes : EX_DEFAULT_MAX_BYTES,
        .max_entries = limits && limits->max_entries ? limits->max_entries : EX_DEFAULT_MAX_ENTRIES,
    };
    int rc;
    if (archive_read_open(a, &src, NULL, src_read, NULL) != ARCHIVE_OK)
        rc = kn_err_set(err, KN_E_PARSE, "layer '%s' is not a tar archive: %s", name,
                        archive_error_string(a));
    else {
        /* names are UTF-8 in PAX records: read them so whatever the
         * process locale (per thread, see writer.c) */
        locale_t loc = ex_layer_utf8_locale();
        locale_t old = loc ? uselocale(loc) : (locale_t)0;
        rc = run(&u, a, err);
        if (loc)
            uselocale(old);
    }
    archive_read_free(a);
    drop_parent(&u);
    for (size_t i = 0; i < u.dirs.n; i++)
        free(u.dirs.v[i].path);
    free(u.dirs.v);
    kn_strv_release(&u.created);
    close(rootfd);
    free(src.buf);
    return rc;
}

int ex_layer_unpack(struct ex_store *s, const char *digest, const char *media_type,
                    const char *dest, unsigned flags, const struct ex_unpack_limits *limits,
                    struct kn_error **err)
{
    int fd;
    if (digest[0] == '/') {
        fd = open(digest, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return kn_err_sys(err, "cannot open '%s'", digest);
    } else {
        fd = ex_store_blob_open(s, digest, err);
        if (fd < 0)
            return -1;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = ex_layer_unpack_fd(fd, digest, media_type, dest, flags, limits, err);
    close(fd);
    return rc;
}
