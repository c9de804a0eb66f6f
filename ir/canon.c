/*
 * The canonical encoding a vertex digest is computed over, written straight
 * into a buffer.
 *
 * It is, byte for byte, what jansson writes for the vertex's JSON params
 * object with JSON_COMPACT | JSON_SORT_KEYS (ir_vertex_canonical_json() in
 * json.c; a unit test compares the two over vertices using every field),
 * without building a JSON tree: lowering a 10,000-instruction Dockerfile
 * adds 10,000 vertices, and the tree cost more than everything else the
 * frontend does. Keys are emitted in sorted order by hand: keep each
 * function's key list sorted (strcmp order) when adding a field, and add the
 * field to json.c too.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cw {
    struct kn_buf *b;
    bool bad;   /* a string was not valid UTF-8 */
    bool comma; /* a member was written at the current level */
};

/* jansson's UTF-8 rules: no overlong forms, no surrogates, <= U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c < 0xc2)
        return 0;
    if (c < 0xe0) {
        n = 2;
        cp = c & 0x1f;
    } else if (c < 0xf0) {
        n = 3;
        cp = c & 0x0f;
    } else if (c < 0xf5) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void put_str(struct cw *w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    struct kn_buf *b = w->b;
    size_t len = strlen(s);
    kn_buf_addc(b, '"');
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)s + i, len - i);
            if (!n) {
                w->bad = true;
                return;
            }
            i += n;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        kn_buf_add(b, s + run, i - run);
        switch (c) {
        case '"':
            kn_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            kn_buf_add(b, "\\\\", 2);
            break;
        case '\b':
            kn_buf_add(b, "\\b", 2);
            break;
        case '\f':
            kn_buf_add(b, "\\f", 2);
            break;
        case '\n':
            kn_buf_add(b, "\\n", 2);
            break;
        case '\r':
            kn_buf_add(b, "\\r", 2);
            break;
        case '\t':
            kn_buf_add(b, "\\t", 2);
            break;
        default: {
            char seq[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            kn_buf_add(b, seq, 6);
        }
        }
        i++;
        run = i;
    }
    kn_buf_add(b, s + run, len - run);
    kn_buf_addc(b, '"');
}

static void key(struct cw *w, const char *k)
{
    if (w->comma)
        kn_buf_addc(w->b, ',');
    w->comma = true;
    put_str(w, k);
    kn_buf_addc(w->b, ':');
}

static void open_(struct cw *w, char c)
{
    kn_buf_addc(w->b, c);
    w->comma = false;
}

static void close_(struct cw *w, char c)
{
    kn_buf_addc(w->b, c);
    w->comma = true;
}

static void f_str(struct cw *w, const char *k, const char *s)
{
    if (s) {
        key(w, k);
        put_str(w, s);
    }
}

static void f_int(struct cw *w, const char *k, long long x, long long dflt)
{
    if (x != dflt) {
        key(w, k);
        kn_buf_addf(w->b, "%lld", x);
    }
}

static void f_true(struct cw *w, const char *k, bool v)
{
    if (v) {
        key(w, k);
        kn_buf_add(w->b, "true", 4);
    }
}

static void f_enum(struct cw *w, const char *k, unsigned x, const char *const *names, size_t n,
                   bool omit_default)
{
    if (omit_default && x == 0)
        return;
    key(w, k);
    put_str(w, x < n ? names[x] : "?");
}

static void f_strv(struct cw *w, const char *k, char *const *v, size_t n)
{
    if (!n)
        return;
    key(w, k);
    open_(w, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            kn_buf_addc(w->b, ',');
        put_str(w, v[i] ? v[i] : "");
    }
    close_(w, ']');
}

static void mount_c(struct cw *w, const struct ir_mount *m)
{
    open_(w, '{');
    f_str(w, "env", m->env);
    f_int(w, "gid", m->gid, -1);
    f_str(w, "id", m->id);
    if (m->type == IR_MOUNT_BIND || m->type == IR_MOUNT_CACHE)
        f_int(w, "input", m->input, -1);
    f_int(w, "mode", m->mode, -1);
    f_true(w, "readonly", m->readonly);
    f_true(w, "required", m->required);
    f_enum(w, "sharing", m->sharing, ir_sharing_names, IR_SHARING_NAMES, true);
    f_int(w, "size", (long long)m->size, 0);
    if (m->source && strcmp(m->source, "/") != 0)
        f_str(w, "source", m->source);
    f_str(w, "target", m->target);
    f_enum(w, "type", m->type, ir_mount_names, IR_MOUNT_NAMES, false);
    f_int(w, "uid", m->uid, -1);
    close_(w, '}');
}

static void action_c(struct cw *w, const struct ir_file_action *a)
{
    open_(w, '{');
    f_str(w, "chmod", a->chmod);
    f_str(w, "chown", a->chown);
    if (a->datalen) {
        char *d = ir_base64_encode((const unsigned char *)a->data, a->datalen);
        key(w, "data");
        put_str(w, d);
        free(d);
    }
    f_str(w, "dest", a->dest);
    f_strv(w, "exclude", a->exclude, a->nexclude);
    if (a->flags) {
        key(w, "flags");
        open_(w, '[');
        bool first = true;
        for (size_t i = 0; i < IR_FLAG_NAMES; i++) {
            if (a->flags & (1u << i)) {
                if (!first)
                    kn_buf_addc(w->b, ',');
                first = false;
                put_str(w, ir_flag_names[i]);
            }
        }
        close_(w, ']');
    }
    f_enum(w, "kind", a->kind, ir_kind_names, IR_KIND_NAMES, false);
    f_int(w, "mode", a->mode, -1);
    f_str(w, "src", a->src);
    if (a->kind == IR_FILE_COPY) {
        key(w, "src_input");
        kn_buf_addf(w->b, "%d", a->src_input);
    }
    f_str(w, "target", a->target);
    close_(w, '}');
}

static void params_c(struct cw *w, const struct ir_vertex *v)
{
    open_(w, '{');
    switch (v->op) {
    case IR_SOURCE_IMAGE: {
        const struct ir_platform *p = &v->u.image.platform;
        if (p->os || p->arch || p->variant) {
            key(w, "platform");
            open_(w, '{');
            f_str(w, "arch", p->arch);
            f_str(w, "os", p->os);
            f_str(w, "variant", p->variant);
            close_(w, '}');
        }
        f_str(w, "ref", v->u.image.ref);
        break;
    }
    case IR_SOURCE_LOCAL:
        f_strv(w, "exclude", v->u.local.exclude, v->u.local.nexclude);
        f_strv(w, "include", v->u.local.include, v->u.local.ninclude);
        f_str(w, "name", v->u.local.name);
        break;
    case IR_SOURCE_HTTP:
        f_str(w, "checksum", v->u.http.checksum);
        f_str(w, "filename", v->u.http.filename);
        f_str(w, "url", v->u.http.url);
        break;
    case IR_SOURCE_GIT:
        f_true(w, "keep_git_dir", v->u.git.keep_git_dir);
        f_str(w, "ref", v->u.git.ref);
        f_str(w, "remote", v->u.git.remote);
        f_str(w, "subdir", v->u.git.subdir);
        break;
    case IR_EXEC: {
        const struct ir_exec *x = &v->u.exec;
        f_strv(w, "argv", x->argv, x->argc);
        f_str(w, "cwd", x->cwd);
        f_strv(w, "env", x->env, x->nenv);
        if (x->nmounts) {
            key(w, "mounts");
            open_(w, '[');
            for (size_t i = 0; i < x->nmounts; i++) {
                if (i)
                    kn_buf_addc(w->b, ',');
                mount_c(w, &x->mounts[i]);
            }
            close_(w, ']');
        }
        f_enum(w, "network", x->network, ir_net_names, IR_NET_NAMES, true);
        f_enum(w, "security", x->security, ir_sec_names, IR_SEC_NAMES, true);
        f_str(w, "user", x->user);
        break;
    }
    case IR_FILE:
        key(w, "actions");
        open_(w, '[');
        for (size_t i = 0; i < v->u.file.nactions; i++) {
            if (i)
                kn_buf_addc(w->b, ',');
            action_c(w, &v->u.file.actions[i]);
        }
        close_(w, ']');
        break;
    case IR_SOURCE_SCRATCH:
    case IR_MERGE:
    case IR_OP_COUNT:
        break;
    }
    close_(w, '}');
}

int ir_vertex_canonical_buf(const struct ir_graph *g, const struct ir_vertex *v, struct kn_buf *b)
{
    const char *op = ir_op_name(v->op);
    if (!op)
        return -1;
    struct cw w = {.b = b};
    open_(&w, '{');
    f_str(&w, "format", IR_CANON_FORMAT);
    key(&w, "inputs");
    open_(&w, '[');
    for (size_t i = 0; i < v->ninputs; i++) {
        if (i)
            kn_buf_addc(b, ',');
        put_str(&w, v->inputs[i] < g->nv ? g->v[v->inputs[i]].digest : "?");
    }
    close_(&w, ']');
    f_str(&w, "op", op);
    key(&w, "params");
    params_c(&w, v);
    close_(&w, '}');
    return w.bad ? -1 : 0;
}

char *ir_vertex_canonical(const struct ir_graph *g, const struct ir_vertex *v)
{
    struct kn_buf b = KN_BUF_INIT;
    if (ir_vertex_canonical_buf(g, v, &b) < 0) {
        kn_buf_release(&b);
        return NULL;
    }
    return kn_buf_detach(&b);
}

void ir_vertex_compute_digest(const struct ir_graph *g, const struct ir_vertex *v,
                              char out[KN_DIGEST_SIZE])
{
    struct kn_buf b = KN_BUF_INIT;
    if (ir_vertex_canonical_buf(g, v, &b) == 0)
        kn_sha256_digest(b.data, b.len, out);
    else
        out[0] = '\0';
    kn_buf_release(&b);
}
