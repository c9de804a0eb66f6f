/*
 * kiln executor [KANIKO FLAGS]: Kaniko's executor command line on top of
 * kiln build, so a pipeline that ran gcr.io/kaniko-project/executor only
 * changes the image. Kaniko's flags are parsed the way its pflag parser
 * does (--flag=value, --flag value, bare booleans, --bool=false, the -c -f
 * -d -v shorthands), translated into a kiln build argv and run with
 * cmd_build; the digest files are written afterwards from the build's
 * metadata file. A context given as a tarball (tar://, a .tar.gz file) is
 * untrusted input: it is unpacked with exec's layer unpacker, which refuses
 * escaping entries and bounds size and entry count. A flag kiln cannot
 * honour is a usage error that says so; flags that only tune Kaniko's own
 * snapshotting are accepted with one warning naming them.
 */
#include "kiln.h"

#include "exec/image/image.h"
#include "exec/layer/layer.h"
#include "exec/registry/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* a context tarball is untrusted: bound what it may unpack to */
#define CONTEXT_TAR_MAX_BYTES   (16ull << 30)
#define CONTEXT_TAR_MAX_ENTRIES 1000000ull
#define KANIKO_DOCKER_DIR       "/kaniko/.docker"

enum kflag_kind { KF_STRING, KF_BOOL, KF_LIST };

enum kflag_id {
    F_CONTEXT,
    F_DOCKERFILE,
    F_DESTINATION,
    F_NO_PUSH,
    F_TAR_PATH,
    F_OCI_LAYOUT_PATH,
    F_DIGEST_FILE,
    F_NAME_DIGEST_FILE,
    F_NAME_TAG_DIGEST_FILE,
    F_BUILD_ARG,
    F_TARGET,
    F_LABEL,
    F_CACHE,
    F_CACHE_REPO,
    F_CACHE_TTL,
    F_REPRODUCIBLE,
    F_COMPRESSION,
    F_COMPRESSION_LEVEL,
    F_CUSTOM_PLATFORM,
    F_INSECURE,
    F_INSECURE_PULL,
    F_INSECURE_REGISTRY,
    F_SKIP_TLS,
    F_SKIP_TLS_PULL,
    F_SKIP_TLS_REGISTRY,
    F_REGISTRY_MIRROR,
    F_REGISTRY_MAP,
    F_REGISTRY_CERT,
    F_SINGLE_SNAPSHOT,
    F_IGNORE_PATH,
    F_VERBOSITY,
    F_LOG_FORMAT,
    /* kiln's own options, for what Kaniko decides by itself */
    F_ISOLATION,
    F_NETWORK,
    F_JOBS,
    F_HELP,
    /* accepted, nothing to do (see noop_reason) */
    F_NOOP_STRING,
    F_NOOP_BOOL,
    F_NOOP_LIST,
    F_COUNT_MAX = F_NOOP_LIST + 1,
};

struct kflag {
    const char *name;
    char shorthand;
    enum kflag_kind kind;
    enum kflag_id id;
    const char *noop_reason; /* for F_NOOP_*: why kiln needs nothing */
};

