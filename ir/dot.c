/*
 * Pictures and listings of a graph: Graphviz DOT (stages as clusters, one
 * shape per op kind, edges from inputs) and a compact text listing, one
 * vertex a line. Both are for people: labels are shortened to about 60
 * characters and any byte sequence, valid UTF-8 or not, comes out as text
 * that `dot` and a terminal accept.
 */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX 60 /* characters (code points) before "…" */
#define SHORT_HEX 12

/* Length of the valid UTF-8 sequence at p, or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        n = 2, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

enum esc_mode { ESC_DOT, ESC_TEXT };

/* Appends s, at most `max` characters (then "…"), escaped for a DOT
 * double-quoted string or for one line of text. Invalid UTF-8 becomes '?'. */
static void add_escaped(struct kn_buf *b, const char *s, size_t max, enum esc_mode mode)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    while (*p) {
        if (chars == max) {
            kn_buf_adds(b, "\xe2\x80\xa6"); /* … */
            return;
        }
        chars++;
        size_t n = utf8_seq(p);
        if (n == 0) {
            kn_buf_addc(b, '?');
            p++;
            continue;
        }
        if (n > 1) {
            kn_buf_add(b, p, n);
            p += n;
            continue;
        }
        unsigned char c = *p++;
        if (c == '\n') {
            kn_buf_adds(b, "\\n"); /* DOT: a line break; text: a visible escape */
        } else if (c == '\t') {
            kn_buf_adds(b, mode == ESC_DOT ? " " : "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            if (mode == ESC_DOT)
                kn_buf_addc(b, ' ');
            else
                kn_buf_addf(b, "\\x%02x", c);
        } else if (mode == ESC_DOT && (c == '"' || c == '\\')) {
            kn_buf_addc(b, '\\');
            kn_buf_addc(b, (char)c);
        } else {
            kn_buf_addc(b, (char)c);
        }
    }
}

static const char *const kind_verbs[] = {"copy", "mkdir", "mkfile", "rm", "symlink"};

/* The op's main parameter, unescaped: "alpine:3.19", "/bin/sh -c make". */
static void summary(const struct ir_vertex *v, struct kn_buf *b)
{
    switch (v->op) {
    case IR_SOURCE_IMAGE: {
        const struct ir_platform *p = &v->u.image.platform;
        kn_buf_adds(b, v->u.image.ref ? v->u.image.ref : "");
        if (p->os || p->arch)
            kn_buf_addf(b, " (%s/%s%s%s)", p->os ? p->os : "?", p->arch ? p->arch : "?",
                        p->variant ? "/" : "", p->variant ? p->variant : "");
        break;
    }
    case IR_SOURCE_LOCAL:
        kn_buf_adds(b, v->u.local.name ? v->u.local.name : "");
        break;
    case IR_SOURCE_SCRATCH:
        kn_buf_adds(b, "scratch");
        break;
    case IR_SOURCE_HTTP:
        kn_buf_adds(b, v->u.http.url ? v->u.http.url : "");
        break;
    case IR_SOURCE_GIT:
        kn_buf_adds(b, v->u.git.remote ? v->u.git.remote : "");
        if (v->u.git.ref)
            kn_buf_addf(b, "#%s", v->u.git.ref);
        break;
    case IR_EXEC:
        for (size_t i = 0; i < v->u.exec.argc; i++) {
            if (i)
                kn_buf_addc(b, ' ');
            kn_buf_adds(b, v->u.exec.argv[i] ? v->u.exec.argv[i] : "");
        }
        break;
    case IR_FILE:
        for (size_t i = 0; i < v->u.file.nactions; i++) {
            const struct ir_file_action *a = &v->u.file.actions[i];
            if (i)
                kn_buf_adds(b, "; ");
            kn_buf_adds(b,
                        (unsigned)a->kind < KN_ARRAY_SIZE(kind_verbs) ? kind_verbs[a->kind] : "?");
            if (a->kind == IR_FILE_COPY && a->src)
                kn_buf_addf(b, " %s ->", a->src);
            if (a->dest)
                kn_buf_addf(b, " %s", a->dest);
            if (a->kind == IR_FILE_SYMLINK && a->target)
                kn_buf_addf(b, " -> %s", a->target);
        }
        break;
    case IR_MERGE:
        kn_buf_addf(b, "%zu inputs", v->ninputs);
        break;
    case IR_OP_COUNT:
        break;
    }
}

static const char *op_shape(enum ir_op op)
{
    switch (op) {
    case IR_SOURCE_IMAGE:
        return "ellipse";
    case IR_SOURCE_LOCAL:
        return "folder";
    case IR_SOURCE_SCRATCH:
        return "circle";
    case IR_SOURCE_HTTP:
    case IR_SOURCE_GIT:
        return "component";
    case IR_EXEC:
        return "box";
    case IR_FILE:
        return "note";
    case IR_MERGE:
        return "invtrapezium";
    case IR_OP_COUNT:
        break;
    }
    return "box";
}

static void add_loc(struct kn_buf *b, const struct ir_srcloc *loc, enum esc_mode mode)
{
    if (loc->line <= 0)
        return;
    add_escaped(b, loc->file ? loc->file : "line", LABEL_MAX, mode);
    kn_buf_addf(b, ":%d", loc->line);
}

