/*
 * The sandbox test cases, shared by test_sandbox.c (as whoever runs ctest:
 * root in CI) and test_sandbox_user.c (as the unprivileged user kilntest,
 * with a /etc/subuid range). Each case builds a busybox rootfs in the
 * test's tmpdir and runs real steps in it.
 */
#ifndef KILN_TEST_SANDBOX_CASES_H
#define KILN_TEST_SANDBOX_CASES_H

#include "tap.h"

#include "exec/sandbox/internal.h"
#include "exec/snapshot/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>

static char rootfs[4096], workroot[4096];

static void must(int cond, const char *what)
{
    if (!cond) {
        printf("Bail out! %s: %s\n", what, strerror(errno));
        exit(1);
    }
}

static void put_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    must(fd >= 0, path);
    must(write(fd, data, strlen(data)) == (ssize_t)strlen(data), path);
    close(fd);
}

static char *slurp(const char *path)
{
    struct kn_buf b = KN_BUF_INIT;
    if (kn_buf_read_file(&b, path, 1 << 20, NULL) < 0) {
        kn_buf_release(&b);
        return NULL;
    }
    return kn_buf_detach(&b);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    must(in >= 0 && out >= 0, from);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        must(write(out, buf, (size_t)n) == n, to);
    close(in);
    close(out);
    chmod(to, mode);
}

/* A busybox rootfs: /bin/busybox, applet symlinks, /etc/passwd and group. */
static void make_rootfs(const char *dir)
{
    char p[4200];
    must(mkdir(dir, 0755) == 0, dir);
    const char *dirs[] = {"bin", "etc", "tmp", "root", "usr", "usr/bin"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(dirs); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, dirs[i]);
        must(mkdir(p, 0755) == 0, p);
    }
    snprintf(p, sizeof(p), "%s/tmp", dir);
    chmod(p, 01777);
    snprintf(p, sizeof(p), "%s/bin/busybox", dir);
    copy_file("/bin/busybox", p, 0755);
    const char *applets[] = {"sh",    "id",       "ls",       "cat",   "touch", "echo",   "mkdir",
                             "chown", "stat",     "sleep",    "env",   "pwd",   "rm",     "grep",
                             "wc",    "readlink", "hostname", "find",  "sed",   "printf", "true",
                             "false", "awk",      "head",     "tail",  "chmod", "mknod",  "ln",
                             "cut",   "sort",     "tr",       "mount", "df",    "test",   "ps"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(applets); i++) {
        snprintf(p, sizeof(p), "%s/bin/%s", dir, applets[i]);
        must(symlink("busybox", p) == 0, p);
    }
    snprintf(p, sizeof(p), "%s/etc/passwd", dir);
    put_file(p,
             "root:x:0:0:root:/root:/bin/sh\n"
             "kiln:x:1000:1000:kiln user:/home/kiln:/bin/sh\n",
             0644);
    snprintf(p, sizeof(p), "%s/etc/group", dir);
    put_file(p, "root:x:0:\nwheel:x:10:kiln\nkiln:x:1000:\n", 0644);
}

/* ---- running a step ---- */

struct result {
    int rc;
    int code;
    struct kn_error *err;
    struct kn_buf out, errout;
    char upper[4096];
};

static void collect(void *ctx, int stream, const char *data, size_t len)
{
    struct result *r = ctx;
    kn_buf_add(stream == 1 ? &r->out : &r->errout, data, len);
}

struct step {
    const char *cmd;
    const char *const *env;
    const char *user;
    const char *workdir;
    enum ex_network net;
    const struct ex_mount *mounts;
    size_t n_mounts;
    enum ex_isolation iso;
    struct ex_sandbox *sb;
};

static struct ex_snapshot *base_snap;

/* Runs /bin/sh -c cmd on the busybox rootfs; the upper dir is kept for
 * inspection (r->upper) until result_release. */
