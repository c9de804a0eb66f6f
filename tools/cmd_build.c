/*
 * kiln build [options] CONTEXT: the whole pipeline. The frontend lowers
 * the Dockerfile into a graph, the scheduler runs it with exec's op
 * handlers, and the result is assembled into an image and handed to every
 * exporter asked for (-o, --push, --iidfile, --metadata-file).
 */
#include "build.h"

#include "exec/fileop/fileop.h"

#include "ir/base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void build_usage(FILE *f)
{
    fprintf(
        f,
        "usage: kiln build [OPTIONS] CONTEXT\n"
        "  -f, --file PATH              Dockerfile (default CONTEXT/Dockerfile; - for stdin)\n"
        "      --target STAGE           build this stage (default: the last)\n"
        "      --build-arg KEY[=VALUE]  set a build argument (repeatable)\n"
        "      --platform OS/ARCH[/V]   target platform\n"
        "  -t, --tag REF                name the image (repeatable)\n"
        "  -o, --output SPEC            type=oci,dest=PATH | type=docker,dest=FILE |\n"
        "                               type=registry | type=local,dest=DIR (repeatable)\n"
        "      --push                   push every --tag (type=registry)\n"
        "      --build-context NAME=SRC a directory, docker-image://REF, oci-layout://PATH[:TAG]\n"
        "      --label KEY=VALUE        add a label to the image (repeatable)\n"
        "      --cache-dir DIR          the store and build cache (default $KILN_ROOT)\n"
        "      --no-cache               run every step\n"
        "      --cache-from type=registry,ref=REF  reuse steps cached in a registry (repeatable)\n"
        "      --cache-to type=registry,ref=REF    cache every step in a registry\n"
        "  -j, --jobs N                 parallel steps (default: twice the CPUs, at least 4)\n"
        "      --progress MODE          auto|tty|plain|json|quiet\n"
        "  -q, --quiet                  same as --progress quiet\n"
        "      --trace FILE             write a Chrome trace of the build\n"
        "      --secret id=ID,src=FILE|env=VAR  a secret for RUN --mount=type=secret\n"
        "      --network host|none      network of RUN steps (default host)\n"
        "      --ssh ID[=SOCKET]        forward an ssh agent to RUN --mount=type=ssh,id=ID\n"
        "                               (default: $SSH_AUTH_SOCK; repeatable)\n"
        "      --check                  run the build checks (# check=) only: warnings, and\n"
        "                               exit 1 when there is any\n"
        "      --allow security.insecure  let RUN --security=insecure run with every capability\n"
        "                               and no seccomp filter\n"
        "      --isolation auto|userns|chroot\n"
        "      --compression gzip|zstd|none[:LEVEL]\n"
        "      --source-date-epoch N    clamp timestamps (reproducible builds)\n"
        "      --iidfile FILE           write the image ID (config digest)\n"
        "      --metadata-file FILE     write digests and names as JSON\n"
        "      --frontend NAME          dockerfile, ir, exec:PATH\n" KILN_REGISTRY_USAGE);
}

enum {
    OPT_TARGET = 256,
    OPT_BUILD_ARG,
    OPT_PLATFORM,
    OPT_PUSH,
    OPT_BUILD_CONTEXT,
    OPT_LABEL,
    OPT_CACHE_DIR,
    OPT_NO_CACHE,
    OPT_CACHE_FROM,
    OPT_CACHE_TO,
    OPT_PROGRESS,
    OPT_TRACE,
    OPT_SECRET,
    OPT_NETWORK,
    OPT_ALLOW,
    OPT_SSH,
    OPT_CHECK,
    OPT_ISOLATION,
    OPT_COMPRESSION,
    OPT_SDE,
    OPT_IIDFILE,
    OPT_METADATA,
    OPT_FRONTEND,
};

struct build_args {
    const char *context, *file, *target, *platform, *cache_dir, *progress, *trace;
    const char *iidfile, *metadata, *frontend;
    struct kn_strv build_args, tags, contexts, labels;
    struct kiln_registry_args reg;
    struct kn_strv cache_from; /* registry references */
    const char *cache_to;
    KN_VEC(struct ex_output) outputs;
    KN_VEC(struct ex_secret) secrets;
    KN_VEC(struct ex_ssh_agent) ssh; /* strings in secret_strs */
    struct kn_strv secret_strs;
    bool push, no_cache;
    bool allow_insecure; /* --allow security.insecure */
    bool check;          /* --check: run the build checks only */
    int jobs;
    enum ex_network network;
    enum ex_isolation isolation;
    struct ex_layer_opts layer;
};

