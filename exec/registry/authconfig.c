/*
 * Registry credentials: docker's config.json and podman's auth.json
 * ("auths" entries with a base64 "auth" or "username"/"password", and
 * "identitytoken"), and credential helpers ("credHelpers" per registry,
 * "credsStore" for all): `docker-credential-NAME get` with the server URL on
 * stdin and {"Username","Secret"} on stdout, spawned without a shell. Also
 * writes and removes entries for `kiln login` / `kiln logout` (0600,
 * temporary file + rename, other keys kept). No secret is ever put in an
 * error message or a log line.
 */
#include "exec/registry/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define AUTH_FILE_MAX  (4u << 20)
#define HELPER_OUT_MAX (1u << 20)

void ex_cred_release(struct ex_cred *c)
{
    if (!c)
        return;
    /* wipe secrets before freeing */
    if (c->password)
        memset(c->password, 0, strlen(c->password));
    if (c->identity_token)
        memset(c->identity_token, 0, strlen(c->identity_token));
    free(c->user);
    free(c->password);
    free(c->identity_token);
    memset(c, 0, sizeof(*c));
}

char *ex_cred_normalize_host(const char *key)
{
    const char *p = key;
    if (kn_str_startswith(p, "https://"))
        p += 8;
    else if (kn_str_startswith(p, "http://"))
        p += 7;
    size_t n = strcspn(p, "/");
    char *h = kn_strndup(p, n);
    if (strcmp(h, "index.docker.io") == 0 || strcmp(h, "registry-1.docker.io") == 0) {
        free(h);
        h = kn_strdup("docker.io");
    }
    return h;
}

/* The server URL a credential helper is asked about, and the auths key kiln writes. */
static const char *server_url(const char *domain)
{
    return strcmp(domain, "docker.io") == 0 ? "https://index.docker.io/v1/" : domain;
}

