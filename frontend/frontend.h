/*
 * frontend: build definitions in, IR graphs out.
 *
 * A frontend lowers a request (a Dockerfile, an IR JSON file, or whatever an
 * external program understands) into an ir_graph with one output per
 * requested target. Frontends are looked up by name in a table: "dockerfile"
 * (built in), "ir" (a JSON IR file) and "exec:PATH" (an external program
 * that reads the request as JSON on stdin and writes IR JSON on stdout).
 * A Dockerfile's `# syntax=NAME` directive selects a frontend too; the names
 * of Docker's own frontend images map to the built-in one.
 *
 * Lowering needs each base image's config (ENV, WORKDIR, USER, SHELL,
 * ONBUILD); the frontend asks the resolver, never the network.
 * Not thread-safe per request; separate requests may run on separate threads.
 */
#ifndef KILN_FRONTEND_H
#define KILN_FRONTEND_H

#include "ir/ir.h"

/* Resolves a base image reference to its config. Implemented by tools/ with
 * the registry client or an OCI layout reader. */
struct fe_resolver {
    void *ctx;
    /* Returns 0 and sets *config_json (the OCI image config document, malloc'd)
     * and digest (the manifest digest, "" if unknown), or -1 with *err. */
    int (*resolve)(void *ctx, const char *ref, const struct ir_platform *platform,
                   char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err);
};

struct fe_named_context {
    const char *name; /* as in --build-context NAME=SRC */
    const char *src;  /* a directory, docker-image://REF, oci-layout://PATH[:TAG] */
};

struct fe_request {
    const char *context_dir; /* the build context directory */
    const char *file_name;   /* the name used in messages ("Dockerfile") */
    const char *data;        /* the definition's bytes (a Dockerfile, IR JSON) */
    size_t len;
    const char *target;      /* stage to build, NULL for the last one */
    char *const *build_args; /* "KEY=VALUE" or "KEY" (value from the environment) */
    size_t nbuild_args;
    const char *platform; /* target platform "os/arch[/variant]", NULL = build platform */
    const struct fe_named_context *contexts;
    size_t ncontexts;
    char *const *labels; /* extra "KEY=VALUE" labels for the image config */
    size_t nlabels;
    const char *dockerignore; /* contents of the .dockerignore to apply, NULL for none */
    size_t dockerignore_len;
    const struct fe_resolver *resolver; /* NULL: lower without base configs (--no-resolve) */
};

struct fe_frontend {
    const char *name;
    struct ir_graph *(*lower)(const struct fe_request *req, struct kn_error **err);
};

/* Picks the frontend: `name` when given ("dockerfile", "ir", "exec:PATH" or a
 * Docker frontend image name), else the `# syntax=` directive of the data,
 * else "dockerfile". Returns NULL with *err for an unknown name. */
const struct fe_frontend *fe_frontend_select(const char *name, const char *data, size_t len,
                                             struct kn_error **err);

/* Lowers the request with the selected frontend. The graph's outputs[0] is
 * the target. Errors carry the file, line and column of the problem; parse
 * errors of one file are chained (err->next). */
struct ir_graph *fe_build_graph(const struct fe_request *req, const char *frontend_name,
                                struct kn_error **err);

/* The built-in Dockerfile frontend. */
struct ir_graph *fe_dockerfile_lower(const struct fe_request *req, struct kn_error **err);

/* The stage names of a Dockerfile in order (for "unknown target" messages
 * and `kiln graph --list-stages`); caller frees with kn_strv_release. */
int fe_dockerfile_stages(const char *name, const char *data, size_t len, struct kn_strv *out,
                         struct kn_error **err);

/* Reads the .dockerignore patterns (lines, comments, "!" exceptions) of
 * `data` into out, cleaned as the Dockerfile reference says. */
void fe_dockerignore_parse(const char *data, size_t len, struct kn_strv *out);

#endif