/* --cache-from / --cache-to: "type=registry,ref=REF[,mode=max]" or a bare
 * REF (buildx's shorthand). kiln keeps every step, which is buildx's
 * mode=max; mode=min would keep less and is refused rather than ignored. */
static int parse_cache_spec(const char *spec, bool to, char **ref)
{
    const char *flag = to ? "--cache-to" : "--cache-from";
    *ref = NULL;
    if (!strchr(spec, '=')) {
        if (!*spec)
            return kiln_usage_error("%s needs a value", flag);
        *ref = kn_strdup(spec);
        return 0;
    }
    _cleanup_free_ char *copy = kn_strdup(spec);
    char *save = NULL;
    const char *type = NULL;
    for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(f, '=');
        if (!eq) {
            free(*ref);
            return kiln_usage_error("invalid %s '%s': '%s' is not KEY=VALUE", flag, spec, f);
        }
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(f, "type") == 0) {
            type = strcmp(v, "registry") == 0 ? "registry" : NULL;
            if (!type) {
                free(*ref);
                return kiln_usage_error("invalid %s '%s': only type=registry is supported", flag,
                                        spec);
            }
        } else if (strcmp(f, "ref") == 0) {
            free(*ref);
            *ref = kn_strdup(v);
        } else if (strcmp(f, "mode") == 0 && to && strcmp(v, "max") == 0) {
            /* what kiln always does */
        } else {
            free(*ref);
            return kiln_usage_error("invalid %s '%s': unsupported option '%s=%s'", flag, spec, f,
                                    v);
        }
    }
    if (!type || !*ref || !**ref) {
        free(*ref);
        *ref = NULL;
        return kiln_usage_error("invalid %s '%s': needs type=registry,ref=REF", flag, spec);
    }
    return 0;
}

static int parse_secret(struct build_args *a, const char *spec)
{
    struct ex_secret s = {0};
    _cleanup_free_ char *copy = kn_strdup(spec);
    char *save = NULL;
    for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(f, '=');
        if (!eq)
            return kiln_usage_error("invalid --secret '%s': expected id=ID,src=FILE or env=VAR",
                                    spec);
        *eq = '\0';
        char *v = kn_strdup(eq + 1);
        kn_strv_take(&a->secret_strs, v);
        if (strcmp(f, "id") == 0)
            s.id = v;
        else if (strcmp(f, "src") == 0 || strcmp(f, "source") == 0)
            s.src = v;
        else if (strcmp(f, "env") == 0)
            s.env = v;
        else if (strcmp(f, "type") == 0) {
            if (strcmp(v, "file") != 0 && strcmp(v, "env") != 0)
                return kiln_usage_error("invalid --secret '%s': unknown type '%s'", spec, v);
        } else
            return kiln_usage_error("invalid --secret '%s': unknown key '%s'", spec, f);
    }
    if (!s.id)
        s.id = s.src ? strrchr(s.src, '/') ? strrchr(s.src, '/') + 1 : s.src : s.env;
    if (!s.id || (!s.src && !s.env))
        return kiln_usage_error("invalid --secret '%s': needs src=FILE or env=VAR", spec);
    if (s.src && access(s.src, R_OK) < 0)
        return kiln_usage_error("--secret '%s': cannot read '%s': %s", spec, s.src,
                                strerror(errno));
    kn_vec_push(&a->secrets, s);
    return 0;
}

/* --ssh ID[=SOCKET]: an agent RUN --mount=type=ssh,id=ID may use; "default"
 * without a socket is $SSH_AUTH_SOCK. Only agents' sockets: BuildKit's key
 * files would mean holding private keys in kiln; load them into an agent. */
