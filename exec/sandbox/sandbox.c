/*
 * The sandbox, parent side: the lifecycle of one RUN step.
 *
 *   prepare   resolve the user in the step's own /etc/passwd, build env,
 *             write /etc/hosts, resolv.conf and hostname into a scratch
 *             dir, turn the spec's mounts into a plan of sb_ops, open the
 *             pipes (all O_CLOEXEC);
 *   clone     clone3(CLONE_NEWUSER|NEWNS|NEWPID|NEWIPC|NEWUTS[|NEWNET],
 *             CLONE_PIDFD); the child blocks on the sync pipe;
 *   map       the parent writes the id maps (or runs newuidmap/newgidmap)
 *             and releases the child, which builds the root (child.c);
 *   stream    poll on stdout, stderr and the pidfd; output goes to the
 *             callback a line at a time and into a ring of the last lines;
 *   reap      waitid on the pidfd; the child's error pipe says whether the
 *             setup or the exec failed; mountpoints the child had to create
 *             in the writable layer are removed again.
 *
 * Cancellation is an atomic flag plus SIGKILL to the pid-namespace init:
 * the kernel then kills every process of the namespace.
 */
#include "exec/sandbox/internal.h"
#include "exec/store/store.h"

#include "ir/base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

extern char **environ;

#define SB_TAIL_LINES   10
#define SB_LINE_MAX     (64u * 1024) /* a longer line is passed on in pieces */
#define SB_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define SB_MAX_MOUNTS   256
#define SB_MAX_ARGS     100000

struct ex_sandbox {
    _Atomic int canceled;
    _Atomic pid_t pid;
};

struct ex_sandbox *ex_sandbox_new(void)
{
    struct ex_sandbox *sb = kn_calloc(1, sizeof(*sb));
    atomic_init(&sb->canceled, 0);
    atomic_init(&sb->pid, 0);
    return sb;
}

void ex_sandbox_free(struct ex_sandbox *sb)
{
    free(sb);
}

void ex_sandbox_cancel(struct ex_sandbox *sb)
{
    atomic_store(&sb->canceled, 1);
    pid_t pid = atomic_load(&sb->pid);
    if (pid > 0)
        kill(pid, SIGKILL);
}

pid_t sb_sandbox_pid(struct ex_sandbox *sb)
{
    return atomic_load(&sb->pid);
}

/* ---- probe ---- */

static _Atomic int probe_result; /* 0 unknown, else enum ex_isolation + 1 */

static int write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, data, strlen(data));
    close(fd);
    return n == (ssize_t)strlen(data) ? 0 : -1;
}

enum ex_isolation ex_sandbox_probe(const char *workdir)
{
    int r = atomic_load(&probe_result);
    if (r)
        return (enum ex_isolation)(r - 1);
    enum ex_isolation res = EX_ISOLATION_CHROOT;
    char *dir = kn_asprintf("%s/probe-XXXXXX", workdir ? workdir : "/tmp");
    if (mkdtemp(dir)) {
        char *l = kn_asprintf("%s/l", dir), *u = kn_asprintf("%s/u", dir);
        char *w = kn_asprintf("%s/w", dir), *m = kn_asprintf("%s/m", dir);
        char *data = kn_asprintf("lowerdir=%s,upperdir=%s,workdir=%s,userxattr", l, u, w);
        char umap[64], gmap[64];
        snprintf(umap, sizeof(umap), "0 %u 1", (unsigned)geteuid());
        snprintf(gmap, sizeof(gmap), "0 %u 1", (unsigned)getegid());
        if (mkdir(l, 0755) == 0 && mkdir(u, 0755) == 0 && mkdir(w, 0755) == 0 &&
            mkdir(m, 0755) == 0) {
            pid_t pid = fork();
            if (pid == 0) {
                /* only async-signal-safe calls: the strings are ready */
                if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
                    _exit(1);
                if (write_file("/proc/self/setgroups", "deny") < 0 ||
                    write_file("/proc/self/uid_map", umap) < 0 ||
                    write_file("/proc/self/gid_map", gmap) < 0)
                    _exit(2);
                if (mount("overlay", m, "overlay", 0, data) < 0)
                    _exit(3);
                _exit(0);
            }
            int st = 0;
            if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
                res = EX_ISOLATION_USERNS;
        }
        ex_store_remove_tree(dir, NULL);
        free(l);
        free(u);
        free(w);
        free(m);
        free(data);
    }
    free(dir);
    int expected = 0;
    atomic_compare_exchange_strong(&probe_result, &expected, (int)res + 1);
    return (enum ex_isolation)(atomic_load(&probe_result) - 1);
}

enum ex_isolation ex_sandbox_resolve(enum ex_isolation want, const char *workdir)
{
    return want == EX_ISOLATION_AUTO ? ex_sandbox_probe(workdir) : want;
}

/* ---- id maps ---- */

enum idmap_kind { IDMAP_ROOT, IDMAP_SUBID, IDMAP_SINGLE };

struct idmap {
    enum idmap_kind kind;
    unsigned long sub_uid, n_uid, sub_gid, n_gid;
};

