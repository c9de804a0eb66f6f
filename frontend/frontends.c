/*
 * The table of frontends and the two that are not the Dockerfile:
 *
 *  - "ir": the request's data is an IR JSON document (ir_graph_from_json),
 *    e.g. what `kiln graph --format json` printed;
 *  - "exec:PATH": an external program. kiln starts PATH (posix_spawn, no
 *    shell), writes the request as one JSON object on its stdin
 *    ({"context", "file", "dockerfile", "build_args", "target", "platform",
 *    "labels", "contexts"}), reads IR JSON from its stdout (at most 64 MiB)
 *    and keeps the tail of its stderr for the error when it exits non-zero.
 *
 * Selection (fe_frontend_select): an explicit name wins; otherwise the
 * Dockerfile's `# syntax=` directive; otherwise "dockerfile". The directive
 * may only name the built-in Dockerfile frontend: "dockerfile" or Docker's
 * frontend images (docker/dockerfile:1, docker/dockerfile:1.7-labs,
 * docker.io/docker/dockerfile..., docker/dockerfile-upstream...), which all
 * map to it. "ir" and "exec:..." are refused there on purpose: a
 * Dockerfile must not be able to make kiln run a program of its choosing,
 * and an IR file has no comments to carry a directive; both are selected
 * with --frontend only. Any other name is an error naming it.
 */
#include "frontend/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define FE_EXEC_MAX_OUTPUT  (64u << 20)
#define FE_EXEC_STDERR_TAIL 4096

static struct ir_graph *ir_lower(const struct fe_request *req, struct kn_error **err)
{
    const char *name = req->file_name ? req->file_name : "graph.json";
    struct ir_graph *g = ir_graph_from_json(req->data ? req->data : "", req->len, name, err);
    if (!g)
        kn_err_wrap(err, "frontend 'ir'");
    return g;
}

/* fe_frontend has no context pointer, so the path of the exec frontend
 * chosen last on this thread is kept here; fe_build_graph selects and lowers
 * on the same thread. NEEDSWORK: a `void *arg` in struct fe_frontend. */
static _Thread_local char exec_path[4096];

static struct ir_graph *exec_lower(const struct fe_request *req, struct kn_error **err);

static const struct fe_frontend frontends[] = {
    {"dockerfile", fe_dockerfile_lower},
    {"ir", ir_lower},
    {"exec", exec_lower},
};

/* Docker's names for its Dockerfile frontend images. */
static bool is_docker_frontend(const char *name)
{
    static const char *const prefixes[] = {
        "docker/dockerfile",
        "docker.io/docker/dockerfile",
        "index.docker.io/docker/dockerfile",
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(prefixes); i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], n) != 0)
            continue;
        const char *rest = name + n;
        if (*rest == 0 || *rest == ':' || *rest == '@' || kn_str_startswith(rest, "-upstream"))
            return true;
    }
    return false;
}

char *fe_syntax_directive(const char *data, size_t len)
{
    /* parser directives: `# key=value` lines at the very top, before any
     * blank line, comment or instruction */
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len) {
        size_t e = i;
        while (e < len && data[e] != '\n')
            e++;
        const char *p = data + i;
        const char *end = data + e;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end || *p != '#')
            return NULL;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq)
            return NULL;
        const char *ke = eq;
        while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t'))
            ke--;
        if ((size_t)(ke - p) == 6 && strncasecmp(p, "syntax", 6) == 0) {
            const char *v = eq + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
                ve--;
            return kn_strndup(v, (size_t)(ve - v));
        }
        i = e + 1;
    }
    return NULL;
}