static const struct kflag kflags[] = {
    {"context", 'c', KF_STRING, F_CONTEXT, NULL},
    {"dockerfile", 'f', KF_STRING, F_DOCKERFILE, NULL},
    {"destination", 'd', KF_LIST, F_DESTINATION, NULL},
    {"no-push", 0, KF_BOOL, F_NO_PUSH, NULL},
    {"tar-path", 0, KF_STRING, F_TAR_PATH, NULL},
    {"oci-layout-path", 0, KF_STRING, F_OCI_LAYOUT_PATH, NULL},
    {"digest-file", 0, KF_STRING, F_DIGEST_FILE, NULL},
    {"image-name-with-digest-file", 0, KF_STRING, F_NAME_DIGEST_FILE, NULL},
    {"image-name-tag-with-digest-file", 0, KF_STRING, F_NAME_TAG_DIGEST_FILE, NULL},
    {"build-arg", 0, KF_LIST, F_BUILD_ARG, NULL},
    {"target", 0, KF_STRING, F_TARGET, NULL},
    {"label", 0, KF_LIST, F_LABEL, NULL},
    {"cache", 0, KF_BOOL, F_CACHE, NULL},
    {"cache-repo", 0, KF_STRING, F_CACHE_REPO, NULL},
    {"cache-ttl", 0, KF_STRING, F_CACHE_TTL, NULL},
    {"reproducible", 0, KF_BOOL, F_REPRODUCIBLE, NULL},
    {"compression", 0, KF_STRING, F_COMPRESSION, NULL},
    {"compression-level", 0, KF_STRING, F_COMPRESSION_LEVEL, NULL},
    {"custom-platform", 0, KF_STRING, F_CUSTOM_PLATFORM, NULL},
    {"insecure", 0, KF_BOOL, F_INSECURE, NULL},
    {"insecure-pull", 0, KF_BOOL, F_INSECURE_PULL, NULL},
    {"insecure-registry", 0, KF_LIST, F_INSECURE_REGISTRY, NULL},
    {"skip-tls-verify", 0, KF_BOOL, F_SKIP_TLS, NULL},
    {"skip-tls-verify-pull", 0, KF_BOOL, F_SKIP_TLS_PULL, NULL},
    {"skip-tls-verify-registry", 0, KF_LIST, F_SKIP_TLS_REGISTRY, NULL},
    {"registry-mirror", 0, KF_LIST, F_REGISTRY_MIRROR, NULL},
    {"registry-map", 0, KF_LIST, F_REGISTRY_MAP, NULL},
    {"registry-certificate", 0, KF_LIST, F_REGISTRY_CERT, NULL},
    {"verbosity", 'v', KF_STRING, F_VERBOSITY, NULL},
    {"log-format", 0, KF_STRING, F_LOG_FORMAT, NULL},
    {"isolation", 0, KF_STRING, F_ISOLATION, NULL},
    {"network", 0, KF_STRING, F_NETWORK, NULL},
    {"jobs", 'j', KF_STRING, F_JOBS, NULL},
    {"help", 'h', KF_BOOL, F_HELP, NULL},
    {"snapshot-mode", 0, KF_STRING, F_NOOP_STRING,
     "kiln diffs each step's own overlay upper directory, never the whole filesystem"},
    {"use-new-run", 0, KF_BOOL, F_NOOP_BOOL,
     "kiln's RUN always snapshots only what the step wrote"},
    {"single-snapshot", 0, KF_BOOL, F_SINGLE_SNAPSHOT, NULL},
    {"cache-copy-layers", 0, KF_BOOL, F_NOOP_BOOL, "kiln caches every COPY by content"},
    {"cache-run-layers", 0, KF_BOOL, F_NOOP_BOOL, "kiln caches every RUN"},
    {"skip-unused-stages", 0, KF_BOOL, F_NOOP_BOOL, "kiln always builds only the stages needed"},
    {"cleanup", 0, KF_BOOL, F_NOOP_BOOL, "kiln never unpacks into its own root filesystem"},
    {"ignore-path", 0, KF_LIST, F_IGNORE_PATH, NULL},
    {"ignore-var-run", 0, KF_BOOL, F_NOOP_BOOL, "kiln never snapshots its own filesystem"},
    {"log-timestamp", 0, KF_BOOL, F_NOOP_BOOL, "kiln's plain progress carries step timings"},
    {"push-retry", 0, KF_STRING, F_NOOP_STRING,
     "kiln retries every registry request up to 5 times with backoff"},
    {"force", 0, KF_BOOL, F_NOOP_BOOL, "kiln does not need to run inside a container"},
    {"skip-push-permission-check", 0, KF_BOOL, F_NOOP_BOOL,
     "kiln checks push access when it pushes"},
};

struct exec_args {
    const char *str[F_COUNT_MAX];
    bool flag[F_COUNT_MAX];
    struct kn_strv list[F_COUNT_MAX];
    struct kn_strv noops; /* "--name (reason)" */
};