static void dot_node(struct kn_buf *b, const struct ir_graph *g, size_t i, const char *indent)
{
    const struct ir_vertex *v = &g->v[i];
    struct kn_buf s = KN_BUF_INIT;
    if (v->name) {
        kn_buf_adds(&s, v->name);
    } else {
        kn_buf_adds(&s, ir_op_name(v->op) ? ir_op_name(v->op) : "?");
        kn_buf_addc(&s, ' ');
        summary(v, &s);
    }
    kn_buf_addf(b, "%sv%zu [label=\"", indent, i);
    add_escaped(b, s.data ? s.data : "", LABEL_MAX, ESC_DOT);
    if (v->loc.line > 0) {
        kn_buf_adds(b, "\\n");
        add_loc(b, &v->loc, ESC_DOT);
    }
    kn_buf_addf(b, "\", shape=%s", op_shape(v->op));
    if (v->op == IR_SOURCE_SCRATCH)
        kn_buf_adds(b, ", style=dashed");
    kn_buf_addf(b, ", tooltip=\"%.19s\"];\n", v->digest);
    kn_buf_release(&s);
}

void ir_graph_to_dot(const struct ir_graph *g, struct kn_buf *out)
{
    kn_buf_adds(out, "digraph kiln {\n"
                     "  rankdir=TB;\n"
                     "  node [fontname=\"Helvetica\", fontsize=10];\n"
                     "  edge [arrowsize=0.7];\n");
    /* stages in order of first appearance, each a cluster */
    bool *done = kn_calloc(g->nv ? g->nv : 1, sizeof(*done));
    size_t cluster = 0;
    for (size_t i = 0; i < g->nv; i++) {
        const char *stage = g->v[i].stage;
        if (done[i] || !stage)
            continue;
        kn_buf_addf(out, "  subgraph cluster_%zu {\n    label=\"", cluster++);
        add_escaped(out, stage, LABEL_MAX, ESC_DOT);
        kn_buf_adds(out, "\";\n    style=rounded;\n    color=gray50;\n");
        for (size_t k = i; k < g->nv; k++) {
            if (!done[k] && g->v[k].stage && strcmp(g->v[k].stage, stage) == 0) {
                dot_node(out, g, k, "    ");
                done[k] = true;
            }
        }
        kn_buf_adds(out, "  }\n");
    }
    for (size_t i = 0; i < g->nv; i++)
        if (!done[i])
            dot_node(out, g, i, "  ");
    free(done);
    for (size_t i = 0; i < g->nv; i++) {
        const struct ir_vertex *v = &g->v[i];
        for (size_t k = 0; k < v->ninputs; k++)
            kn_buf_addf(out, "  v%u -> v%zu%s;\n", v->inputs[k], i,
                        k > 0 && (v->op == IR_EXEC || v->op == IR_FILE) ? " [style=dashed]" : "");
    }
    for (size_t i = 0; i < g->noutputs; i++) {
        const struct ir_output *o = &g->outputs[i];
        kn_buf_addf(out, "  out%zu [label=\"", i);
        add_escaped(out, o->name ? o->name : "output", LABEL_MAX, ESC_DOT);
        kn_buf_adds(out, "\", shape=doubleoctagon];\n");
        if (o->vertex < g->nv)
            kn_buf_addf(out, "  v%u -> out%zu;\n", o->vertex, i);
    }
    kn_buf_adds(out, "}\n");
}

static void add_short(struct kn_buf *b, const char *digest)
{
    kn_buf_addf(b, "%.*s", SHORT_HEX, kn_str_startswith(digest, "sha256:") ? digest + 7 : digest);
}

void ir_graph_to_text(const struct ir_graph *g, struct kn_buf *out)
{
    struct kn_buf s = KN_BUF_INIT;
    for (size_t i = 0; i < g->nv; i++) {
        const struct ir_vertex *v = &g->v[i];
        add_short(out, v->digest);
        kn_buf_addf(out, " %-14s ", ir_op_name(v->op) ? ir_op_name(v->op) : "?");
        kn_buf_reset(&s);
        summary(v, &s);
        add_escaped(out, s.data ? s.data : "", LABEL_MAX, ESC_TEXT);
        if (v->ninputs) {
            kn_buf_adds(out, " <-");
            for (size_t k = 0; k < v->ninputs; k++) {
                kn_buf_addc(out, ' ');
                add_short(out, v->inputs[k] < g->nv ? g->v[v->inputs[k]].digest : "?");
            }
        }
        if (v->loc.line > 0) {
            kn_buf_adds(out, "  ");
            add_loc(out, &v->loc, ESC_TEXT);
        }
        kn_buf_addc(out, '\n');
    }
    kn_buf_release(&s);
    for (size_t i = 0; i < g->noutputs; i++) {
        const struct ir_output *o = &g->outputs[i];
        kn_buf_adds(out, "output ");
        add_escaped(out, o->name ? o->name : "", LABEL_MAX, ESC_TEXT);
        kn_buf_adds(out, ": ");
        add_short(out, o->vertex < g->nv ? g->v[o->vertex].digest : "?");
        if (o->base_ref) {
            kn_buf_adds(out, " (base ");
            add_escaped(out, o->base_ref, LABEL_MAX, ESC_TEXT);
            kn_buf_addc(out, ')');
        }
        kn_buf_addc(out, '\n');
    }
    for (size_t i = 0; i < g->nnotes; i++) {
        kn_buf_adds(out, "note: ");
        add_escaped(out, g->notes[i], SIZE_MAX, ESC_TEXT);
        kn_buf_addc(out, '\n');
    }
}
