/*
 * Unit tests for the IR's JSON form: every op and every field round-trips
 * (dump -> load -> dump is byte-identical and digests are equal), vertices
 * may be listed in any order, and each malformed input is refused with its
 * exact message.
 */
#include "ir/ir.h"
#include "ir/internal.h"
#include "tap.h"

static uint32_t *ins(struct ir_graph *g, int n, ...)
{
    uint32_t *v = ir_graph_alloc(g, (size_t)n * sizeof(uint32_t));
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        v[i] = va_arg(ap, uint32_t);
    va_end(ap);
    return v;
}

static int64_t add(struct ir_graph *g, struct ir_vertex *v)
{
    struct kn_error *err = NULL;
    int64_t r = ir_graph_add(g, v, &err);
    if (r < 0) {
        printf("# add failed: %s\n", err->msg);
        kn_err_free(err);
        exit(1);
    }
    return r;
}

/* A graph that uses every op and sets every field to a non-default value. */
static struct ir_graph *full_graph(void)
{
    struct ir_graph *g = ir_graph_new();
    struct ir_vertex v;

    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_IMAGE;
    v.u.image.ref = "host:5000/x@sha256:0123";
    v.u.image.platform = (struct ir_platform){"linux", "arm64", "v8"};
    v.loc = (struct ir_srcloc){"Dockerfile", 1, 1, 1};
    v.name = "[build 1/4] FROM host:5000/x";
    v.stage = "build";
    int64_t img = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_LOCAL;
    v.u.local.name = "context";
    char *incl[] = {"src/", "go.mod"}, *excl[] = {"*.o", "!keep.o"};
    v.u.local.include = ir_graph_strv(g, incl, 2);
    v.u.local.ninclude = 2;
    v.u.local.exclude = ir_graph_strv(g, excl, 2);
    v.u.local.nexclude = 2;
    int64_t ctx = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_SCRATCH;
    int64_t scratch = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_HTTP;
    v.u.http.url = "https://example.com/a.tar.gz?x=1";
    v.u.http.checksum = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    v.u.http.filename = "a.tgz";
    int64_t http = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_EXEC;
    char *argv[] = {"/bin/sh", "-c", "echo \"hi\" \\\n && make\ttest"};
    char *env[] = {"PATH=/bin", "EMPTY=", "UNI=caf\xc3\xa9 \xe2\x9c\x93"};
    v.u.exec.argv = ir_graph_strv(g, argv, 3);
    v.u.exec.argc = 3;
    v.u.exec.env = ir_graph_strv(g, env, 3);
    v.u.exec.nenv = 3;
    v.u.exec.cwd = "/src";
    v.u.exec.user = "1000:1000";
    v.u.exec.network = IR_NET_NONE;
    v.u.exec.security = IR_SEC_INSECURE;
    struct ir_mount *m = ir_graph_alloc(g, 5 * sizeof(*m));
    m[0] = (struct ir_mount){
        IR_MOUNT_BIND, "/ctx", 1, "/src", true, NULL, IR_SHARING_SHARED, -1, -1, -1,
        false,         NULL,   0};
    m[1] = (struct ir_mount){
        IR_MOUNT_CACHE, "/root/.cache", 2,    "/c",  false, "gocache", IR_SHARING_LOCKED,
        0755,           1000,           1001, false, NULL,  0};
    m[2] = (struct ir_mount){IR_MOUNT_TMPFS,    "/tmp", -1, NULL, false, NULL,
                             IR_SHARING_SHARED, -1,     -1, -1,   false, NULL,
                             64 << 20};
    m[3] = (struct ir_mount){IR_MOUNT_SECRET,
                             "/run/secrets/tok",
                             -1,
                             NULL,
                             false,
                             "tok",
                             IR_SHARING_PRIVATE,
                             0400,
                             0,
                             0,
                             true,
                             "TOKEN",
                             0};
    m[4] =
        (struct ir_mount){IR_MOUNT_SSH, "/run/ssh", -1, NULL, false, "default", IR_SHARING_SHARED,
                          0600,         -1,         -1, true, NULL,  0};
    v.u.exec.mounts = m;
    v.u.exec.nmounts = 5;
    v.inputs = ins(g, 3, (uint32_t)img, (uint32_t)ctx, (uint32_t)scratch);
    v.ninputs = 3;
    v.loc = (struct ir_srcloc){"Dockerfile", 3, 1, 5};
    v.name = "[build 2/4] RUN echo \"hi\"";
    v.stage = "build";
    v.no_cache = true;
    int64_t run = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_FILE;
    struct ir_file_action *a = ir_graph_alloc(g, 5 * sizeof(*a));
    char *fex[] = {"*.tmp"};
    a[0] = (struct ir_file_action){IR_FILE_COPY,
                                   1,
                                   "/src/*.c",
                                   "/app/",
                                   NULL,
                                   NULL,
                                   0,
                                   "app:app",
                                   0644,
                                   NULL,
                                   IR_FF_FOLLOW_SYMLINKS | IR_FF_DIR_CONTENTS | IR_FF_WILDCARD |
                                       IR_FF_ALLOW_EMPTY_WILDCARD | IR_FF_CREATE_PARENTS |
                                       IR_FF_PARENTS | IR_FF_DEST_IS_DIR,
                                   ir_graph_strv(g, fex, 1),
                                   1};
    a[1] = (struct ir_file_action){IR_FILE_MKDIR, -1,   NULL, "/app/data",          NULL, NULL, 0,
                                   "1:2",         0700, NULL, IR_FF_CREATE_PARENTS, NULL, 0};
    static const char bin[] = "a\0b\n\xff\x01z";
    a[2] = (struct ir_file_action){IR_FILE_MKFILE,
                                   -1,
                                   NULL,
                                   "/app/bin",
                                   NULL,
                                   ir_graph_alloc(g, sizeof(bin) - 1),
                                   sizeof(bin) - 1,
                                   NULL,
                                   -1,
                                   "u+x,g-w",
                                   0,
                                   NULL,
                                   0};
    memcpy(a[2].data, bin, sizeof(bin) - 1);
    a[3] = (struct ir_file_action){
        IR_FILE_RM, -1, NULL, "/app/old", NULL, NULL, 0, NULL, -1, NULL, IR_FF_ALLOW_NOT_FOUND,
        NULL,       0};
    a[4] = (struct ir_file_action){
        IR_FILE_SYMLINK, -1, NULL, "/app/link", "../bin/x", NULL, 0, NULL, -1, NULL, 0, NULL, 0};
    v.u.file.actions = a;
    v.u.file.nactions = 5;
    v.inputs = ins(g, 2, (uint32_t)run, (uint32_t)ctx);
    v.ninputs = 2;
    v.loc = (struct ir_srcloc){"Dockerfile", 6, 1, 6};
    v.stage = "build";
    int64_t file = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_FILE;
    a = ir_graph_alloc(g, sizeof(*a));
    a[0] = (struct ir_file_action){IR_FILE_COPY,
                                   1,
                                   "/x.tar",
                                   "/",
                                   NULL,
                                   NULL,
                                   0,
                                   NULL,
                                   -1,
                                   NULL,
                                   IR_FF_UNPACK | IR_FF_DEST_IS_DIR,
                                   NULL,
                                   0};
    v.u.file.actions = a;
    v.u.file.nactions = 1;
    v.inputs = ins(g, 2, (uint32_t)scratch, (uint32_t)http);
    v.ninputs = 2;
    int64_t add2 = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_MERGE;
    v.inputs = ins(g, 2, (uint32_t)file, (uint32_t)add2);
    v.ninputs = 2;
    v.stage = "final";
    int64_t merge = add(g, &v);