static void executor_usage(FILE *f)
{
    fprintf(f, "usage: kiln executor [KANIKO FLAGS]\n"
               "Kaniko's executor flags with Kaniko's meanings (see docs/executor.md):\n"
               "  -c, --context PATH|dir://PATH|tar://FILE|tar://stdin  (default /workspace/)\n"
               "  -f, --dockerfile PATH      (default Dockerfile, in the context)\n"
               "  -d, --destination REF      push to REF (repeatable)\n"
               "      --no-push  --tar-path FILE  --oci-layout-path DIR\n"
               "      --digest-file F  --image-name-with-digest-file F\n"
               "      --image-name-tag-with-digest-file F\n"
               "      --build-arg K=V  --target STAGE  --label K=V  --reproducible\n"
               "      --cache[=true]  --cache-repo REPO  --custom-platform OS/ARCH\n"
               "      --compression gzip|zstd  --compression-level N\n"
               "      --insecure  --insecure-pull  --insecure-registry HOST\n"
               "      --skip-tls-verify  --skip-tls-verify-pull  --skip-tls-verify-registry HOST\n"
               "      --registry-certificate HOST=FILE  --verbosity LEVEL  --log-format text|json\n"
               "kiln's own: --isolation auto|userns|chroot  --network host|none  --jobs N\n");
}

/* Go's strconv.ParseBool, which pflag uses: 1 t T TRUE true True / 0 f ... */
static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(yes); i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static const struct kflag *find_flag(const char *name, size_t len, char shorthand)
{
    for (size_t i = 0; i < KN_ARRAY_SIZE(kflags); i++) {
        if (shorthand ? kflags[i].shorthand == shorthand
                      : strlen(kflags[i].name) == len && strncmp(kflags[i].name, name, len) == 0)
            return &kflags[i];
    }
    return NULL;
}

static int parse_args(int argc, char **argv, struct exec_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *name, *value = NULL;
        size_t len;
        char shorthand = 0;
        if (strncmp(arg, "--", 2) == 0 && arg[2]) {
            name = arg + 2;
            const char *eq = strchr(name, '=');
            len = eq ? (size_t)(eq - name) : strlen(name);
            value = eq ? eq + 1 : NULL;
        } else if (arg[0] == '-' && arg[1] && arg[1] != '-') {
            shorthand = arg[1];
            name = arg + 1;
            len = 1;
            if (arg[2])
                value = arg[2] == '=' ? arg + 3 : arg + 2;
        } else {
            return kiln_usage_error("unexpected argument '%s': kiln executor takes only flags "
                                    "(the context is --context)",
                                    arg);
        }
        const struct kflag *f = find_flag(name, len, shorthand);
        if (!f)
            return kiln_usage_error("unknown flag '%.*s%.*s'", shorthand ? 1 : 2, "--", (int)len,
                                    name);
        if (f->kind == KF_BOOL) {
            bool b = true;
            if (value && parse_bool(value, &b) < 0)
                return kiln_usage_error("invalid value '%s' for --%s: expected true or false",
                                        value, f->name);
            a->flag[f->id] = b;
        } else {
            if (!value) {
                if (i + 1 >= argc)
                    return kiln_usage_error("flag --%s needs a value", f->name);
                value = argv[++i];
            }
            if (f->kind == KF_LIST)
                kn_strv_push(&a->list[f->id], value);
            else
                a->str[f->id] = value;
        }
        if (f->noop_reason) {
            char *note = kn_asprintf("--%s (%s)", f->name, f->noop_reason);
            bool seen = false;
            for (size_t j = 0; j < a->noops.n && !seen; j++)
                seen = strcmp(a->noops.v[j], note) == 0;
            if (seen)
                free(note);
            else
                kn_strv_take(&a->noops, note);
        }
    }
    return 0;
}

static void args_release(struct exec_args *a)
{
    for (size_t i = 0; i < F_COUNT_MAX; i++)
        kn_strv_release(&a->list[i]);
    kn_strv_release(&a->noops);
}

/* ---- the context ------------------------------------------------------------ */

/* Unpacks a context tarball (path, or "stdin") into a new temporary
 * directory; *dir gets it. */