const struct fe_frontend *fe_frontend_select(const char *name, const char *data, size_t len,
                                             struct kn_error **err)
{
    char *syntax = NULL;
    bool from_directive = false;
    if (!name || !*name) {
        syntax = data ? fe_syntax_directive(data, len) : NULL;
        name = syntax;
        from_directive = syntax != NULL;
    }
    const struct fe_frontend *fe = NULL;
    if (!name || strcmp(name, "dockerfile") == 0 || is_docker_frontend(name)) {
        fe = &frontends[0];
    } else if (!from_directive && strcmp(name, "ir") == 0) {
        fe = &frontends[1];
    } else if (!from_directive && kn_str_startswith(name, "exec:")) {
        const char *path = name + 5;
        if (!*path || strlen(path) >= sizeof(exec_path)) {
            kn_err_set(err, KN_E_USAGE, "invalid frontend '%s': want exec:PATH", name);
        } else {
            strcpy(exec_path, path);
            fe = &frontends[2];
        }
    } else if (from_directive && (strcmp(name, "ir") == 0 || kn_str_startswith(name, "exec:"))) {
        kn_err_set(err, KN_E_USAGE,
                   "frontend '%s' cannot be selected by a syntax directive: use --frontend", name);
    } else {
        kn_err_set(err, KN_E_USAGE,
                   "unknown frontend '%s'%s (known: dockerfile, docker/dockerfile:*, ir, "
                   "exec:PATH)",
                   name, from_directive ? " in the syntax directive" : "");
    }
    free(syntax);
    return fe;
}

struct ir_graph *fe_build_graph(const struct fe_request *req, const char *frontend_name,
                                struct kn_error **err)
{
    const struct fe_frontend *fe = fe_frontend_select(frontend_name, req->data, req->len, err);
    if (!fe)
        return NULL;
    struct ir_graph *g = fe->lower(req, err);
    if (g && g->noutputs == 0) {
        ir_graph_free(g);
        kn_err_set(err, KN_E_PARSE, "frontend '%s' produced a graph without outputs",
                   frontend_name ? frontend_name : fe->name);
        return NULL;
    }
    return g;
}

/* ---- exec:PATH ------------------------------------------------------------ */