    struct ir_history h[] = {{"RUN make # buildkit", "built", false}, {"ENV A=1", NULL, true}};
    struct ir_output out = {"default",
                            (uint32_t)merge,
                            "{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{\"Env\":"
                            "[\"A=1\"],\"Labels\":{\"z\":\"1\",\"a\":\"2\"},\"x\":1.5}}",
                            h,
                            2,
                            "host:5000/x@sha256:0123"};
    ir_graph_add_output(g, &out);
    struct ir_output out2 = {"build", (uint32_t)file, NULL, NULL, 0, NULL};
    ir_graph_add_output(g, &out2);
    ir_graph_add_note(g, "base image '%s' not resolved", "x");
    return g;
}

static char *dump(const struct ir_graph *g)
{
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    if (ir_graph_to_json(g, &b, &err) < 0) {
        printf("# dump failed: %s\n", err->msg);
        kn_err_free(err);
        kn_buf_release(&b);
        return NULL;
    }
    return kn_buf_detach(&b);
}

static void test_roundtrip(void)
{
    struct ir_graph *g = full_graph();
    char *j1 = dump(g);
    ok(j1 != NULL, "full graph dumps");
    struct kn_error *err = NULL;
    struct ir_graph *g2 = ir_graph_from_json(j1, strlen(j1), "full", &err);
    ok(g2 != NULL, "full graph loads: %s", err ? err->msg : "ok");
    if (!g2) {
        printf("# %s\n", j1);
        kn_err_free(err);
        free(j1);
        ir_graph_free(g);
        return;
    }
    char *j2 = dump(g2);
    is_str(j2, j1, "dump -> load -> dump is byte-identical");
    is_int(g2->nv, g->nv, "same vertex count");
    int same = 1;
    for (size_t i = 0; i < g->nv && i < g2->nv; i++)
        same &= strcmp(g->v[i].digest, g2->v[i].digest) == 0;
    ok(same, "same digests in the same order");

    /* spot-check fields on the loaded graph */
    const struct ir_vertex *img = &g2->v[0];
    is_str(img->u.image.platform.variant, "v8", "platform variant");
    is_int(img->loc.line, 1, "loc line");
    is_str(img->loc.file, "Dockerfile", "loc file");
    is_str(img->name, "[build 1/4] FROM host:5000/x", "name");
    const struct ir_vertex *loc = &g2->v[1];
    is_int(loc->u.local.nexclude, 2, "local exclude count");
    is_str(loc->u.local.exclude[1], "!keep.o", "local exclude exception");
    is_str(g2->v[3].u.http.filename, "a.tgz", "http filename");
    const struct ir_vertex *run = &g2->v[4];
    is_str(run->u.exec.argv[2], "echo \"hi\" \\\n && make\ttest", "argv with quotes and newline");
    ok(run->u.exec.argv[3] == NULL, "argv NULL-terminated");
    is_str(run->u.exec.env[2], "UNI=caf\xc3\xa9 \xe2\x9c\x93", "UTF-8 env");
    is_str(run->u.exec.env[1], "EMPTY=", "empty value env");
    is_str(run->u.exec.user, "1000:1000", "user");
    is_int(run->u.exec.network, IR_NET_NONE, "network");
    is_int(run->u.exec.security, IR_SEC_INSECURE, "security");
    ok(run->no_cache, "no_cache");
    is_int(run->loc.end_line, 5, "end_line");
    is_int(run->u.exec.nmounts, 5, "mount count");
    const struct ir_mount *m = run->u.exec.mounts;
    is_int(m[0].type, IR_MOUNT_BIND, "bind type");
    is_int(m[0].input, 1, "bind input");
    ok(m[0].readonly, "bind readonly");
    is_str(m[0].source, "/src", "bind source");
    is_int(m[0].mode, -1, "bind mode default");
    is_int(m[1].sharing, IR_SHARING_LOCKED, "cache sharing");
    is_int(m[1].mode, 0755, "cache mode");
    is_int(m[1].uid, 1000, "cache uid");
    is_int(m[1].gid, 1001, "cache gid");
    is_str(m[1].id, "gocache", "cache id");
    is_int(m[2].size, 64 << 20, "tmpfs size");
    is_int(m[2].input, -1, "tmpfs input");
    ok(m[3].required, "secret required");
    is_str(m[3].env, "TOKEN", "secret env");
    is_int(m[3].sharing, IR_SHARING_PRIVATE, "secret sharing");
    is_int(m[3].uid, 0, "secret uid 0");
    is_int(m[4].type, IR_MOUNT_SSH, "ssh type");
    const struct ir_vertex *f = &g2->v[5];
    const struct ir_file_action *a = f->u.file.actions;
    is_int(f->u.file.nactions, 5, "action count");
    is_int(a[0].flags,
           IR_FF_FOLLOW_SYMLINKS | IR_FF_DIR_CONTENTS | IR_FF_WILDCARD |
               IR_FF_ALLOW_EMPTY_WILDCARD | IR_FF_CREATE_PARENTS | IR_FF_PARENTS |
               IR_FF_DEST_IS_DIR,
           "copy flags");
    is_int(a[0].src_input, 1, "copy src_input");
    is_str(a[0].chown, "app:app", "copy chown");
    is_int(a[0].mode, 0644, "copy mode");
    is_str(a[0].exclude[0], "*.tmp", "copy exclude");
    is_int(a[2].datalen, 7, "mkfile data length");
    ok(a[2].data && memcmp(a[2].data, "a\0b\n\xff\x01z", 7) == 0, "mkfile data with NUL bytes");
    is_str(a[2].chmod, "u+x,g-w", "symbolic chmod");
    is_int(a[2].mode, -1, "mode default");
    is_int(a[3].flags, IR_FF_ALLOW_NOT_FOUND, "rm flags");
    is_str(a[4].target, "../bin/x", "symlink target");
    is_int(g2->v[6].u.file.actions[0].flags, IR_FF_UNPACK | IR_FF_DEST_IS_DIR, "add flags");
    is_int(g2->noutputs, 2, "outputs");
    is_str(g2->outputs[0].config,
           "{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{\"Env\":[\"A=1\"],"
           "\"Labels\":{\"z\":\"1\",\"a\":\"2\"},\"x\":1.5}}",
           "config keeps its key order");
    is_int(g2->outputs[0].nhistory, 2, "history");
    ok(g2->outputs[0].history[1].empty_layer, "history empty_layer");
    is_str(g2->outputs[0].history[0].comment, "built", "history comment");
    is_str(g2->outputs[0].base_ref, "host:5000/x@sha256:0123", "base_ref");
    ok(g2->outputs[1].config == NULL, "NULL config stays NULL");
    is_int(g2->outputs[1].vertex, 5, "second output vertex");
    is_int(g2->nnotes, 1, "notes");
    is_str(g2->notes[0], "base image 'x' not resolved", "note text");

    /* the form itself: documented key names, flags as names, data base64 */
    ok(strstr(j1, "\"version\": 1") != NULL, "version field");
    ok(strstr(j1, "\"flags\": [\n") != NULL, "flags are an array");
    ok(strstr(j1, "\"allow_not_found\"") != NULL, "flag by name");
    ok(strstr(j1, "\"data\": \"YQBiCv8Beg==\"") != NULL, "data as base64");
    ok(strstr(j1, "\"mode\": -1") == NULL, "mode -1 omitted");
    ok(strstr(j1, "\"Labels\": {\n") != NULL, "config embedded as an object");
    free(j2);
    free(j1);
    ir_graph_free(g2);
    ir_graph_free(g);
}