static int unpack_context(const char *tar, char **dir, struct kn_error **err)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = kn_asprintf("%s/kiln-context-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        kn_err_sys(err, "cannot create a directory for the context");
        free(tmpl);
        return -1;
    }
    bool is_stdin = strcmp(tar, "stdin") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(tar, O_RDONLY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = kn_err_sys(err, "cannot open the context tarball '%s'", tar);
    } else {
        struct ex_unpack_limits lim = {.max_bytes = CONTEXT_TAR_MAX_BYTES,
                                       .max_entries = CONTEXT_TAR_MAX_ENTRIES};
        rc = ex_layer_unpack_fd(fd, tar, NULL, tmpl, 0, &lim, err);
        if (rc < 0)
            kn_err_wrap(err, "cannot unpack the context tarball '%s'", tar);
        if (!is_stdin)
            close(fd);
    }
    if (rc < 0) {
        struct kn_error *e = NULL;
        ex_store_remove_tree(tmpl, &e);
        kn_err_free(e);
        free(tmpl);
        return -1;
    }
    *dir = tmpl;
    return 0;
}

/* Kaniko's --context: a directory (plain or dir://), or a tarball (tar://,
 * or a file); other schemes need a network fetch kiln does not do. *dir is
 * the directory to build; *tmpdir is set when it is a temporary one. */
static int resolve_context(const char *ctx, char **dir, char **tmpdir, struct kn_error **err)
{
    *tmpdir = NULL;
    if (kn_str_startswith(ctx, "dir://")) {
        *dir = kn_strdup(ctx + 6);
        return 0;
    }
    if (kn_str_startswith(ctx, "tar://")) {
        if (unpack_context(ctx + 6, tmpdir, err) < 0)
            return -1;
        *dir = kn_strdup(*tmpdir);
        return 0;
    }
    const char *sep = strstr(ctx, "://");
    if (sep)
        return kn_err_set(err, KN_E_USAGE,
                          "context '%s': %.*s:// contexts are not supported by kiln executor "
                          "(fetch it into a directory first and pass --context dir://DIR)",
                          ctx, (int)(sep - ctx), ctx);
    struct stat st;
    if (stat(ctx, &st) < 0)
        return kn_err_set(err, KN_E_USAGE, "context '%s' does not exist", ctx);
    if (S_ISREG(st.st_mode)) {
        if (unpack_context(ctx, tmpdir, err) < 0)
            return -1;
        *dir = kn_strdup(*tmpdir);
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return kn_err_set(err, KN_E_USAGE, "context '%s' is not a directory or a tarball", ctx);
    *dir = kn_strdup(ctx);
    return 0;
}

/* Kaniko's rule: the Dockerfile path as given if it exists, else inside the
 * context. */
static char *resolve_dockerfile(const char *file, const char *ctxdir, struct kn_error **err)
{
    struct stat st;
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
        return kn_strdup(file);
    char *in = kn_asprintf("%s/%s", ctxdir, file);
    if (file[0] != '/' && stat(in, &st) == 0 && S_ISREG(st.st_mode))
        return in;
    free(in);
    kn_err_set(err, KN_E_USAGE,
               "Dockerfile '%s' not found: give a path that exists, or one inside the build "
               "context, with --dockerfile",
               file);
    return NULL;
}

/* ---- registries ---------------------------------------------------------------- */

static void push_unique(struct kn_strv *sv, const char *s)
{
    for (size_t i = 0; i < sv->n; i++)
        if (strcmp(sv->v[i], s) == 0)
            return;
    kn_strv_push(sv, s);
}

static int ref_domain(const char *name, struct kn_strv *hosts, struct kn_error **err)
{
    struct ex_ref r;
    if (ex_ref_parse(name, &r, err) < 0) {
        (*err)->code = KN_E_USAGE;
        return -1;
    }
    push_unique(hosts, r.domain);
    ex_ref_release(&r);
    return 0;
}

/* The registries the Dockerfile pulls from, for --insecure-pull and
 * --skip-tls-verify-pull: the image of every FROM that names one (stage
 * names and scratch have no registry). A FROM with a variable cannot be
 * told before the build: that is an error that names it. */
static int pull_hosts(const char *dockerfile, struct kn_strv *hosts, const char *flag,
                      struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    if (kn_buf_read_file(&b, dockerfile, 16u << 20, err) < 0)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(b.data ? b.data : (char[]){""}, "\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\n", &save)) {
        line += strspn(line, " \t");
        if (strncasecmp(line, "FROM", 4) != 0 || (line[4] != ' ' && line[4] != '\t'))
            continue;
        char *tok_save = NULL;
        char *img = NULL;
        for (char *t = strtok_r(line + 4, " \t\r", &tok_save); t;
             t = strtok_r(NULL, " \t\r", &tok_save)) {
            if (strncmp(t, "--", 2) != 0) {
                img = t;
                break;
            }
        }
        if (!img || strcmp(img, "scratch") == 0)
            continue;
        if (strchr(img, '$')) {
            rc = kn_err_set(err, KN_E_USAGE,
                            "%s: cannot tell the registry of 'FROM %s' before the build: name "
                            "it with --insecure-registry or --skip-tls-verify-registry",
                            flag, img);
            break;
        }
        /* only a first component that looks like a host names a registry;
         * anything else is Docker Hub or an earlier stage's name */
        const char *slash = strchr(img, '/');
        if (!slash)
            continue;
        size_t n = (size_t)(slash - img);
        bool host = memchr(img, '.', n) || memchr(img, ':', n) ||
                    (n == 9 && strncmp(img, "localhost", 9) == 0);
        if (host)
            rc = ref_domain(img, hosts, err);
    }
    kn_buf_release(&b);
    return rc;
}