static int parse_ssh(struct build_args *a, const char *spec)
{
    const char *eq = strchr(spec, '=');
    char *id = eq ? kn_strndup(spec, (size_t)(eq - spec)) : kn_strdup(spec);
    kn_strv_take(&a->secret_strs, id);
    const char *sock = eq ? eq + 1 : NULL;
    if (!*id)
        return kiln_usage_error("invalid --ssh '%s': want ID[=SOCKET]", spec);
    if (!sock) {
        if (strcmp(id, "default") != 0)
            return kiln_usage_error("--ssh %s: name the agent's socket (--ssh %s=SOCKET)", id, id);
        sock = getenv("SSH_AUTH_SOCK");
        if (!sock || !*sock)
            return kiln_usage_error("--ssh default: SSH_AUTH_SOCK is not set");
    }
    struct stat st;
    if (stat(sock, &st) < 0)
        return kiln_usage_error("--ssh %s: cannot reach '%s': %s", id, sock, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return kiln_usage_error("--ssh %s: '%s' is not an agent's socket (load keys into an "
                                "ssh-agent and pass its socket)",
                                id, sock);
    for (size_t i = 0; i < a->ssh.n; i++)
        if (strcmp(a->ssh.v[i].id, id) == 0)
            return kiln_usage_error("--ssh %s given twice", id);
    char *s = kn_strdup(sock);
    kn_strv_take(&a->secret_strs, s);
    struct ex_ssh_agent ag = {id, s};
    kn_vec_push(&a->ssh, ag);
    return 0;
}

static int parse_compression(struct build_args *a, const char *v)
{
    _cleanup_free_ char *copy = kn_strdup(v);
    char *colon = strchr(copy, ':');
    if (colon) {
        *colon = '\0';
        char *end = NULL;
        long lvl = strtol(colon + 1, &end, 10);
        if (!*(colon + 1) || *end || lvl < 0 || lvl > 22)
            return kiln_usage_error("invalid compression level in '%s'", v);
        a->layer.level = (int)lvl;
    }
    if (strcmp(copy, "gzip") == 0)
        a->layer.compression = EX_COMP_GZIP;
    else if (strcmp(copy, "zstd") == 0)
        a->layer.compression = EX_COMP_ZSTD;
    else if (strcmp(copy, "none") == 0 || strcmp(copy, "uncompressed") == 0)
        a->layer.compression = EX_COMP_NONE;
    else
        return kiln_usage_error("unknown compression '%s' (gzip, zstd or none)", v);
    if (a->layer.compression == EX_COMP_GZIP && a->layer.level > 9)
        return kiln_usage_error("gzip levels go from 0 to 9");
    return 0;
}

static int parse_args(int argc, char **argv, struct build_args *a)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"target", required_argument, NULL, OPT_TARGET},
        {"build-arg", required_argument, NULL, OPT_BUILD_ARG},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        {"tag", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"push", no_argument, NULL, OPT_PUSH},
        {"build-context", required_argument, NULL, OPT_BUILD_CONTEXT},
        {"label", required_argument, NULL, OPT_LABEL},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"no-cache", no_argument, NULL, OPT_NO_CACHE},
        {"cache-from", required_argument, NULL, OPT_CACHE_FROM},
        {"cache-to", required_argument, NULL, OPT_CACHE_TO},
        {"jobs", required_argument, NULL, 'j'},
        {"progress", required_argument, NULL, OPT_PROGRESS},
        {"quiet", no_argument, NULL, 'q'},
        {"trace", required_argument, NULL, OPT_TRACE},
        {"secret", required_argument, NULL, OPT_SECRET},
        {"network", required_argument, NULL, OPT_NETWORK},
        {"allow", required_argument, NULL, OPT_ALLOW},
        {"ssh", required_argument, NULL, OPT_SSH},
        {"check", no_argument, NULL, OPT_CHECK},
        {"isolation", required_argument, NULL, OPT_ISOLATION},
        {"compression", required_argument, NULL, OPT_COMPRESSION},
        {"source-date-epoch", required_argument, NULL, OPT_SDE},
        {"iidfile", required_argument, NULL, OPT_IIDFILE},
        {"metadata-file", required_argument, NULL, OPT_METADATA},
        {"frontend", required_argument, NULL, OPT_FRONTEND},
        KILN_REGISTRY_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":f:t:o:j:qh", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'f':
            a->file = optarg;
            break;
        case OPT_TARGET:
            a->target = optarg;
            break;
        case OPT_BUILD_ARG:
            kn_strv_push(&a->build_args, optarg);
            break;
        case OPT_PLATFORM:
            a->platform = optarg;
            break;
        case 't':
            kn_strv_push(&a->tags, optarg);
            break;
        case 'o': {
            struct ex_output o;
            struct kn_error *e = NULL;
            if (kiln_output_parse(optarg, EX_OUTPUT_OCI, &o, &e) < 0) {
                kiln_print_error(e);
                kn_err_free(e);
                return KILN_EXIT_USAGE;
            }
            kn_vec_push(&a->outputs, o);
            break;
        }
        case OPT_PUSH:
            a->push = true;
            break;
        case OPT_BUILD_CONTEXT:
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return kiln_usage_error("invalid --build-context '%s': expected NAME=SRC", optarg);
            kn_strv_push(&a->contexts, optarg);
            break;
        case OPT_LABEL:
            if (!strchr(optarg, '='))
                return kiln_usage_error("invalid --label '%s': expected KEY=VALUE", optarg);
            kn_strv_push(&a->labels, optarg);
            break;
        case OPT_CACHE_DIR:
            a->cache_dir = optarg;
            break;
        case OPT_NO_CACHE:
            a->no_cache = true;
            break;
        case OPT_CACHE_FROM:
        case OPT_CACHE_TO: {
            char *ref = NULL;
            if (parse_cache_spec(optarg, c == OPT_CACHE_TO, &ref) != 0)
                return KILN_EXIT_USAGE;
            if (c == OPT_CACHE_FROM) {
                kn_strv_take(&a->cache_from, ref);
            } else if (a->cache_to) {
                free(ref);
                return kiln_usage_error("only one --cache-to can be given");
            } else {
                kn_strv_take(&a->secret_strs, ref);
                a->cache_to = ref;
            }
            break;
        }
        case 'j':
            a->jobs = (int)strtol(optarg, &end, 10);
            if (!*optarg || *end || a->jobs < 1 || a->jobs > SCHED_MAX_JOBS)
                return kiln_usage_error("invalid --jobs '%s'", optarg);
            break;
        case OPT_PROGRESS:
            a->progress = optarg;
            break;
        case 'q':
            a->progress = "quiet";
            break;
        case OPT_TRACE:
            a->trace = optarg;
            break;
        case OPT_SECRET:
            if (parse_secret(a, optarg) != 0)
                return KILN_EXIT_USAGE;
            break;
        case OPT_NETWORK:
            if (strcmp(optarg, "host") == 0 || strcmp(optarg, "default") == 0)
                a->network = EX_NETWORK_HOST;
            else if (strcmp(optarg, "none") == 0)
                a->network = EX_NETWORK_NONE;
            else
                return kiln_usage_error("unknown network '%s' (host or none)", optarg);
            break;
        case OPT_CHECK:
            a->check = true;
            break;
        case OPT_SSH:
            if (parse_ssh(a, optarg) != 0)
                return KILN_EXIT_USAGE;
            break;
        case OPT_ALLOW:
            if (strcmp(optarg, "security.insecure") == 0)
                a->allow_insecure = true;
            else if (strcmp(optarg, "network.host") == 0)
                return kiln_usage_error("--allow network.host: kiln's RUN steps may always use "
                                        "the host's network (its default): drop the flag");
            else
                return kiln_usage_error("unknown entitlement '%s' for --allow "
                                        "(security.insecure)",
                                        optarg);
            break;
        case OPT_ISOLATION:
            if (strcmp(optarg, "auto") == 0)
                a->isolation = EX_ISOLATION_AUTO;
            else if (strcmp(optarg, "userns") == 0)
                a->isolation = EX_ISOLATION_USERNS;
            else if (strcmp(optarg, "chroot") == 0)
                a->isolation = EX_ISOLATION_CHROOT;
            else
                return kiln_usage_error("unknown isolation '%s' (auto, userns or chroot)", optarg);
            break;
        case OPT_COMPRESSION:
            if (parse_compression(a, optarg) != 0)
                return KILN_EXIT_USAGE;
            break;
        case OPT_SDE:
            a->layer.source_date_epoch = strtoll(optarg, &end, 10);
            if (!*optarg || *end || a->layer.source_date_epoch < 0)
                return kiln_usage_error("invalid --source-date-epoch '%s'", optarg);
            break;
        case OPT_IIDFILE:
            a->iidfile = optarg;
            break;
        case OPT_METADATA:
            a->metadata = optarg;
            break;
        case OPT_FRONTEND:
            a->frontend = optarg;
            break;
        case 'h':
            build_usage(stdout);
            return -1;
        default:
            if (kiln_opt_rest(c, argv, &a->reg) != 0)
                return KILN_EXIT_USAGE;
            break;
        }
    }
    if (argc - optind != 1) {
        build_usage(stderr);
        return kiln_usage_error("%s",
                                argc - optind == 0 ? "missing CONTEXT" : "too many arguments");
    }
    a->context = argv[optind];
    if (a->push)
        kn_vec_push(&a->outputs, ((struct ex_output){.type = EX_OUTPUT_REGISTRY}));
    for (size_t i = 0; i < a->outputs.n; i++)
        if (a->outputs.v[i].type == EX_OUTPUT_REGISTRY && !a->tags.n && !a->outputs.v[i].names.n)
            return kiln_usage_error("pushing needs a name: use --tag or -o type=registry,name=REF");
    return 0;
}

