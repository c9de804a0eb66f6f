/*
 * Unit tests of the Dockerfile lowering: ARG scoping (global ARGs only in
 * FROM, redeclaration, --build-arg, automatic platform ARGs, ARGs in RUN's
 * environment but not in the config), stage resolution (names, indexes,
 * pruning, circular references, unknown targets), base image configs from a
 * resolver (ENV/WORKDIR/USER/SHELL inherited, ONBUILD triggers run,
 * ENTRYPOINT dropping the inherited CMD), frontend selection and the
 * .dockerignore reader.
 */
#include "frontend/frontend.h"
#include "frontend/internal.h"
#include "tap.h"

#include <jansson.h>

static struct ir_graph *lower_args(const char *df, const char *target, char **args, size_t nargs,
                                   const struct fe_resolver *r, struct kn_error **err)
{
    struct fe_request req = {0};
    req.file_name = "Dockerfile";
    req.data = df;
    req.len = strlen(df);
    req.target = target;
    req.build_args = args;
    req.nbuild_args = nargs;
    req.platform = "linux/amd64";
    req.resolver = r;
    return fe_dockerfile_lower(&req, err);
}

static struct ir_graph *lower(const char *df, struct kn_error **err)
{
    return lower_args(df, NULL, NULL, 0, NULL, err);
}

/* The last exec vertex of the graph. */
static const struct ir_exec *last_exec(const struct ir_graph *g)
{
    for (size_t i = g->nv; i-- > 0;)
        if (g->v[i].op == IR_EXEC)
            return &g->v[i].u.exec;
    return NULL;
}

static const char *env_of(const struct ir_exec *x, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; x && i < x->nenv; i++)
        if (strncmp(x->env[i], key, kl) == 0 && x->env[i][kl] == '=')
            return x->env[i] + kl + 1;
    return NULL;
}

/* config.Labels[key] of the output, "" when absent (caller frees) */
static char *label_of(const struct ir_graph *g, const char *key)
{
    json_t *c = json_loads(g->outputs[0].config, 0, NULL);
    const char *v = json_string_value(
        json_object_get(json_object_get(json_object_get(c, "config"), "Labels"), key));
    char *s = kn_strdup(v ? v : "<unset>");
    json_decref(c);
    return s;
}

static char *config_field(const struct ir_graph *g, const char *key)
{
    json_t *c = json_loads(g->outputs[0].config, 0, NULL);
    json_t *v = json_object_get(json_object_get(c, "config"), key);
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char *out = kn_strdup(s ? s : "null");
    free(s);
    json_decref(c);
    return out;
}