/* Vertices listed in reverse order load into topological order. */
/* canon.c writes the canonical encoding directly; it must equal what
 * jansson makes of the JSON form's params, for every field. */
static void test_canonical_writers_agree(void)
{
    struct ir_graph *g = full_graph();
    size_t same = 0;
    for (size_t i = 0; i < g->nv; i++) {
        char *fast = ir_vertex_canonical(g, &g->v[i]);
        char *ref = ir_vertex_canonical_json(g, &g->v[i]);
        if (fast && ref && strcmp(fast, ref) == 0)
            same++;
        else
            printf("# vertex %zu:\n#  direct:  %s\n#  jansson: %s\n", i, fast ? fast : "(null)",
                   ref ? ref : "(null)");
        free(fast);
        free(ref);
    }
    is_int(same, g->nv, "direct and jansson canonical encodings agree on every vertex");
    ir_graph_free(g);
}

static void test_any_order(void)
{
    struct ir_graph *g = full_graph();
    char *j1 = dump(g);
    struct kn_error *err = NULL;
    /* rebuild the file with the vertices array reversed, by hand */
    char *vs = strstr(j1, "\"vertices\": [\n");
    char *os = strstr(j1, "\n  ],\n  \"outputs\"");
    ok(vs && os, "found the vertices array");
    if (!vs || !os) {
        free(j1);
        ir_graph_free(g);
        return;
    }
    vs += strlen("\"vertices\": [\n");
    /* split at "\n    },\n    {" boundaries */
    KN_VEC(char *) parts = {0};
    char *p = vs;
    for (;;) {
        char *end = strstr(p, "\n    },\n    {");
        if (!end || end > os) {
            kn_vec_push(&parts, kn_strndup(p, (size_t)(os - p) - 0));
            break;
        }
        kn_vec_push(&parts, kn_strndup(p, (size_t)(end - p) + strlen("\n    }")));
        p = end + strlen("\n    },\n");
    }
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_add(&b, j1, (size_t)(vs - j1));
    for (size_t i = parts.n; i-- > 0;) {
        kn_buf_adds(&b, parts.v[i]);
        kn_buf_adds(&b, i ? ",\n" : "");
        free(parts.v[i]);
    }
    free(parts.v);
    kn_buf_adds(&b, os);
    is_int(parts.n, (long long)g->nv, "split into one part per vertex");
    struct ir_graph *g2 = ir_graph_from_json(b.data, b.len, "reversed", &err);
    ok(g2 != NULL, "reversed file loads: %s", err ? err->msg : "ok");
    if (g2) {
        /* a valid topological order with the same vertices and digests */
        int found = 0, ordered = 1;
        for (size_t i = 0; i < g->nv; i++)
            found += ir_graph_find(g2, g->v[i].digest) >= 0;
        for (size_t i = 0; i < g2->nv; i++)
            for (size_t k = 0; k < g2->v[i].ninputs; k++)
                ordered &= g2->v[i].inputs[k] < i;
        is_int(found, (long long)g->nv, "every digest is found after a reversed load");
        ok(ordered, "inputs come before their vertex");
        is_int(g2->v[g2->outputs[0].vertex].op, IR_MERGE, "output still names the merge");
        char *j2 = dump(g2);
        struct ir_graph *g3 = ir_graph_from_json(j2, strlen(j2), "again", &err);
        char *j3 = g3 ? dump(g3) : NULL;
        is_str(j3, j2, "its dump is stable");
        free(j3);
        free(j2);
        ir_graph_free(g3);
        ir_graph_free(g2);
    }
    kn_err_free(err);
    kn_buf_release(&b);
    free(j1);
    ir_graph_free(g);
}