static void args_release(struct build_args *a)
{
    kn_strv_release(&a->build_args);
    kn_strv_release(&a->tags);
    kn_strv_release(&a->contexts);
    kn_strv_release(&a->labels);
    kiln_registry_args_release(&a->reg);
    kn_strv_release(&a->cache_from);
    kn_strv_release(&a->secret_strs);
    for (size_t i = 0; i < a->outputs.n; i++)
        ex_output_release(&a->outputs.v[i]);
    free(a->outputs.v);
    free(a->secrets.v);
    free(a->ssh.v);
}

/* ---- reading the definition ----------------------------------------------- */

static int read_stdin(struct kn_buf *b, size_t max, struct kn_error **err)
{
    char chunk[65536];
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), stdin);
        kn_buf_add(b, chunk, n);
        if (b->len > max)
            return kn_err_set(err, KN_E_UNSAFE, "the Dockerfile on stdin is larger than %zu bytes",
                              max);
        if (n < sizeof(chunk)) {
            if (ferror(stdin))
                return kn_err_sys(err, "cannot read stdin");
            return 0;
        }
    }
}

#define DOCKERFILE_MAX (16u << 20)

static int read_definition(const struct build_args *a, struct kn_buf *data, char **file_name,
                           struct kn_buf *ignore, bool *have_ignore, struct kn_error **err)
{
    _cleanup_free_ char *path = NULL;
    if (a->file && strcmp(a->file, "-") == 0) {
        *file_name = kn_strdup("Dockerfile");
        if (read_stdin(data, DOCKERFILE_MAX, err) < 0)
            return -1;
    } else {
        path = a->file ? kn_strdup(a->file) : kn_asprintf("%s/Dockerfile", a->context);
        *file_name = kn_strdup(a->file ? a->file : "Dockerfile");
        if (kn_buf_read_file(data, path, DOCKERFILE_MAX, err) < 0)
            return kn_err_wrap(err, "cannot read the Dockerfile");
    }
    /* Dockerfile-specific ignore file first (NAME.dockerignore), then the context's */
    *have_ignore = false;
    struct kn_error *e = NULL;
    if (path) {
        _cleanup_free_ char *p = kn_asprintf("%s.dockerignore", path);
        if (kn_buf_read_file(ignore, p, DOCKERFILE_MAX, &e) == 0) {
            *have_ignore = true;
            return 0;
        }
        if (e->sys_errno != ENOENT) {
            kn_err_propagate(err, &e);
            return -1;
        }
        kn_err_free(e);
        e = NULL;
    }
    _cleanup_free_ char *p = kn_asprintf("%s/.dockerignore", a->context);
    if (kn_buf_read_file(ignore, p, DOCKERFILE_MAX, &e) == 0) {
        *have_ignore = true;
        return 0;
    }
    if (e->sys_errno != ENOENT) {
        kn_err_propagate(err, &e);
        return -1;
    }
    kn_err_free(e);
    return 0;
}

