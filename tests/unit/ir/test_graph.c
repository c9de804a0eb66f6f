/*
 * Unit tests for ir/graph.c and the canonical encoding: op names, vertex
 * validation (each error message), digests (a golden value, so an
 * accidental encoding change fails), deduplication, reachability.
 */
#include "ir/ir.h"
#include "tap.h"

static struct ir_vertex image_vertex(const char *ref)
{
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_IMAGE;
    v.u.image.ref = (char *)ref;
    v.u.image.platform.os = "linux";
    v.u.image.platform.arch = "amd64";
    return v;
}

static char *env_path[] = {"PATH=/usr/bin:/bin", NULL};

static struct ir_vertex exec_vertex(struct ir_graph *g, uint32_t root, const char *cmd)
{
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_EXEC;
    char *argv[] = {"/bin/sh", "-c", (char *)cmd};
    v.u.exec.argv = ir_graph_strv(g, argv, 3);
    v.u.exec.argc = 3;
    v.u.exec.env = env_path;
    v.u.exec.nenv = 1;
    v.u.exec.cwd = "/src";
    v.inputs = ir_graph_alloc(g, sizeof(uint32_t));
    v.inputs[0] = root;
    v.ninputs = 1;
    return v;
}

static void test_op_names(void)
{
    is_str(ir_op_name(IR_SOURCE_IMAGE), "source.image", "op name image");
    is_str(ir_op_name(IR_MERGE), "merge", "op name merge");
    ok(ir_op_name(IR_OP_COUNT) == NULL, "out-of-range op has no name");
    ok(ir_op_name((enum ir_op) - 1) == NULL, "negative op has no name");
    for (int i = 0; i < IR_OP_COUNT; i++)
        is_int(ir_op_from_name(ir_op_name((enum ir_op)i)), i, "op %d round-trips", i);
    is_int(ir_op_from_name("source.svn"), -1, "unknown op name");
    is_int(ir_op_from_name(NULL), -1, "NULL op name");
}

static void test_golden(void)
{
    struct ir_graph *g = ir_graph_new();
    struct kn_error *err = NULL;
    struct ir_vertex v = image_vertex("alpine:3.19");
    int64_t img = ir_graph_add(g, &v, &err);
    is_int(img, 0, "first vertex is index 0");
    char *canon = ir_vertex_canonical(g, &g->v[0]);
    is_str(canon,
           "{\"format\":\"kiln.vertex/1\",\"inputs\":[],\"op\":\"source.image\",\"params\":"
           "{\"platform\":{\"arch\":\"amd64\",\"os\":\"linux\"},\"ref\":\"alpine:3.19\"}}",
           "canonical encoding of an image source");
    free(canon);
    is_str(g->v[0].digest,
           "sha256:09da17534d6b88ecd4f479ea06308125f137eaf9554b149a59856f7285689e32",
           "golden digest of an image source");

    struct ir_vertex e = exec_vertex(g, 0, "make");
    int64_t ex = ir_graph_add(g, &e, &err);
    is_int(ex, 1, "exec is index 1");
    canon = ir_vertex_canonical(g, &g->v[1]);
    char want[512];
    snprintf(want, sizeof(want),
             "{\"format\":\"kiln.vertex/1\",\"inputs\":[\"%s\"],\"op\":\"exec\",\"params\":"
             "{\"argv\":[\"/bin/sh\",\"-c\",\"make\"],\"cwd\":\"/src\",\"env\":"
             "[\"PATH=/usr/bin:/bin\"]}}",
             g->v[0].digest);
    is_str(canon, want, "canonical encoding of an exec names its input by digest");
    free(canon);
    is_str(g->v[1].digest,
           "sha256:7811359441c41c5ecdf140a8e0e45a23f208eec17b17d3ef95184151243ffb06",
           "golden digest of an exec");
    char d[KN_DIGEST_SIZE];
    ir_vertex_compute_digest(g, &g->v[1], d);
    is_str(d, g->v[1].digest, "recomputed digest matches");
    ok(err == NULL, "no error");
    ir_graph_free(g);
}