static void test_empty(void)
{
    struct ir_graph *g = ir_graph_new();
    char *j = dump(g);
    is_str(j, "{\n  \"version\": 1,\n  \"vertices\": [],\n  \"outputs\": [],\n  \"notes\": []\n}\n",
           "empty graph");
    struct kn_error *err = NULL;
    struct ir_graph *g2 = ir_graph_from_json(j, strlen(j), "empty", &err);
    ok(g2 && g2->nv == 0, "empty graph loads");
    ir_graph_free(g2);
    const char *min = "{\"version\":1,\"vertices\":[]}";
    g2 = ir_graph_from_json(min, strlen(min), "min", &err);
    ok(g2 && g2->nv == 0 && g2->noutputs == 0, "outputs and notes are optional");
    ir_graph_free(g2);
    free(j);
    ir_graph_free(g);
}

#define D0 "sha256:0000000000000000000000000000000000000000000000000000000000000000"
#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"

static void expect_load_error(const char *json, const char *want, const char *what)
{
    struct kn_error *err = NULL;
    struct ir_graph *g = ir_graph_from_json(json, strlen(json), "g.json", &err);
    ok(g == NULL, "%s: refused", what);
    is_str(err ? err->msg : NULL, want, "%s: message", what);
    is_int(err ? err->code : 0, KN_E_PARSE, "%s: KN_E_PARSE", what);
    ir_graph_free(g);
    kn_err_free(err);
}

