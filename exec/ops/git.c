/*
 * exec/ops: source.git (ADD https://host/repo.git#ref:subdir). Fetches the
 * ref (a branch, a tag or a commit; HEAD when none) with the system's git,
 * depth 1, into a directory under the store's tmp, checks it out with its
 * submodules, and hands the tree on as a context: a COPY from it keys on
 * the content it reads, its files become 0:0, and .git is left out unless
 * --keep-git-dir asked for it.
 *
 * git runs with nothing of the user's: no system or global config, HOME
 * and the config in the checkout's own directory, no terminal prompt, ssh
 * in batch mode with no config file (an agent only when the build forwards
 * one with --ssh default, as for RUN --mount=type=ssh), and only the http, https,
 * git and ssh transports, so a build cannot read a local repository of the
 * host through file:// or a path.
 *
 * Every file, directory and symlink of the checkout gets the commit's time
 * as its mtime, so that the same commit gives the same layer on any
 * machine, whenever it is fetched.
 */
#include "internal.h"
#include "ir/base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define GIT_OUTPUT_MAX (64u << 10) /* what is kept of one git command's output */

struct git_env {
    char *home;
    char *vars[12];
    size_t n;
};

static void env_add(struct git_env *e, char *kv)
{
    e->vars[e->n++] = kv;
    e->vars[e->n] = NULL;
}

static void git_env_init(struct git_env *e, struct ex_ops *ops, const char *home)
{
    memset(e, 0, sizeof(*e));
    const char *path = getenv("PATH");
    env_add(e, kn_asprintf("PATH=%s", path && *path ? path : "/usr/bin:/bin"));
    env_add(e, kn_asprintf("HOME=%s", home));
    env_add(e, kn_strdup("GIT_CONFIG_NOSYSTEM=1"));
    env_add(e, kn_strdup("GIT_CONFIG_GLOBAL=/dev/null"));
    env_add(e, kn_strdup("GIT_TERMINAL_PROMPT=0"));
    env_add(e, kn_strdup("GIT_ALLOW_PROTOCOL=http:https:git:ssh"));
    env_add(e, kn_strdup("GIT_SSH_COMMAND=ssh -F /dev/null -o BatchMode=yes"));
    env_add(e, kn_strdup("LC_ALL=C"));
    const char *agent = ex_ops_ssh_agent(ops, "default");
    if (agent)
        env_add(e, kn_asprintf("SSH_AUTH_SOCK=%s", agent));
}

static void git_env_release(struct git_env *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->vars[i]);
}

/* Runs git with args; its stdout (and stderr, for messages) in *out.
 * Returns its exit status, or -1 with *err when it could not run. */
