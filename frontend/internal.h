/*
 * Private declarations shared by the Dockerfile lowering files
 * (frontend/lower*.c) and their unit tests. Not part of the frontend's
 * public API (frontend.h) nor of the AST (ast.h).
 *
 * The lowering walks the stages the target needs, depth first, so a stage's
 * dependencies (FROM another stage, COPY --from, RUN --mount from=) are
 * lowered, and their vertices added to the graph, before the stage itself:
 * the graph stays in topological order by construction.
 */
#ifndef KILN_FRONTEND_INTERNAL_H
#define KILN_FRONTEND_INTERNAL_H

#include "frontend/ast.h"
#include "frontend/frontend.h"

#define LW_DEFAULT_PATH    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define LW_HISTORY_COMMENT "buildkit.dockerfile.v0"

typedef KN_VEC(char *) lw_strvec; /* strings borrowed from the lowering's arena */

struct lw_kv {
    char *key;
    char *value; /* NULL: declared but unset (ARG without value) */
};
typedef KN_VEC(struct lw_kv) lw_kvvec;
typedef KN_VEC(uint32_t) lw_u32vec;

struct lw_health {
    bool set;
    lw_strvec test;
    int64_t interval, timeout, start_period, start_interval; /* nanoseconds, 0 = default */
    int retries;
};

/* The image config of a stage while it is being lowered. */
struct lw_image {
    char *author;
    lw_strvec env; /* "KEY=VALUE" */
    lw_strvec cmd;
    bool has_cmd;
    lw_strvec entrypoint;
    bool has_entrypoint;
    char *workdir; /* NULL = unset ("/") */
    char *user;
    lw_kvvec labels;
    lw_strvec ports;   /* "80/tcp" */
    lw_strvec volumes; /* "/data" */
    char *stopsignal;
    struct lw_health health;
    lw_strvec shell;
    bool has_shell;
    lw_strvec onbuild;
    bool args_escaped;
    bool env_unknown; /* the base's config was not resolved: its ENV is unknown */
};

enum lw_stage_state { LW_STAGE_NEW, LW_STAGE_BUSY, LW_STAGE_DONE };

struct lw_stage {
    char *name;  /* lower-cased "AS" name, NULL if unnamed */
    char *label; /* name, or the index as a string: for messages and vertex.stage */
    size_t index;
    size_t from; /* index of the FROM instruction in df->instrs */
    size_t end;  /* one past its last instruction */
    enum lw_stage_state state;
    int64_t root; /* current root filesystem vertex */
    struct ir_platform platform;
    struct lw_image img;
    char *base_ref; /* first image of the chain, NULL for scratch */
    KN_VEC(struct ir_history) history;
    lw_kvvec args; /* ARGs declared in the stage, in order */
    int cmd_index, cmd_total;
    bool cmd_set; /* CMD given in this stage (ENTRYPOINT then keeps it) */
    bool in_onbuild;
};

struct lw_buildarg {
    char *key;
    char *value; /* NULL: "KEY" without value and not in the environment */
    bool used;
};

struct lw {
    const struct fe_request *req;
    struct fe_dockerfile *df;
    struct ir_graph *g;
    struct kn_arena arena;
    const char *file; /* name for messages */
    struct lw_stage *stages;
    size_t nstages;
    lw_kvvec global_args; /* ARGs before the first FROM, values final */
    lw_kvvec auto_args;   /* TARGETPLATFORM & co. */
    KN_VEC(struct lw_buildarg) build_args;
    struct ir_platform target_platform, build_platform;
    int64_t context_vertex; /* the build context source, -1 until needed */
    int64_t scratch_vertex;
    lw_strvec unresolved; /* base refs whose config was not resolved */
    int depth;            /* stages being lowered at once (recursion bound) */
    struct fe_checks *checks;
    struct kn_patterns *ignore; /* the context's .dockerignore, compiled on first use */
    bool ignore_done;
    lw_strvec undefined_seen; /* "LINE:NAME" already reported */
};

/* How many stages may wait on each other (FROM x / COPY --from=x chains):
 * bounds the recursion of the lowering. */
#define LW_MAX_STAGE_DEPTH 500
/* ENV, LABEL, VOLUME entries of one image (their dedup is linear) */
#define LW_MAX_CONFIG_ITEMS 10000

/* ---- lower.c: context, scopes, errors -------------------------------- */

/* Creates an error located at the instruction (col 0 = the instruction's
 * column) with the source line as detail. Returns -1. */
int lw_err(struct lw *lw, struct kn_error **err, const struct fe_instr *in, int col, int code,
           const char *fmt, ...) KN_PRINTF(6, 7);
/* Stamps the instruction's location on an error that has none (from
 * fe_expand_*). Returns -1. */
int lw_err_at(struct lw *lw, struct kn_error **err, const struct fe_instr *in, int col);

char *lw_strdup(struct lw *lw, const char *s);
char *lw_printf(struct lw *lw, const char *fmt, ...) KN_PRINTF(2, 3);

/* The --build-arg value for an ARG declaration (marks it used), or NULL. */
const char *lw_arg_override(struct lw *lw, const char *key);
/* HTTP_PROXY & co.: usable in RUN without an ARG, never in history. */
bool lw_is_proxy_arg(const char *key);