static void test_arg_scoping(void)
{
    struct kn_error *err = NULL;
    /* a global ARG is usable in FROM only */
    struct ir_graph *g = lower("ARG TAG=3.19\nARG V=global\nFROM alpine:$TAG\n"
                               "LABEL v=\"[$V]\"\nRUN echo\n",
                               &err);
    ok(g != NULL, "global ARG in FROM lowers");
    is_str(g->v[0].u.image.ref, "alpine:3.19", "FROM expanded with the global ARG");
    char *l = label_of(g, "v");
    is_str(l, "[]", "global ARG not visible inside the stage");
    free(l);
    ok(env_of(last_exec(g), "V") == NULL, "global ARG not in RUN's env without redeclaration");
    ir_graph_free(g);

    /* ARG NAME without a value picks the global default */
    g = lower("ARG V=global\nFROM alpine\nARG V\nLABEL v=$V\nRUN echo\n", &err);
    l = label_of(g, "v");
    is_str(l, "global", "redeclared ARG takes the global default");
    free(l);
    is_str(env_of(last_exec(g), "V"), "global", "ARG value in RUN's environment");
    l = config_field(g, "Env");
    ok(strstr(l, "V=") == NULL, "ARG value not in the image config's Env (%s)", l);
    free(l);
    ir_graph_free(g);

    /* --build-arg overrides the global and the stage default */
    char *args[] = {"V=cli", "W=cli2", "UNUSED=1"};
    g = lower_args("ARG V=global\nFROM alpine\nARG V\nARG W=stage\nLABEL v=$V w=$W\n", NULL, args,
                   3, NULL, &err);
    l = label_of(g, "v");
    is_str(l, "cli", "--build-arg overrides a global default");
    free(l);
    l = label_of(g, "w");
    is_str(l, "cli2", "--build-arg overrides a stage default");
    free(l);
    bool noted = false;
    for (size_t i = 0; i < g->nnotes; i++)
        noted |= strstr(g->notes[i], "not consumed: UNUSED") != NULL;
    ok(noted, "unused --build-arg is a note, not an error");
    ir_graph_free(g);

    /* ENV wins over ARG; an ARG default sees earlier ARGs */
    g = lower("FROM alpine\nENV A=env\nARG A=arg\nARG B=x C=${B}y\nLABEL a=$A c=$C\n", &err);
    l = label_of(g, "a");
    is_str(l, "env", "ENV takes precedence over ARG");
    free(l);
    l = label_of(g, "c");
    is_str(l, "xy", "ARG default expanded with earlier ARGs of the same line");
    free(l);
    ir_graph_free(g);

    /* automatic platform ARGs: global scope without declaration, stage scope with */
    char *none[] = {NULL};
    struct fe_request req = {0};
    req.file_name = "Dockerfile";
    const char *df = "FROM --platform=$TARGETPLATFORM alpine\nLABEL a=\"[$TARGETARCH]\"\n"
                     "ARG TARGETARCH TARGETVARIANT\nLABEL b=$TARGETARCH c=$TARGETVARIANT\n";
    req.data = df;
    req.len = strlen(df);
    req.platform = "linux/arm/v7";
    req.build_args = none;
    g = fe_dockerfile_lower(&req, &err);
    ok(g != NULL, "platform ARGs lower");
    is_str(g->v[0].u.image.platform.arch, "arm", "FROM --platform=$TARGETPLATFORM");
    is_str(g->v[0].u.image.platform.variant, "v7", "variant from the platform");
    l = label_of(g, "a");
    is_str(l, "[]", "TARGETARCH not in a stage before ARG TARGETARCH");
    free(l);
    l = label_of(g, "b");
    is_str(l, "arm", "TARGETARCH after ARG TARGETARCH");
    free(l);
    l = label_of(g, "c");
    is_str(l, "v7", "TARGETVARIANT after ARG");
    free(l);
    ir_graph_free(g);

    /* proxy build args: in RUN's env without ARG, never in history */
    char *proxy[] = {"HTTPS_PROXY=http://p:3128"};
    g = lower_args("FROM alpine\nRUN wget x\n", NULL, proxy, 1, NULL, &err);
    is_str(env_of(last_exec(g), "HTTPS_PROXY"), "http://p:3128", "proxy arg in RUN's env");
    is_str(g->outputs[0].history[0].created_by, "RUN /bin/sh -c wget x # buildkit",
           "proxy arg not in history");
    ir_graph_free(g);
    ok(err == NULL, "no error so far");
    kn_err_free(err);
}

