/*
 * The sandbox child, from clone to exec. Everything here is
 * async-signal-safe: the child of a multi-threaded process may not touch
 * malloc, stdio or locks, so every string, path and buffer was prepared by
 * the parent in struct sb_plan, and the mounts use the new mount API
 * (fsopen / open_tree / move_mount onto O_PATH fds resolved with
 * RESOLVE_IN_ROOT), which needs no path strings built at run time and
 * cannot be tricked by symlinks in the image into mounting over the host.
 *
 * The child is pid 1 of the step's pid namespace: it waits until the parent
 * has written its id maps, builds the root, pivots into it, detaches the
 * old root, forks the command and reaps until the command exits, then exits
 * with the command's status (the kernel kills whatever else is left).
 */
#include "exec/sandbox/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#define CHILD_PATH_MAX 4096

static void cat(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(dst);
    while (s && *s && n + 1 < cap)
        dst[n++] = *s++;
    dst[n] = 0;
}

static KN_NORETURN void fail4(const struct sb_plan *p, int errnum, const char *a, const char *b,
                              const char *c, const char *d)
{
    struct sb_child_error e;
    memset(&e, 0, sizeof(e));
    e.errnum = errnum;
    cat(e.msg, sizeof(e.msg), a);
    cat(e.msg, sizeof(e.msg), b);
    cat(e.msg, sizeof(e.msg), c);
    cat(e.msg, sizeof(e.msg), d);
    if (write(p->err_wr, &e, sizeof(e)) < 0) {
        /* nothing left to tell anyone */
    }
    _exit(126);
}

static KN_NORETURN void fail(const struct sb_plan *p, const char *what, const char *target)
{
    int e = errno;
    fail4(p, e, what, target ? " '/" : "", target ? target : "", target ? "'" : "");
}

static int in_root(int rootfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
}

/* Opens (O_PATH) rel inside the root, creating missing components (the last
 * one a file when `file`). *existing = how many components existed. */
static int make_target(int rootfd, const char *rel, bool file, int *existing)
{
    char buf[CHILD_PATH_MAX];
    size_t len = strlen(rel);
    if (len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, rel, len + 1);
    int comp = 0;
    *existing = -1;
    for (size_t i = 0; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        if (i == 0 || buf[i - 1] == '/')
            continue;
        bool last = buf[i] == 0;
        buf[i] = 0;
        int fd = in_root(rootfd, buf, O_PATH);
        if (fd < 0 && errno == ENOENT) {
            if (*existing < 0)
                *existing = comp;
            char *slash = strrchr(buf, '/');
            int pfd;
            const char *name;
            if (slash) {
                *slash = 0;
                pfd = in_root(rootfd, buf, O_PATH | O_DIRECTORY);
                *slash = '/';
                name = slash + 1;
            } else {
                pfd = in_root(rootfd, "", O_PATH | O_DIRECTORY);
                name = buf;
            }
            if (pfd < 0)
                return -1;
            int rc;
            if (last && file) {
                rc = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (rc >= 0)
                    close(rc);
            } else {
                rc = mkdirat(pfd, name, 0755);
            }
            int saved = errno;
            close(pfd);
            if (rc < 0 && saved != EEXIST) {
                errno = saved;
                return -1;
            }
            fd = in_root(rootfd, buf, O_PATH);
        }
        if (fd < 0)
            return -1;
        comp++;
        if (last) {
            if (*existing < 0)
                *existing = comp;
            return fd;
        }
        close(fd);
        buf[i] = '/';
    }
    /* the root itself */
    *existing = 0;
    return in_root(rootfd, "", O_PATH | O_DIRECTORY);
}