static void test_dedup(void)
{
    struct ir_graph *g = ir_graph_new();
    struct kn_error *err = NULL;
    struct ir_vertex v = image_vertex("alpine:3.19");
    v.loc.file = "Dockerfile";
    v.loc.line = 1;
    v.name = "[build 1/2] FROM alpine";
    v.stage = "build";
    int64_t a = ir_graph_add(g, &v, &err);
    v.loc.line = 7;
    v.name = "[test 1/2] FROM alpine";
    v.stage = "test";
    int64_t b = ir_graph_add(g, &v, &err);
    is_int(a, b, "same image added twice is one vertex");
    is_int(g->nv, 1, "graph has one vertex");
    is_int(g->v[0].loc.line, 1, "the first location is kept");
    is_str(g->v[0].stage, "build", "the first stage is kept");

    /* the same RUN in two stages on the same base shares the vertex */
    struct ir_vertex e1 = exec_vertex(g, 0, "make");
    e1.stage = "build";
    e1.loc.line = 2;
    struct ir_vertex e2 = exec_vertex(g, 0, "make");
    e2.stage = "test";
    e2.loc.line = 8;
    e2.no_cache = true;
    int64_t x1 = ir_graph_add(g, &e1, &err);
    int64_t x2 = ir_graph_add(g, &e2, &err);
    is_int(x1, x2, "same work in two stages shares the vertex");
    ok(g->v[x1].no_cache, "no_cache of a duplicate is kept");

    struct ir_vertex e3 = exec_vertex(g, 0, "make install");
    int64_t x3 = ir_graph_add(g, &e3, &err);
    ok(x3 != x1, "a different parameter is a different vertex");
    ok(strcmp(g->v[x3].digest, g->v[x1].digest) != 0, "and a different digest");

    struct ir_vertex e4 = exec_vertex(g, 0, "make");
    e4.u.exec.nenv = 0;
    ok(ir_graph_add(g, &e4, &err) != x1, "a different environment is a different vertex");
    struct ir_vertex e5 = exec_vertex(g, 0, "make");
    e5.u.exec.network = IR_NET_NONE;
    ok(ir_graph_add(g, &e5, &err) != x1, "a different network is a different vertex");

    /* a different input makes a different vertex even with equal params */
    struct ir_vertex img2 = image_vertex("alpine:3.20");
    int64_t i2 = ir_graph_add(g, &img2, &err);
    struct ir_vertex e6 = exec_vertex(g, (uint32_t)i2, "make");
    ok(ir_graph_add(g, &e6, &err) != x1, "a different input is a different vertex");

    is_int(ir_graph_find(g, g->v[x3].digest), x3, "find by digest");
    is_int(ir_graph_find(g, "sha256:0123"), -1, "find a malformed digest");
    is_int(
        ir_graph_find(g, "sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        -1, "find an unknown digest");
    ok(err == NULL, "no error");
    ir_graph_free(g);
}

/* Two graphs built in a different order give the same digests. */
static void test_order_independent(void)
{
    struct ir_graph *g1 = ir_graph_new(), *g2 = ir_graph_new();
    struct kn_error *err = NULL;
    struct ir_vertex a = image_vertex("alpine");
    struct ir_vertex b = image_vertex("busybox");
    int64_t a1 = ir_graph_add(g1, &a, &err), b1 = ir_graph_add(g1, &b, &err);
    int64_t b2 = ir_graph_add(g2, &b, &err), a2 = ir_graph_add(g2, &a, &err);
    struct ir_vertex m1, m2;
    memset(&m1, 0, sizeof(m1));
    m1.op = IR_MERGE;
    m1.inputs = ir_graph_alloc(g1, 2 * sizeof(uint32_t));
    m1.inputs[0] = (uint32_t)a1;
    m1.inputs[1] = (uint32_t)b1;
    m1.ninputs = 2;
    m2 = m1;
    m2.inputs = ir_graph_alloc(g2, 2 * sizeof(uint32_t));
    m2.inputs[0] = (uint32_t)a2;
    m2.inputs[1] = (uint32_t)b2;
    int64_t x1 = ir_graph_add(g1, &m1, &err), x2 = ir_graph_add(g2, &m2, &err);
    is_int(a1, 0, "alpine first in g1");
    is_int(a2, 1, "alpine second in g2");
    is_str(g1->v[x1].digest, g2->v[x2].digest, "merge digest independent of build order");
    /* input order matters */
    m2.inputs[0] = (uint32_t)b2;
    m2.inputs[1] = (uint32_t)a2;
    int64_t x3 = ir_graph_add(g2, &m2, &err);
    ok(strcmp(g2->v[x3].digest, g1->v[x1].digest) != 0, "input order is part of the digest");
    ok(err == NULL, "no error");
    ir_graph_free(g1);
    ir_graph_free(g2);
}

/* Defaults have one encoding: NULL vs empty array, source "/" vs NULL. */
static void test_defaults(void)
{
    struct ir_graph *g = ir_graph_new();
    struct kn_error *err = NULL;
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_LOCAL;
    v.u.local.name = "context";
    int64_t a = ir_graph_add(g, &v, &err);
    static char *none[] = {NULL};
    v.u.local.include = none;
    v.u.local.ninclude = 0;
    int64_t b = ir_graph_add(g, &v, &err);
    is_int(a, b, "empty include array and NULL encode the same");
    char *c = ir_vertex_canonical(g, &g->v[a]);
    is_str(c,
           "{\"format\":\"kiln.vertex/"
           "1\",\"inputs\":[],\"op\":\"source.local\",\"params\":{\"name\":\"context\"}}",
           "empty arrays are omitted");
    free(c);

    struct ir_vertex sc;
    memset(&sc, 0, sizeof(sc));
    sc.op = IR_SOURCE_SCRATCH;
    int64_t s = ir_graph_add(g, &sc, &err);
    c = ir_vertex_canonical(g, &g->v[s]);
    is_str(c,
           "{\"format\":\"kiln.vertex/1\",\"inputs\":[],\"op\":\"source.scratch\",\"params\":{}}",
           "scratch encoding");
    free(c);

    struct ir_vertex e = exec_vertex(g, (uint32_t)s, "ls");
    struct ir_mount m;
    memset(&m, 0, sizeof(m));
    m.type = IR_MOUNT_BIND;
    m.target = "/ctx";
    m.input = 1;
    m.mode = m.uid = m.gid = -1;
    e.inputs = ir_graph_alloc(g, 2 * sizeof(uint32_t));
    e.inputs[0] = (uint32_t)s;
    e.inputs[1] = (uint32_t)a;
    e.ninputs = 2;
    e.u.exec.mounts = &m;
    e.u.exec.nmounts = 1;
    int64_t x1 = ir_graph_add(g, &e, &err);
    struct ir_mount m2 = m;
    m2.source = "/";
    e.u.exec.mounts = &m2;
    int64_t x2 = ir_graph_add(g, &e, &err);
    is_int(x1, x2, "mount source '/' and NULL are the same work");
    m2.source = "/sub";
    int64_t x3 = ir_graph_add(g, &e, &err);
    ok(x3 != x1, "mount source '/sub' is different work");
    ok(err == NULL, "no error");
    ir_graph_free(g);
}

static void expect_add_error(struct ir_graph *g, const struct ir_vertex *v, const char *want,
                             const char *what)
{
    struct kn_error *err = NULL;
    size_t nv = g->nv;
    int64_t r = ir_graph_add(g, v, &err);
    is_int(r, -1, "%s: refused", what);
    is_str(err ? err->msg : NULL, want, "%s: message", what);
    is_int(err ? err->code : 0, KN_E_PARSE, "%s: KN_E_PARSE", what);
    is_int(g->nv, nv, "%s: graph unchanged", what);
    kn_err_free(err);
}

static void test_validation(void)
{
    struct ir_graph *g = ir_graph_new();
    struct kn_error *err = NULL;
    struct ir_vertex img = image_vertex("alpine");
    ir_graph_add(g, &img, &err);
    ok(err == NULL, "base added");

    struct ir_vertex v = image_vertex(NULL);
    expect_add_error(g, &v, "source.image vertex: missing ref", "image without ref");
    v = image_vertex("");
    expect_add_error(g, &v, "source.image vertex: empty ref", "image with empty ref");
    v = image_vertex("alpine");
    v.inputs = ir_graph_alloc(g, sizeof(uint32_t));
    v.ninputs = 1;
    expect_add_error(g, &v, "source.image vertex: takes no inputs, got 1", "source with input");
    v = image_vertex("caf\xe9");
    expect_add_error(g, &v, "source.image vertex: ref is not valid UTF-8", "non-UTF-8 ref");
    v = image_vertex("alpine");
    v.op = (enum ir_op)42;
    expect_add_error(g, &v, "unknown op 42", "unknown op");

    v = exec_vertex(g, 0, "make");
    v.ninputs = 0;
    expect_add_error(g, &v, "exec vertex: needs at least one input", "exec without rootfs");
    v = exec_vertex(g, 5, "make");
    expect_add_error(g, &v, "exec vertex: input 0 refers to vertex 5 of 1", "input out of range");
    v = exec_vertex(g, 0, "make");
    v.u.exec.argc = 0;
    expect_add_error(g, &v, "exec vertex: empty argv", "empty argv");
    v = exec_vertex(g, 0, "make");
    v.u.exec.argv[1] = NULL;
    expect_add_error(g, &v, "exec vertex: argv[1] is NULL", "NULL argv entry");
    v = exec_vertex(g, 0, "make");
    v.u.exec.cwd = "src";
    expect_add_error(g, &v, "exec vertex: cwd 'src' is not absolute", "relative cwd");
    v = exec_vertex(g, 0, "make");
    v.u.exec.cwd = NULL;
    expect_add_error(g, &v, "exec vertex: missing cwd", "missing cwd");
    v = exec_vertex(g, 0, "make");
    v.u.exec.network = (enum ir_network)9;
    expect_add_error(g, &v, "exec vertex: unknown network 9", "bad network");

    struct ir_mount m;
    memset(&m, 0, sizeof(m));
    m.type = IR_MOUNT_CACHE;
    m.target = "cache";
    m.input = -1;
    m.mode = m.uid = m.gid = -1;
    v = exec_vertex(g, 0, "make");
    v.u.exec.mounts = &m;
    v.u.exec.nmounts = 1;
    expect_add_error(g, &v, "exec vertex: mounts[0].target 'cache' is not absolute",
                     "relative mount target");
    m.target = "/cache";
    m.input = 1;
    expect_add_error(g, &v, "exec vertex: mount at '/cache' refers to input 1 of 1",
                     "mount input out of range");
    m.type = IR_MOUNT_BIND;
    m.input = -1;
    expect_add_error(g, &v, "exec vertex: bind mount at '/cache' has no input",
                     "bind without input");
    m.type = IR_MOUNT_TMPFS;
    m.mode = 010000;
    expect_add_error(g, &v, "exec vertex: mount mode 4096 is out of range", "bad mount mode");
    m.mode = -1;
    m.uid = -2;
    expect_add_error(g, &v, "exec vertex: mount uid -2 is out of range", "bad mount uid");
    m.uid = -1;
    m.type = (enum ir_mount_type)7;
    expect_add_error(g, &v, "exec vertex: mount at '/cache' has unknown type 7", "bad mount type");

    struct ir_file_action a;
    memset(&a, 0, sizeof(a));
    a.kind = IR_FILE_COPY;
    a.src_input = 1;
    a.src = "/a";
    a.dest = "/b";
    a.mode = -1;
    struct ir_vertex f;
    memset(&f, 0, sizeof(f));
    f.op = IR_FILE;
    f.inputs = ir_graph_alloc(g, sizeof(uint32_t));
    f.ninputs = 1;
    f.u.file.actions = &a;
    f.u.file.nactions = 1;
    expect_add_error(g, &f, "file vertex: copy refers to input 1 of 1",
                     "copy src_input out of range");
    a.src_input = 0;
    a.src = NULL;
    expect_add_error(g, &f, "file vertex: missing copy src", "copy without src");
    a.src = "/a";
    a.flags = 1u << 12;
    expect_add_error(g, &f, "file vertex: unknown flags 0x1000", "unknown flag bit");
    a.flags = 0;
    a.kind = IR_FILE_MKDIR;
    a.dest = "rel";
    expect_add_error(g, &f, "file vertex: mkdir path 'rel' is not absolute", "relative mkdir");
    a.kind = IR_FILE_SYMLINK;
    a.dest = "/l";
    expect_add_error(g, &f, "file vertex: missing symlink target", "symlink without target");
    a.kind = IR_FILE_MKFILE;
    a.datalen = 3;
    expect_add_error(g, &f, "file vertex: mkfile data has 3 bytes but no buffer",
                     "data without buffer");
    a.datalen = 0;
    a.mode = 99999;
    expect_add_error(g, &f, "file vertex: mode 99999 is out of range", "bad file mode");
    f.u.file.nactions = 0;
    expect_add_error(g, &f, "file vertex: no actions", "file without actions");

    struct ir_vertex h;
    memset(&h, 0, sizeof(h));
    h.op = IR_SOURCE_HTTP;
    h.u.http.url = "https://example.com/x";
    h.u.http.checksum = "md5:abc";
    expect_add_error(g, &h, "source.http vertex: checksum 'md5:abc' is not a sha256 digest",
                     "bad http checksum");
    h.u.http.url = NULL;
    expect_add_error(g, &h, "source.http vertex: missing url", "http without url");

    struct ir_vertex mg;
    memset(&mg, 0, sizeof(mg));
    mg.op = IR_MERGE;
    expect_add_error(g, &mg, "merge vertex: needs at least one input", "merge without inputs");
    ir_graph_free(g);
}

static void test_outputs_notes_reachable(void)
{
    struct ir_graph *g = ir_graph_new();
    struct kn_error *err = NULL;
    struct ir_vertex a = image_vertex("alpine"), b = image_vertex("busybox");
    ir_graph_add(g, &a, &err);                      /* 0 */
    ir_graph_add(g, &b, &err);                      /* 1 */
    struct ir_vertex e = exec_vertex(g, 0, "make"); /* 2 */
    ir_graph_add(g, &e, &err);
    struct ir_vertex e2 = exec_vertex(g, 1, "ls"); /* 3 */
    ir_graph_add(g, &e2, &err);
    struct ir_vertex e3 = exec_vertex(g, 2, "test"); /* 4 */
    ir_graph_add(g, &e3, &err);
    ok(err == NULL, "graph built");
    uint32_t roots[] = {4};
    bool *r = ir_graph_reachable(g, roots, 1);
    ok(r[0] && !r[1] && r[2] && !r[3] && r[4], "reachable from 4: 0, 2, 4");
    free(r);
    uint32_t roots2[] = {3, 99};
    r = ir_graph_reachable(g, roots2, 2);
    ok(!r[0] && r[1] && !r[2] && r[3] && !r[4], "reachable from 3: 1, 3 (99 ignored)");
    free(r);

    char name[] = "default", config[] = "{\"os\":\"linux\"}";
    struct ir_history hist[] = {{"RUN make", "c", false}, {"ENV A=1", NULL, true}};
    struct ir_output out = {name, 4, config, hist, 2, "alpine"};
    ir_graph_add_output(g, &out);
    name[0] = 'X';
    config[0] = 'X';
    hist[0].created_by = "changed";
    is_str(g->outputs[0].name, "default", "output name copied");
    is_str(g->outputs[0].config, "{\"os\":\"linux\"}", "output config copied");
    is_str(g->outputs[0].history[0].created_by, "RUN make", "history copied");
    ok(g->outputs[0].history[1].empty_layer, "empty_layer kept");
    is_int(g->outputs[0].vertex, 4, "output vertex");
    for (int i = 0; i < 20; i++)
        ir_graph_add_note(g, "note %d", i);
    is_int(g->nnotes, 20, "notes added");
    is_str(g->notes[19], "note 19", "note formatted");
    ir_graph_free(g);
}

/* Many vertices: the index grows and every vertex stays findable. */
static void test_many(void)
{
    struct ir_graph *g = ir_graph_new();
    struct kn_error *err = NULL;
    char ref[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(ref, sizeof(ref), "img%d", i);
        struct ir_vertex v = image_vertex(ir_graph_strdup(g, ref));
        ir_graph_add(g, &v, &err);
    }
    int bad = 0;
    for (size_t i = 0; i < g->nv; i++)
        if (ir_graph_find(g, g->v[i].digest) != (int64_t)i)
            bad++;
    is_int(g->nv, 5000, "5000 vertices");
    is_int(bad, 0, "all findable");
    ok(err == NULL, "no error");
    ir_graph_free(g);
}

int main(void)
{
    test_op_names();
    test_golden();
    test_dedup();
    test_order_independent();
    test_defaults();
    test_validation();
    test_outputs_notes_reachable();
    test_many();
    return tap_done();
}