/* ---- credential helpers ---- */

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Feeds input to the helper's stdin and collects its stdout and stderr. */
static int communicate(pid_t pid, const char *prog, int in, int o, int e, const char *input,
                       struct kn_buf *out, struct kn_buf *errout, struct kn_error **err)
{
    size_t inlen = strlen(input), off = 0;
    struct pollfd pf[3] = {{in, POLLOUT, 0}, {o, POLLIN, 0}, {e, POLLIN, 0}};
    int rc = 0;
    while (pf[0].fd >= 0 || pf[1].fd >= 0 || pf[2].fd >= 0) {
        if (poll(pf, 3, 30000) <= 0) {
            kill(pid, SIGKILL);
            rc = kn_err_set(err, KN_E_FAILED, "credential helper '%s' timed out", prog);
            break;
        }
        if (pf[0].fd >= 0 && pf[0].revents) {
            ssize_t w = inlen > off ? write(in, input + off, inlen - off) : 0;
            if (w > 0)
                off += (size_t)w;
            if (w <= 0 || off == inlen) {
                close(in);
                in = -1;
                pf[0].fd = -1;
            }
        }
        for (int i = 1; i < 3; i++) {
            if (pf[i].fd < 0 || !pf[i].revents)
                continue;
            char buf[4096];
            ssize_t r = read(pf[i].fd, buf, sizeof(buf));
            if (r <= 0) {
                pf[i].fd = -1;
                continue;
            }
            struct kn_buf *dst = i == 1 ? out : errout;
            if (dst->len + (size_t)r <= HELPER_OUT_MAX)
                kn_buf_add(dst, buf, (size_t)r);
        }
    }
    if (in >= 0)
        close(in);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs docker-credential-NAME ACTION with input on stdin (no shell); captures
 * stdout (and stderr for errors). Returns the exit status, or -1 with *err
 * when it cannot be run. */
static int run_helper(const char *name, const char *action, const char *input, struct kn_buf *out,
                      struct kn_buf *errout, struct kn_error **err)
{
    if (!*name || strchr(name, '/') || strchr(name, ' '))
        return kn_err_set(err, KN_E_PARSE, "invalid credential helper name '%s'", name);
    char *prog = kn_asprintf("docker-credential-%s", name);
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) {
        int rc = kn_err_sys(err, "cannot create a pipe for '%s'", prog);
        close_fds(in, 2);
        close_fds(o, 2);
        close_fds(e, 2);
        free(prog);
        return rc;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    posix_spawn_file_actions_adddup2(&fa, e[1], 2);
    char *argv[] = {prog, (char *)action, NULL};
    pid_t pid;
    int src = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(o[1]);
    close(e[1]);
    int rc;
    if (src != 0) {
        errno = src;
        rc = kn_err_sys(err, "cannot run credential helper '%s'", prog);
        close(in[1]);
    } else {
        rc = communicate(pid, prog, in[1], o[0], e[0], input, out, errout, err);
    }
    close(o[0]);
    close(e[0]);
    free(prog);
    return rc;
}

/* The first line of a helper's stderr/stdout, for an error message. */
static char *first_line(const struct kn_buf *b)
{
    if (!b->data)
        return kn_strdup("");
    size_t n = strcspn(b->data, "\n");
    if (n > 200)
        n = 200;
    return kn_strndup(b->data, n);
}

static int helper_get(const char *name, const char *domain, struct ex_cred *out,
                      struct kn_error **err)
{
    struct kn_buf o = KN_BUF_INIT, e = KN_BUF_INIT;
    int st = run_helper(name, "get", server_url(domain), &o, &e, err);
    if (st < 0) {
        kn_buf_release(&o);
        kn_buf_release(&e);
        return -1;
    }
    int rc = 0;
    if (st != 0) {
        /* docker-credential-* print "credentials not found in native keychain" on a miss */
        char *msg = first_line(o.len ? &o : &e);
        if (strstr(msg, "not found"))
            rc = 0;
        else
            rc = kn_err_set(err, KN_E_AUTH,
                            "credential helper 'docker-credential-%s' failed for '%s': %s", name,
                            domain, *msg ? msg : "no message");
        free(msg);
    } else {
        json_error_t je;
        json_t *j = json_loadb(o.data ? o.data : "", o.len, 0, &je);
        const char *u = j ? json_string_value(json_object_get(j, "Username")) : NULL;
        const char *s = j ? json_string_value(json_object_get(j, "Secret")) : NULL;
        if (!j || !json_is_object(j) || !s) {
            rc = kn_err_set(err, KN_E_AUTH,
                            "credential helper 'docker-credential-%s' printed no valid JSON "
                            "credentials for '%s'",
                            name, domain);
        } else if (u && strcmp(u, "<token>") == 0) {
            out->identity_token = kn_strdup(s);
            rc = 1;
        } else {
            out->user = kn_strdup(u ? u : "");
            out->password = kn_strdup(s);
            rc = 1;
        }
        json_decref(j);
    }
    if (o.data)
        memset(o.data, 0, o.len);
    kn_buf_release(&o);
    kn_buf_release(&e);
    return rc;
}

/* ---- files ---- */

static int load_json(const char *path, json_t **out, struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    *out = NULL;
    if (kn_buf_read_file(&b, path, AUTH_FILE_MAX, err) < 0) {
        kn_buf_release(&b);
        return -1;
    }
    json_error_t je;
    json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, &je);
    if (b.data)
        memset(b.data, 0, b.len);
    kn_buf_release(&b);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return kn_err_set(err, KN_E_PARSE, "malformed auth file '%s': line %d: %s", path, je.line,
                          j ? "not a JSON object" : je.text);
    }
    *out = j;
    return 0;
}

static int entry_creds(json_t *ent, const char *path, const char *key, struct ex_cred *out,
                       struct kn_error **err)
{
    const char *auth = json_string_value(json_object_get(ent, "auth"));
    const char *user = json_string_value(json_object_get(ent, "username"));
    const char *pass = json_string_value(json_object_get(ent, "password"));
    const char *itok = json_string_value(json_object_get(ent, "identitytoken"));
    if (itok && *itok) {
        out->identity_token = kn_strdup(itok);
        if (user)
            out->user = kn_strdup(user);
        return 1;
    }
    if (auth && *auth) {
        struct kn_buf d = KN_BUF_INIT;
        char *colon = NULL;
        if (ex_base64_decode(auth, &d) == 0 && d.data)
            colon = strchr(d.data, ':');
        if (!colon || strlen(d.data) != d.len) {
            if (d.data)
                memset(d.data, 0, d.len);
            kn_buf_release(&d);
            return kn_err_set(err, KN_E_PARSE,
                              "malformed auth file '%s': invalid \"auth\" for '%s' (want "
                              "base64 of user:password)",
                              path, key);
        }
        out->user = kn_strndup(d.data, (size_t)(colon - d.data));
        out->password = kn_strdup(colon + 1);
        memset(d.data, 0, d.len);
        kn_buf_release(&d);
        return 1;
    }
    if (user && *user && pass) {
        out->user = kn_strdup(user);
        out->password = kn_strdup(pass);
        return 1;
    }
    return 0;
}