static bool find_subid(const char *file, const char *name, uid_t id, unsigned long *start,
                       unsigned long *count)
{
    struct kn_buf b = KN_BUF_INIT;
    if (kn_buf_read_file(&b, file, 1u << 20, NULL) < 0) {
        kn_buf_release(&b);
        return false;
    }
    bool found = false;
    char idstr[32];
    snprintf(idstr, sizeof(idstr), "%u", (unsigned)id);
    for (char *line = b.data, *next; line && *line && !found; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = 0;
        if (strcmp(line, idstr) != 0 && (!name || strcmp(line, name) != 0))
            continue;
        char *e1, *e2;
        unsigned long s = strtoul(c1 + 1, &e1, 10), n = strtoul(c2 + 1, &e2, 10);
        if (e1 == c2 && (*e2 == 0 || *e2 == '\n') && n > 0 && s > 0) {
            *start = s;
            *count = n;
            found = true;
        }
    }
    kn_buf_release(&b);
    return found;
}

static void idmap_decide(struct idmap *m)
{
    memset(m, 0, sizeof(*m));
    if (geteuid() == 0) {
        m->kind = IDMAP_ROOT;
        return;
    }
    char name[256] = "";
    /* the user name from the host's passwd, for /etc/subuid lines by name */
    struct kn_buf b = KN_BUF_INIT;
    if (kn_buf_read_file(&b, "/etc/passwd", 16u << 20, NULL) == 0) {
        for (char *line = b.data, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = 0;
            char *c1 = strchr(line, ':');
            char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (c2 && strtoul(c2 + 1, NULL, 10) == geteuid() &&
                (size_t)(c1 - line) < sizeof(name)) {
                memcpy(name, line, (size_t)(c1 - line));
                name[c1 - line] = 0;
                break;
            }
        }
    }
    kn_buf_release(&b);
    if (access("/usr/bin/newuidmap", X_OK) == 0 && access("/usr/bin/newgidmap", X_OK) == 0 &&
        find_subid("/etc/subuid", name[0] ? name : NULL, geteuid(), &m->sub_uid, &m->n_uid) &&
        find_subid("/etc/subgid", name[0] ? name : NULL, geteuid(), &m->sub_gid, &m->n_gid)) {
        m->kind = IDMAP_SUBID;
        return;
    }
    m->kind = IDMAP_SINGLE;
}

static bool idmap_has(const struct idmap *m, unsigned long id, bool gid)
{
    switch (m->kind) {
    case IDMAP_ROOT:
        return true;
    case IDMAP_SUBID:
        return id <= (gid ? m->n_gid : m->n_uid);
    case IDMAP_SINGLE:
        return id == 0;
    }
    return false;
}