static struct ex_snapshot_rw *run_step(const struct step *s, struct result *r)
{
    memset(r, 0, sizeof(*r));
    struct kn_error *e = NULL;
    struct ex_snapshot_rw *rw = ex_snapshot_rw_overlay(base_snap, workroot, &e);
    must(rw != NULL, e ? e->msg : "rw");
    const char *argv[] = {"/bin/sh", "-c", s->cmd, NULL};
    struct ex_sandbox_spec spec = {
        .isolation = s->iso ? s->iso : EX_ISOLATION_USERNS,
        .root = rw,
        .argv = argv,
        .env = s->env,
        .user = s->user,
        .workdir = s->workdir,
        .network = s->net,
        .mounts = s->mounts,
        .n_mounts = s->n_mounts,
        .output = collect,
        .output_ctx = r,
    };
    struct ex_sandbox *sb = s->sb ? s->sb : ex_sandbox_new();
    r->rc = ex_sandbox_run(sb, &spec, &r->code, &r->err);
    if (!s->sb)
        ex_sandbox_free(sb);
    struct kn_error *fe = NULL;
    if (ex_snapshot_rw_finish(rw, &fe) < 0) {
        printf("# finish: %s\n", fe->msg);
        kn_err_free(fe);
    }
    snprintf(r->upper, sizeof(r->upper), "%s", ex_snapshot_rw_upper(rw));
    return rw;
}

static void result_release(struct result *r, struct ex_snapshot_rw *rw)
{
    kn_err_free(r->err);
    kn_buf_release(&r->out);
    kn_buf_release(&r->errout);
    ex_snapshot_rw_free(rw, false);
}

static const char *out_of(struct result *r)
{
    return r->out.data ? r->out.data : "";
}

/* Lists the upper dir (relative paths, sorted by find order) into a string. */
static char *list_tree(const char *dir)
{
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "cd '%s' && find . -mindepth 1 | sort", dir);
    FILE *f = popen(cmd, "r");
    struct kn_buf b = KN_BUF_INIT;
    char line[4096];
    while (f && fgets(line, sizeof(line), f))
        kn_buf_adds(&b, line);
    if (f)
        pclose(f);
    return kn_buf_detach(&b);
}

/* ---- the cases ---- */

static bool have_subids;       /* uids other than 0 can be mapped */
static unsigned long sub_base; /* host uid of uid 1 inside (root: 1) */