/* Replaces every "@S" in tmpl with the scratch digest and "@E" with the
 * digest of an exec of ["true"] in / on scratch. */
static char *fill(const char *tmpl)
{
    struct ir_graph *g = ir_graph_new();
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_SCRATCH;
    add(g, &v);
    memset(&v, 0, sizeof(v));
    v.op = IR_EXEC;
    char *argv[] = {"true"};
    v.u.exec.argv = ir_graph_strv(g, argv, 1);
    v.u.exec.argc = 1;
    v.u.exec.cwd = "/";
    v.inputs = ins(g, 1, 0u);
    v.ninputs = 1;
    add(g, &v);
    struct kn_buf b = KN_BUF_INIT;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '@' && (p[1] == 'S' || p[1] == 'E')) {
            kn_buf_adds(&b, g->v[p[1] == 'S' ? 0 : 1].digest);
            p++;
        } else {
            kn_buf_addc(&b, *p);
        }
    }
    ir_graph_free(g);
    return kn_buf_detach(&b);
}

static void expect_fill_error(const char *tmpl, const char *want_tmpl, const char *what)
{
    char *json = fill(tmpl), *want = fill(want_tmpl);
    expect_load_error(json, want, what);
    free(json);
    free(want);
}

#define SCRATCH     "{\"digest\":\"@S\",\"op\":\"source.scratch\"}"
#define EXEC_PARAMS "\"params\":{\"argv\":[\"true\"],\"cwd\":\"/\"}"
#define EXEC        "{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"]," EXEC_PARAMS "}"

