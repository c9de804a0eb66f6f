/*
 * Unit tests for the DOT and text forms of a graph: clusters per stage,
 * shapes per op, labels with locations, escaping of quotes, backslashes,
 * newlines and invalid UTF-8, truncation, and that Graphviz `dot` accepts
 * the output (when it is installed).
 */
#include "ir/ir.h"
#include "tap.h"

#include <sys/wait.h>

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

static const char *long_cmd = "apt-get update && apt-get install -y build-essential curl git "
                              "ca-certificates && rm -rf /var/lib/apt/lists/*";

static struct ir_graph *two_stage_graph(void)
{
    struct ir_graph *g = ir_graph_new();
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_IMAGE;
    v.u.image.ref = "alpine:3.19";
    v.loc = (struct ir_srcloc){"Dockerfile", 1, 1, 1};
    v.name = "[build 1/3] FROM alpine:3.19";
    v.stage = "build";
    int64_t img = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_LOCAL;
    v.u.local.name = "context";
    int64_t ctx = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_EXEC;
    char *argv[] = {"/bin/sh", "-c", (char *)long_cmd};
    v.u.exec.argv = ir_graph_strv(g, argv, 3);
    v.u.exec.argc = 3;
    v.u.exec.cwd = "/";
    v.inputs = ir_graph_alloc(g, sizeof(uint32_t));
    v.inputs[0] = (uint32_t)img;
    v.ninputs = 1;
    v.loc = (struct ir_srcloc){"Dockerfile", 2, 1, 3};
    v.stage = "build";
    int64_t run = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_EXEC;
    char *argv2[] = {"/bin/sh", "-c", "echo \"quoted\" \\\\ back\nslash\ttab"};
    v.u.exec.argv = ir_graph_strv(g, argv2, 3);
    v.u.exec.argc = 3;
    v.u.exec.cwd = "/";
    v.inputs = ir_graph_alloc(g, sizeof(uint32_t));
    v.inputs[0] = (uint32_t)run;
    v.ninputs = 1;
    v.loc = (struct ir_srcloc){"my \"Dockerfile\"\xff", 4, 1, 5};
    v.stage = "build";
    int64_t run2 = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_SOURCE_SCRATCH;
    v.stage = "final \"stage\"\n2";
    int64_t scratch = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_FILE;
    struct ir_file_action *a = ir_graph_alloc(g, 2 * sizeof(*a));
    a[0] = (struct ir_file_action){
        .kind = IR_FILE_COPY, .src_input = 1, .src = "/app", .dest = "/app", .mode = -1};
    a[1] = (struct ir_file_action){
        .kind = IR_FILE_SYMLINK, .dest = "/bin/app", .target = "/app/bin/app", .mode = -1};
    v.u.file.actions = a;
    v.u.file.nactions = 2;
    v.inputs = ir_graph_alloc(g, 2 * sizeof(uint32_t));
    v.inputs[0] = (uint32_t)scratch;
    v.inputs[1] = (uint32_t)run2;
    v.ninputs = 2;
    v.loc = (struct ir_srcloc){"Dockerfile", 7, 1, 7};
    v.stage = "final \"stage\"\n2";
    int64_t copy = add(g, &v);

    memset(&v, 0, sizeof(v));
    v.op = IR_MERGE;
    v.inputs = ir_graph_alloc(g, 2 * sizeof(uint32_t));
    v.inputs[0] = (uint32_t)copy;
    v.inputs[1] = (uint32_t)ctx;
    v.ninputs = 2;
    int64_t merge = add(g, &v);

    struct ir_output out = {"default", (uint32_t)merge, NULL, NULL, 0, "alpine:3.19"};
    ir_graph_add_output(g, &out);
    ir_graph_add_note(g, "base image 'alpine' not resolved\nsecond line");
    return g;
}