static int run_helper(const char *prog, pid_t pid, unsigned long host_id, unsigned long start,
                      unsigned long count, struct kn_error **err)
{
    char a[4][32];
    snprintf(a[0], sizeof(a[0]), "%d", (int)pid);
    snprintf(a[1], sizeof(a[1]), "%lu", host_id);
    snprintf(a[2], sizeof(a[2]), "%lu", start);
    snprintf(a[3], sizeof(a[3]), "%lu", count);
    char *argv[] = {(char *)prog, a[0], "0", a[1], "1", "1", a[2], a[3], NULL};
    pid_t h;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawn(&h, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        return kn_err_sys(err, "cannot run '%s'", prog);
    }
    int st;
    while (waitpid(h, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return kn_err_set(err, KN_E_IO, "'%s' failed for the sandbox (status %d)", prog, st);
    return 0;
}

static int proc_write(pid_t pid, const char *file, const char *data, struct kn_error **err)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    if (write_file(path, data) < 0)
        return kn_err_sys(err, "cannot write '%s'", path);
    return 0;
}

static int idmap_write(const struct idmap *m, pid_t pid, struct kn_error **err)
{
    char buf[64];
    switch (m->kind) {
    case IDMAP_ROOT:
        return proc_write(pid, "uid_map", "0 0 4294967295", err) < 0 ||
                       proc_write(pid, "gid_map", "0 0 4294967295", err) < 0
                   ? -1
                   : 0;
    case IDMAP_SUBID:
        if (run_helper("/usr/bin/newuidmap", pid, geteuid(), m->sub_uid, m->n_uid, err) < 0 ||
            run_helper("/usr/bin/newgidmap", pid, getegid(), m->sub_gid, m->n_gid, err) < 0)
            return -1;
        return 0;
    case IDMAP_SINGLE:
        if (proc_write(pid, "setgroups", "deny", err) < 0)
            return -1;
        snprintf(buf, sizeof(buf), "0 %u 1", (unsigned)geteuid());
        if (proc_write(pid, "uid_map", buf, err) < 0)
            return -1;
        snprintf(buf, sizeof(buf), "0 %u 1", (unsigned)getegid());
        return proc_write(pid, "gid_map", buf, err);
    }
    return -1;
}

int ex_sandbox_write_idmap(pid_t pid, struct kn_error **err)
{
    struct idmap m;
    idmap_decide(&m);
    return idmap_write(&m, pid, err);
}

/* ---- the plan ---- */

struct prep {
    struct kn_arena a;
    KN_VEC(struct sb_op) ops;
    char *scratch;
    struct sb_user user;
    struct kn_strv env;
    char **argv;
    /* scan mode: the mtime of the deepest existing ancestor of each tracked target */
    struct timespec *anc_mtime;
    int *anc_depth;
};

static struct sb_op *add_op(struct prep *pr, enum sb_op_kind kind, const char *src,
                            const char *target)
{
    struct sb_op op;
    memset(&op, 0, sizeof(op));
    op.kind = kind;
    op.src = src ? kn_arena_strdup(&pr->a, src) : NULL;
    while (*target == '/')
        target++;
    op.target = kn_arena_strdup(&pr->a, target);
    op.in_host = true;
    kn_vec_push(&pr->ops, op);
    return &pr->ops.v[pr->ops.n - 1];
}

static int write_scratch(struct prep *pr, const char *name, const char *data, char **out,
                         struct kn_error **err)
{
    char *path = kn_arena_printf(&pr->a, "%s/%s", pr->scratch, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_err_sys(err, "cannot create '%s'", path);
    ssize_t n = write(fd, data, strlen(data));
    close(fd);
    if (n != (ssize_t)strlen(data))
        return kn_err_sys(err, "cannot write '%s'", path);
    *out = path;
    return 0;
}

/* Is a target path sane: absolute, no "..", bounded. */
static int check_target(const char *what, const char *t, struct kn_error **err)
{
    if (!t || t[0] != '/')
        return kn_err_set(err, KN_E_USAGE, "%s is not absolute '%s'", what, t ? t : "");
    if (strlen(t) >= 4000)
        return kn_err_set(err, KN_E_UNSAFE, "%s too long '%.40s...'", what, t);
    for (const char *p = t; *p; p++)
        if (p[0] == '.' && p[1] == '.' && (p == t || p[-1] == '/') && (p[2] == '/' || !p[2]))
            return kn_err_set(err, KN_E_UNSAFE, "%s escapes the root '%s'", what, t);
    return 0;
}

static int plan_mounts(struct prep *pr, const struct ex_sandbox_spec *spec, bool userns,
                       struct kn_error **err)
{
    const unsigned nsd = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    struct sb_op *op;
    /* /dev */
    op = add_op(pr, SB_OP_FS, "tmpfs", "/dev");
    op->opts = "mode=755,size=65536k";
    op->attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME;
    op->track = true;
    static const char *devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(devs); i++) {
        char *src = kn_arena_printf(&pr->a, "/dev/%s", devs[i]);
        op = add_op(pr, SB_OP_BIND, src, src);
        op->file = true;
        op->attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
        op->optional = strcmp(devs[i], "tty") == 0; /* no tty in some CI containers */
    }
    op = add_op(pr, SB_OP_FS, "devpts", "/dev/pts");
    op->opts = "newinstance,ptmxmode=0666,mode=0620";
    op->attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
    add_op(pr, SB_OP_SYMLINK, "pts/ptmx", "/dev/ptmx");
    op = add_op(pr, SB_OP_FS, "tmpfs", "/dev/shm");
    op->opts = "mode=1777,size=65536k";
    op->attr = nsd | MOUNT_ATTR_NOEXEC;
    add_op(pr, SB_OP_SYMLINK, "/proc/self/fd", "/dev/fd");
    add_op(pr, SB_OP_SYMLINK, "/proc/self/fd/0", "/dev/stdin");
    add_op(pr, SB_OP_SYMLINK, "/proc/self/fd/1", "/dev/stdout");
    add_op(pr, SB_OP_SYMLINK, "/proc/self/fd/2", "/dev/stderr");
    /* /proc, masked as runc does */
    op = add_op(pr, SB_OP_FS, "proc", "/proc");
    op->attr = nsd | MOUNT_ATTR_NOEXEC;
    op->track = true;
    static const char *masked[] = {"/proc/kcore",      "/proc/keys",        "/proc/latency_stats",
                                   "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                                   "/proc/acpi",       "/proc/scsi",        "/proc/asound"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(masked); i++) {
        op = add_op(pr, SB_OP_MASK, NULL, masked[i]);
        op->optional = true;
        op->in_host = false;
    }
    static const char *ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                               "/proc/sysrq-trigger"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(ro); i++) {
        op = add_op(pr, SB_OP_READONLY, NULL, ro[i]);
        op->attr = MOUNT_ATTR_RDONLY;
        op->optional = true;
        op->in_host = false;
    }
    /* /sys: a fresh sysfs needs a network namespace of our own */
    if (spec->network == EX_NETWORK_NONE && userns) {
        op = add_op(pr, SB_OP_FS, "sysfs", "/sys");
    } else {
        op = add_op(pr, SB_OP_BIND, "/sys", "/sys");
    }
    op->attr = MOUNT_ATTR_RDONLY | nsd | MOUNT_ATTR_NOEXEC;
    op->track = true;
    op->optional = true;
    /* /etc/hosts, /etc/resolv.conf, /etc/hostname */
    const char *hostname = spec->hostname ? spec->hostname : "kiln";
    char *hosts, *resolv, *hn;
    char *hosts_data = kn_asprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost "
                                   "ip6-loopback\n",
                                   hostname);
    char *hn_data = kn_asprintf("%s\n", hostname);
    int rc = write_scratch(pr, "hosts", hosts_data, &hosts, err);
    if (rc == 0)
        rc = write_scratch(pr, "hostname", hn_data, &hn, err);
    if (rc == 0 && spec->network == EX_NETWORK_NONE)
        rc = write_scratch(pr, "resolv.conf", "", &resolv, err);
    free(hosts_data);
    free(hn_data);
    if (rc < 0)
        return -1;
    if (spec->network == EX_NETWORK_HOST) {
        struct stat st;
        resolv = stat("/etc/resolv.conf", &st) == 0 ? "/etc/resolv.conf" : NULL;
        if (stat("/etc/hosts", &st) == 0)
            hosts = "/etc/hosts";
    }
    const char *etc[][2] = {
        {hosts, "/etc/hosts"}, {resolv, "/etc/resolv.conf"}, {hn, "/etc/hostname"}};
    for (size_t i = 0; i < KN_ARRAY_SIZE(etc); i++) {
        if (!etc[i][0])
            continue;
        op = add_op(pr, SB_OP_BIND, etc[i][0], etc[i][1]);
        op->file = true;
        op->track = true;
        op->attr = MOUNT_ATTR_RDONLY | nsd | MOUNT_ATTR_NOEXEC;
    }
    /* the step's own mounts */
    if (spec->n_mounts > SB_MAX_MOUNTS)
        return kn_err_set(err, KN_E_UNSAFE, "too many mounts for one step (%zu, at most %d)",
                          spec->n_mounts, SB_MAX_MOUNTS);
    for (size_t i = 0; i < spec->n_mounts; i++) {
        const struct ex_mount *m = &spec->mounts[i];
        if (check_target("mount target", m->target, err) < 0)
            return -1;
        struct stat st;
        if (m->type != EX_MOUNT_TMPFS && (!m->source || stat(m->source, &st) < 0))
            return kn_err_set(err, KN_E_NOTFOUND, "mount source not found '%s'",
                              m->source ? m->source : "");
        switch (m->type) {
        case EX_MOUNT_BIND:
        case EX_MOUNT_CACHE:
            if (m->type == EX_MOUNT_BIND && m->discard_writes && !m->readonly &&
                S_ISDIR(st.st_mode)) {
                char *d = kn_arena_printf(&pr->a, "%s/m%zu", pr->scratch, i);
                char *u = kn_arena_printf(&pr->a, "%s/upper", d);
                char *w = kn_arena_printf(&pr->a, "%s/work", d);
                if (mkdir(d, 0700) < 0 || mkdir(u, 0755) < 0 || mkdir(w, 0700) < 0)
                    return kn_err_sys(err, "cannot create '%s'", d);
                op = add_op(pr, SB_OP_OVERLAY, m->source, m->target);
                op->upper = u;
                op->work = w;
                op->attr = MOUNT_ATTR_NODEV;
            } else {
                op = add_op(pr, SB_OP_BIND, m->source, m->target);
                op->attr = MOUNT_ATTR_NODEV | (m->readonly ? MOUNT_ATTR_RDONLY : 0);
            }
            op->file = !S_ISDIR(st.st_mode);
            break;
        case EX_MOUNT_TMPFS:
            op = add_op(pr, SB_OP_FS, "tmpfs", m->target);
            op->opts = m->size ? kn_arena_printf(&pr->a, "mode=1777,size=%llu",
                                                 (unsigned long long)m->size)
                               : "mode=1777";
            op->attr = nsd | (m->readonly ? MOUNT_ATTR_RDONLY : 0);
            break;
        case EX_MOUNT_SECRET:
            if (!S_ISREG(st.st_mode))
                return kn_err_set(err, KN_E_USAGE, "secret source is not a file '%s'", m->source);
            op = add_op(pr, SB_OP_SECRET, m->source, m->target);
            op->stage = kn_arena_printf(&pr->a, "%s/secrets", pr->scratch);
            if (mkdir(op->stage, 0700) < 0 && errno != EEXIST)
                return kn_err_sys(err, "cannot create '%s'", op->stage);
            op->mode = m->mode ? m->mode : 0400;
            op->uid = m->uid;
            op->gid = m->gid;
            op->file = true;
            op->attr = MOUNT_ATTR_RDONLY | nsd | MOUNT_ATTR_NOEXEC;
            break;
        case EX_MOUNT_SSH:
            if (!S_ISSOCK(st.st_mode))
                return kn_err_set(err, KN_E_USAGE, "ssh agent source is not a socket '%s'",
                                  m->source);
            op = add_op(pr, SB_OP_BIND, m->source, m->target);
            op->file = true;
            op->attr = nsd | MOUNT_ATTR_NOEXEC;
            break;
        }
        op->track = true;
    }
    return 0;
}