static int git_run(struct git_env *env, const char *const *args, struct kn_buf *out,
                   struct kn_error **err)
{
    const char *argv[16];
    size_t n = 0;
    argv[n++] = "git";
    for (; *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return kn_err_sys(err, "cannot create a pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, "git", &fa, NULL, (char *const *)argv, env->vars);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        if (rc == ENOENT)
            return kn_err_set(err, KN_E_NOTFOUND,
                              "ADD of a git repository needs git, which is not installed");
        errno = rc;
        return kn_err_sys(err, "cannot run git");
    }
    kn_buf_reset(out);
    char buf[4096];
    for (;;) {
        ssize_t r = read(p[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (out->len < GIT_OUTPUT_MAX)
            kn_buf_add(out, buf, (size_t)r);
    }
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last line git printed, for an error message. */
static const char *last_line(struct kn_buf *b)
{
    if (!b->len)
        return "no output";
    while (b->len && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
        kn_buf_truncate(b, b->len - 1);
    const char *nl = strrchr(b->data, '\n');
    return nl ? nl + 1 : b->data;
}

static bool is_commit_id(const char *ref)
{
    size_t n = strlen(ref);
    if (n != 40 && n != 64)
        return false;
    for (const char *c = ref; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

static int64_t commit_time;

static int set_mtime(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    struct timespec ts[2] = {{commit_time, 0}, {commit_time, 0}};
    utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
}

/* A subdirectory of the checkout, cleaned; NULL when it would climb out. */
static char *clean_subdir(const char *sub)
{
    struct kn_buf b = KN_BUF_INIT;
    const char *p = sub;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            kn_buf_release(&b);
            return NULL;
        }
        if (n && !(n == 1 && p[0] == '.')) {
            if (b.len)
                kn_buf_addc(&b, '/');
            kn_buf_add(&b, p, n);
        }
        p += n;
        while (*p == '/')
            p++;
    }
    return kn_buf_detach(&b);
}

/* Fetches ref of src into repo and checks it out: its commit id and time. */
static int git_checkout(struct git_env *env, const struct ir_source_git *src, const char *ref,
                        const char *repo, char commit[65], long long *when, struct kn_buf *o,
                        struct kn_error **err)
{
    const char *init[] = {"init", "-q", repo, NULL};
    const char *remote[] = {"-C", repo, "remote", "add", "origin", src->remote, NULL};
    const char *fetch[] = {"-C", repo, "fetch", "-q", "--depth=1", "origin", ref, NULL};
    const char *fetch_all[] = {"-C", repo, "fetch", "-q", "origin", NULL};
    const char *checkout_fh[] = {"-C", repo, "checkout", "-q", "--detach", "FETCH_HEAD", NULL};
    const char *checkout_id[] = {"-C", repo, "checkout", "-q", "--detach", ref, NULL};
    const char *submodules[] = {"-C",     repo,          "submodule", "update", "-q",
                                "--init", "--recursive", "--depth=1", NULL};
    const char *head[] = {"-C", repo, "log", "-1", "--format=%H %ct", NULL};
    int st;
    if ((st = git_run(env, init, o, err)) != 0 || (st = git_run(env, remote, o, err)) != 0)
        return st < 0
                   ? -1
                   : kn_err_set(err, KN_E_FAILED, "cannot set up a git checkout: %s", last_line(o));
    bool by_id = false;
    st = git_run(env, fetch, o, err);
    if (st > 0 && is_commit_id(ref)) {
        /* a server that will not serve a commit by id: fetch it all */
        by_id = true;
        st = git_run(env, fetch_all, o, err);
    }
    if (st != 0)
        return st < 0 ? -1
                      : kn_err_set(err, KN_E_NET, "cannot fetch '%s' from git repository '%s': %s",
                                   ref, src->remote, last_line(o));
    if ((st = git_run(env, by_id ? checkout_id : checkout_fh, o, err)) != 0 ||
        (st = git_run(env, submodules, o, err)) != 0)
        return st < 0 ? -1
                      : kn_err_set(err, KN_E_FAILED, "cannot check out '%s' of '%s': %s", ref,
                                   src->remote, last_line(o));
    if ((st = git_run(env, head, o, err)) != 0)
        return st < 0 ? -1 : kn_err_set(err, KN_E_FAILED, "git log: %s", last_line(o));
    if (sscanf(o->data ? o->data : "", "%64s %lld", commit, when) != 2)
        return kn_err_set(err, KN_E_FAILED, "git log printed '%s'", last_line(o));
    return 0;
}

/* The checkout's tree, without .git unless asked, dated at the commit. */
static struct ex_result *git_result(const struct ir_source_git *src, const char *ref,
                                    const char *repo, const char *sub, const char *commit,
                                    long long when, struct kn_error **err)
{
    if (!src->keep_git_dir) {
        _cleanup_free_ char *dotgit = kn_asprintf("%s/.git", repo);
        if (ex_store_remove_tree(dotgit, err) < 0)
            return NULL;
    }
    _cleanup_free_ char *dir = *sub ? kn_asprintf("%s/%s", repo, sub) : kn_strdup(repo);
    struct stat sst;
    if (lstat(dir, &sst) < 0 || !S_ISDIR(sst.st_mode)) {
        kn_err_set(err, KN_E_NOTFOUND, "'%s' is not a directory in '%s' at %s", sub, src->remote,
                   ref);
        return NULL;
    }
    /* nftw passes no context: the time is a static, under a lock */
    static pthread_mutex_t mtime_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mtime_mu);
    commit_time = when;
    nftw(repo, set_mtime, 64, FTW_PHYS | FTW_DEPTH);
    pthread_mutex_unlock(&mtime_mu);

    struct ex_result *r = ex_result_new(EX_RESULT_CONTEXT);
    r->dir = kn_strdup(dir);
    r->patterns = kn_patterns_new(NULL, 0, err);
    if (!r->patterns) {
        ex_result_unref(r);
        return NULL;
    }
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "kiln.git/1", 10);
    kn_sha256_update(&h, commit, strlen(commit) + 1);
    kn_sha256_update(&h, sub, strlen(sub) + 1);
    kn_sha256_update(&h, src->keep_git_dir ? "1" : "0", 1);
    kn_sha256_final(&h, r->id);
    return r;
}

int ex_ops_run_git(struct ex_ops *ops, const struct ir_source_git *src, struct ex_result **out,
                   struct kn_error **err)
{
    const char *ref = src->ref && *src->ref ? src->ref : "HEAD";
    _cleanup_free_ char *sub = clean_subdir(src->subdir ? src->subdir : "");
    if (!sub)
        return kn_err_set(err, KN_E_UNSAFE, "git subdirectory '%s' climbs out of the repository",
                          src->subdir);
    char *tmp = ex_store_mkdtemp(ops->o.store, "git-", err);
    if (!tmp)
        return -1;
    /* the checkout lives until the build ends (ex_ops_free removes it) */
    pthread_mutex_lock(&ops->spec_mu);
    kn_strv_push(&ops->tmpdirs, tmp);
    pthread_mutex_unlock(&ops->spec_mu);
    _cleanup_free_ char *home = kn_asprintf("%s/home", tmp);
    _cleanup_free_ char *repo = kn_asprintf("%s/repo", tmp);
    free(tmp);
    if (mkdir(home, 0700) < 0)
        return kn_err_sys(err, "cannot create '%s'", home);
    struct git_env env;
    git_env_init(&env, ops, home);
    struct kn_buf o = KN_BUF_INIT;
    char commit[65] = "";
    long long when = 0;
    int rc = git_checkout(&env, src, ref, repo, commit, &when, &o, err);
    kn_buf_release(&o);
    git_env_release(&env);
    if (rc < 0)
        return -1;
    struct ex_result *r = git_result(src, ref, repo, sub, commit, when, err);
    if (!r)
        return -1;
    kn_debug("git: %s %s is commit %s", src->remote, ref, commit);
    *out = r;
    return 0;
}
