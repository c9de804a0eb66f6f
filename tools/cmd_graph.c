/*
 * `kiln graph`: lower a build definition to the IR and print it, building
 * nothing. The default format is text (one vertex a line, for people);
 * json is the IR's exact JSON form (what --frontend ir reads back), dot is
 * for Graphviz. Notes of the frontend (unresolved base images, unused build
 * args) go to stderr as warnings for json and dot; the text form lists them.
 * Without --no-resolve, base images are resolved as kiln build resolves
 * them (OCI layouts, registries with the same registry options); one that
 * cannot be reached stays unresolved, with a warning and a note.
 */
#include "build.h"

#include "frontend/frontend.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GRAPH_MAX_INPUT (64u << 20)

static void graph_usage(FILE *f)
{
    fprintf(f, "usage: kiln graph [-f FILE] [--target STAGE] [--build-arg KEY[=VALUE]]...\n"
               "                  [--platform OS/ARCH[/VARIANT]] [--build-context NAME=SRC]...\n"
               "                  [--label KEY=VALUE]... [--frontend NAME] [--no-resolve]\n"
               "                  [--format text|json|dot] CONTEXT\n" KILN_REGISTRY_USAGE);
}

static int read_stdin(struct kn_buf *b, struct kn_error **err)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
        if (b->len + n > GRAPH_MAX_INPUT)
            return kn_err_set(err, KN_E_UNSAFE, "standard input is larger than %u bytes",
                              GRAPH_MAX_INPUT);
        kn_buf_add(b, chunk, n);
    }
    if (ferror(stdin))
        return kn_err_sys(err, "cannot read standard input");
    return 0;
}

struct graph_opts {
    const char *file, *target, *platform, *frontend, *format;
    bool no_resolve;
    struct kiln_registry_args reg;
    KN_VEC(char *) build_args;
    KN_VEC(char *) labels;
    KN_VEC(struct fe_named_context) contexts;
};