/* ---- translating ------------------------------------------------------------------ */

static int log_level_of(const char *v)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {
        {"panic", KN_LOG_ERROR}, {"fatal", KN_LOG_ERROR},  {"error", KN_LOG_ERROR},
        {"warn", KN_LOG_WARN},   {"warning", KN_LOG_WARN}, {"info", KN_LOG_INFO},
        {"debug", KN_LOG_DEBUG}, {"trace", KN_LOG_TRACE},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(levels); i++)
        if (strcasecmp(v, levels[i].name) == 0)
            return levels[i].level;
    return -1;
}

/* the repository of a destination, without tag or digest, as written */
static char *strip_tag(const char *dest)
{
    size_t n = strcspn(dest, "@");
    const char *last = dest;
    for (const char *p = dest; p < dest + n; p++)
        if (*p == '/')
            last = p;
    const char *colon = memchr(last, ':', n - (size_t)(last - dest));
    return kn_strndup(dest, colon ? (size_t)(colon - dest) : n);
}

/* a destination with its tag (":latest" added when it has none) */
static char *with_tag(const char *dest)
{
    char *repo = strip_tag(dest);
    const char *at = strchr(dest, '@');
    size_t n = at ? (size_t)(at - dest) : strlen(dest);
    char *out = strlen(repo) < n ? kn_strndup(dest, n) : kn_asprintf("%s:latest", repo);
    free(repo);
    return out;
}

struct translation {
    struct kn_strv argv; /* for cmd_build */
    char *ctxdir, *tmpctx, *dockerfile, *metadata;
};

static void translation_release(struct translation *t)
{
    kn_strv_release(&t->argv);
    if (t->tmpctx) {
        struct kn_error *e = NULL;
        if (ex_store_remove_tree(t->tmpctx, &e) < 0)
            kn_warn("cannot remove the unpacked context '%s': %s", t->tmpctx, e->msg);
        kn_err_free(e);
    }
    if (t->metadata)
        unlink(t->metadata);
    free(t->tmpctx);
    free(t->ctxdir);
    free(t->dockerfile);
    free(t->metadata);
}

static void add2(struct kn_strv *sv, const char *opt, const char *v)
{
    kn_strv_push(sv, opt);
    kn_strv_push(sv, v);
}

