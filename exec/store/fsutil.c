/*
 * Directory-fd helpers for the store: recursive removal and disk usage,
 * both walking with openat/fdopendir (no chdir, no symlink following), so
 * they are safe on hostile trees such as a half-unpacked layer.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deeper trees are refused rather than running out of descriptors (one per
 * level); the layer unpacker refuses deeper paths anyway. */
#define EX_MAX_DEPTH 800

static int rm_children(int dfd, const char *name, int depth, struct kn_error **err);

static int rm_entry(int dirfd, const char *name, int depth, struct kn_error **err)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    /* Linux says EISDIR for a directory; POSIX allows EPERM */
    if (errno != EISDIR && errno != EPERM)
        return kn_err_sys(err, "cannot remove '%s'", name);
    if (depth > EX_MAX_DEPTH)
        return kn_err_set(err, KN_E_UNSAFE, "cannot remove '%s': tree too deep", name);
    int dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 && errno == EACCES) {
        if (fchmodat(dirfd, name, 0700, 0) == 0)
            dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (dfd < 0) {
        if (errno == ENOENT)
            return 0;
        return kn_err_sys(err, "cannot open '%s'", name);
    }
    int rc = rm_children(dfd, name, depth, err);
    close(dfd);
    if (rc < 0)
        return -1;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return kn_err_sys(err, "cannot remove '%s'", name);
    return 0;
}

static int rm_children(int dfd, const char *name, int depth, struct kn_error **err)
{
    struct stat st;
    if (fstat(dfd, &st) == 0 && (st.st_mode & 0700) != 0700)
        (void)fchmod(dfd, (st.st_mode & 07777) | 0700);
    int dup_fd = dup(dfd);
    if (dup_fd < 0)
        return kn_err_sys(err, "cannot read directory '%s'", name);
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        close(dup_fd);
        return kn_err_sys(err, "cannot read directory '%s'", name);
    }
    /* collect names first: removing while iterating may skip entries */
    struct kn_strv names = {0};
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        kn_strv_push(&names, de->d_name);
    }
    closedir(d);
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++)
        rc = rm_entry(dfd, names.v[i], depth + 1, err);
    kn_strv_release(&names);
    return rc;
}

int ex_rm_rf_at(int dirfd, const char *name, struct kn_error **err)
{
    return rm_entry(dirfd, name, 0, err);
}

int ex_store_remove_tree_at(int dirfd, const char *name, struct kn_error **err)
{
    return rm_entry(dirfd, name, 0, err);
}

int ex_store_remove_tree(const char *path, struct kn_error **err)
{
    return ex_rm_rf_at(AT_FDCWD, path, err);
}

void ex_store_remove_trees(struct kn_strv *dirs)
{
    for (size_t i = 0; i < dirs->n; i++) {
        struct kn_error *e = NULL;
        if (ex_store_remove_tree(dirs->v[i], &e) < 0) {
            kn_warn("cannot remove '%s': %s", dirs->v[i], e->msg);
            kn_err_free(e);
        }
    }
    kn_strv_release(dirs);
}

static int du_dir(int dfd, uint64_t *bytes, int depth, struct kn_error **err)
{
    if (depth > EX_MAX_DEPTH)
        return kn_err_set(err, KN_E_UNSAFE, "directory tree too deep");
    int dup_fd = dup(dfd);
    if (dup_fd < 0)
        return kn_err_sys(err, "cannot read directory");
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        close(dup_fd);
        return kn_err_sys(err, "cannot read directory");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* removed meanwhile */
        *bytes += (uint64_t)st.st_blocks * 512;
        if (S_ISDIR(st.st_mode)) {
            int cfd = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0)
                continue;
            rc = du_dir(cfd, bytes, depth + 1, err);
            close(cfd);
        }
    }
    closedir(d);
    return rc;
}

int ex_du_at(int dirfd, const char *name, uint64_t *bytes, struct kn_error **err)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return kn_err_sys(err, "cannot stat '%s'", name);
    }
    *bytes += (uint64_t)st.st_blocks * 512;
    if (!S_ISDIR(st.st_mode))
        return 0;
    int dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : kn_err_sys(err, "cannot open '%s'", name);
    int rc = du_dir(dfd, bytes, 0, err);
    close(dfd);
    return rc;
}

int ex_store_copy_fd(int in, int out, const char *name, struct kn_error **err)
{
    if (ioctl(out, FICLONE, in) == 0)
        return 0;
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)
            break;
        return kn_err_sys(err, "cannot copy '%s'", name);
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return kn_err_sys(err, "cannot read '%s'", name);
        }
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return kn_err_sys(err, "cannot write '%s'", name);
            }
            off += w;
        }
    }
}