static int run_dot(const char *dir, const char *text)
{
    char path[4200], cmd[9000];
    snprintf(path, sizeof(path), "%s/g.dot", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "dot -Tsvg '%s' -o '%s/g.svg' 2>'%s/dot.err'", path, dir, dir);
    int rc = system(cmd);
    snprintf(cmd, sizeof(cmd), "cat '%s/dot.err' | sed 's/^/# dot: /'", dir);
    if (system(cmd) != 0)
        printf("# cannot show dot's stderr\n");
    snprintf(cmd, sizeof(cmd), "test -s '%s/dot.err'", dir);
    if (rc == 0 && system(cmd) == 0)
        return 1; /* warnings count as failure: they mean a bad escape */
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static void test_dot(void)
{
    struct ir_graph *g = two_stage_graph();
    struct kn_buf b = KN_BUF_INIT;
    ir_graph_to_dot(g, &b);
    const char *d = b.data;
    ok(kn_str_startswith(d, "digraph kiln {\n"), "starts with digraph kiln");
    ok(kn_str_endswith(d, "}\n"), "ends with a brace");
    ok(strstr(d, "  subgraph cluster_0 {\n    label=\"build\";\n") != NULL, "cluster for build");
    ok(strstr(d, "  subgraph cluster_1 {\n    label=\"final \\\"stage\\\"\\n2\";\n") != NULL,
       "cluster for the second stage, escaped");
    ok(strstr(d, "cluster_2") == NULL, "two clusters only");
    ok(strstr(d, "    v0 [label=\"[build 1/3] FROM alpine:3.19\\nDockerfile:1\", shape=ellipse") !=
           NULL,
       "image node: display name and location");
    ok(strstr(d, "  v1 [label=\"source.local context\", shape=folder") != NULL,
       "unstaged local node outside clusters, op + parameter");
    ok(strstr(d, "    v2 [label=\"exec /bin/sh -c apt-get update && apt-get install -y "
                 "build-e\xe2\x80\xa6\\nDockerfile:2\", shape=box") != NULL,
       "long RUN truncated to 60 characters with an ellipsis");
    ok(strstr(d, "v3 [label=\"exec /bin/sh -c echo \\\"quoted\\\" \\\\\\\\ back\\nslash tab\\nmy "
                 "\\\"Dockerfile\\\"?:4\", shape=box") != NULL,
       "quotes, backslashes, newline, tab and invalid UTF-8 escaped");
    ok(strstr(d, "v4 [label=\"source.scratch scratch\", shape=circle, style=dashed") != NULL,
       "scratch node");
    ok(strstr(d, "v5 [label=\"file copy /app -> /app; symlink /bin/app -> /app/bin/app\\n"
                 "Dockerfile:7\", shape=note") != NULL,
       "file node summarizes actions");
    ok(strstr(d, "  v6 [label=\"merge 2 inputs\", shape=invtrapezium") != NULL, "merge node");
    ok(strstr(d, "  v0 -> v2;\n") != NULL, "edge image -> run");
    ok(strstr(d, "  v4 -> v5;\n") != NULL, "edge rootfs -> file");
    ok(strstr(d, "  v3 -> v5 [style=dashed];\n") != NULL, "edge copy source dashed");
    ok(strstr(d, "  out0 [label=\"default\", shape=doubleoctagon];\n  v6 -> out0;\n") != NULL,
       "output node and edge");
    ok(strstr(d, "tooltip=\"sha256:") != NULL, "digest as tooltip");
    if (tap_failed) {
        printf("# the DOT output:\n# ");
        for (const char *p = d; *p; p++)
            printf(*p == '\n' && p[1] ? "\n# " : "%c", *p);
    }

    if (system("command -v dot >/dev/null 2>&1") == 0) {
        is_int(run_dot(tap_tmpdir(), d), 0, "dot -Tsvg accepts the graph without warnings");
        struct ir_graph *e = ir_graph_new();
        struct kn_buf eb = KN_BUF_INIT;
        ir_graph_to_dot(e, &eb);
        is_int(run_dot(tap_tmpdir(), eb.data), 0, "dot accepts the empty graph");
        kn_buf_release(&eb);
        ir_graph_free(e);
    } else {
        ok(1, "# SKIP dot is not installed");
    }
    kn_buf_release(&b);
    ir_graph_free(g);
}

static void test_text(void)
{
    struct ir_graph *g = two_stage_graph();
    struct kn_buf b = KN_BUF_INIT;
    ir_graph_to_text(g, &b);
    char sh[7][13];
    for (int i = 0; i < 7; i++)
        snprintf(sh[i], sizeof(sh[i]), "%.12s", g->v[i].digest + 7);
    char want[4096];
    snprintf(want, sizeof(want),
             "%s source.image   alpine:3.19  Dockerfile:1\n"
             "%s source.local   context\n"
             "%s exec           /bin/sh -c apt-get update && apt-get install -y build-essent"
             "\xe2\x80\xa6 <- %s  Dockerfile:2\n"
             "%s exec           /bin/sh -c echo \"quoted\" \\\\ back\\nslash\\ttab <- %s  my "
             "\"Dockerfile\"?:4\n"
             "%s source.scratch scratch\n"
             "%s file           copy /app -> /app; symlink /bin/app -> /app/bin/app <- %s %s  "
             "Dockerfile:7\n"
             "%s merge          2 inputs <- %s %s\n"
             "output default: %s (base alpine:3.19)\n"
             "note: base image 'alpine' not resolved\\nsecond line\n",
             sh[0], sh[1], sh[2], sh[0], sh[3], sh[2], sh[4], sh[5], sh[4], sh[3], sh[6], sh[5],
             sh[1], sh[6]);
    is_str(b.data, want, "text listing");
    kn_buf_release(&b);
    ir_graph_free(g);
}

int main(void)
{
    test_dot();
    test_text();
    return tap_done();
}