static int translate(struct exec_args *a, struct translation *t, struct kn_error **err)
{
    struct kn_strv *v = &t->argv;
    const struct kn_strv *dests = &a->list[F_DESTINATION];
    kn_strv_push(v, "build");

    /* flags kiln cannot honour */
    if (a->list[F_REGISTRY_MIRROR].n)
        return kn_err_set(err, KN_E_USAGE,
                          "--registry-mirror is not supported: kiln pulls from the registry an "
                          "image names (point FROM at the mirror, or use --build-arg for it)");
    if (a->list[F_REGISTRY_MAP].n)
        return kn_err_set(err, KN_E_USAGE,
                          "--registry-map is not supported: kiln pulls from the registry an "
                          "image names (point FROM at the other registry)");
    if (!dests->n && !a->flag[F_NO_PUSH])
        return kn_err_set(err, KN_E_USAGE,
                          "no --destination given: name one, or build without pushing with "
                          "--no-push");
    /* both change what the image holds under Kaniko: refused, not ignored */
    if (a->flag[F_SINGLE_SNAPSHOT])
        return kn_err_set(err, KN_E_USAGE,
                          "--single-snapshot is not supported: kiln makes one layer per step "
                          "and cannot squash them into one");
    if (a->list[F_IGNORE_PATH].n)
        return kn_err_set(err, KN_E_USAGE,
                          "--ignore-path is not supported: kiln keeps everything a step writes "
                          "in its layer (remove the files in the step, or use a cache or tmpfs "
                          "mount)");
    if (a->str[F_CACHE_TTL] && a->flag[F_CACHE])
        return kn_err_set(err, KN_E_USAGE,
                          "--cache-ttl is not supported: kiln's cache keys are content-based and "
                          "its registry cache entries do not expire (delete old tags from the "
                          "cache repository instead)");

    /* the context and the Dockerfile */
    const char *ctx = a->str[F_CONTEXT] ? a->str[F_CONTEXT] : "/workspace/";
    if (resolve_context(ctx, &t->ctxdir, &t->tmpctx, err) < 0)
        return -1;
    t->dockerfile = resolve_dockerfile(a->str[F_DOCKERFILE] ? a->str[F_DOCKERFILE] : "Dockerfile",
                                       t->ctxdir, err);
    if (!t->dockerfile)
        return -1;
    add2(v, "--file", t->dockerfile);

    /* names and outputs */
    for (size_t i = 0; i < dests->n; i++) {
        struct kn_strv dummy = {0};
        int rc = ref_domain(dests->v[i], &dummy, err);
        kn_strv_release(&dummy);
        if (rc < 0)
            return kn_err_wrap(err, "invalid --destination '%s'", dests->v[i]);
        add2(v, "--tag", dests->v[i]);
    }
    if (dests->n && !a->flag[F_NO_PUSH])
        kn_strv_push(v, "--push");
    if (a->str[F_TAR_PATH]) {
        char *o = kn_asprintf("type=docker,dest=%s", a->str[F_TAR_PATH]);
        add2(v, "--output", o);
        free(o);
    }
    if (a->str[F_OCI_LAYOUT_PATH]) {
        char *o = kn_asprintf("type=oci,dest=%s,tar=false", a->str[F_OCI_LAYOUT_PATH]);
        add2(v, "--output", o);
        free(o);
    }
    if (a->str[F_DIGEST_FILE] || a->str[F_NAME_DIGEST_FILE] || a->str[F_NAME_TAG_DIGEST_FILE]) {
        const char *base = getenv("TMPDIR");
        t->metadata = kn_asprintf("%s/kiln-metadata-XXXXXX", base && *base ? base : "/tmp");
        int fd = mkstemp(t->metadata);
        if (fd < 0) {
            free(t->metadata);
            t->metadata = NULL;
            return kn_err_sys(err, "cannot create a temporary metadata file");
        }
        close(fd);
        add2(v, "--metadata-file", t->metadata);
    }

    /* the build itself */
    for (size_t i = 0; i < a->list[F_BUILD_ARG].n; i++)
        add2(v, "--build-arg", a->list[F_BUILD_ARG].v[i]);
    for (size_t i = 0; i < a->list[F_LABEL].n; i++)
        add2(v, "--label", a->list[F_LABEL].v[i]);
    if (a->str[F_TARGET])
        add2(v, "--target", a->str[F_TARGET]);
    if (a->str[F_CUSTOM_PLATFORM])
        add2(v, "--platform", a->str[F_CUSTOM_PLATFORM]);
    if (a->flag[F_REPRODUCIBLE])
        add2(v, "--source-date-epoch", "0");
    if (a->str[F_COMPRESSION] || a->str[F_COMPRESSION_LEVEL]) {
        const char *c = a->str[F_COMPRESSION] ? a->str[F_COMPRESSION] : "gzip";
        char *spec = a->str[F_COMPRESSION_LEVEL]
                         ? kn_asprintf("%s:%s", c, a->str[F_COMPRESSION_LEVEL])
                         : kn_strdup(c);
        add2(v, "--compression", spec);
        free(spec);
    }
    if (a->str[F_ISOLATION])
        add2(v, "--isolation", a->str[F_ISOLATION]);
    if (a->str[F_NETWORK])
        add2(v, "--network", a->str[F_NETWORK]);
    if (a->str[F_JOBS])
        add2(v, "--jobs", a->str[F_JOBS]);

    /* progress and logs */
    const char *fmt = a->str[F_LOG_FORMAT];
    if (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0 && strcmp(fmt, "color") != 0)
        return kn_err_set(err, KN_E_USAGE, "unknown --log-format '%s' (text, color or json)", fmt);
    add2(v, "--progress", fmt && strcmp(fmt, "json") == 0 ? "json" : "plain");
    if (a->str[F_VERBOSITY]) {
        int lvl = log_level_of(a->str[F_VERBOSITY]);
        if (lvl < 0)
            return kn_err_set(err, KN_E_USAGE,
                              "unknown --verbosity '%s' (panic, fatal, error, warn, info, debug "
                              "or trace)",
                              a->str[F_VERBOSITY]);
        kn_log_level = lvl;
    }

    /* the registry cache */
    const char *cache_repo = a->str[F_CACHE_REPO];
    char *inferred = NULL;
    if (a->flag[F_CACHE]) {
        if (!cache_repo) {
            /* Kaniko's default: <the first destination's repository>/cache */
            if (!dests->n)
                return kn_err_set(err, KN_E_USAGE,
                                  "--cache needs --cache-repo (or a --destination to derive "
                                  "REPO/cache from)");
            char *repo = strip_tag(dests->v[0]);
            inferred = kn_asprintf("%s/cache", repo);
            free(repo);
            cache_repo = inferred;
        }
        char *spec = kn_asprintf("type=registry,ref=%s", cache_repo);
        add2(v, "--cache-from", spec);
        add2(v, "--cache-to", spec);
        free(spec);
    }

    /* TLS and plain HTTP: kiln marks hosts insecure (HTTP allowed, TLS
     * not verified); gather every host each Kaniko flag covers */
    struct kn_strv hosts = {0};
    int rc = 0;
    bool push_hosts = a->flag[F_INSECURE] || a->flag[F_SKIP_TLS];
    for (size_t i = 0; push_hosts && i < dests->n && rc == 0; i++)
        rc = ref_domain(dests->v[i], &hosts, err);
    if (rc == 0 && push_hosts && cache_repo && a->flag[F_CACHE])
        rc = ref_domain(cache_repo, &hosts, err);
    if (rc == 0 && a->flag[F_INSECURE_PULL])
        rc = pull_hosts(t->dockerfile, &hosts, "--insecure-pull", err);
    if (rc == 0 && a->flag[F_SKIP_TLS_PULL])
        rc = pull_hosts(t->dockerfile, &hosts, "--skip-tls-verify-pull", err);
    for (size_t i = 0; i < a->list[F_INSECURE_REGISTRY].n; i++)
        push_unique(&hosts, a->list[F_INSECURE_REGISTRY].v[i]);
    for (size_t i = 0; i < a->list[F_SKIP_TLS_REGISTRY].n; i++)
        push_unique(&hosts, a->list[F_SKIP_TLS_REGISTRY].v[i]);
    for (size_t i = 0; i < hosts.n; i++)
        add2(v, "--insecure-registry", hosts.v[i]);
    kn_strv_release(&hosts);
    free(inferred);
    if (rc < 0)
        return -1;

    /* --registry-certificate HOST=FILE: kiln takes one CA bundle */
    const struct kn_strv *certs = &a->list[F_REGISTRY_CERT];
    const char *ca = NULL, *ca_host = NULL;
    for (size_t i = 0; i < certs->n; i++) {
        const char *eq = strchr(certs->v[i], '=');
        if (!eq || eq == certs->v[i] || !eq[1])
            return kn_err_set(err, KN_E_USAGE,
                              "invalid --registry-certificate '%s': expected HOST=FILE",
                              certs->v[i]);
        if (ca && strcmp(ca, eq + 1) != 0)
            return kn_err_set(err, KN_E_USAGE,
                              "--registry-certificate: kiln takes one CA bundle for every "
                              "registry, got '%s' for %.*s and '%s' for %.*s (concatenate them "
                              "into one file)",
                              ca, (int)strcspn(ca_host, "="), ca_host, eq + 1,
                              (int)(eq - certs->v[i]), certs->v[i]);
        ca = eq + 1;
        ca_host = certs->v[i];
    }
    if (ca)
        add2(v, "--registry-ca", ca);

    kn_strv_push(v, t->ctxdir);
    return 0;
}