static int attach(int mfd, int tfd)
{
    return move_mount(mfd, "", tfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

static int set_attr(int mfd, unsigned attr)
{
    if (!attr)
        return 0;
    struct mount_attr a;
    memset(&a, 0, sizeof(a));
    a.attr_set = attr;
    return mount_setattr(mfd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a));
}

/* A new filesystem of `type` with "k=v,flag,..." options; returns a mount fd. */
static int new_fs(const char *type, const char *opts, unsigned attr)
{
    int fd = fsopen(type, FSOPEN_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[1024];
    size_t len = opts ? strlen(opts) : 0;
    if (len >= sizeof(buf)) {
        close(fd);
        errno = E2BIG;
        return -1;
    }
    if (opts)
        memcpy(buf, opts, len + 1);
    char *p = len ? buf : NULL;
    while (p) {
        char *next = strchr(p, ',');
        if (next)
            *next++ = 0;
        char *eq = strchr(p, '=');
        int rc;
        if (eq) {
            *eq = 0;
            rc = fsconfig(fd, FSCONFIG_SET_STRING, p, eq + 1, 0);
        } else {
            rc = fsconfig(fd, FSCONFIG_SET_FLAG, p, NULL, 0);
        }
        if (rc < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        p = next;
    }
    if (fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int mfd = fsmount(fd, FSMOUNT_CLOEXEC, attr);
    int e = errno;
    close(fd);
    errno = e;
    return mfd;
}

static int clone_tree(int dirfd, const char *path, unsigned attr)
{
    int mfd =
        open_tree(dirfd, path,
                  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | (*path ? 0 : AT_EMPTY_PATH));
    if (mfd < 0)
        return -1;
    if (set_attr(mfd, attr) < 0) {
        int e = errno;
        close(mfd);
        errno = e;
        return -1;
    }
    return mfd;
}

static void itoa_u(unsigned v, char *out)
{
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

static int copy_secret(const struct sb_plan *p, const struct sb_op *op, int stagefd,
                       const char *name)
{
    int in = open(op->src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        fail(p, "cannot open secret source for", op->target);
    int out = openat(stagefd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        fail(p, "cannot create secret", op->target);
    char buf[4096];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail(p, "cannot read secret for", op->target);
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0)
                fail(p, "cannot write secret", op->target);
            off += w;
        }
    }
    if (fchown(out, op->uid, op->gid) < 0)
        fail(p, "cannot chown secret", op->target);
    if (fchmod(out, op->mode & 07777) < 0)
        fail(p, "cannot chmod secret", op->target);
    close(out);
    close(in);
    return 0;
}

static void do_op(const struct sb_plan *p, int idx, int rootfd, int *stagefd)
{
    const struct sb_op *op = &p->ops[idx];
    if (op->kind == SB_OP_SYMLINK) {
        char buf[CHILD_PATH_MAX];
        size_t len = strlen(op->target);
        if (len >= sizeof(buf))
            return;
        memcpy(buf, op->target, len + 1);
        char *slash = strrchr(buf, '/');
        const char *name = buf;
        if (slash) {
            *slash = 0;
            name = slash + 1;
        }
        int pfd = in_root(rootfd, slash ? buf : "", O_PATH | O_DIRECTORY);
        if (pfd < 0 || (symlinkat(op->src, pfd, name) < 0 && errno != EEXIST))
            fail(p, "cannot create symlink", op->target);
        close(pfd);
        return;
    }
    int tfd, existing = 0;
    if (op->kind == SB_OP_MASK || op->kind == SB_OP_READONLY) {
        tfd = in_root(rootfd, op->target, O_PATH | O_NOFOLLOW);
        if (tfd < 0) {
            if (op->optional)
                return;
            fail(p, "cannot open", op->target);
        }
    } else {
        tfd = make_target(rootfd, op->target, op->file, &existing);
        if (tfd < 0) {
            if (op->optional)
                return;
            fail(p, "cannot create mountpoint", op->target);
        }
    }
    if (op->track) {
        struct sb_created c = {.op = idx, .existing = existing};
        if (write(p->rep_wr, &c, sizeof(c)) < 0) {
            /* the parent then leaves the mountpoint in place */
        }
    }
    int mfd = -1;
    switch (op->kind) {
    case SB_OP_FS:
        mfd = new_fs(op->src, op->opts, op->attr);
        break;
    case SB_OP_BIND:
        mfd = clone_tree(op->in_host ? AT_FDCWD : rootfd, op->src, op->attr);
        break;
    case SB_OP_OVERLAY: {
        int fd = fsopen("overlay", FSOPEN_CLOEXEC);
        if (fd >= 0 && fsconfig(fd, FSCONFIG_SET_STRING, "lowerdir", op->src, 0) == 0 &&
            fsconfig(fd, FSCONFIG_SET_STRING, "upperdir", op->upper, 0) == 0 &&
            fsconfig(fd, FSCONFIG_SET_STRING, "workdir", op->work, 0) == 0 &&
            fsconfig(fd, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) == 0 &&
            fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
            mfd = fsmount(fd, FSMOUNT_CLOEXEC, op->attr);
        if (fd >= 0) {
            int e = errno;
            close(fd);
            errno = e;
        }
        break;
    }
    case SB_OP_SECRET: {
        if (*stagefd < 0) {
            int sfd = new_fs("tmpfs", "mode=0700,size=64m",
                             MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
            int dfd = sfd >= 0 ? open(op->stage, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
            if (sfd < 0 || dfd < 0 || attach(sfd, dfd) < 0)
                fail(p, "cannot mount the secret stage for", op->target);
            close(sfd);
            close(dfd);
            *stagefd = open(op->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (*stagefd < 0)
                fail(p, "cannot open the secret stage for", op->target);
        }
        char name[16] = "s";
        itoa_u((unsigned)idx, name + 1);
        copy_secret(p, op, *stagefd, name);
        mfd = clone_tree(*stagefd, name, op->attr);
        break;
    }
    case SB_OP_MASK: {
        struct stat st;
        if (fstat(tfd, &st) < 0)
            fail(p, "cannot stat", op->target);
        if (S_ISDIR(st.st_mode))
            mfd = new_fs("tmpfs", "size=0", MOUNT_ATTR_RDONLY);
        else
            mfd = clone_tree(AT_FDCWD, "/dev/null", 0);
        break;
    }
    case SB_OP_READONLY:
        mfd = clone_tree(tfd, "", op->attr);
        break;
    case SB_OP_SYMLINK:
        break;
    }
    if (mfd < 0 || attach(mfd, tfd) < 0) {
        if (op->optional) {
            if (mfd >= 0)
                close(mfd);
            close(tfd);
            return;
        }
        fail(p, "cannot mount on", op->target);
    }
    close(mfd);
    close(tfd);
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
}

static bool cap_kept(int cap)
{
    static const int keep[] = {
        CAP_CHOWN,      CAP_DAC_OVERRIDE, CAP_FOWNER,      CAP_FSETID,           CAP_KILL,
        CAP_SETGID,     CAP_SETUID,       CAP_SETPCAP,     CAP_NET_BIND_SERVICE, CAP_NET_RAW,
        CAP_SYS_CHROOT, CAP_MKNOD,        CAP_AUDIT_WRITE, CAP_SETFCAP};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        if (keep[i] == cap)
            return true;
    return false;
}

/* Bounding, ambient and effective sets down to Docker's default set. The
 * init does this too, so the command (same uid, same capabilities) may look
 * at /proc/1 but the init holds nothing more than the command. */
static void drop_caps(const struct sb_plan *p)
{
    for (int cap = 0; cap <= p->cap_last; cap++) {
        if (!cap_kept(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL &&
            p->userns)
            fail(p, "cannot drop capabilities", NULL);
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    for (int cap = 0; cap <= p->cap_last && cap < 64; cap++) {
        if (!cap_kept(cap))
            continue;
        data[cap / 32].effective |= 1u << (cap % 32);
        data[cap / 32].permitted |= 1u << (cap % 32);
    }
    if (syscall(SYS_capset, &hdr, data) < 0 && p->userns)
        fail(p, "cannot set capabilities", NULL);
}

/* The credential calls go straight to the kernel. The child was made by a
 * raw clone of a multi-threaded process, so glibc's copy of the thread list
 * still names the parent's threads; its setgroups/setresuid/setresgid
 * wrappers signal every thread on it to change credentials together and
 * wait for each, forever for a thread that was being created at the time
 * of the clone (seen: a build hung in setgroups). The kernel's calls change
 * the calling thread, the child's only one. */
static int raw_setgroups(size_t n, const gid_t *groups)
{
    return (int)syscall(SYS_setgroups, n, groups);
}

static void drop_privileges(const struct sb_plan *p)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(p, "cannot set no_new_privs", NULL);
    if (p->set_groups && raw_setgroups(p->n_groups, p->groups) < 0)
        fail(p, "cannot set supplementary groups", NULL);
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
        fail(p, "cannot switch to the step's group", NULL);
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
        fail(p, "cannot switch to the step's user", NULL);
}

static KN_NORETURN void exec_command(const struct sb_plan *p)
{
    if (setsid() < 0) {
        /* already a session leader: fine */
    }
    if (chdir(p->workdir[0] ? p->workdir : "/") < 0)
        fail(p, "cannot enter the working directory", p->workdir);
    drop_privileges(p);
    if (!p->insecure && sb_seccomp_install() < 0)
        fail(p, "cannot install the seccomp filter", NULL);
    int errfd = p->err_wr;
    if (errfd > 3)
        close_range(3, (unsigned)errfd - 1, 0);
    close_range((unsigned)errfd + 1, ~0U, 0);
    const char *cmd = p->argv[0];
    struct sb_child_error e;
    memset(&e, 0, sizeof(e));
    e.exec_failed = 1;
    cat(e.msg, sizeof(e.msg), cmd);
    if (strchr(cmd, '/')) {
        execve(cmd, p->argv, p->envp);
        e.errnum = errno;
    } else {
        int first = ENOENT;
        const char *dir = p->path_env;
        char buf[CHILD_PATH_MAX];
        while (dir) {
            const char *colon = strchr(dir, ':');
            size_t dl = colon ? (size_t)(colon - dir) : strlen(dir);
            size_t cl = strlen(cmd);
            if (dl + cl + 2 < sizeof(buf)) {
                memcpy(buf, dl ? dir : ".", dl ? dl : 1);
                size_t at = dl ? dl : 1;
                buf[at++] = '/';
                memcpy(buf + at, cmd, cl + 1);
                execve(buf, p->argv, p->envp);
                if (errno != ENOENT && errno != ENOTDIR && first == ENOENT)
                    first = errno;
            }
            dir = colon ? colon + 1 : NULL;
        }
        e.errnum = first;
    }
    if (write(errfd, &e, sizeof(e)) < 0) {
        /* nothing left to tell anyone */
    }
    _exit(127);
}

static void setup_root(const struct sb_plan *p)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        fail(p, "cannot make the mount tree private", NULL);
    int rc = ex_snapshot_rw_mount(p->rw, p->root);
    if (rc < 0) {
        errno = -rc;
        fail(p, "cannot mount the root filesystem", NULL);
    }
    int rootfd = open(p->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        fail(p, "cannot open the root filesystem", NULL);
    int stagefd = -1;
    for (size_t i = 0; i < p->n_ops; i++)
        do_op(p, (int)i, rootfd, &stagefd);
    if (stagefd >= 0)
        close(stagefd);
    if (fchdir(rootfd) < 0)
        fail(p, "cannot enter the root filesystem", NULL);
    close(rootfd);
    /* pivot onto ".", then detach the old root stacked under it */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail(p, "cannot pivot_root", NULL);
    if (umount2(".", MNT_DETACH) < 0)
        fail(p, "cannot detach the old root", NULL);
    if (chdir("/") < 0)
        fail(p, "cannot enter the root filesystem", NULL);
}

KN_NORETURN void sb_child_main(const struct sb_plan *p)
{
    char c;
    if (read(p->sync_rd, &c, 1) != 1)
        _exit(125); /* the parent gave up */
    close(p->sync_rd);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (dup2(p->stdin_rd, 0) < 0 || dup2(p->stdout_wr, 1) < 0 || dup2(p->stderr_wr, 2) < 0)
        fail(p, "cannot set up stdio", NULL);
    if (p->userns && p->set_groups)
        raw_setgroups(0, NULL);
    if (p->pivot) {
        setup_root(p);
    } else {
        if (chroot(p->root) < 0 || chdir("/") < 0)
            fail(p, "cannot chroot", NULL);
    }
    close(p->rep_wr);
    if ((p->clone_flags & CLONE_NEWUTS) && p->hostname &&
        sethostname(p->hostname, strlen(p->hostname)) < 0)
        fail(p, "cannot set the hostname", NULL);
    if (p->loopback_up)
        loopback_up();
    int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int existing;
    int wfd = p->workdir[0] ? make_target(rootfd, p->workdir, false, &existing) : -1;
    if (p->workdir[0] && wfd < 0)
        fail(p, "cannot create the working directory", p->workdir);
    if (wfd >= 0)
        close(wfd);
    close(rootfd);

    if ((p->userns || geteuid() == 0) && !p->insecure)
        drop_caps(p);
    pid_t cmd = _Fork();
    if (cmd < 0)
        fail(p, "cannot fork the command", NULL);
    if (cmd == 0)
        exec_command(p);
    /* init: keep nothing of the host open, reap until the command is done */
    close_range(0, ~0U, 0);
    int status = 0;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r == cmd) {
            status = st;
            break;
        }
    }
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        _exit(128 + WTERMSIG(status));
    _exit(125);
}