static void test_errors(void)
{
    /* the template itself is valid */
    char *okjson = fill("{\"version\":1,\"vertices\":[" EXEC "," SCRATCH "]}");
    struct kn_error *err = NULL;
    struct ir_graph *g = ir_graph_from_json(okjson, strlen(okjson), "ok", &err);
    ok(g && g->nv == 2 && g->v[0].op == IR_SOURCE_SCRATCH, "valid template loads, sorted");
    ir_graph_free(g);
    kn_err_free(err);
    free(okjson);

    expect_load_error("{\"version\":1,\n \"vertices\": [}",
                      "graph 'g.json': invalid JSON at line 2:15: unexpected token near '}'",
                      "bad JSON");
    expect_load_error(
        "", "graph 'g.json': invalid JSON at line 1:0: '[' or '{' expected near end of file",
        "empty input");
    expect_load_error("[1]", "graph 'g.json': not a JSON object", "not an object");
    expect_load_error("{\"vertices\":[]}", "graph 'g.json': missing 'version'", "missing version");
    expect_load_error("{\"version\":2,\"vertices\":[]}",
                      "graph 'g.json': unsupported version 2 (this kiln reads version 1)",
                      "wrong version");
    expect_load_error("{\"version\":\"1\",\"vertices\":[]}",
                      "graph 'g.json': 'version' is not an integer", "version type");
    expect_load_error("{\"version\":1}", "graph 'g.json': missing 'vertices'", "missing vertices");
    expect_load_error("{\"version\":1,\"vertices\":{}}",
                      "graph 'g.json': 'vertices' is not an array", "vertices type");
    expect_load_error("{\"version\":1,\"vertices\":[],\"extra\":1}",
                      "graph 'g.json': unknown field 'extra'", "unknown top-level field");
    expect_load_error("{\"version\":1,\"version\":1,\"vertices\":[]}",
                      "graph 'g.json': invalid JSON at line 1:22: duplicate object key near "
                      "'\"version\"'",
                      "duplicate key");
    expect_load_error("{\"version\":1,\"vertices\":[3]}", "graph 'g.json': vertex 0: not an object",
                      "vertex not an object");
    expect_load_error("{\"version\":1,\"vertices\":[{\"op\":\"exec\"}]}",
                      "graph 'g.json': vertex 0: missing 'digest'", "missing digest");
    expect_load_error("{\"version\":1,\"vertices\":[{\"digest\":\"sha256:abc\"}]}",
                      "graph 'g.json': vertex 0: 'digest' is not a sha256 digest", "bad digest");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH "," SCRATCH "]}",
                      "graph 'g.json': vertex @S is listed twice", "duplicate vertex");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"" D1
        "\"]," EXEC_PARAMS "}]}",
        "graph 'g.json': vertex @E refers to unknown input " D1, "unknown input");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":["
                      "3]," EXEC_PARAMS "}]}",
                      "graph 'g.json': vertex @E: 'inputs[0]' is not a string", "input type");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":["
                      "\"@S\"]," EXEC_PARAMS
                      "},{\"digest\":\"@S\",\"op\":\"merge\",\"inputs\":[\"@E\"]}]}",
                      "graph 'g.json': cycle through vertex @E", "cycle");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"merge\",\"inputs\":[\"@S\"]}]}",
        "graph 'g.json': cycle through vertex @S", "self loop");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"source.svn\"}]}",
                      "graph 'g.json': vertex @S: unknown op 'source.svn'", "unknown op");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@S\"}]}",
                      "graph 'g.json': vertex @S: missing 'op'", "missing op");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"source.scratch\","
                      "\"params\":{\"x\":1}}]}",
                      "graph 'g.json': vertex @S: unknown parameter 'x'", "unknown parameter");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"source.scratch\",\"color\":1}]}",
        "graph 'g.json': vertex @S: unknown field 'color'", "unknown vertex field");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"source.scratch\","
                      "\"params\":[]}]}",
                      "graph 'g.json': vertex @S: 'params' is not an object", "params type");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"argv\":\"true\",\"cwd\":\"/\"}}]}",
                      "graph 'g.json': vertex @E: 'argv' is not an array", "argv type");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"argv\":[1],\"cwd\":\"/\"}}]}",
                      "graph 'g.json': vertex @E: 'argv[0]' is not a string", "argv entry type");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"cwd\":\"/\"}}]}",
                      "graph 'g.json': vertex @E: missing 'argv'", "missing argv");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"argv\":[\"true\"],\"cwd\":\"/\",\"network\":\"bridge\"}}]}",
                      "graph 'g.json': vertex @E: unknown network 'bridge'", "unknown enum");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
        "\"params\":{\"argv\":[\"true\"],\"cwd\":\"/\",\"mounts\":[{\"type\":\"tmpfs\","
        "\"target\":\"/t\",\"mode\":9999}]}}]}",
        "graph 'g.json': vertex @E: 'mounts[0].mode' 9999 is out of range [-1, 4095]",
        "mount mode range");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
        "\"params\":{\"argv\":[\"true\"],\"cwd\":\"/\",\"mounts\":[{\"type\":\"tmpfs\","
        "\"target\":\"/t\",\"ro\":true}]}}]}",
        "graph 'g.json': vertex @E: unknown parameter 'mounts[0].ro'", "unknown mount parameter");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
        "\"params\":{\"argv\":[\"true\"],\"cwd\":\"/\",\"mounts\":[{\"type\":\"bind\","
        "\"target\":\"/t\",\"input\":4}]}}]}",
        "graph 'g.json': vertex @E: exec vertex: mount at '/t' refers to input 4 of 1",
        "mount input out of range");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"argv\":[\"true\"],\"cwd\":\"tmp\"}}]}",
                      "graph 'g.json': vertex @E: exec vertex: cwd 'tmp' is not absolute",
                      "relative cwd");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[{\"digest\":\"@E\",\"op\":\"exec\"," EXEC_PARAMS "}]}",
        "graph 'g.json': vertex @E: exec vertex: needs at least one input", "exec without input");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"file\",\"inputs\":[\"@S\"],"
        "\"params\":{\"actions\":[{\"kind\":\"rm\",\"dest\":\"/x\",\"flags\":[\"recursive\"]}]}}]}",
        "graph 'g.json': vertex @E: unknown flag 'recursive' in 'actions[0].flags'",
        "unknown flag");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"file\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"actions\":[{\"kind\":\"rm\",\"dest\":\"/x\",\"flags\":5}]}}]}",
                      "graph 'g.json': vertex @E: 'actions[0].flags' is not an array",
                      "flags as a number");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"file\",\"inputs\":[\"@S\"],"
        "\"params\":{\"actions\":[{\"kind\":\"mkfile\",\"dest\":\"/x\",\"data\":\"YQ=\"}]}}]}",
        "graph 'g.json': vertex @E: 'actions[0].data' is not canonical base64", "bad base64");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"file\",\"inputs\":[\"@S\"],"
        "\"params\":{\"actions\":[{\"kind\":\"mkfile\",\"dest\":\"/x\",\"data\":\"YR==\"}]}}]}",
        "graph 'g.json': vertex @E: 'actions[0].data' is not canonical base64",
        "non-canonical base64");
    expect_fill_error(
        "{\"version\":1,\"vertices\":[" SCRATCH
        ",{\"digest\":\"@E\",\"op\":\"file\",\"inputs\":[\"@S\"],"
        "\"params\":{\"actions\":[{\"kind\":\"copy\",\"src\":\"/a\",\"dest\":\"/x\"}]}}]}",
        "graph 'g.json': vertex @E: missing 'actions[0].src_input'", "copy without src_input");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"file\",\"inputs\":[\"@S\"],"
                      "\"params\":{}}]}",
                      "graph 'g.json': vertex @E: missing 'actions'", "file without actions");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      ",{\"digest\":\"@E\",\"op\":\"exec\",\"inputs\":[\"@S\"],"
                      "\"params\":{\"argv\":[\"false\"],\"cwd\":\"/\"}}]}",
                      "graph 'g.json': vertex #1 has digest @E but its content hashes to "
                      "sha256:802b4243b9c9689fedd80ea3a8a9e26408e67978ac7c785e30c9f59b72b52b1d",
                      "digest mismatch");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      "],\"outputs\":[{\"name\":\"x\",\"vertex\":\"" D0 "\"}]}",
                      "graph 'g.json': output 'x': refers to unknown vertex " D0,
                      "unknown output vertex");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      "],\"outputs\":[{\"name\":\"x\",\"vertex\":\"@S\",\"config\":\"{}\"}]}",
                      "graph 'g.json': output 'x': config is not an object",
                      "config not an object");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH "],\"outputs\":[{\"name\":\"x\"}]}",
                      "graph 'g.json': output 'x': missing 'vertex'", "output without vertex");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH
                      "],\"outputs\":[{\"vertex\":\"@S\",\"history\":[{\"by\":1}]}]}",
                      "graph 'g.json': output 0: unknown field 'history[0].by'",
                      "unknown history field");
    expect_fill_error("{\"version\":1,\"vertices\":[" SCRATCH "],\"notes\":[1]}",
                      "graph 'g.json': 'notes[0]' is not a string", "note type");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"source.scratch\","
                      "\"loc\":{\"line\":-1}}]}",
                      "graph 'g.json': vertex @S: 'loc.line' -1 is out of range [0, 2147483647]",
                      "negative line");
    expect_fill_error("{\"version\":1,\"vertices\":[{\"digest\":\"@S\",\"op\":\"source.scratch\","
                      "\"name\":\"a\\u0000b\"}]}",
                      "graph 'g.json': invalid JSON at line 1:148: \\u0000 is not allowed without "
                      "JSON_ALLOW_NUL near '\"a\\u0000b\"'",
                      "NUL in a string");

    /* limits */
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "{\"version\":1,\"vertices\":[{\"digest\":\"" D0
                    "\",\"op\":\"source.image\",\"params\":{\"ref\":\"");
    for (int i = 0; i < IR_JSON_MAX_STRING + 1; i++)
        kn_buf_addc(&b, 'a');
    kn_buf_adds(&b, "\"}}]}");
    expect_load_error(b.data, "graph 'g.json': vertex " D0 ": 'ref' is longer than 1048576 bytes",
                      "string too long");
    kn_buf_reset(&b);
    kn_buf_adds(&b, "{\"version\":1,\"vertices\":[");
    for (int i = 0; i < IR_JSON_MAX_VERTICES + 1; i++)
        kn_buf_adds(&b, i ? ",0" : "0");
    kn_buf_adds(&b, "]}");
    expect_load_error(b.data, "graph 'g.json': 'vertices' has more than 1000000 entries",
                      "too many vertices");
    kn_buf_release(&b);
}