static void detect_subids(void)
{
    if (geteuid() == 0) {
        have_subids = true;
        sub_base = 1;
        return;
    }
    char *s = slurp("/etc/subuid");
    char name[64] = "";
    FILE *pw = popen("id -un", "r");
    if (pw && fgets(name, sizeof(name), pw))
        name[strcspn(name, "\n")] = 0;
    if (pw)
        pclose(pw);
    for (char *line = s; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ln = strlen(name);
        if (ln && strncmp(line, name, ln) == 0 && line[ln] == ':') {
            have_subids = true;
            sub_base = strtoul(line + ln + 1, NULL, 10);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(s);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void case_uid0(void)
{
    struct result r;
    int fds = count_fds();
    struct step s = {.cmd = "id -u; id -g"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, 0, "id runs");
    is_str(out_of(&r), "0\n0\n", "uid and gid 0 inside");
    result_release(&r, rw);
    is_int(count_fds(), fds, "no fd is left open by a step");
    int st;
    ok(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "no zombie is left by a step");
}

static void case_owner(void)
{
    struct result r;
    struct step s = {.cmd = "touch /x && chown 1000:1000 /x 2>/dev/null; echo made > /y"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, 0, "touch and chown run");
    char p[4200];
    struct stat st;
    snprintf(p, sizeof(p), "%s/y", r.upper);
    ok(stat(p, &st) == 0 && st.st_uid == geteuid() && st.st_gid == getegid(),
       "a file made inside is owned by the caller (%u) in the upper dir", (unsigned)geteuid());
    snprintf(p, sizeof(p), "%s/x", r.upper);
    if (have_subids) {
        ok(stat(p, &st) == 0 && st.st_uid == sub_base + 999 && st.st_gid == sub_base + 999,
           "chown 1000 inside is uid %lu outside", sub_base + 999);
    } else {
        printf("ok %d - # SKIP no /etc/subuid range: chown to 1000 is not possible\n", ++tap_n);
    }
    result_release(&r, rw);
}

static void case_isolation(void)
{
    char canary[4200];
    snprintf(canary, sizeof(canary), "/tmp/kiln-canary-%d-%ld", (int)getpid(), (long)time(NULL));
    put_file(canary, "secret", 0644);
    const char *name = strrchr(canary, '/') + 1;
    /* the canary's directory is not part of the step's root */
    char *before = slurp("/proc/self/mountinfo");
    struct result r;
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "find / -name '%s' 2>/dev/null; echo FD; ls -l /proc/self/fd/; echo ROOT; "
             "readlink /proc/1/root; ls /proc/1/root/; echo HOST; cat %s 2>&1; "
             "ls /proc/1/cwd/ >/dev/null; echo PS; ps -o pid,comm | wc -l",
             name, canary);
    struct step s = {.cmd = cmd};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    char *after = slurp("/proc/self/mountinfo");
    is_int(r.rc, 0, "isolation probe runs");
    const char *o = out_of(&r);
    ok(kn_str_startswith(o, "FD\n"), "find / does not see the host's canary");
    ok(strstr(o, "No such file or directory") != NULL, "cat of the canary's host path fails");
    ok(!strstr(o, "/work") && !strstr(o, "kiln-unit") && !strstr(o, workroot),
       "no host path in /proc/self/fd or anywhere");
    ok(strstr(o, "ROOT\n/\nbin\n") != NULL, "/proc/1/root is the sandbox's own root");
    ok(strstr(o, "PS\n4\n") != NULL || strstr(o, "PS\n5\n") != NULL,
       "only the step's own processes are visible");
    if (!strstr(o, "ROOT\n/\nbin\n") || !strstr(o, "PS\n"))
        printf("# output:\n%s", o);
    ok(!strstr(after, tap_tmpdir()) && !strstr(before, tap_tmpdir()),
       "no mount of the step (root, upper, binds) is left in the host's mount table");
    free(before);
    free(after);
    unlink(canary);
    result_release(&r, rw);
}

static void case_env_user_workdir(void)
{
    if (!have_subids) {
        struct result r;
        struct step s = {.cmd = "true", .user = "kiln"};
        struct ex_snapshot_rw *rw = run_step(&s, &r);
        char want[256];
        snprintf(want, sizeof(want),
                 "user 1000:1000 is not mapped in the sandbox: no /etc/subuid and /etc/subgid "
                 "range for uid %u",
                 (unsigned)geteuid());
        is_str(r.err ? r.err->msg : NULL, want, "without a subuid range USER kiln is refused");
        result_release(&r, rw);
        return;
    }
    const char *env[] = {"FOO=bar baz", "PATH=/usr/bin:/bin", NULL};
    struct result r;
    struct step s = {.cmd = "echo \"$FOO\"; id -u; id -g; id -G; pwd; echo $HOME; echo $PATH",
                     .env = env,
                     .user = "kiln",
                     .workdir = "/home/kiln/work"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, 0, "step as kiln runs");
    is_str(out_of(&r), "bar baz\n1000\n1000\n1000 10\n/home/kiln/work\n/home/kiln\n/usr/bin:/bin\n",
           "env, user, supplementary groups, workdir and HOME are honoured");
    char p[4200];
    struct stat st;
    snprintf(p, sizeof(p), "%s/home/kiln/work", r.upper);
    ok(stat(p, &st) == 0 && S_ISDIR(st.st_mode), "the missing workdir was created in the layer");
    result_release(&r, rw);

    struct step s2 = {.cmd = "id -u; id -g", .user = "1000:10"};
    rw = run_step(&s2, &r);
    is_str(out_of(&r), "1000\n10\n", "uid:gid form");
    result_release(&r, rw);

    struct step s3 = {.cmd = "id -u; id -g; echo $HOME", .user = "4242"};
    rw = run_step(&s3, &r);
    is_str(out_of(&r), "4242\n0\n/\n", "a uid not in passwd runs with gid 0 and HOME=/");
    result_release(&r, rw);
}

static void case_bad_user(void)
{
    struct result r;
    struct step s = {.cmd = "true", .user = "nobody2"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, -1, "unknown user fails");
    is_str(r.err ? r.err->msg : NULL,
           "unable to find user nobody2: no matching entries in passwd file",
           "unknown user message");
    result_release(&r, rw);
    struct step s2 = {.cmd = "true", .user = "kiln:nogroup"};
    rw = run_step(&s2, &r);
    is_str(r.err ? r.err->msg : NULL,
           "unable to find group nogroup: no matching entries in group file",
           "unknown group message");
    result_release(&r, rw);
}

static void case_fail(void)
{
    struct result r;
    struct step s = {.cmd = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; "
                            "echo oops >&2; exit 3"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, -1, "a failing step fails");
    is_int(r.code, 3, "exit code 3");
    is_int(r.err ? r.err->code : 0, KN_E_EXEC, "KN_E_EXEC");
    is_str(r.err ? r.err->msg : NULL,
           "process \"/bin/sh -c for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; echo "
           "oops >&2; exit 3\" did not complete successfully: exit code: 3",
           "the error names the command and the exit code");
    const char *d = r.err && r.err->detail ? r.err->detail : "";
    ok(strstr(d, "line12\n") && strstr(d, "oops\n") && strstr(d, "line4\n") &&
           !strstr(d, "line2\n"),
       "the detail holds the last 10 lines of output");
    is_str(r.errout.data, "oops\n", "stderr went to the callback as stream 2");
    result_release(&r, rw);

    const char *argv[] = {"no-such-command", NULL};
    struct kn_error *e = NULL;
    struct ex_snapshot_rw *rw2 = ex_snapshot_rw_overlay(base_snap, workroot, &e);
    struct ex_sandbox_spec spec = {.isolation = EX_ISOLATION_USERNS, .root = rw2, .argv = argv};
    struct ex_sandbox *sb = ex_sandbox_new();
    int code = 0;
    is_int(ex_sandbox_run(sb, &spec, &code, &e), -1, "a missing command fails");
    is_str(e ? e->msg : NULL,
           "process \"no-such-command\" did not complete successfully: exec: \"no-such-command\": "
           "executable file not found in $PATH",
           "missing command message");
    is_int(code, 127, "exit code 127");
    kn_err_free(e);
    e = NULL;
    spec.hostname = "a b";
    is_int(ex_sandbox_run(sb, &spec, &code, &e), -1, "a bad hostname is refused");
    is_str(e ? e->msg : NULL, "invalid hostname 'a b'", "bad hostname message");
    kn_err_free(e);
    e = NULL;
    const char *dots = "../etc";
    spec.hostname = NULL;
    spec.workdir = dots;
    is_int(ex_sandbox_run(sb, &spec, &code, &e), -1, "a relative workdir is refused");
    is_str(e ? e->msg : NULL, "working directory is not absolute '../etc'",
           "relative workdir message");
    kn_err_free(e);
    e = NULL;
    spec.workdir = NULL;
    struct ex_mount bad[] = {{.type = EX_MOUNT_TMPFS, .target = "/a/../../etc"}};
    spec.mounts = bad;
    spec.n_mounts = 1;
    is_int(ex_sandbox_run(sb, &spec, &code, &e), -1, "a mount target with .. is refused");
    is_str(e ? e->msg : NULL, "mount target escapes the root '/a/../../etc'", "message");
    is_int(e ? e->code : 0, KN_E_UNSAFE, "KN_E_UNSAFE");
    kn_err_free(e);
    e = NULL;
    struct ex_mount missing[] = {
        {.type = EX_MOUNT_BIND, .source = "/nonexistent-kiln", .target = "/x"}};
    spec.mounts = missing;
    is_int(ex_sandbox_run(sb, &spec, &code, &e), -1, "a missing bind source is refused");
    is_str(e ? e->msg : NULL, "mount source not found '/nonexistent-kiln'", "message");
    kn_err_free(e);
    ex_sandbox_free(sb);
    ex_snapshot_rw_free(rw2, false);
}

static void case_network_none(void)
{
    struct result r;
    struct step s = {
        .cmd = "awk -F: 'NR>2{gsub(/ /,\"\",$1);print $1}' /proc/net/dev; ls /sys/class/net; "
               "cat /etc/hostname; hostname",
        .net = EX_NETWORK_NONE};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, 0, "network none step runs");
    is_str(out_of(&r), "lo\nlo\nkiln\nkiln\n", "network none has only lo; hostname is set");
    result_release(&r, rw);
    struct step s2 = {.cmd =
                          "awk -F: 'NR>2{gsub(/ /,\"\",$1);print $1}' /proc/net/dev | grep -c ."};
    rw = run_step(&s2, &r);
    char *host = NULL;
    FILE *f = popen("awk -F: 'NR>2' /proc/net/dev | grep -c .", "r");
    char line[64] = "";
    if (f && fgets(line, sizeof(line), f))
        host = line;
    if (f)
        pclose(f);
    is_str(out_of(&r), host, "network host sees the host's interfaces");
    result_release(&r, rw);
}

struct cancel_ctx {
    struct ex_sandbox *sb;
    struct result r;
    struct ex_snapshot_rw *rw;
    _Atomic int done;
};

static void *cancel_thread(void *arg)
{
    struct cancel_ctx *c = arg;
    struct step s = {.cmd = "sleep 1000 & sleep 1000", .sb = c->sb};
    c->rw = run_step(&s, &c->r);
    atomic_store(&c->done, 1);
    return NULL;
}

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void case_cancel(void)
{
    struct cancel_ctx c;
    memset(&c, 0, sizeof(c));
    c.sb = ex_sandbox_new();
    pthread_t th;
    must(pthread_create(&th, NULL, cancel_thread, &c) == 0, "pthread_create");
    pid_t init = 0, sleeper = 0;
    for (int i = 0; i < 500 && !sleeper; i++) {
        usleep(10000);
        init = sb_sandbox_pid(c.sb);
        if (!init)
            continue;
        char p[128];
        snprintf(p, sizeof(p), "/proc/%d/task/%d/children", (int)init, (int)init);
        char *kids = slurp(p);
        if (kids && atoi(kids) > 0) {
            char p2[128];
            snprintf(p2, sizeof(p2), "/proc/%d/task/%d/children", atoi(kids), atoi(kids));
            char *gk = slurp(p2);
            if (gk && atoi(gk) > 0)
                sleeper = atoi(gk);
            free(gk);
        }
        free(kids);
    }
    ok(init > 0 && sleeper > 0, "the step is running (init %d, sleep %d)", (int)init, (int)sleeper);
    char *during = slurp("/proc/self/mountinfo");
    ok(during && !strstr(during, tap_tmpdir()),
       "while a step runs, none of its mounts is in the host's table");
    free(during);
    usleep(100000);
    double t0 = mono();
    ex_sandbox_cancel(c.sb);
    pthread_join(th, NULL);
    double dt = mono() - t0;
    ok(dt < 1.0, "cancel returned within a second (%.3fs)", dt);
    is_int(c.r.err ? c.r.err->code : 0, KN_E_CANCELED, "KN_E_CANCELED");
    is_str(c.r.err ? c.r.err->msg : NULL, "canceled", "canceled message");
    ok(kill(init, 0) < 0 && errno == ESRCH, "the init is gone");
    ok(sleeper > 0 && kill(sleeper, 0) < 0 && errno == ESRCH, "the sleep is gone");
    int st;
    ok(waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD, "no zombie left");
    result_release(&c.r, c.rw);
    ex_sandbox_free(c.sb);
    struct ex_sandbox *sb = ex_sandbox_new();
    ex_sandbox_cancel(sb);
    struct result r;
    struct step s = {.cmd = "true", .sb = sb};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.err ? r.err->code : 0, KN_E_CANCELED, "cancel before run: run fails at once");
    result_release(&r, rw);
    ex_sandbox_free(sb);
}