/* ---- open files of the step's root, for the user lookup ---- */

static int open_in_rw(void *ctx, const char *path, struct kn_error **err)
{
    const struct ex_snapshot_rw *rw = ctx;
    if (ex_snapshot_rw_kind(rw) == EX_SNAPSHOT_OVERLAY)
        return ex_snapshot_open(ex_snapshot_rw_base(rw), path, err);
    int dfd = open(ex_snapshot_rw_root(rw), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kn_err_sys(err, "cannot open '%s'", ex_snapshot_rw_root(rw));
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int fd = (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
    close(dfd);
    if (fd < 0)
        return kn_err_set(err, errno == ENOENT ? KN_E_NOTFOUND : KN_E_IO,
                          "cannot open '/%s' in the rootfs", path);
    return fd;
}

/* ---- output ---- */

struct out_state {
    const struct ex_sandbox_spec *spec;
    struct kn_buf line[3];
    char *tail[SB_TAIL_LINES];
    size_t tail_next, tail_n;
};

static void tail_push(struct out_state *o, const char *s, size_t n)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    free(o->tail[o->tail_next]);
    o->tail[o->tail_next] = kn_strndup(s, n);
    o->tail_next = (o->tail_next + 1) % SB_TAIL_LINES;
    if (o->tail_n < SB_TAIL_LINES)
        o->tail_n++;
}

static void emit(struct out_state *o, int stream, const char *s, size_t n)
{
    if (o->spec->output)
        o->spec->output(o->spec->output_ctx, stream, s, n);
    tail_push(o, s, n);
}

static void out_feed(struct out_state *o, int stream, const char *data, size_t n)
{
    struct kn_buf *b = &o->line[stream];
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (data + i)) + 1 : n - i;
        kn_buf_add(b, data + i, take);
        i += take;
        if (nl || b->len >= SB_LINE_MAX) {
            emit(o, stream, b->data, b->len);
            kn_buf_reset(b);
        }
    }
}