static char *request_json(const struct fe_request *req)
{
    json_t *o = json_object();
    json_object_set_new(o, "context", json_string(req->context_dir ? req->context_dir : ""));
    json_object_set_new(o, "file", json_string(req->file_name ? req->file_name : "Dockerfile"));
    json_object_set_new(o, "dockerfile",
                        json_stringn(req->data ? req->data : "", req->data ? req->len : 0));
    json_t *ba = json_object();
    for (size_t i = 0; i < req->nbuild_args; i++) {
        const char *s = req->build_args[i];
        const char *eq = strchr(s, '=');
        char *k = eq ? kn_strndup(s, (size_t)(eq - s)) : kn_strdup(s);
        const char *v = eq ? eq + 1 : getenv(s);
        if (v)
            json_object_set_new(ba, k, json_string(v));
        free(k);
    }
    json_object_set_new(o, "build_args", ba);
    json_object_set_new(o, "target", req->target ? json_string(req->target) : json_null());
    json_object_set_new(o, "platform", req->platform ? json_string(req->platform) : json_null());
    json_t *labels = json_object();
    for (size_t i = 0; i < req->nlabels; i++) {
        const char *s = req->labels[i];
        const char *eq = strchr(s, '=');
        char *k = eq ? kn_strndup(s, (size_t)(eq - s)) : kn_strdup(s);
        json_object_set_new(labels, k, json_string(eq ? eq + 1 : ""));
        free(k);
    }
    json_object_set_new(o, "labels", labels);
    json_t *ctx = json_object();
    for (size_t i = 0; i < req->ncontexts; i++)
        json_object_set_new(ctx, req->contexts[i].name, json_string(req->contexts[i].src));
    json_object_set_new(o, "contexts", ctx);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s)
        kn_die("cannot serialize a frontend request");
    return s;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static struct ir_graph *exec_lower(const struct fe_request *req, struct kn_error **err)
{
    char path[sizeof(exec_path)];
    strcpy(path, exec_path);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        kn_err_sys(err, "cannot create pipes for frontend 'exec:%s'", path);
        for (int i = 0; i < 2; i++) {
            close_fd(&in[i]);
            close_fd(&out[i]);
            close_fd(&errp[i]);
        }
        return NULL;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    char *argv[] = {path, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&errp[1]);
    if (rc != 0) {
        errno = rc;
        kn_err_sys(err, "cannot start frontend 'exec:%s'", path);
        close_fd(&in[1]);
        close_fd(&out[0]);
        close_fd(&errp[0]);
        return NULL;
    }

    char *request = request_json(req);
    size_t reqlen = strlen(request), written = 0;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    struct kn_buf obuf = KN_BUF_INIT, ebuf = KN_BUF_INIT;
    bool too_big = false;
    /* a SIGPIPE from a frontend that does not read its stdin must not kill us */
    struct sigaction ign = {0}, old;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old);
    while (out[0] >= 0 || errp[0] >= 0) {
        struct pollfd p[3];
        int np = 0, iout = -1, ierr = -1, iin = -1;
        if (out[0] >= 0) {
            p[np] = (struct pollfd){out[0], POLLIN, 0};
            iout = np++;
        }
        if (errp[0] >= 0) {
            p[np] = (struct pollfd){errp[0], POLLIN, 0};
            ierr = np++;
        }
        if (in[1] >= 0) {
            p[np] = (struct pollfd){in[1], POLLOUT, 0};
            iin = np++;
        }
        if (poll(p, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char chunk[65536];
        if (iin >= 0 && p[iin].revents) {
            ssize_t w = write(in[1], request + written, reqlen - written);
            if (w > 0)
                written += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                written = reqlen; /* it stopped reading: let it fail or answer */
            if (written == reqlen)
                close_fd(&in[1]);
        }
        if (iout >= 0 && p[iout].revents) {
            ssize_t r = read(out[0], chunk, sizeof(chunk));
            if (r > 0) {
                if (obuf.len + (size_t)r > FE_EXEC_MAX_OUTPUT) {
                    too_big = true;
                    kill(pid, SIGKILL);
                    close_fd(&out[0]);
                } else {
                    kn_buf_add(&obuf, chunk, (size_t)r);
                }
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close_fd(&out[0]);
            }
        }
        if (ierr >= 0 && p[ierr].revents) {
            ssize_t r = read(errp[0], chunk, sizeof(chunk));
            if (r > 0) {
                kn_buf_add(&ebuf, chunk, (size_t)r);
                if (ebuf.len > 2 * FE_EXEC_STDERR_TAIL) {
                    /* keep only the tail */
                    size_t keep = FE_EXEC_STDERR_TAIL;
                    memmove(ebuf.data, ebuf.data + ebuf.len - keep, keep);
                    ebuf.len = keep;
                    ebuf.data[keep] = 0;
                }
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close_fd(&errp[0]);
            }
        }
    }
    close_fd(&in[1]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGPIPE, &old, NULL);
    free(request);

    struct ir_graph *g = NULL;
    const char *tail = ebuf.data ? ebuf.data : "";
    if (ebuf.len > FE_EXEC_STDERR_TAIL)
        tail = ebuf.data + ebuf.len - FE_EXEC_STDERR_TAIL;
    while (ebuf.len && (ebuf.data[ebuf.len - 1] == '\n'))
        ebuf.data[--ebuf.len] = 0;
    if (too_big) {
        kn_err_set(err, KN_E_UNSAFE, "frontend 'exec:%s' wrote more than %u bytes", path,
                   FE_EXEC_MAX_OUTPUT);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        struct kn_error *e =
            WIFEXITED(status)
                ? kn_err_new(KN_E_FAILED, "frontend 'exec:%s' failed with exit status %d", path,
                             WEXITSTATUS(status))
                : kn_err_new(KN_E_FAILED, "frontend 'exec:%s' killed by signal %d", path,
                             WTERMSIG(status));
        if (*tail)
            kn_err_set_detail(e, tail);
        if (err && !*err)
            *err = e;
        else
            kn_err_free(e);
    } else {
        g = ir_graph_from_json(obuf.data ? obuf.data : "", obuf.len, "frontend output", err);
        if (!g)
            kn_err_wrap(err, "frontend 'exec:%s' produced invalid IR", path);
    }
    kn_buf_release(&obuf);
    kn_buf_release(&ebuf);
    return g;
}