/* 1 found, 0 not in this file, -1 error */
static int lookup_file(const char *path, const char *domain, struct ex_cred *out,
                       struct kn_error **err)
{
    if (access(path, F_OK) != 0)
        return 0;
    json_t *j = NULL;
    if (load_json(path, &j, err) < 0)
        return -1;
    int rc = 0;
    /* credHelpers: keys are hosts (docker.io: "index.docker.io" or "docker.io") */
    json_t *helpers = json_object_get(j, "credHelpers");
    const char *key;
    json_t *val;
    if (json_is_object(helpers)) {
        json_object_foreach(helpers, key, val)
        {
            char *h = ex_cred_normalize_host(key);
            bool match = strcmp(h, domain) == 0 && json_is_string(val);
            free(h);
            if (match) {
                rc = helper_get(json_string_value(val), domain, out, err);
                if (rc < 0)
                    kn_err_wrap(err, "in '%s'", path);
                json_decref(j);
                return rc;
            }
        }
    }
    json_t *auths = json_object_get(j, "auths");
    if (json_is_object(auths)) {
        json_object_foreach(auths, key, val)
        {
            char *h = ex_cred_normalize_host(key);
            bool match = strcmp(h, domain) == 0 && json_is_object(val);
            free(h);
            if (match) {
                rc = entry_creds(val, path, key, out, err);
                if (rc != 0)
                    break;
            }
        }
    }
    if (rc == 0) {
        const char *store = json_string_value(json_object_get(j, "credsStore"));
        if (store && *store) {
            rc = helper_get(store, domain, out, err);
            if (rc < 0)
                kn_err_wrap(err, "in '%s'", path);
        }
    }
    json_decref(j);
    return rc;
}

char *ex_cred_default_file(const char *auth_file)
{
    if (auth_file && *auth_file)
        return kn_strdup(auth_file);
    const char *dc = getenv("DOCKER_CONFIG");
    if (dc && *dc)
        return kn_asprintf("%s/config.json", dc);
    const char *home = getenv("HOME");
    return kn_asprintf("%s/.docker/config.json", home && *home ? home : "/root");
}

int ex_cred_lookup(const char *auth_file, const char *domain, struct ex_cred *out,
                   struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    if (auth_file && *auth_file)
        return lookup_file(auth_file, domain, out, err);
    struct kn_strv files = {0};
    const char *raf = getenv("REGISTRY_AUTH_FILE");
    if (raf && *raf)
        kn_strv_push(&files, raf);
    kn_strv_take(&files, ex_cred_default_file(NULL));
    const char *xrd = getenv("XDG_RUNTIME_DIR");
    if (xrd && *xrd)
        kn_strv_take(&files, kn_asprintf("%s/containers/auth.json", xrd));
    int rc = 0;
    for (size_t i = 0; i < files.n && rc == 0; i++)
        rc = lookup_file(files.v[i], domain, out, err);
    kn_strv_release(&files);
    if (rc <= 0)
        ex_cred_release(out);
    return rc;
}

/* ---- writing ---- */

static int mkdir_parent(const char *file, struct kn_error **err)
{
    char *dir = kn_strdup(file);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        /* one level is enough for ~/.docker and $DOCKER_CONFIG */
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            rc = kn_err_sys(err, "cannot create directory '%s'", dir);
    }
    free(dir);
    return rc;
}

static int write_atomic(const char *file, json_t *j, struct kn_error **err)
{
    if (mkdir_parent(file, err) < 0)
        return -1;
    char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text)
        kn_die("out of memory");
    char *tmp = kn_asprintf("%s.tmp-XXXXXX", file);
    int fd = mkostemp(tmp, O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = kn_err_sys(err, "cannot write '%s'", file);
    } else {
        size_t len = strlen(text), off = 0;
        if (fchmod(fd, 0600) < 0)
            rc = kn_err_sys(err, "cannot write '%s'", file);
        while (rc == 0 && off < len) {
            ssize_t w = write(fd, text + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                rc = kn_err_sys(err, "cannot write '%s'", file);
            else
                off += (size_t)w;
        }
        if (rc == 0 && (write(fd, "\n", 1) != 1 || fsync(fd) < 0))
            rc = kn_err_sys(err, "cannot write '%s'", file);
        close(fd);
        if (rc == 0 && rename(tmp, file) < 0)
            rc = kn_err_sys(err, "cannot rename '%s' to '%s'", tmp, file);
        if (rc < 0)
            unlink(tmp);
    }
    memset(text, 0, strlen(text));
    free(text);
    free(tmp);
    return rc;
}