static void test_stages(void)
{
    struct kn_error *err = NULL;
    const char *df = "FROM alpine AS base\nRUN echo base\n"
                     "FROM base AS test\nRUN echo test\n"
                     "FROM golang AS tools\nRUN echo tools\n"
                     "FROM base AS build\nCOPY --from=TOOLS /t /t\nRUN echo build\n";
    struct ir_graph *g = lower_args(df, "build", NULL, 0, NULL, &err);
    ok(g != NULL, "4 stages lower");
    size_t exec = 0;
    bool test_seen = false;
    for (size_t i = 0; i < g->nv; i++) {
        exec += g->v[i].op == IR_EXEC;
        if (g->v[i].stage && strcmp(g->v[i].stage, "test") == 0)
            test_seen = true;
    }
    is_int(exec, 3, "only base, tools and build are lowered");
    ok(!test_seen, "the unneeded stage is pruned");
    is_str(g->outputs[0].name, "build", "output named after the target");
    is_str(g->outputs[0].base_ref, "alpine", "base_ref follows FROM base");
    ir_graph_free(g);

    /* index reference */
    g = lower("FROM alpine\nRUN echo zero\nFROM scratch\nCOPY --from=0 /x /x\n", &err);
    ok(g && g->v[g->outputs[0].vertex].op == IR_FILE, "COPY --from=0 lowers");
    ir_graph_free(g);

    /* circular references */
    g = lower("FROM alpine AS a\nCOPY --from=a /x /x\n", &err);
    ok(g == NULL && err, "a stage copying from itself fails");
    if (err) {
        is_str(err->msg, "circular dependency detected on stage 'a'", "circular message");
        is_int(err->loc.line, 2, "error at the COPY line");
        is_str(err->detail, "COPY --from=a /x /x", "detail is the source line");
    }
    kn_err_free(err);
    err = NULL;
    g = lower_args("FROM b AS a\nFROM alpine AS b\n", "a", NULL, 0, NULL, &err);
    ok(g == NULL && err && strcmp(err->msg, "circular dependency detected on stage 'b'") == 0,
       "FROM a later stage is circular");
    kn_err_free(err);
    err = NULL;

    /* unknown target lists the stages */
    g = lower_args("FROM alpine AS one\nFROM alpine\n", "three", NULL, 0, NULL, &err);
    ok(g == NULL && err, "unknown target fails");
    if (err)
        is_str(err->msg, "target stage 'three' could not be found (stages: one, 1)",
               "unknown target message");
    kn_err_free(err);
    err = NULL;

    struct kn_strv names = {0};
    const char *sdf = "FROM a AS First\nFROM b\nFROM c as third\n";
    int rc = fe_dockerfile_stages("Dockerfile", sdf, strlen(sdf), &names, &err);
    ok(rc == 0, "stages list");
    is_int(names.n, 3, "three stages");
    if (names.n == 3) {
        is_str(names.v[0], "first", "names lower-cased");
        is_str(names.v[1], "1", "unnamed stage by index");
        is_str(names.v[2], "third", "lower-case 'as'");
    }
    kn_strv_release(&names);

    /* identical work in two stages is one vertex */
    g = lower("FROM alpine AS a\nRUN make\nFROM alpine AS b\nRUN make\n"
              "FROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
              &err);
    size_t makes = 0;
    for (size_t i = 0; g && i < g->nv; i++)
        makes += g->v[i].op == IR_EXEC;
    is_int(makes, 1, "two stages share the RUN vertex");
    ir_graph_free(g);
    kn_err_free(err);
}

/* A resolver with a fixed base config. */
static int fake_resolve(void *ctx, const char *ref, const struct ir_platform *p, char **json,
                        char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    (void)p;
    (void)err;
    int *calls = ctx;
    (*calls)++;
    digest[0] = 0;
    if (strcmp(ref, "unknown") == 0) {
        *json = NULL;
        return 0;
    }
    if (strcmp(ref, "missing") == 0)
        return kn_err_set(err, KN_E_NOTFOUND, "manifest unknown");
    *json = kn_strdup("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
                      "\"Env\":[\"PATH=/opt/bin\",\"BASE=1\"],\"WorkingDir\":\"/base\","
                      "\"User\":\"nobody\",\"Cmd\":[\"sh\"],\"Shell\":[\"/bin/ash\",\"-c\"],"
                      "\"Labels\":{\"from\":\"base\"},"
                      "\"OnBuild\":[\"RUN echo trigger $BASE\"]}}");
    return 0;
}