/* ---- exporting ---------------------------------------------------------------- */

static int push_image(struct ex_registry *reg, struct ex_store *s, struct ex_image *img,
                      const char *name, struct kn_strv *pushed, struct kn_error **err)
{
    struct ex_ref ref;
    if (ex_ref_parse(name, &ref, err) < 0)
        return -1;
    int rc = ex_image_to_oci(s, img, err);
    if (rc == 0)
        rc = ex_registry_push_blob(reg, &ref, img->config.digest, s, NULL, err);
    for (size_t i = 0; i < img->nlayers && rc == 0; i++)
        rc = ex_registry_push_blob(reg, &ref, img->layers[i].digest, s, NULL, err);
    char digest[KN_DIGEST_SIZE];
    if (rc == 0)
        rc = ex_registry_push_manifest(reg, &ref, img->manifest.media_type, img->manifest_json,
                                       img->manifest_len, digest, err);
    if (rc == 0)
        kn_strv_take(pushed, ex_ref_string(&ref));
    else
        kn_err_wrap(err, "cannot push '%s'", name);
    ex_ref_release(&ref);
    return rc;
}

static bool needs_image(const struct build_args *a)
{
    if (a->iidfile || a->metadata)
        return true;
    for (size_t i = 0; i < a->outputs.n; i++)
        if (a->outputs.v[i].type != EX_OUTPUT_LOCAL)
            return true;
    return false;
}

/* -o type=local: the rootfs goes to a temporary directory next to DEST and
 * is renamed into place (exchanged with an existing DEST, whose old content
 * is then removed), so a failure leaves DEST as it was and nothing beside. */