static int load_or_empty(const char *file, json_t **j, struct kn_error **err)
{
    if (access(file, F_OK) != 0) {
        *j = json_object();
        return 0;
    }
    return load_json(file, j, err);
}

/* Removes every auths key that means domain; returns how many. */
static int remove_keys(json_t *auths, const char *domain)
{
    int removed = 0;
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(auths, tmp, key, val)
    {
        char *h = ex_cred_normalize_host(key);
        if (strcmp(h, domain) == 0) {
            json_object_del(auths, key);
            removed++;
        }
        free(h);
    }
    return removed;
}

/* The credential helper configured for domain in j (credHelpers, then
 * credsStore), or NULL. */
static const char *helper_for(json_t *j, const char *domain)
{
    json_t *helpers = json_object_get(j, "credHelpers");
    const char *key;
    json_t *val;
    if (json_is_object(helpers)) {
        json_object_foreach(helpers, key, val)
        {
            char *h = ex_cred_normalize_host(key);
            bool match = strcmp(h, domain) == 0 && json_is_string(val);
            free(h);
            if (match)
                return json_string_value(val);
        }
    }
    const char *store = json_string_value(json_object_get(j, "credsStore"));
    return store && *store ? store : NULL;
}

/* `docker-credential-NAME store|erase`; the input holds the secret for store */
static int helper_change(const char *name, const char *action, const char *input,
                         const char *domain, struct kn_error **err)
{
    struct kn_buf o = KN_BUF_INIT, e = KN_BUF_INIT;
    int st = run_helper(name, action, input, &o, &e, err);
    int rc = 0;
    if (st > 0) {
        char *msg = first_line(e.len ? &e : &o);
        if (strcmp(action, "erase") == 0 && strstr(msg, "not found"))
            rc = 0;
        else
            rc = kn_err_set(err, KN_E_AUTH,
                            "credential helper 'docker-credential-%s' cannot %s the credentials "
                            "of '%s': %s",
                            name, action, domain, *msg ? msg : "no message");
        free(msg);
    } else if (st < 0) {
        rc = -1;
    }
    kn_buf_release(&o);
    kn_buf_release(&e);
    return rc;
}

int ex_cred_store(const char *file, const char *domain, const char *user, const char *password,
                  struct kn_error **err)
{
    json_t *j = NULL;
    if (load_or_empty(file, &j, err) < 0)
        return -1;
    json_t *auths = json_object_get(j, "auths");
    if (!json_is_object(auths)) {
        auths = json_object();
        json_object_set_new(j, "auths", auths);
    }
    remove_keys(auths, domain);
    const char *helper = helper_for(j, domain);
    int rc = 0;
    if (helper) {
        /* as docker: the secret goes to the helper, auths keeps an empty entry */
        json_t *in = json_pack("{s:s,s:s,s:s}", "ServerURL", server_url(domain), "Username", user,
                               "Secret", password);
        char *text = json_dumps(in, JSON_COMPACT);
        rc = helper_change(helper, "store", text, domain, err);
        memset(text, 0, strlen(text));
        free(text);
        json_decref(in);
        json_object_set_new(auths, server_url(domain), json_object());
    } else {
        char *plain = kn_asprintf("%s:%s", user, password);
        char *enc = ex_base64_encode(plain, strlen(plain));
        json_object_set_new(auths, server_url(domain), json_pack("{s:s}", "auth", enc));
        memset(plain, 0, strlen(plain));
        memset(enc, 0, strlen(enc));
        free(plain);
        free(enc);
    }
    if (rc == 0)
        rc = write_atomic(file, j, err);
    json_decref(j);
    return rc;
}

int ex_cred_erase(const char *file, const char *domain, int *removed, struct kn_error **err)
{
    *removed = 0;
    if (access(file, F_OK) != 0)
        return 0;
    json_t *j = NULL;
    if (load_json(file, &j, err) < 0)
        return -1;
    json_t *auths = json_object_get(j, "auths");
    int rc = 0;
    if (json_is_object(auths))
        *removed = remove_keys(auths, domain);
    const char *helper = helper_for(j, domain);
    if (helper && *removed)
        rc = helper_change(helper, "erase", server_url(domain), domain, err);
    if (rc == 0 && *removed)
        rc = write_atomic(file, j, err);
    json_decref(j);
    return rc;
}