static void out_flush(struct out_state *o)
{
    for (int s = 1; s <= 2; s++) {
        if (o->line[s].len)
            emit(o, s, o->line[s].data, o->line[s].len);
        kn_buf_release(&o->line[s]);
    }
}

static char *out_tail(struct out_state *o)
{
    struct kn_buf b = KN_BUF_INIT;
    size_t start = (o->tail_next + SB_TAIL_LINES - o->tail_n) % SB_TAIL_LINES;
    for (size_t i = 0; i < o->tail_n; i++) {
        kn_buf_adds(&b, o->tail[(start + i) % SB_TAIL_LINES]);
        kn_buf_addc(&b, '\n');
    }
    for (size_t i = 0; i < SB_TAIL_LINES; i++)
        free(o->tail[i]);
    return kn_buf_detach(&b);
}

/* "/bin/sh -c exit 3" quoted the way Go's %q does it */
static char *quote_argv(char *const *argv)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_addc(&b, '"');
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            kn_buf_addc(&b, ' ');
        for (const char *p = argv[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                kn_buf_addc(&b, '\\');
            if (*p == '\n')
                kn_buf_adds(&b, "\\n");
            else if (*p == '\t')
                kn_buf_adds(&b, "\\t");
            else
                kn_buf_addc(&b, *p);
        }
    }
    kn_buf_addc(&b, '"');
    return kn_buf_detach(&b);
}

/* ---- mountpoint cleanup ---- */