/* Build checks (checks.c): BuildKit's lint rules; warnings become notes of
 * g. config: BUILDKIT_DOCKERFILE_CHECK's value, else the `# check=`
 * directive. new runs the rules the text decides (NULL with *err for a bad
 * configuration); the lowering adds its own with fe_checks_warn (c may be
 * NULL); finish fails (-1 with *err) on any violation under error=true. */
struct fe_checks;
struct fe_checks *fe_checks_new(const struct fe_dockerfile *df, const char *file,
                                const char *config, struct ir_graph *g, struct kn_error **err);
void fe_checks_warn(struct fe_checks *c, int line, const char *rule, const char *fmt, ...)
    KN_PRINTF(4, 5);
int fe_checks_finish(struct fe_checks *c, struct kn_error **err);
void fe_checks_free(struct fe_checks *c);

/* Variable lookup of a stage (ENV, then declared ARGs) or of the global
 * scope (st == NULL: global ARGs and the automatic platform ARGs). */
struct lw_scope {
    struct lw *lw;
    struct lw_stage *st;
    const struct fe_instr *in; /* for UndefinedVar warnings; NULL: none */
};
struct fe_vars lw_vars(struct lw_scope *scope);

/* Expansion helpers: the result is allocated in lw's arena. */
int lw_expand(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, const char *word,
              char **out, struct kn_error **err);
int lw_expand_words(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, const char *text,
                    lw_strvec *out, struct kn_error **err);
/* The value of a flag after expansion, NULL when the flag is absent. */
int lw_flag(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, const char *name,
            char **out, struct kn_error **err);

const char *lw_env_get(const lw_strvec *env, const char *key);
void lw_env_set(struct lw *lw, lw_strvec *env, const char *key, const char *value);

/* Resolves `name` (a --from or FROM value) from stage `st`: a named build
 * context, a stage (by name or index; earlier stages only), or an image.
 * Sets *vertex, and *stage when it is a stage, *ctx_image when it is an
 * image ref (to resolve its config). */
struct lw_source {
    int64_t vertex;
    struct lw_stage *stage; /* a stage, else NULL */
    char *image_ref;        /* an image (also a docker-image:// context), else NULL */
    bool scratch;
};
int lw_resolve_source(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, int col,
                      const char *name, bool for_from, struct lw_source *out,
                      struct kn_error **err);
int64_t lw_context_vertex(struct lw *lw, struct kn_error **err);
/* Does the context's .dockerignore exclude path (relative, clean)? */
bool lw_context_ignores(struct lw *lw, const char *path);
int64_t lw_scratch_vertex(struct lw *lw, struct kn_error **err);

/* Adds a vertex with the instruction's location, progress name and stage. */
int64_t lw_add_vertex(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                      struct ir_vertex *v, const char *name, struct kn_error **err);
/* "[stage 2/5] RUN make" (counts the command unless in an ONBUILD trigger). */
char *lw_progress_name(struct lw *lw, struct lw_stage *st, const char *text);
/* The instruction's text with the keyword upper-cased. */
char *lw_instr_text(struct lw *lw, const struct fe_instr *in);
void lw_history(struct lw *lw, struct lw_stage *st, const char *created_by, bool empty_layer);

/* Checks the syntax of an image reference (lowercase repository, valid tag
 * and digest). Returns NULL when valid, else a message (static string). */
const char *lw_check_ref(const char *ref);
/* Parses "os/arch[/variant]". */
int lw_parse_platform(struct lw *lw, const char *s, struct ir_platform *out);
char *lw_platform_string(struct lw *lw, const struct ir_platform *p);

/* Go's %q of a string vector: ["a" "b"] (for CMD/ENTRYPOINT history). */
char *lw_quote_vec(struct lw *lw, char *const *v, size_t n);

/* ---- lower_instr.c: one instruction ----------------------------------- */
/* `path` made absolute against the stage's WORKDIR and cleaned. */
char *lw_resolve_path(struct lw *lw, struct lw_stage *st, const char *path);
int lw_instr(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, struct kn_error **err);

/* ---- lower_mount.c: RUN --mount ---------------------------------------- */
/* Parses one --mount value (already read from the flag, unexpanded) into m;
 * a from= source is added to *inputs. */
int lw_parse_mount(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                   const struct fe_flag *flag, struct ir_mount *m, lw_u32vec *inputs, int ssh_index,
                   struct kn_error **err);

/* ---- lower_config.c: image config JSON --------------------------------- */
/* Fills img from an OCI image config document. */
int lw_image_from_json(struct lw *lw, const char *json, struct lw_image *img,
                       struct kn_error **err);
void lw_image_copy(struct lw_image *dst, const struct lw_image *src);
void lw_image_release(struct lw_image *img);
/* The OCI image config document (malloc'd). */
char *lw_image_to_json(struct lw *lw, const struct lw_image *img, const struct ir_platform *p);

/* ---- frontends.c ---------------------------------------------------------- */
/* The frontend named by a `# syntax=` directive of data, or NULL. */
char *fe_syntax_directive(const char *data, size_t len);

#endif