static void test_resolver(void)
{
    struct kn_error *err = NULL;
    int calls = 0;
    struct fe_resolver r = {&calls, fake_resolve};
    struct ir_graph *g =
        lower_args("FROM base\nWORKDIR sub\nENTRYPOINT [\"/e\"]\nRUN x\n", NULL, NULL, 0, &r, &err);
    ok(g != NULL, "lowering with a resolver");
    is_int(calls, 1, "resolver asked once");
    /* the ONBUILD trigger ran right after FROM, with the base's shell and env */
    const struct ir_vertex *trig = NULL;
    for (size_t i = 0; g && i < g->nv; i++)
        if (g->v[i].op == IR_EXEC && !trig)
            trig = &g->v[i];
    ok(trig != NULL, "trigger vertex exists");
    if (trig) {
        is_str(trig->u.exec.argv[0], "/bin/ash", "trigger uses the base's SHELL");
        is_str(trig->u.exec.argv[2], "echo trigger $BASE", "trigger command");
        is_str(trig->u.exec.cwd, "/base", "trigger runs in the base's WORKDIR");
        is_str(trig->u.exec.user, "nobody", "trigger runs as the base's USER");
    }
    const struct ir_exec *x = g ? last_exec(g) : NULL;
    is_str(x ? x->cwd : NULL, "/base/sub", "relative WORKDIR against the base's");
    is_str(env_of(x, "PATH"), "/opt/bin", "base PATH kept (no default added)");
    char *s = config_field(g, "Cmd");
    is_str(s, "null", "ENTRYPOINT drops the base's CMD");
    free(s);
    s = config_field(g, "OnBuild");
    is_str(s, "null", "triggers are not inherited");
    free(s);
    s = config_field(g, "Labels");
    is_str(s, "{\"from\":\"base\"}", "base labels inherited");
    free(s);
    bool unresolved = false;
    for (size_t i = 0; g && i < g->nnotes; i++)
        unresolved |= strstr(g->notes[i], "not resolved") != NULL;
    ok(g && !unresolved, "no unresolved note");
    ir_graph_free(g);

    /* a resolver that cannot answer: unresolved note; an error: fails at FROM */
    g = lower_args("FROM unknown\n", NULL, NULL, 0, &r, &err);
    ok(g && g->nnotes == 1 && strcmp(g->notes[0], "base image configs not resolved: unknown") == 0,
       "config NULL means unresolved");
    ir_graph_free(g);
    g = lower_args("FROM missing\n", NULL, NULL, 0, &r, &err);
    ok(g == NULL && err, "resolver error fails the lowering");
    if (err) {
        is_str(err->msg, "cannot resolve base image 'missing': manifest unknown",
               "resolver error wrapped");
        is_int(err->loc.line, 1, "at the FROM line");
    }
    kn_err_free(err);
}

static void test_select(void)
{
    struct kn_error *err = NULL;
    const char *d1 = "# syntax=docker/dockerfile:1.7-labs\nFROM a\n";
    const struct fe_frontend *fe = fe_frontend_select(NULL, d1, strlen(d1), &err);
    ok(fe && strcmp(fe->name, "dockerfile") == 0, "docker/dockerfile:1.7-labs is built in");
    const char *d2 = "#syntax = docker.io/docker/dockerfile:1\nFROM a\n";
    fe = fe_frontend_select(NULL, d2, strlen(d2), &err);
    ok(fe && strcmp(fe->name, "dockerfile") == 0, "docker.io/docker/dockerfile:1 is built in");
    fe = fe_frontend_select("ir", d1, strlen(d1), &err);
    ok(fe && strcmp(fe->name, "ir") == 0, "explicit name wins over the directive");
    const char *d3 = "FROM a\n# syntax=nope\n";
    fe = fe_frontend_select(NULL, d3, strlen(d3), &err);
    ok(fe && strcmp(fe->name, "dockerfile") == 0, "a directive after FROM is a comment");
    const char *d4 = "# syntax=acme/frontend\nFROM a\n";
    fe = fe_frontend_select(NULL, d4, strlen(d4), &err);
    ok(fe == NULL && err, "unknown syntax fails");
    if (err)
        is_str(err->msg,
               "unknown frontend 'acme/frontend' in the syntax directive (known: dockerfile, "
               "docker/dockerfile:*, ir, exec:PATH)",
               "unknown frontend message");
    kn_err_free(err);
    err = NULL;
    fe = fe_frontend_select("exec:", NULL, 0, &err);
    ok(fe == NULL && err && err->code == KN_E_USAGE, "exec: without a path is a usage error");
    kn_err_free(err);
}