/* ---- digest files ------------------------------------------------------------------ */

/* Written in place, as Kaniko does, not through a temporary name: Kaniko's
 * README points --digest-file at /dev/termination-log, a file bind-mounted
 * into a directory where nothing can be created or renamed over. */
static int write_plain(const char *path, const char *data, size_t len, struct kn_error **err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_err_sys(err, "cannot write '%s'", path);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            kn_err_sys(err, "cannot write '%s'", path);
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (close(fd) < 0)
        return kn_err_sys(err, "cannot write '%s'", path);
    return 0;
}

static int write_digest_files(const struct exec_args *a, const char *metadata,
                              struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    if (kn_buf_read_file(&b, metadata, 1u << 20, err) < 0)
        return kn_err_wrap(err, "cannot read the build's metadata");
    json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    kn_buf_release(&b);
    const char *digest = json_string_value(json_object_get(j, "containerimage.digest"));
    int rc = 0;
    if (!kn_digest_valid(digest))
        rc = kn_err_set(err, KN_E_INTERNAL, "the build's metadata has no image digest");
    if (rc == 0 && a->str[F_DIGEST_FILE])
        rc = write_plain(a->str[F_DIGEST_FILE], digest, strlen(digest), err);
    const struct kn_strv *dests = &a->list[F_DESTINATION];
    for (int which = 0; which < 2 && rc == 0; which++) {
        const char *path = a->str[which == 0 ? F_NAME_DIGEST_FILE : F_NAME_TAG_DIGEST_FILE];
        if (!path)
            continue;
        struct kn_buf out = KN_BUF_INIT;
        for (size_t i = 0; i < dests->n; i++) {
            char *name = which == 0 ? strip_tag(dests->v[i]) : with_tag(dests->v[i]);
            kn_buf_addf(&out, "%s@%s\n", name, digest);
            free(name);
        }
        rc = write_plain(path, out.data ? out.data : "", out.len, err);
        kn_buf_release(&out);
    }
    json_decref(j);
    return rc;
}