static int run_graph(struct graph_opts *o, const char *context)
{
    struct kn_error *err = NULL;
    struct kn_buf data = KN_BUF_INIT, ignore = KN_BUF_INIT, out = KN_BUF_INIT;
    char *path = NULL;
    const char *name;
    int rc = KILN_EXIT_OK;
    struct ir_graph *g = NULL;
    struct fe_request req;
    memset(&req, 0, sizeof(req));
    struct kiln_resolver resolver;
    struct ex_store *store = NULL;
    struct ex_registry *reg = NULL;
    char *root = NULL;

    if (o->file && strcmp(o->file, "-") == 0) {
        name = "Dockerfile";
        if (read_stdin(&data, &err) < 0)
            goto fail;
    } else {
        path = o->file ? kn_strdup(o->file) : kn_asprintf("%s/Dockerfile", context);
        name = o->file ? o->file : "Dockerfile";
        if (kn_buf_read_file(&data, path, GRAPH_MAX_INPUT, &err) < 0)
            goto fail;
    }
    /* PATH.dockerignore next to the Dockerfile wins over CONTEXT/.dockerignore
     * (the Dockerfile reference's rule) */
    {
        char *specific = path ? kn_asprintf("%s.dockerignore", path) : NULL;
        char *generic = kn_asprintf("%s/.dockerignore", context);
        const char *pick = specific && access(specific, R_OK) == 0 ? specific
                           : access(generic, R_OK) == 0            ? generic
                                                                   : NULL;
        int r = pick ? kn_buf_read_file(&ignore, pick, GRAPH_MAX_INPUT, &err) : 0;
        free(specific);
        free(generic);
        if (r < 0)
            goto fail;
    }

    req.context_dir = context;
    req.file_name = name;
    req.data = data.data ? data.data : "";
    req.len = data.len;
    req.target = o->target;
    req.build_args = o->build_args.v;
    req.nbuild_args = o->build_args.n;
    req.platform = o->platform;
    req.contexts = o->contexts.v;
    req.ncontexts = o->contexts.n;
    req.labels = o->labels.v;
    req.nlabels = o->labels.n;
    req.dockerignore = ignore.data;
    req.dockerignore_len = ignore.len;
    if (!o->no_resolve) {
        root = ex_store_default_root();
        store = ex_store_open(root, &err);
        reg = store ? kiln_registry_open(&o->reg, &err) : NULL;
        if (!reg) {
            ex_store_close(store);
            free(root);
            goto fail;
        }
        kiln_resolver_init(&resolver, store, reg);
        resolver.lenient = true;
        req.resolver = &resolver.fe;
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g = fe_build_graph(&req, o->frontend, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kn_debug("graph: parsed and lowered %zu bytes into %zu vertices in %.1f ms", data.len,
             g ? g->nv : 0,
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    ex_registry_free(reg);
    ex_store_close(store);
    free(root);
    if (!g)
        goto fail;
    if (strcmp(o->format, "json") == 0) {
        if (ir_graph_to_json(g, &out, &err) < 0)
            goto fail;
    } else if (strcmp(o->format, "dot") == 0) {
        ir_graph_to_dot(g, &out);
    } else {
        ir_graph_to_text(g, &out);
    }
    if (strcmp(o->format, "text") != 0)
        for (size_t i = 0; i < g->nnotes; i++)
            fprintf(stderr, "kiln: warning: %s\n", g->notes[i]);
    if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len) {
        kn_err_sys(&err, "cannot write the graph");
        goto fail;
    }
    if (out.len && out.data[out.len - 1] != '\n')
        fputc('\n', stdout);
    if (fflush(stdout) != 0) {
        kn_err_sys(&err, "cannot write the graph");
        goto fail;
    }
    goto done;
fail:
    kiln_print_error(err);
    rc = kiln_exit_status(err);
    kn_err_free(err);
done:
    ir_graph_free(g);
    free(path);
    kn_buf_release(&data);
    kn_buf_release(&ignore);
    kn_buf_release(&out);
    return rc;
}

int cmd_graph(int argc, char **argv)
{
    enum {
        O_TARGET = 256,
        O_BUILD_ARG,
        O_PLATFORM,
        O_CONTEXT,
        O_LABEL,
        O_FRONTEND,
        O_NORESOLVE,
        O_FORMAT
    };
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        {"target", required_argument, NULL, O_TARGET},
        {"build-arg", required_argument, NULL, O_BUILD_ARG},
        {"platform", required_argument, NULL, O_PLATFORM},
        {"build-context", required_argument, NULL, O_CONTEXT},
        {"label", required_argument, NULL, O_LABEL},
        {"frontend", required_argument, NULL, O_FRONTEND},
        {"no-resolve", no_argument, NULL, O_NORESOLVE},
        {"format", required_argument, NULL, O_FORMAT},
        KILN_REGISTRY_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct graph_opts o;
    memset(&o, 0, sizeof(o));
    o.format = "text";
    int rc = -1;
    optind = 1;
    opterr = 0;
    int c;
    while (rc < 0 && (c = getopt_long(argc, argv, "+f:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.file = optarg;
            break;
        case O_TARGET:
            o.target = optarg;
            break;
        case O_BUILD_ARG:
            if (!*optarg || *optarg == '=')
                rc = kiln_usage_error("invalid --build-arg '%s': want KEY[=VALUE]", optarg);
            else
                kn_vec_push(&o.build_args, optarg);
            break;
        case O_PLATFORM:
            o.platform = optarg;
            break;
        case O_CONTEXT: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                rc = kiln_usage_error("invalid --build-context '%s': want NAME=SRC", optarg);
                break;
            }
            *eq = 0;
            struct fe_named_context nc = {optarg, eq + 1};
            kn_vec_push(&o.contexts, nc);
            break;
        }
        case O_LABEL:
            if (!strchr(optarg, '=') || *optarg == '=')
                rc = kiln_usage_error("invalid --label '%s': want KEY=VALUE", optarg);
            else
                kn_vec_push(&o.labels, optarg);
            break;
        case O_FRONTEND:
            o.frontend = optarg;
            break;
        case O_NORESOLVE:
            o.no_resolve = true;
            break;
        case O_FORMAT:
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "dot") != 0 &&
                strcmp(optarg, "text") != 0)
                rc = kiln_usage_error("invalid --format '%s': want text, json or dot", optarg);
            o.format = optarg;
            break;
        case 'h':
            graph_usage(stdout);
            rc = KILN_EXIT_OK;
            break;
        default:
            if (kiln_opt_rest(c, argv, &o.reg) != 0)
                rc = KILN_EXIT_USAGE;
            break;
        }
    }
    if (rc < 0) {
        if (optind != argc - 1)
            rc = kiln_usage_error("%s", optind >= argc ? "missing CONTEXT"
                                                       : "exactly one CONTEXT expected");
        else
            rc = run_graph(&o, argv[optind]);
    }
    free(o.build_args.v);
    free(o.labels.v);
    free(o.contexts.v);
    kiln_registry_args_release(&o.reg);
    return rc;
}
