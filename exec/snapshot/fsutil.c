/*
 * Small filesystem helpers of the snapshot module: opening inside a root,
 * whiteout and opaque markers in overlay form, copying file bytes, and an
 * rm -rf that copes with the mode-000 directories overlayfs leaves in its
 * work dir. Everything works relative to directory fds.
 */
#include "exec/snapshot/internal.h"
#include "exec/store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

int ex_openat_in_root(int dirfd, const char *path, int flags, unsigned long long resolve)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

bool ex_dir_is_opaque(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    char v[4];
    bool opaque = false;
    ssize_t n = fgetxattr(fd, EX_OPAQUE_XATTR, v, sizeof(v));
    if (n == 1 && v[0] == 'y')
        opaque = true;
    if (!opaque) {
        n = fgetxattr(fd, EX_TRUSTED_OPAQUE_XATTR, v, sizeof(v));
        opaque = n == 1 && v[0] == 'y';
    }
    if (!opaque) {
        struct stat st;
        opaque = fstatat(fd, EX_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0;
    }
    close(fd);
    return opaque;
}

int ex_make_whiteout(int dirfd, const char *name, struct kn_error **err)
{
    if (mknodat(dirfd, name, S_IFCHR | 0, makedev(0, 0)) == 0)
        return 0;
    if (errno != EPERM && errno != EOPNOTSUPP)
        return kn_err_sys(err, "cannot create whiteout '%s'", name);
    char wh[NAME_MAX + 8];
    if (snprintf(wh, sizeof(wh), EX_WH_PREFIX "%s", name) >= (int)sizeof(wh))
        return kn_err_set(err, KN_E_UNSAFE, "name too long for a whiteout '%s'", name);
    int fd = openat(dirfd, wh, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return kn_err_sys(err, "cannot create whiteout '%s'", wh);
    close(fd);
    return 0;
}

int ex_make_opaque(int dirfd, const char *name, struct kn_error **err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return kn_err_sys(err, "cannot open '%s'", name);
    if (fsetxattr(fd, EX_OPAQUE_XATTR, "y", 1, 0) == 0) {
        close(fd);
        return 0;
    }
    int wfd = openat(fd, EX_WH_OPAQUE, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    int saved = errno;
    close(fd);
    if (wfd < 0) {
        errno = saved;
        return kn_err_sys(err, "cannot mark '%s' opaque", name);
    }
    close(wfd);
    return 0;
}

int ex_rmtree_at(int dfd, const char *what, struct kn_error **err)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return kn_err_sys(err, "cannot remove '%s'", what);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return kn_err_sys(err, "cannot read directory '%s'", what);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
            continue;
        rc = ex_store_remove_tree_at(dirfd(d), n, err);
    }
    closedir(d);
    if (rc < 0)
        kn_err_wrap(err, "cannot empty '%s'", what);
    return rc;
}