static int export_local(struct ex_ops *ops, struct ex_result *root, const char *dest,
                        struct kn_error **err)
{
    struct stat st;
    bool exists = stat(dest, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return kn_err_set(err, KN_E_USAGE, "output '%s' exists and is not a directory", dest);
    _cleanup_free_ char *tmp = kn_asprintf("%s.kiln-XXXXXX", dest);
    if (!mkdtemp(tmp))
        return kn_err_sys(err, "cannot create a directory next to '%s'", dest);
    chmod(tmp, 0755);
    int rc = ex_ops_export_rootfs(ops, root, tmp, err);
    if (rc < 0)
        kn_err_wrap(err, "cannot export the root filesystem to '%s'", dest);
    if (rc == 0 && exists) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_EXCHANGE) < 0)
            rc = kn_err_sys(err, "cannot replace '%s'", dest);
    } else if (rc == 0 && rename(tmp, dest) < 0) {
        rc = kn_err_sys(err, "cannot rename the output into '%s'", dest);
    }
    /* tmp now holds the old DEST, or the failed export */
    struct kn_error *rerr = NULL;
    if (ex_store_remove_tree(tmp, &rerr) < 0) {
        kn_warn("cannot remove '%s': %s", tmp, rerr->msg);
        kn_err_free(rerr);
    }
    return rc;
}

static int export_outputs(const struct build_args *a, struct ex_ops *ops, struct ex_store *s,
                          struct ex_registry *reg, struct ex_result *root,
                          const struct ir_output *out, struct kn_error **err)
{
    struct ex_image img = {0};
    struct kn_strv pushed = {0};
    int rc = 0;
    if (needs_image(a))
        rc = ex_ops_image(ops, root, out, a->layer.source_date_epoch, &img, err);
    const char *default_name = a->tags.n ? a->tags.v[0] : NULL;
    for (size_t i = 0; i < a->outputs.n && rc == 0; i++) {
        struct ex_output *o = &a->outputs.v[i];
        if (o->type == EX_OUTPUT_LOCAL) {
            rc = export_local(ops, root, o->dest, err);
        } else if (o->type == EX_OUTPUT_REGISTRY) {
            struct kn_strv *names = o->names.n ? &o->names : (struct kn_strv *)&a->tags;
            for (size_t j = 0; j < names->n && rc == 0; j++)
                rc = push_image(reg, s, &img, names->v[j], &pushed, err);
        } else if (o->type == EX_OUTPUT_OCI && !o->tar && !o->names.n && a->tags.n > 1) {
            /* a layout directory gets one index entry per tag */
            for (size_t j = 0; j < a->tags.n && rc == 0; j++) {
                struct ex_output one = {.type = o->type, .dest = o->dest};
                kn_strv_push(&one.names, a->tags.v[j]);
                rc = ex_image_export(s, &img, &one, NULL, err);
                kn_strv_release(&one.names);
            }
        } else {
            if (o->type == EX_OUTPUT_DOCKER && !o->names.n)
                for (size_t j = 0; j < a->tags.n; j++)
                    kn_strv_push(&o->names, a->tags.v[j]);
            rc = ex_image_export(s, &img, o, default_name, err);
        }
    }
    if (rc == 0 && a->iidfile)
        rc = ex_write_iidfile(a->iidfile, &img, err);
    if (rc == 0 && a->metadata)
        rc = ex_write_metadata(a->metadata, &img, pushed.v, pushed.n, err);
    kn_strv_release(&pushed);
    ex_image_release(&img);
    return rc;
}

/* ---- the build ------------------------------------------------------------------- */

/* RUN steps execute on this machine's CPU: kiln does not emulate, so a
 * build that would run something for another OS or architecture is refused
 * up front rather than failing with "exec format error" (or, worse,
 * succeeding with a host binary in a foreign image). A RUN runs on the
 * platform of the image its root filesystem starts from: a stage `FROM
 * --platform=$BUILDPLATFORM` runs on the host whatever --platform says (the
 * cross-compiling pattern); a chain from scratch counts as the target's.
 * COPY-only builds may target any platform. */
static const struct ir_platform *run_platform(const struct ir_graph *g, uint32_t vi,
                                              const struct ir_platform *target)
{
    for (size_t hops = 0; hops <= g->nv; hops++) {
        const struct ir_vertex *v = &g->v[vi];
        if (v->op == IR_SOURCE_IMAGE)
            return v->u.image.platform.os ? &v->u.image.platform : target;
        if ((v->op != IR_EXEC && v->op != IR_FILE && v->op != IR_MERGE) || !v->ninputs)
            return target;
        vi = v->inputs[0];
    }
    return target;
}

static int check_platform(const struct ir_graph *g, const struct ir_platform *want,
                          struct kn_error **err)
{
    struct ir_platform host = {0};
    ex_platform_default(&host);
    int rc = 0;
    for (size_t i = 0; i < g->nv && rc == 0; i++) {
        if (g->v[i].op != IR_EXEC)
            continue;
        const struct ir_platform *p = run_platform(g, (uint32_t)i, want);
        if (strcmp(host.os, p->os) != 0 || strcmp(host.arch, p->arch) != 0)
            rc = kn_err_set(err, KN_E_FAILED,
                            "cannot run build steps for platform '%s/%s' on a %s/%s host: "
                            "kiln does not emulate other architectures",
                            p->os, p->arch, host.os, host.arch);
    }
    ex_platform_clear(&host);
    return rc;
}