static void test_dockerignore(void)
{
    const char *di = "# c\n\nnode_modules\n/build/\n ! build/keep \n./a/../b\n*.log\n";
    struct kn_strv v = {0};
    fe_dockerignore_parse(di, strlen(di), &v);
    is_int(v.n, 5, "five patterns");
    if (v.n == 5) {
        is_str(v.v[0], "node_modules", "plain");
        is_str(v.v[1], "build", "leading / and trailing / cleaned");
        is_str(v.v[2], "!build/keep", "exception kept, spaces trimmed");
        is_str(v.v[3], "b", "cleaned like filepath.Clean");
        is_str(v.v[4], "*.log", "glob kept");
    }
    kn_strv_release(&v);
}

static void test_mount_and_copy_errors(void)
{
    static const struct {
        const char *df;
        const char *msg;
        int col;
    } cases[] = {
        {"FROM a\nRUN --mount=type=cache,target=/x,mode=9z true\n",
         "invalid mount mode '9z': want octal bits", 5},
        {"FROM a\nRUN --mount=type=secret true\n", "secret mount requires an id or a target", 5},
        {"FROM a\nRUN --mount=type=tmpfs,target=/t,from=x true\n",
         "mount option 'from' is not valid for type=tmpfs", 5},
        {"FROM a\nCOPY --chmod=12345 a /a\n",
         "invalid chmod '12345': want octal permission bits (0755) or a symbolic mode (u+x)", 6},
        {"FROM a\nCOPY a b c\n",
         "when using COPY with more than one source file, the destination must be a directory "
         "and end with a /",
         1},
        {"FROM a\nADD --keep-git-dir=maybe git@github.com:x/y.git /src\n",
         "expecting boolean value for flag --keep-git-dir, not: maybe", 5},
        {"FROM a\nADD "
         "--checksum=sha256:0123456789012345678901234567890123456789012345678901234567890123 "
         "git@github.com:x/y.git /src\n",
         "checksum requires an HTTP(S) source", 5},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(cases); i++) {
        struct kn_error *err = NULL;
        struct ir_graph *g = lower(cases[i].df, &err);
        ok(g == NULL && err, "case %zu fails", i);
        if (err) {
            is_str(err->msg, cases[i].msg, "case %zu message", i);
            is_int(err->loc.line, 2, "case %zu line", i);
            is_int(err->loc.col, cases[i].col, "case %zu column", i);
        }
        kn_err_free(err);
        ir_graph_free(g);
    }
    /* a secret with only env= still gets the default target (the IR wants one) */
    struct kn_error *err = NULL;
    struct ir_graph *g = lower("FROM a\nRUN --mount=type=secret,id=t,env=TOKEN true\n", &err);
    const struct ir_exec *x = g ? last_exec(g) : NULL;
    ok(x && x->nmounts == 1 && strcmp(x->mounts[0].target, "/run/secrets/t") == 0 &&
           strcmp(x->mounts[0].env, "TOKEN") == 0,
       "secret as env only");
    ir_graph_free(g);
    kn_err_free(err);
}

int main(void)
{
    test_arg_scoping();
    test_stages();
    test_resolver();
    test_select();
    test_dockerignore();
    test_mount_and_copy_errors();
    return tap_done();
}