static bool dir_empty(int dfd, const char *path)
{
    int fd = openat(dfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[1024];
    long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
    bool empty = true;
    for (long off = 0; off < n;) {
        unsigned short reclen = *(unsigned short *)(buf + off + 16);
        const char *name = buf + off + 19;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
            empty = false;
        off += reclen;
    }
    close(fd);
    return n >= 0 && empty;
}

/* The first `depth` components of rel. */
static char *prefix_of(const char *rel, int depth)
{
    const char *p = rel;
    for (int d = 0; d < depth && p; d++) {
        p = strchr(p, '/');
        if (p && d + 1 < depth)
            p++;
    }
    return p ? kn_strndup(rel, (size_t)(p - rel)) : kn_strdup(rel);
}

static int count_components(const char *rel)
{
    int n = *rel ? 1 : 0;
    for (const char *p = rel; *p; p++)
        if (*p == '/' && p[1])
            n++;
    return n;
}

/* Does dir `rel` of the upper look exactly like the lower one (a copy-up)? */
static bool same_as_lower(const struct ex_snapshot *base, int upfd, const char *rel)
{
    struct stat us, ls;
    if (fstatat(upfd, rel, &us, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(us.st_mode))
        return false;
    char v[4];
    int fd = openat(upfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool opaque = fgetxattr(fd, "user.overlay.opaque", v, sizeof(v)) > 0;
    close(fd);
    if (opaque)
        return false;
    int lfd = ex_snapshot_open(base, rel, NULL);
    if (lfd < 0)
        return false;
    bool same = fstat(lfd, &ls) == 0 && S_ISDIR(ls.st_mode) && ls.st_mode == us.st_mode &&
                ls.st_uid == us.st_uid && ls.st_gid == us.st_gid;
    close(lfd);
    return same;
}

static void remove_mountpoints(struct prep *pr, const struct ex_snapshot_rw *rw,
                               const struct sb_created *c, size_t n)
{
    bool overlay = ex_snapshot_rw_kind(rw) == EX_SNAPSHOT_OVERLAY;
    int dfd = open(overlay ? ex_snapshot_rw_upper(rw) : ex_snapshot_rw_root(rw),
                   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    for (size_t i = n; i-- > 0;) {
        if (c[i].op < 0 || (size_t)c[i].op >= pr->ops.n)
            continue;
        const char *rel = pr->ops.v[c[i].op].target;
        int total = count_components(rel);
        int d = total;
        for (; d > c[i].existing; d--) {
            char *p = prefix_of(rel, d);
            struct stat st;
            bool gone = false;
            if (fstatat(dfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (S_ISDIR(st.st_mode))
                    gone = unlinkat(dfd, p, AT_REMOVEDIR) == 0;
                else if (S_ISREG(st.st_mode) && st.st_size == 0)
                    gone = unlinkat(dfd, p, 0) == 0;
            }
            free(p);
            if (!gone)
                break;
        }
        if (d > c[i].existing)
            continue;
        if (overlay) {
            /* parents overlayfs copied up only to hold the mountpoint */
            for (d = c[i].existing; d > 0; d--) {
                char *p = prefix_of(rel, d);
                bool gone = dir_empty(dfd, p) && same_as_lower(ex_snapshot_rw_base(rw), dfd, p) &&
                            unlinkat(dfd, p, AT_REMOVEDIR) == 0;
                free(p);
                if (!gone)
                    break;
            }
        } else if (pr->anc_depth && pr->anc_depth[c[i].op] >= 0) {
            char *p = prefix_of(rel, pr->anc_depth[c[i].op]);
            struct timespec ts[2] = {{0, UTIME_OMIT}, pr->anc_mtime[c[i].op]};
            utimensat(dfd, pr->anc_depth[c[i].op] ? p : ".", ts, AT_SYMLINK_NOFOLLOW);
            free(p);
        }
    }
    close(dfd);
}

/* scan mode: remember the mtime of each tracked target's deepest existing
 * ancestor, so creating and removing a mountpoint leaves no trace */
static void record_ancestors(struct prep *pr, const char *rootfs)
{
    pr->anc_mtime = kn_calloc(pr->ops.n + 1, sizeof(*pr->anc_mtime));
    pr->anc_depth = kn_calloc(pr->ops.n + 1, sizeof(int));
    int dfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (size_t i = 0; i < pr->ops.n; i++) {
        pr->anc_depth[i] = -1;
        if (!pr->ops.v[i].track || dfd < 0)
            continue;
        const char *rel = pr->ops.v[i].target;
        for (int d = count_components(rel); d >= 0; d--) {
            char *p = d ? prefix_of(rel, d) : kn_strdup(".");
            struct stat st;
            bool ok = fstatat(dfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
            free(p);
            if (ok) {
                pr->anc_depth[i] = d;
                pr->anc_mtime[i] = st.st_mtim;
                break;
            }
        }
    }
    if (dfd >= 0)
        close(dfd);
}

/* ---- run ---- */

static void prep_release(struct prep *pr)
{
    if (pr->scratch) {
        /* unmounted already: the stage tmpfs lived only in the step's namespace */
        ex_store_remove_tree(pr->scratch, NULL);
        free(pr->scratch);
    }
    sb_user_release(&pr->user);
    kn_strv_release(&pr->env);
    free(pr->ops.v);
    free(pr->anc_mtime);
    free(pr->anc_depth);
    kn_arena_release(&pr->a);
}

static bool env_has(char *const *env, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
            return true;
    return false;
}

static const char *env_get(char *const *env, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=')
            return env[i] + kl + 1;
    return NULL;
}

static int cap_last_cap(void)
{
    struct kn_buf b = KN_BUF_INIT;
    int v = 40;
    if (kn_buf_read_file(&b, "/proc/sys/kernel/cap_last_cap", 64, NULL) == 0)
        v = atoi(b.data);
    kn_buf_release(&b);
    return v > 0 && v < 64 ? v : 40;
}

static pid_t do_clone(unsigned long flags, int *pidfd)
{
    struct clone_args ca;
    memset(&ca, 0, sizeof(ca));
    ca.flags = flags | CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
    ca.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &ca, sizeof(ca));
    if (r < 0 && errno == ENOSYS)
        r = syscall(SYS_clone, flags | CLONE_PIDFD | SIGCHLD, NULL, pidfd, NULL, NULL);
    return (pid_t)r;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static char *dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s != path ? kn_strndup(path, (size_t)(s - path)) : kn_strdup("/");
}

int ex_sandbox_run(struct ex_sandbox *sb, const struct ex_sandbox_spec *spec, int *exit_code,
                   struct kn_error **err)
{
    if (exit_code)
        *exit_code = -1;
    if (!spec->root || !spec->argv || !spec->argv[0])
        return kn_err_set(err, KN_E_USAGE, "sandbox needs a root and a command");
    size_t argc = 0;
    while (spec->argv[argc] && argc <= SB_MAX_ARGS)
        argc++;
    if (argc > SB_MAX_ARGS)
        return kn_err_set(err, KN_E_UNSAFE, "too many arguments (more than %d)", SB_MAX_ARGS);
    if (spec->workdir && spec->workdir[0] &&
        check_target("working directory", spec->workdir, err) < 0)
        return -1;
    if (spec->hostname &&
        (strlen(spec->hostname) > 64 || !spec->hostname[0] || strpbrk(spec->hostname, " \t\n/")))
        return kn_err_set(err, KN_E_USAGE, "invalid hostname '%s'", spec->hostname);
    if (atomic_load(&sb->canceled))
        return kn_err_set(err, KN_E_CANCELED, "canceled");

    const struct ex_snapshot_rw *rw = spec->root;
    char *rwdir = dir_of(ex_snapshot_rw_upper(rw));
    enum ex_isolation iso = ex_sandbox_resolve(spec->isolation, rwdir);
    if (iso == EX_ISOLATION_CHROOT && ex_snapshot_rw_kind(rw) != EX_SNAPSHOT_SCAN) {
        free(rwdir);
        return kn_err_set(err, KN_E_USAGE,
                          "chroot isolation needs a scan snapshot (overlayfs is not available)");
    }
    bool userns = iso == EX_ISOLATION_USERNS;

    struct prep pr;
    memset(&pr, 0, sizeof(pr));
    kn_arena_init(&pr.a);
    if (sb_user_resolve(spec->user, open_in_rw, (void *)rw, &pr.user, err) < 0) {
        free(rwdir);
        prep_release(&pr);
        return -1;
    }
    struct idmap map;
    idmap_decide(&map);
    if (!userns)
        map.kind = geteuid() == 0 ? IDMAP_ROOT : IDMAP_SINGLE;
    if (!idmap_has(&map, pr.user.uid, false) || !idmap_has(&map, pr.user.gid, true)) {
        kn_err_set(err, KN_E_FAILED,
                   "user %u:%u is not mapped in the sandbox: no /etc/subuid and /etc/subgid "
                   "range for uid %u",
                   (unsigned)pr.user.uid, (unsigned)pr.user.gid, (unsigned)geteuid());
        free(rwdir);
        prep_release(&pr);
        return -1;
    }
    pr.scratch = kn_asprintf("%s/sandbox-XXXXXX", rwdir);
    free(rwdir);
    if (!mkdtemp(pr.scratch)) {
        kn_err_sys(err, "cannot create '%s'", pr.scratch);
        free(pr.scratch);
        pr.scratch = NULL;
        prep_release(&pr);
        return -1;
    }
    /* chroot mode mounts things only where it may create a mount namespace */
    bool can_mount = userns || geteuid() == 0;
    if (can_mount && plan_mounts(&pr, spec, userns, err) < 0) {
        prep_release(&pr);
        return -1;
    }
    if (!can_mount && spec->n_mounts) {
        prep_release(&pr);
        return kn_err_set(err, KN_E_USAGE,
                          "RUN --mount needs a mount namespace, "
                          "which chroot isolation without root cannot create");
    }
    if (ex_snapshot_rw_kind(rw) == EX_SNAPSHOT_SCAN)
        record_ancestors(&pr, ex_snapshot_rw_root(rw));

    /* env and argv */
    for (size_t i = 0; spec->env && spec->env[i]; i++)
        kn_strv_push(&pr.env, spec->env[i]);
    if (!env_has(pr.env.v, "PATH"))
        kn_strv_push(&pr.env, "PATH=" SB_DEFAULT_PATH);
    if (!env_has(pr.env.v, "HOME"))
        kn_strv_take(&pr.env, kn_asprintf("HOME=%s", pr.user.home));
    pr.argv = kn_arena_alloc(&pr.a, (argc + 1) * sizeof(char *));
    for (size_t i = 0; i < argc; i++)
        pr.argv[i] = kn_arena_strdup(&pr.a, spec->argv[i]);

    struct sb_plan plan;
    memset(&plan, 0, sizeof(plan));
    plan.userns = userns;
    plan.pivot = can_mount;
    plan.clone_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    if (userns)
        plan.clone_flags |= CLONE_NEWUSER;
    if (spec->network == EX_NETWORK_NONE)
        plan.clone_flags |= CLONE_NEWNET;
    if (!can_mount)
        plan.clone_flags = 0;
    plan.loopback_up = spec->network == EX_NETWORK_NONE && can_mount;
    plan.rw = rw;
    plan.root = ex_snapshot_rw_root(rw);
    plan.ops = pr.ops.v;
    plan.n_ops = pr.ops.n;
    plan.hostname = spec->hostname ? spec->hostname : "kiln";
    plan.argv = pr.argv;
    plan.envp = pr.env.v;
    plan.path_env = env_get(pr.env.v, "PATH");
    const char *wd = spec->workdir && spec->workdir[0] ? spec->workdir : "/";
    while (*wd == '/')
        wd++;
    plan.workdir = wd;
    plan.uid = pr.user.uid;
    plan.gid = pr.user.gid;
    plan.groups = pr.user.groups;
    plan.n_groups = pr.user.n_groups;
    plan.set_groups = map.kind != IDMAP_SINGLE;
    plan.cap_last = cap_last_cap();
    plan.insecure = spec->insecure;

    int sync[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1}, outp[2] = {-1, -1},
        errout[2] = {-1, -1};
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* the sync channel is a socket so that releasing a child that died
     * already fails with EPIPE instead of raising SIGPIPE (MSG_NOSIGNAL) */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pipe2(outp, O_CLOEXEC) < 0 || pipe2(errout, O_CLOEXEC) < 0 || devnull < 0) {
        kn_err_sys(err, "cannot create pipes for the sandbox");
        int *all[] = {&sync[0], &sync[1], &errp[0],   &errp[1],   &rep[0], &rep[1],
                      &outp[0], &outp[1], &errout[0], &errout[1], &devnull};
        for (size_t i = 0; i < KN_ARRAY_SIZE(all); i++)
            close_fd(all[i]);
        prep_release(&pr);
        return -1;
    }
    plan.sync_rd = sync[0];
    plan.err_wr = errp[1];
    plan.rep_wr = rep[1];
    plan.stdout_wr = outp[1];
    plan.stderr_wr = errout[1];
    plan.stdin_rd = devnull;

    int pidfd = -1;
    pid_t pid = do_clone(plan.clone_flags, &pidfd);
    if (pid == 0)
        sb_child_main(&plan);
    if (pid < 0 && errno == EPERM && !userns) {
        /* chroot isolation in a container without CAP_SYS_ADMIN: no namespaces, no mounts */
        plan.clone_flags = 0;
        plan.pivot = false;
        plan.n_ops = 0;
        plan.loopback_up = false;
        pid = do_clone(0, &pidfd);
        if (pid == 0)
            sb_child_main(&plan);
    }
    int clone_errno = errno;
    close_fd(&sync[0]);
    close_fd(&errp[1]);
    close_fd(&rep[1]);
    close_fd(&outp[1]);
    close_fd(&errout[1]);
    close_fd(&devnull);
    int rc = 0;
    struct kn_error *lerr = NULL; /* replaced by "canceled" after a cancel */
    if (pid < 0) {
        errno = clone_errno;
        rc = kn_err_sys(&lerr, "cannot create the sandbox (clone)");
    } else {
        atomic_store(&sb->pid, pid);
        if (atomic_load(&sb->canceled))
            kill(pid, SIGKILL);
        if (userns)
            rc = idmap_write(&map, pid, &lerr);
        if (rc == 0 && send(sync[1], "x", 1, MSG_NOSIGNAL) != 1)
            rc = kn_err_sys(&lerr, "cannot start the sandbox");
        if (rc < 0)
            kill(pid, SIGKILL);
    }
    close_fd(&sync[1]);

    /* stream the output until the init has exited and the pipes are closed */
    struct out_state out;
    memset(&out, 0, sizeof(out));
    out.spec = spec;
    bool exited = pid < 0;
    while (outp[0] >= 0 || errout[0] >= 0 || !exited) {
        struct pollfd pfd[3] = {
            {outp[0], POLLIN, 0}, {errout[0], POLLIN, 0}, {exited ? -1 : pidfd, POLLIN, 0}};
        int n = poll(pfd, 3, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        int *fds[2] = {&outp[0], &errout[0]};
        for (int s = 0; s < 2; s++) {
            if (!(pfd[s].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[16384];
            ssize_t r = read(*fds[s], buf, sizeof(buf));
            if (r > 0)
                out_feed(&out, s + 1, buf, (size_t)r);
            else if (r == 0 || errno != EINTR)
                close_fd(fds[s]);
        }
        if (pfd[2].revents)
            exited = true;
    }
    close_fd(&outp[0]);
    close_fd(&errout[0]);
    out_flush(&out);

    int status = 0;
    if (pid > 0) {
        atomic_store(&sb->pid, 0);
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        if (si.si_code == CLD_EXITED)
            status = si.si_status;
        else
            status = 128 + si.si_status;
    }
    if (pidfd >= 0)
        close(pidfd);

    /* what the child created and what went wrong */
    KN_VEC(struct sb_created) created = {0};
    struct sb_created c;
    while (read(rep[0], &c, sizeof(c)) == (ssize_t)sizeof(c))
        kn_vec_push(&created, c);
    close_fd(&rep[0]);
    struct sb_child_error ce;
    memset(&ce, 0, sizeof(ce));
    ssize_t got = rc == 0 ? read(errp[0], &ce, sizeof(ce)) : 0;
    close_fd(&errp[0]);
    ce.msg[SB_ERRMSG - 1] = 0;
    remove_mountpoints(&pr, rw, created.v, created.n);
    free(created.v);

    char *tail = out_tail(&out);
    if (atomic_load(&sb->canceled)) {
        kn_err_free(lerr);
        rc = kn_err_set(err, KN_E_CANCELED, "canceled");
    } else if (lerr) {
        kn_err_propagate(err, &lerr);
    } else if (rc == 0 && got == (ssize_t)sizeof(ce) && ce.exec_failed) {
        char *q = quote_argv(pr.argv);
        if (ce.errnum == ENOENT && !strchr(ce.msg, '/'))
            rc = kn_err_set(err, KN_E_EXEC,
                            "process %s did not complete successfully: exec: \"%s\": executable "
                            "file not found in $PATH",
                            q, ce.msg);
        else
            rc = kn_err_set(err, KN_E_EXEC,
                            "process %s did not complete successfully: exec: \"%s\": %s", q, ce.msg,
                            strerror(ce.errnum));
        free(q);
        if (exit_code)
            *exit_code = 127;
    } else if (rc == 0 && got == (ssize_t)sizeof(ce)) {
        errno = ce.errnum;
        rc = kn_err_set(err, KN_E_IO, "cannot set up the sandbox: %s: %s", ce.msg,
                        strerror(ce.errnum));
    } else if (rc == 0) {
        if (exit_code)
            *exit_code = status;
        if (status != 0) {
            char *q = quote_argv(pr.argv);
            rc = kn_err_set(err, KN_E_EXEC,
                            "process %s did not complete successfully: exit code: %d", q, status);
            free(q);
        }
    }
    if (rc < 0 && err && *err && (*err)->code == KN_E_EXEC && tail[0])
        kn_err_set_detail(*err, tail);
    free(tail);
    prep_release(&pr);
    return rc;
}