static struct sched_cancel cancel_token;

static void on_signal(int sig)
{
    (void)sig;
    sched_cancel_request(&cancel_token);
}

static int do_build(struct build_args *a, struct kn_error **err)
{
    struct stat st;
    if (stat(a->context, &st) < 0 || !S_ISDIR(st.st_mode))
        return kn_err_set(err, KN_E_USAGE, "build context '%s' is not a directory", a->context);
    struct kn_buf data = KN_BUF_INIT, ignore = KN_BUF_INIT;
    char *file_name = NULL;
    bool have_ignore = false;
    char *root = NULL;
    struct ex_store *s = NULL;
    struct ex_registry *reg = NULL;
    struct ir_graph *g = NULL;
    struct ex_ops *ops = NULL;
    struct sched_reporter *rep = NULL;
    struct fe_named_context *fctx = kn_calloc(a->contexts.n + 1, sizeof(*fctx));
    struct ex_named_dir *dirs = kn_calloc(a->contexts.n + 1, sizeof(*dirs));
    size_t ndirs = 0;
    struct kn_strv ctxstrs = {0};
    struct ir_platform platform = {0};
    int rc = read_definition(a, &data, &file_name, &ignore, &have_ignore, err);

    if (rc == 0 && a->platform)
        rc = ex_platform_parse(a->platform, &platform, err);
    if (rc == 0 && !a->platform)
        ex_platform_default(&platform);
    for (size_t i = 0; i < a->contexts.n && rc == 0; i++) {
        char *eq = strchr(a->contexts.v[i], '=');
        char *name = kn_strndup(a->contexts.v[i], (size_t)(eq - a->contexts.v[i]));
        kn_strv_take(&ctxstrs, name);
        fctx[i].name = name;
        fctx[i].src = eq + 1;
        if (!strstr(eq + 1, "://")) {
            if (stat(eq + 1, &st) < 0 || !S_ISDIR(st.st_mode))
                rc = kn_err_set(err, KN_E_USAGE, "build context '%s': '%s' is not a directory",
                                name, eq + 1);
            dirs[ndirs].name = name;
            dirs[ndirs++].dir = eq + 1;
        }
    }
    if (rc == 0) {
        root = a->cache_dir ? kn_strdup(a->cache_dir) : ex_store_default_root();
        s = ex_store_open(root, err);
        if (!s)
            rc = -1;
    }
    if (rc == 0) {
        reg = kiln_registry_open(&a->reg, err);
        if (!reg)
            rc = -1;
    }
    struct kiln_resolver resolver;
    kiln_resolver_init(&resolver, s, reg);
    if (rc == 0) {
        struct fe_request req = {
            .context_dir = a->context,
            .file_name = file_name,
            .data = data.data,
            .len = data.len,
            .target = a->target,
            .build_args = a->build_args.v,
            .nbuild_args = a->build_args.n,
            .platform = a->platform,
            .contexts = fctx,
            .ncontexts = a->contexts.n,
            .labels = a->labels.v,
            .nlabels = a->labels.n,
            .dockerignore = have_ignore ? ignore.data : NULL,
            .dockerignore_len = ignore.len,
            .resolver = &resolver.fe,
        };
        g = fe_build_graph(&req, a->frontend, err);
        if (!g || g->noutputs == 0) {
            if (g)
                kn_err_set(err, KN_E_FAILED, "the frontend produced no output");
            rc = -1;
        }
    }
    if (rc == 0 && a->check) {
        /* --check (buildx's): the build checks only, nothing runs */
        for (size_t i = 0; i < g->nnotes; i++)
            kn_warn("%s", g->notes[i]);
        if (g->nviolations)
            rc = kn_err_set(err, KN_E_FAILED, "%zu build check violation%s", g->nviolations,
                            g->nviolations == 1 ? "" : "s");
        else
            fprintf(stderr, "kiln: check complete, no warnings found\n");
        if (rc == 0)
            rc = 1; /* done: nothing below runs */
    }
    if (rc == 0)
        rc = check_platform(g, &platform, err);
    struct ex_rcache **from = kn_calloc(a->cache_from.n + 1, sizeof(*from));
    struct ex_rcache *to = NULL;
    for (size_t i = 0; i < a->cache_from.n && rc == 0; i++)
        if (!(from[i] = ex_rcache_open(reg, a->cache_from.v[i], s, err)))
            rc = -1;
    if (rc == 0 && a->cache_to && !(to = ex_rcache_open(reg, a->cache_to, s, err)))
        rc = -1;
    /* what this store hashed of earlier builds' sources: a rebuild reads
     * only the files that changed */
    char *hashcache = s ? kn_asprintf("%s/hashcache", ex_store_root(s)) : NULL;
    if (rc == 0 && ex_fileop_hash_cache_load(hashcache, err) < 0)
        rc = -1;
    if (rc == 0) {
        for (size_t i = 0; i < g->nnotes; i++)
            kn_warn("%s", g->notes[i]);
        struct ex_ops_opts oo = {
            .store = s,
            .registry = reg,
            .isolation = a->isolation,
            .network = a->network,
            .layer = a->layer,
            .context_dir = a->context,
            .contexts = dirs,
            .ncontexts = ndirs,
            .secrets = a->secrets.v,
            .nsecrets = a->secrets.n,
            .ssh = a->ssh.v,
            .nssh = a->ssh.n,
            .allow_insecure = a->allow_insecure,
            .platform = platform,
            .cache_from = from,
            .ncache_from = a->cache_from.n,
            .cache_to = to,
        };
        ops = ex_ops_new(&oo, err);
        if (!ops)
            rc = -1;
    }
    if (rc == 0) {
        rep = sched_reporter_new(a->progress ? a->progress : "auto", stderr, err);
        if (!rep)
            rc = -1;
    }
    void *result = NULL;
    if (rc == 0) {
        struct sched_handlers h;
        kiln_build_handlers(ops, &h);
        struct sched_opts so = {
            .jobs = a->jobs,
            .no_cache = a->no_cache,
            .reporter = rep,
            .trace_path = a->trace,
            .cancel = &cancel_token,
        };
        uint32_t rootv = g->outputs[0].vertex;
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        struct sigaction old_int, old_term;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        rc = sched_run(g, &rootv, 1, &h, &so, &result, NULL, err);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        struct kn_error *herr = NULL;
        if (ex_fileop_hash_cache_save(hashcache, &herr) < 0) {
            kn_warn("%s", herr->msg);
            kn_err_free(herr);
        }
    }
    if (rc == 0) {
        if (!a->outputs.n && !a->iidfile && !a->metadata)
            kn_warn("no output specified: the result is only in the build cache "
                    "(use -o or --push)");
        rc = export_outputs(a, ops, s, reg, result, &g->outputs[0], err);
    }
    if (result)
        ex_result_unref(result);
    sched_reporter_free(rep);
    ex_ops_free(ops);
    for (size_t i = 0; i < a->cache_from.n; i++)
        ex_rcache_close(from[i]);
    free(from);
    ex_rcache_close(to);
    free(hashcache);
    ir_graph_free(g);
    ex_registry_free(reg);
    ex_store_close(s);
    free(root);
    free(file_name);
    free(fctx);
    free(dirs);
    kn_strv_release(&ctxstrs);
    ex_platform_clear(&platform);
    kn_buf_release(&data);
    kn_buf_release(&ignore);
    return rc > 0 ? 0 : rc; /* 1: --check found nothing */
}