/* A graph whose strings are not UTF-8 cannot be dumped (JSON is UTF-8). */
static void test_dump_errors(void)
{
    struct ir_graph *g = ir_graph_new();
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_SCRATCH;
    v.name = "bad \xff name";
    add(g, &v);
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    is_int(ir_graph_to_json(g, &b, &err), -1, "non-UTF-8 name refused");
    is_str(err ? err->msg : NULL, "cannot write the graph as JSON: 'name' is not valid UTF-8",
           "non-UTF-8 message");
    kn_err_free(err);
    err = NULL;
    g->v[0].name = NULL;
    struct ir_output out = {"o", 0, "{not json", NULL, 0, NULL};
    ir_graph_add_output(g, &out);
    is_int(ir_graph_to_json(g, &b, &err), -1, "invalid config refused");
    is_str(err ? err->msg : NULL,
           "output 'o': config is not valid JSON: string or '}' expected near 'not'",
           "invalid config message");
    kn_err_free(err);
    kn_buf_release(&b);
    ir_graph_free(g);
}

/* A long chain loads without deep recursion. */
static void test_long_chain(void)
{
    struct ir_graph *g = ir_graph_new();
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_SCRATCH;
    int64_t prev = add(g, &v);
    for (int i = 0; i < 200000; i++) {
        memset(&v, 0, sizeof(v));
        v.op = IR_MERGE;
        v.inputs = ins(g, 1, (uint32_t)prev);
        v.ninputs = 1;
        prev = add(g, &v);
    }
    char *j = dump(g);
    struct kn_error *err = NULL;
    struct ir_graph *g2 = ir_graph_from_json(j, strlen(j), "chain", &err);
    ok(g2 && g2->nv == 200001, "200001-vertex chain loads");
    if (g2)
        is_str(g2->v[200000].digest, g->v[200000].digest, "chain tip digest");
    kn_err_free(err);
    ir_graph_free(g2);
    free(j);
    ir_graph_free(g);
}

int main(void)
{
    test_canonical_writers_agree();
    test_roundtrip();
    test_any_order();
    test_empty();
    test_errors();
    test_dump_errors();
    test_long_chain();
    return tap_done();
}