int cmd_executor(int argc, char **argv)
{
    struct exec_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        args_release(&a);
        return rc;
    }
    if (a.flag[F_HELP]) {
        executor_usage(stdout);
        args_release(&a);
        return KILN_EXIT_OK;
    }
    if (a.noops.n) {
        struct kn_buf b = KN_BUF_INIT;
        for (size_t i = 0; i < a.noops.n; i++)
            kn_buf_addf(&b, "%s%s", i ? ", " : "", a.noops.v[i]);
        kn_warn("accepted for Kaniko compatibility, nothing to do: %s", b.data);
        kn_buf_release(&b);
    }
    /* Kaniko reads credentials from /kaniko/.docker/config.json */
    const char *dc = getenv("DOCKER_CONFIG");
    if ((!dc || !*dc) && access(KANIKO_DOCKER_DIR "/config.json", R_OK) == 0)
        setenv("DOCKER_CONFIG", KANIKO_DOCKER_DIR, 1);

    struct translation t = {0};
    struct kn_error *err = NULL;
    int status = KILN_EXIT_OK;
    if (translate(&a, &t, &err) < 0) {
        kiln_print_error(err);
        status = kiln_exit_status(err);
        kn_err_free(err);
    } else {
        if (kn_log_level >= KN_LOG_DEBUG) {
            struct kn_buf b = KN_BUF_INIT;
            for (size_t i = 0; i < t.argv.n; i++)
                kn_buf_addf(&b, " %s", t.argv.v[i]);
            kn_debug("executor: kiln%s", b.data);
            kn_buf_release(&b);
        }
        status = cmd_build((int)t.argv.n, t.argv.v);
        if (status == KILN_EXIT_OK && t.metadata && write_digest_files(&a, t.metadata, &err) < 0) {
            kiln_print_error(err);
            status = kiln_exit_status(err);
            kn_err_free(err);
        }
    }
    translation_release(&t);
    args_release(&a);
    return status;
}
