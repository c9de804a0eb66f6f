/*
 * The build graph: creating it, adding vertices (validated, digested and
 * deduplicated by digest), outputs and notes, and walking it.
 *
 * Vertices live in one growable array in topological order; everything they
 * point to lives in the graph's arena. Deduplication is an open-addressing
 * hash table from digest to vertex index (ir_graph.index), so adding the same
 * work twice, from two stages or two frontends, yields one vertex.
 */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[IR_OP_COUNT] = {
    [IR_SOURCE_IMAGE] = "source.image",
    [IR_SOURCE_LOCAL] = "source.local",
    [IR_SOURCE_SCRATCH] = "source.scratch",
    [IR_SOURCE_HTTP] = "source.http",
    [IR_EXEC] = "exec",
    [IR_FILE] = "file",
    [IR_MERGE] = "merge",
    [IR_SOURCE_GIT] = "source.git",
};

const char *ir_op_name(enum ir_op op)
{
    if ((unsigned)op >= IR_OP_COUNT)
        return NULL;
    return op_names[op];
}

int ir_op_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < IR_OP_COUNT; i++)
        if (strcmp(op_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- digest index -------------------------------------------------------
 * Slots hold vertex index + 1 (0 = empty); the table is kept at most half
 * full, so probing stays short. The hash is the digest's first hex digits,
 * which are as random as anything we could compute. */
struct ir_index {
    uint32_t *slots;
    size_t cap; /* power of two */
    size_t n;
};

static size_t digest_hash(const char *digest)
{
    size_t h = 0;
    const char *hex = digest + 7;
    for (int i = 0; i < 16 && hex[i]; i++) {
        char c = hex[i];
        h = (h << 4) | (size_t)(c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    return h;
}

static void index_insert(struct ir_index *ix, const struct ir_graph *g, uint32_t vi);

static void index_grow(struct ir_index *ix, const struct ir_graph *g)
{
    uint32_t *old = ix->slots;
    size_t oldcap = ix->cap;
    ix->cap = oldcap ? oldcap * 2 : 64;
    ix->slots = kn_calloc(ix->cap, sizeof(*ix->slots));
    ix->n = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            index_insert(ix, g, old[i] - 1);
    free(old);
}

static void index_insert(struct ir_index *ix, const struct ir_graph *g, uint32_t vi)
{
    if ((ix->n + 1) * 2 > ix->cap)
        index_grow(ix, g);
    size_t mask = ix->cap - 1;
    size_t i = digest_hash(g->v[vi].digest) & mask;
    while (ix->slots[i])
        i = (i + 1) & mask;
    ix->slots[i] = vi + 1;
    ix->n++;
}

int64_t ir_graph_find(const struct ir_graph *g, const char *digest)
{
    const struct ir_index *ix = g->index;
    if (!ix || !ix->cap || !digest || strncmp(digest, "sha256:", 7) != 0 ||
        strlen(digest) != KN_DIGEST_LEN)
        return -1;
    size_t mask = ix->cap - 1;
    for (size_t i = digest_hash(digest) & mask; ix->slots[i]; i = (i + 1) & mask) {
        uint32_t vi = ix->slots[i] - 1;
        if (strcmp(g->v[vi].digest, digest) == 0)
            return vi;
    }
    return -1;
}

/* ---- graph and arena ---------------------------------------------------- */

struct ir_graph *ir_graph_new(void)
{
    struct ir_graph *g = kn_calloc(1, sizeof(*g));
    kn_arena_init(&g->arena);
    g->index = kn_calloc(1, sizeof(struct ir_index));
    return g;
}

void ir_graph_free(struct ir_graph *g)
{
    if (!g)
        return;
    struct ir_index *ix = g->index;
    if (ix)
        free(ix->slots);
    free(ix);
    free(g->v);
    free(g->outputs);
    free(g->notes);
    kn_arena_release(&g->arena);
    free(g);
}

char *ir_graph_strdup(struct ir_graph *g, const char *s)
{
    return kn_arena_strdup(&g->arena, s);
}

char *ir_graph_strndup(struct ir_graph *g, const char *s, size_t n)
{
    return s ? kn_arena_strndup(&g->arena, s, n) : NULL;
}

void *ir_graph_alloc(struct ir_graph *g, size_t n)
{
    return kn_arena_alloc(&g->arena, n ? n : 1);
}

char **ir_graph_strv(struct ir_graph *g, char *const *v, size_t n)
{
    size_t bytes;
    if (__builtin_add_overflow(n, 1, &bytes) ||
        __builtin_mul_overflow(bytes, sizeof(char *), &bytes))
        kn_die("string vector too large");
    char **out = kn_arena_alloc(&g->arena, bytes);
    for (size_t i = 0; i < n; i++)
        out[i] = kn_arena_strdup(&g->arena, v[i]);
    out[n] = NULL;
    return out;
}

/* ---- validation ----------------------------------------------------------
 * What ir_graph_add refuses: whatever would make the vertex meaningless or
 * its canonical encoding impossible (strings must be UTF-8 because the
 * encoding is JSON). Messages name the op and the offending field. */

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n;
        unsigned min;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        p++;
        for (int i = 0; i < n; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (*p & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
    }
    return true;
}

static int check_str(const char *op, const char *field, const char *s, bool required,
                     struct kn_error **err)
{
    if (!s) {
        if (required)
            return kn_err_set(err, KN_E_PARSE, "%s vertex: missing %s", op, field);
        return 0;
    }
    if (!utf8_valid(s))
        return kn_err_set(err, KN_E_PARSE, "%s vertex: %s is not valid UTF-8", op, field);
    return 0;
}

static int check_abs(const char *op, const char *field, const char *s, struct kn_error **err)
{
    if (check_str(op, field, s, true, err) < 0)
        return -1;
    if (s[0] != '/')
        return kn_err_set(err, KN_E_PARSE, "%s vertex: %s '%s' is not absolute", op, field, s);
    return 0;
}

static int check_strv(const char *op, const char *field, char *const *v, size_t n,
                      struct kn_error **err)
{
    if (n && !v)
        return kn_err_set(err, KN_E_PARSE, "%s vertex: %s has %zu entries but no array", op, field,
                          n);
    for (size_t i = 0; i < n; i++) {
        if (!v[i])
            return kn_err_set(err, KN_E_PARSE, "%s vertex: %s[%zu] is NULL", op, field, i);
        if (!utf8_valid(v[i]))
            return kn_err_set(err, KN_E_PARSE, "%s vertex: %s[%zu] is not valid UTF-8", op, field,
                              i);
    }
    return 0;
}

static int check_id(const char *op, const char *field, int id, struct kn_error **err)
{
    if (id < -1)
        return kn_err_set(err, KN_E_PARSE, "%s vertex: %s %d is out of range", op, field, id);
    return 0;
}

static int check_mode(const char *op, const char *field, int mode, struct kn_error **err)
{
    if (mode < -1 || mode > 07777)
        return kn_err_set(err, KN_E_PARSE, "%s vertex: %s %d is out of range", op, field, mode);
    return 0;
}

static int check_mount(const struct ir_vertex *v, const struct ir_mount *m, size_t i,
                       struct kn_error **err)
{
    char field[64];
    snprintf(field, sizeof(field), "mounts[%zu].target", i);
    if (check_abs("exec", field, m->target, err) < 0)
        return -1;
    if ((unsigned)m->type > IR_MOUNT_SSH)
        return kn_err_set(err, KN_E_PARSE, "exec vertex: mount at '%s' has unknown type %d",
                          m->target, (int)m->type);
    if (m->type == IR_MOUNT_BIND || m->type == IR_MOUNT_CACHE) {
        if (m->input < -1 || (m->input >= 0 && (size_t)m->input >= v->ninputs))
            return kn_err_set(err, KN_E_PARSE,
                              "exec vertex: mount at '%s' refers to input %d of %zu", m->target,
                              m->input, v->ninputs);
        if (m->type == IR_MOUNT_BIND && m->input < 0)
            return kn_err_set(err, KN_E_PARSE, "exec vertex: bind mount at '%s' has no input",
                              m->target);
    }
    if ((unsigned)m->sharing > IR_SHARING_LOCKED)
        return kn_err_set(err, KN_E_PARSE, "exec vertex: mount at '%s' has unknown sharing %d",
                          m->target, (int)m->sharing);
    if (check_str("exec", "mount source", m->source, false, err) < 0 ||
        check_str("exec", "mount id", m->id, false, err) < 0 ||
        check_str("exec", "mount env", m->env, false, err) < 0 ||
        check_mode("exec", "mount mode", m->mode, err) < 0 ||
        check_id("exec", "mount uid", m->uid, err) < 0 ||
        check_id("exec", "mount gid", m->gid, err) < 0)
        return -1;
    if (m->size > INT64_MAX)
        return kn_err_set(err, KN_E_PARSE, "exec vertex: tmpfs size at '%s' is out of range",
                          m->target);
    return 0;
}

/* every flag ir.h defines; json.c names each of them */
#define IR_FF_ALL (((unsigned)IR_FF_DEST_IS_DIR << 1) - 1)

static int check_action(const struct ir_vertex *v, const struct ir_file_action *a, size_t i,
                        struct kn_error **err)
{
    static const char *const kinds[] = {"copy", "mkdir", "mkfile", "rm", "symlink"};
    if ((unsigned)a->kind > IR_FILE_SYMLINK)
        return kn_err_set(err, KN_E_PARSE, "file vertex: action %zu has unknown kind %d", i,
                          (int)a->kind);
    const char *kind = kinds[a->kind];
    if (a->kind == IR_FILE_COPY) {
        if (a->src_input < 0 || (size_t)a->src_input >= v->ninputs)
            return kn_err_set(err, KN_E_PARSE, "file vertex: copy refers to input %d of %zu",
                              a->src_input, v->ninputs);
        if (check_str("file", "copy src", a->src, true, err) < 0 ||
            check_str("file", "copy dest", a->dest, true, err) < 0)
            return -1;
    } else {
        char field[32];
        snprintf(field, sizeof(field), "%s path", kind);
        if (check_abs("file", field, a->dest, err) < 0)
            return -1;
        if (check_str("file", "src", a->src, false, err) < 0)
            return -1;
    }
    if (check_str("file", "symlink target", a->target, a->kind == IR_FILE_SYMLINK, err) < 0 ||
        check_str("file", "chown", a->chown, false, err) < 0 ||
        check_str("file", "chmod", a->chmod, false, err) < 0 ||
        check_mode("file", "mode", a->mode, err) < 0 ||
        check_strv("file", "exclude", a->exclude, a->nexclude, err) < 0)
        return -1;
    if (a->datalen && !a->data)
        return kn_err_set(err, KN_E_PARSE, "file vertex: mkfile data has %zu bytes but no buffer",
                          a->datalen);
    if (a->flags & ~IR_FF_ALL)
        return kn_err_set(err, KN_E_PARSE, "file vertex: unknown flags 0x%x",
                          a->flags & ~IR_FF_ALL);
    return 0;
}

static int validate(const struct ir_graph *g, const struct ir_vertex *v, struct kn_error **err)
{
    const char *op = ir_op_name(v->op);
    if (!op)
        return kn_err_set(err, KN_E_PARSE, "unknown op %d", (int)v->op);
    if (v->ninputs && !v->inputs)
        return kn_err_set(err, KN_E_PARSE, "%s vertex: %zu inputs but no array", op, v->ninputs);
    for (size_t i = 0; i < v->ninputs; i++)
        if (v->inputs[i] >= g->nv)
            return kn_err_set(err, KN_E_PARSE, "%s vertex: input %zu refers to vertex %u of %zu",
                              op, i, v->inputs[i], g->nv);
    switch (v->op) {
    case IR_SOURCE_IMAGE:
    case IR_SOURCE_LOCAL:
    case IR_SOURCE_SCRATCH:
    case IR_SOURCE_HTTP:
    case IR_SOURCE_GIT:
        if (v->ninputs)
            return kn_err_set(err, KN_E_PARSE, "%s vertex: takes no inputs, got %zu", op,
                              v->ninputs);
        break;
    case IR_EXEC:
    case IR_FILE:
    case IR_MERGE:
        if (!v->ninputs)
            return kn_err_set(err, KN_E_PARSE, "%s vertex: needs at least one input", op);
        break;
    case IR_OP_COUNT:
        break;
    }
    switch (v->op) {
    case IR_SOURCE_IMAGE: {
        const struct ir_source_image *s = &v->u.image;
        if (check_str(op, "ref", s->ref, true, err) < 0 ||
            check_str(op, "platform os", s->platform.os, false, err) < 0 ||
            check_str(op, "platform arch", s->platform.arch, false, err) < 0 ||
            check_str(op, "platform variant", s->platform.variant, false, err) < 0)
            return -1;
        if (!s->ref[0])
            return kn_err_set(err, KN_E_PARSE, "%s vertex: empty ref", op);
        break;
    }
    case IR_SOURCE_LOCAL: {
        const struct ir_source_local *s = &v->u.local;
        if (check_str(op, "name", s->name, true, err) < 0 ||
            check_strv(op, "include", s->include, s->ninclude, err) < 0 ||
            check_strv(op, "exclude", s->exclude, s->nexclude, err) < 0)
            return -1;
        break;
    }
    case IR_SOURCE_HTTP: {
        const struct ir_source_http *s = &v->u.http;
        if (check_str(op, "url", s->url, true, err) < 0 ||
            check_str(op, "checksum", s->checksum, false, err) < 0 ||
            check_str(op, "filename", s->filename, false, err) < 0)
            return -1;
        if (s->checksum && !kn_digest_valid(s->checksum))
            return kn_err_set(err, KN_E_PARSE, "%s vertex: checksum '%s' is not a sha256 digest",
                              op, s->checksum);
        break;
    }
    case IR_SOURCE_GIT: {
        const struct ir_source_git *s = &v->u.git;
        if (check_str(op, "remote", s->remote, true, err) < 0 ||
            check_str(op, "ref", s->ref, false, err) < 0 ||
            check_str(op, "subdir", s->subdir, false, err) < 0)
            return -1;
        if (!s->remote[0])
            return kn_err_set(err, KN_E_PARSE, "%s vertex: empty remote", op);
        break;
    }
    case IR_EXEC: {
        const struct ir_exec *e = &v->u.exec;
        if (!e->argc)
            return kn_err_set(err, KN_E_PARSE, "exec vertex: empty argv");
        if (check_strv(op, "argv", e->argv, e->argc, err) < 0 ||
            check_strv(op, "env", e->env, e->nenv, err) < 0 ||
            check_abs(op, "cwd", e->cwd, err) < 0 || check_str(op, "user", e->user, false, err) < 0)
            return -1;
        if ((unsigned)e->network > IR_NET_NONE)
            return kn_err_set(err, KN_E_PARSE, "exec vertex: unknown network %d", (int)e->network);
        if ((unsigned)e->security > IR_SEC_INSECURE)
            return kn_err_set(err, KN_E_PARSE, "exec vertex: unknown security %d",
                              (int)e->security);
        if (e->nmounts && !e->mounts)
            return kn_err_set(err, KN_E_PARSE, "exec vertex: %zu mounts but no array", e->nmounts);
        for (size_t i = 0; i < e->nmounts; i++)
            if (check_mount(v, &e->mounts[i], i, err) < 0)
                return -1;
        break;
    }
    case IR_FILE: {
        const struct ir_file *f = &v->u.file;
        if (!f->nactions || !f->actions)
            return kn_err_set(err, KN_E_PARSE, "file vertex: no actions");
        for (size_t i = 0; i < f->nactions; i++)
            if (check_action(v, &f->actions[i], i, err) < 0)
                return -1;
        break;
    }
    case IR_SOURCE_SCRATCH:
    case IR_MERGE:
    case IR_OP_COUNT:
        break;
    }
    return 0;
}

int64_t ir_graph_add(struct ir_graph *g, const struct ir_vertex *tmpl, struct kn_error **err)
{
    if (validate(g, tmpl, err) < 0)
        return -1;
    if (g->nv >= UINT32_MAX - 1)
        return kn_err_set(err, KN_E_UNSAFE, "graph has too many vertices");
    char digest[KN_DIGEST_SIZE];
    ir_vertex_compute_digest(g, tmpl, digest);
    if (!digest[0])
        return kn_err_set(err, KN_E_INTERNAL, "%s vertex: cannot encode", ir_op_name(tmpl->op));
    int64_t found = ir_graph_find(g, digest);
    if (found >= 0) {
        /* same work: keep the first location and name; one --no-cache wins */
        if (tmpl->no_cache)
            g->v[found].no_cache = true;
        return found;
    }
    g->v = kn_grow(g->v, &g->cap, g->nv + 1, sizeof(*g->v));
    struct ir_vertex *v = &g->v[g->nv];
    *v = *tmpl;
    memcpy(v->digest, digest, KN_DIGEST_SIZE);
    uint32_t vi = (uint32_t)g->nv++;
    index_insert(g->index, g, vi);
    return vi;
}

/* ---- outputs, notes ----------------------------------------------------- */

void ir_graph_add_output(struct ir_graph *g, const struct ir_output *out)
{
    g->outputs = kn_grow(g->outputs, &g->outcap, g->noutputs + 1, sizeof(*g->outputs));
    struct ir_output *o = &g->outputs[g->noutputs++];
    o->name = ir_graph_strdup(g, out->name);
    o->vertex = out->vertex;
    o->config = ir_graph_strdup(g, out->config);
    o->base_ref = ir_graph_strdup(g, out->base_ref);
    o->nhistory = out->nhistory;
    o->history = NULL;
    if (out->nhistory) {
        size_t bytes;
        if (__builtin_mul_overflow(out->nhistory, sizeof(*o->history), &bytes))
            kn_die("history too large");
        o->history = kn_arena_alloc(&g->arena, bytes);
        for (size_t i = 0; i < out->nhistory; i++) {
            o->history[i].created_by = ir_graph_strdup(g, out->history[i].created_by);
            o->history[i].comment = ir_graph_strdup(g, out->history[i].comment);
            o->history[i].empty_layer = out->history[i].empty_layer;
        }
    }
}

void ir_graph_add_note(struct ir_graph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = kn_vasprintf(fmt, ap);
    va_end(ap);
    g->notes = kn_grow(g->notes, &g->notecap, g->nnotes + 1, sizeof(*g->notes));
    g->notes[g->nnotes++] = ir_graph_strdup(g, tmp);
    free(tmp);
}

/* ---- walking ------------------------------------------------------------- */

bool *ir_graph_reachable(const struct ir_graph *g, const uint32_t *roots, size_t nroots)
{
    bool *seen = kn_calloc(g->nv ? g->nv : 1, sizeof(*seen));
    for (size_t i = 0; i < nroots; i++)
        if (roots[i] < g->nv)
            seen[roots[i]] = true;
    /* inputs always come earlier, so one backward pass reaches everything */
    for (size_t i = g->nv; i-- > 0;) {
        if (!seen[i])
            continue;
        const struct ir_vertex *v = &g->v[i];
        for (size_t j = 0; j < v->ninputs; j++)
            seen[v->inputs[j]] = true;
    }
    return seen;
}