static void case_mounts(void)
{
    char ro[4200], cache[4200], rwb[4200], secret[4200];
    snprintf(ro, sizeof(ro), "%s/host-ro", tap_tmpdir());
    snprintf(cache, sizeof(cache), "%s/host-cache", tap_tmpdir());
    snprintf(rwb, sizeof(rwb), "%s/host-rw", tap_tmpdir());
    snprintf(secret, sizeof(secret), "%s/host-secret", tap_tmpdir());
    must(mkdir(ro, 0755) == 0 && mkdir(cache, 0755) == 0 && mkdir(rwb, 0755) == 0, "mkdir");
    char p[4400];
    snprintf(p, sizeof(p), "%s/data", ro);
    put_file(p, "ro-data\n", 0644);
    snprintf(p, sizeof(p), "%s/data", rwb);
    put_file(p, "rw-data\n", 0644);
    put_file(secret, "s3cr3t", 0600);
    char sock[4200];
    snprintf(sock, sizeof(sock), "%s/agent.sock", tap_tmpdir());
    int sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    must(strlen(sock) < sizeof(sa.sun_path), "socket path too long");
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    must(sfd >= 0 && bind(sfd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind socket");
    struct ex_mount m[] = {
        {.type = EX_MOUNT_BIND, .source = ro, .target = "/mnt/ro", .readonly = true},
        {.type = EX_MOUNT_CACHE, .source = cache, .target = "/var/cache/x"},
        {.type = EX_MOUNT_BIND, .source = rwb, .target = "/src", .discard_writes = true},
        {.type = EX_MOUNT_TMPFS, .target = "/scratch", .size = 1 << 20},
        {.type = EX_MOUNT_SECRET,
         .source = secret,
         .target = "/run/secrets/token",
         .mode = 0440,
         .uid = 0,
         .gid = 0},
        {.type = EX_MOUNT_SSH, .source = sock, .target = "/run/ssh-agent.sock"},
    };
    struct result r;
    struct step s = {
        .cmd = "cat /mnt/ro/data; touch /mnt/ro/new 2>/dev/null && echo ro-WRITABLE; "
               "echo cached > /var/cache/x/f; echo changed > /src/data; cat /src/data; "
               "echo t > /scratch/t && cat /scratch/t; df -k /scratch | awk 'NR==2{print $2}'; "
               "test -S /run/ssh-agent.sock && echo sock; cat /run/secrets/token; echo; "
               "stat -c '%a %u' /run/secrets/token; echo x >> /run/secrets/token 2>/dev/null || "
               "echo secret-ro; ls /dev | sort | tr '\\n' ' '; echo; test -c /dev/null && echo "
               "devnull",
        .mounts = m,
        .n_mounts = KN_ARRAY_SIZE(m)};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, 0, "step with mounts runs");
    is_str(out_of(&r),
           "ro-data\nchanged\nt\n1024\nsock\ns3cr3t\n440 0\nsecret-ro\n"
           "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero \ndevnull\n",
           "ro bind, cache, discarded rw bind, tmpfs, secret and /dev behave");
    if (r.rc)
        printf("# %s\n", r.err ? r.err->msg : "");
    snprintf(p, sizeof(p), "%s/new", ro);
    ok(access(p, F_OK) < 0, "the read-only bind was not written");
    snprintf(p, sizeof(p), "%s/f", cache);
    char *c = slurp(p);
    is_str(c, "cached\n", "the cache mount was written through");
    free(c);
    snprintf(p, sizeof(p), "%s/data", rwb);
    c = slurp(p);
    is_str(c, "rw-data\n", "writes to a discard bind never reach the host");
    free(c);
    char *tree = list_tree(r.upper);
    is_str(tree, "", "mountpoints the sandbox created are not in the diff");
    free(tree);
    result_release(&r, rw);
    close(sfd);
}

static void case_overlay_form(void)
{
    struct result r;
    struct step s = {.cmd = "rm /etc/group && rm -rf /usr && mkdir /usr && touch /usr/n && "
                            "rm /bin/true /bin/false && echo a > /root/a"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    is_int(r.rc, 0, "deleting step runs");
    char *tree = list_tree(r.upper);
    is_str(tree,
           "./bin\n./bin/false\n./bin/true\n./etc\n./etc/group\n./root\n./root/a\n./usr\n./usr/n\n",
           "the upper holds exactly the change");
    free(tree);
    char p[4200];
    struct stat st;
    snprintf(p, sizeof(p), "%s/etc/group", r.upper);
    ok(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0) && st.st_nlink == 1,
       "a deleted file is a 0/0 char device with its own inode");
    snprintf(p, sizeof(p), "%s/usr", r.upper);
    char v[8] = "";
    ok(lgetxattr(p, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y',
       "a replaced dir is opaque (user.overlay.opaque=y)");
    ok(lgetxattr(r.upper, "user.overlay.uuid", v, sizeof(v)) < 0 &&
           lgetxattr(r.upper, "user.overlay.impure", v, sizeof(v)) < 0,
       "no overlay-private xattrs are left on the upper");
    result_release(&r, rw);
}

static void case_legacy_mount(void)
{
    setenv("KILN_OVERLAY_LEGACY", "1", 1);
    struct result r;
    struct step s = {.cmd = "cat /etc/passwd | head -1; touch /legacy"};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    unsetenv("KILN_OVERLAY_LEGACY");
    is_str(out_of(&r), "root:x:0:0:root:/root:/bin/sh\n", "mount(2) overlay path works");
    char *tree = list_tree(r.upper);
    is_str(tree, "./legacy\n", "and writes go to the upper");
    free(tree);
    result_release(&r, rw);
}

static void case_long_chain(void)
{
    /* more layers than overlayfs may stack: the bottom is flattened */
    size_t n = EX_SNAPSHOT_MAX_LOWERS + 20;
    struct kn_error *e = NULL;
    struct ex_snapshot *snap = ex_snapshot_ref(base_snap);
    char dir[4200], p[4400];
    for (size_t i = 0; i < n; i++) {
        snprintf(dir, sizeof(dir), "%s/layers/l%zu", tap_tmpdir(), i);
        if (i == 0) {
            snprintf(p, sizeof(p), "%s/layers", tap_tmpdir());
            mkdir(p, 0755);
        }
        must(mkdir(dir, 0755) == 0, dir);
        snprintf(p, sizeof(p), "%s/f%zu", dir, i);
        put_file(p, "", 0644);
        if (i == 1) { /* delete f0 again */
            snprintf(p, sizeof(p), "%s/f0", dir);
            must(mknod(p, S_IFCHR, makedev(0, 0)) == 0, "whiteout");
        }
        struct ex_snapshot *next = ex_snapshot_push(snap, dir, &e);
        ex_snapshot_unref(snap);
        snap = next;
    }
    struct ex_snapshot *saved = base_snap;
    base_snap = snap;
    struct result r;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls / | grep -c '^f'; test -e /f0 || echo f0-gone; id -u");
    struct step s = {.cmd = cmd};
    struct ex_snapshot_rw *rw = run_step(&s, &r);
    base_snap = saved;
    char want[64];
    snprintf(want, sizeof(want), "%zu\nf0-gone\n0\n", n - 1);
    is_str(out_of(&r), want, "a chain of %zu layers mounts (bottom flattened)", n + 1);
    if (r.rc)
        printf("# %s\n", r.err ? r.err->msg : "");
    result_release(&r, rw);
    ex_snapshot_unref(snap);
}

static void case_chroot(void)
{
    if (geteuid() != 0) {
        printf("ok %d - # SKIP chroot isolation needs root\n", ++tap_n);
        return;
    }
    char copy[4200];
    snprintf(copy, sizeof(copy), "%s/chroot-rootfs", tap_tmpdir());
    make_rootfs(copy);
    struct kn_error *e = NULL;
    struct ex_snapshot_rw *rw = ex_snapshot_rw_scan(copy, workroot, &e);
    must(rw != NULL, e ? e->msg : "scan rw");
    const char *argv[] = {"/bin/sh", "-c", "id -u; touch /x; rm /etc/group; cat /etc/hostname",
                          NULL};
    struct result r;
    memset(&r, 0, sizeof(r));
    struct ex_sandbox_spec spec = {.isolation = EX_ISOLATION_CHROOT,
                                   .root = rw,
                                   .argv = argv,
                                   .output = collect,
                                   .output_ctx = &r};
    struct ex_sandbox *sb = ex_sandbox_new();
    r.rc = ex_sandbox_run(sb, &spec, &r.code, &r.err);
    is_int(r.rc, 0, "a chroot step runs");
    if (r.rc)
        printf("# %s\n", r.err->msg);
    is_str(out_of(&r), "0\nkiln\n", "chroot step output");
    is_int(ex_snapshot_rw_finish(rw, &e), 0, "scan diff");
    char *tree = list_tree(ex_snapshot_rw_upper(rw));
    is_str(tree, "./etc\n./etc/group\n./x\n", "the scan diff holds exactly the change");
    free(tree);
    ex_sandbox_free(sb);
    result_release(&r, rw);
}

static void case_probe(void)
{
    is_int(ex_sandbox_probe(workroot), EX_ISOLATION_USERNS, "the probe finds user namespaces");
    is_int(ex_sandbox_resolve(EX_ISOLATION_AUTO, workroot), EX_ISOLATION_USERNS,
           "auto resolves to userns (cached)");
}

/* Threads come and go in kiln while steps start (a COPY's read-ahead, a
 * speculative cache key, gzip workers): the step's child, a raw clone of
 * this multi-threaded process, must not wait for any of them. It once hung
 * in setgroups, whose glibc wrapper signals every thread of the parent's
 * list and waits for one being created at the time of the clone. An alarm
 * turns such a hang into a failure. */
static _Atomic bool churn_stop;

static void *churn_noop(void *arg)
{
    return arg;
}

static void *churn(void *arg)
{
    (void)arg;
    while (!atomic_load(&churn_stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, churn_noop, NULL) == 0)
            pthread_join(t, NULL);
    }
    return NULL;
}

static void case_thread_churn(void)
{
    pthread_t th[2];
    atomic_store(&churn_stop, false);
    for (int i = 0; i < 2; i++)
        must(pthread_create(&th[i], NULL, churn, NULL) == 0, "churn thread");
    alarm(120);
    int okays = 0;
    for (int i = 0; i < 40; i++) {
        struct result r;
        struct step s = {.cmd = "id -G", .user = "0:0"};
        struct ex_snapshot_rw *rw = run_step(&s, &r);
        okays += r.rc == 0 && strcmp(out_of(&r), "0\n") == 0;
        result_release(&r, rw);
    }
    alarm(0);
    atomic_store(&churn_stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    is_int(okays, 40, "40 steps while threads are created and joined beside them");
}

static int run_cases(void)
{
    struct kn_error *e = NULL;
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tap_tmpdir());
    snprintf(workroot, sizeof(workroot), "%s/work", tap_tmpdir());
    must(mkdir(workroot, 0700) == 0, workroot);
    if (ex_sandbox_probe(workroot) != EX_ISOLATION_USERNS)
        tap_skip_all("user namespaces with overlayfs are not available here");
    make_rootfs(rootfs);
    const char *layers[] = {rootfs};
    base_snap = ex_snapshot_new(layers, 1, &e);
    must(base_snap != NULL, "snapshot");
    detect_subids();

    printf("# running as uid %u, subordinate ids: %s\n", (unsigned)geteuid(),
           have_subids ? "yes" : "no");
    case_probe();
    case_uid0();
    case_owner();
    case_isolation();
    case_env_user_workdir();
    case_bad_user();
    case_fail();
    case_network_none();
    case_cancel();
    case_mounts();
    case_overlay_form();
    case_legacy_mount();
    case_long_chain();
    case_chroot();
    case_thread_churn();
    ex_snapshot_unref(base_snap);
    return tap_done();
}

#endif