int cmd_build(int argc, char **argv)
{
    struct build_args a = {0};
    a.layer.compression = EX_COMP_GZIP;
    a.layer.source_date_epoch = -1;
    a.network = EX_NETWORK_HOST;
    a.isolation = EX_ISOLATION_AUTO;
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        char *end = NULL;
        long long v = strtoll(sde, &end, 10);
        if (*end || v < 0) {
            fprintf(stderr, "kiln: error: invalid SOURCE_DATE_EPOCH '%s'\n", sde);
            return KILN_EXIT_USAGE;
        }
        a.layer.source_date_epoch = v;
    }
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        args_release(&a);
        return rc < 0 ? KILN_EXIT_OK : rc;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    /* compression uses the CPUs; steps may be more: a RUN spends much of its
     * time waiting (network, disk, sleep) and the kernel schedules its
     * processes, so independent stages should not queue behind the CPU count
     * (BuildKit does not limit them at all) */
    /* the CPUs a layer's compression may use (exec/layer picks its workers) */
    a.layer.threads = (int)(a.jobs > 0 && a.jobs < ncpu ? a.jobs : ncpu);
    if (!a.jobs)
        a.jobs = ncpu * 2 < 4 ? 4 : (int)(ncpu * 2 > SCHED_MAX_JOBS ? SCHED_MAX_JOBS : ncpu * 2);
    struct kn_error *err = NULL;
    rc = do_build(&a, &err);
    int status = KILN_EXIT_OK;
    if (rc < 0) {
        kiln_print_error(err);
        status = kiln_exit_status(err);
        kn_err_free(err);
    }
    args_release(&a);
    return status;
}
