/*
 * The IR's two JSON uses: the canonical encoding a vertex digest is computed
 * over, and the versioned JSON form of a whole graph (dump and load).
 *
 * Both share one encoder for a vertex's parameters, so what the file says
 * and what the digest covers cannot drift apart. The encoder omits fields
 * that hold their default (NULL strings, empty arrays, false, -1 ids and
 * modes, default enum values), so every value has exactly one encoding.
 *
 * Canonical encoding (the digest input), documented in docs/ir.md:
 *   {"format":"kiln.vertex/1","inputs":["sha256:..."],"op":"exec","params":{...}}
 * serialized by jansson with sorted keys and no whitespace.
 *
 * Loading is strict: unknown fields, wrong types, out-of-range numbers,
 * dangling inputs, cycles and digests that do not match their content are
 * KN_E_PARSE errors naming the graph and the vertex. Sizes are capped before
 * anything is allocated for them.
 */
#include "internal.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ir_net_names[] = {"default", "host", "none"};
const char *const ir_sec_names[] = {"sandbox", "insecure"};
const char *const ir_mount_names[] = {"bind", "cache", "tmpfs", "secret", "ssh"};
const char *const ir_sharing_names[] = {"shared", "private", "locked"};
const char *const ir_kind_names[] = {"copy", "mkdir", "mkfile", "rm", "symlink"};
const char *const ir_flag_names[] = {
    "follow_symlinks", "dir_contents",    "wildcard", "allow_empty_wildcard", "unpack",
    "create_parents",  "allow_not_found", "parents",  "dest_is_dir",
};

_Static_assert(KN_ARRAY_SIZE(ir_net_names) == IR_NET_NAMES, "net names");
_Static_assert(KN_ARRAY_SIZE(ir_sec_names) == IR_SEC_NAMES, "security names");
_Static_assert(KN_ARRAY_SIZE(ir_mount_names) == IR_MOUNT_NAMES, "mount names");
_Static_assert(KN_ARRAY_SIZE(ir_sharing_names) == IR_SHARING_NAMES, "sharing names");
_Static_assert(KN_ARRAY_SIZE(ir_kind_names) == IR_KIND_NAMES, "kind names");
_Static_assert(KN_ARRAY_SIZE(ir_flag_names) == IR_FLAG_NAMES, "flag names");
_Static_assert(1u << (IR_FLAG_NAMES - 1) == IR_FF_DEST_IS_DIR,
               "every file flag needs a name in ir_flag_names");

#define net_names     ir_net_names
#define sec_names     ir_sec_names
#define mount_names   ir_mount_names
#define sharing_names ir_sharing_names
#define kind_names    ir_kind_names
#define flag_names    ir_flag_names
#define CANON_FORMAT  IR_CANON_FORMAT

/* ---- base64 (RFC 4648, standard alphabet, padded) ----------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *ir_base64_encode(const unsigned char *p, size_t n)
{
    char *out = kn_malloc(n / 3 * 4 + 5);
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64[x >> 18];
        *o++ = b64[(x >> 12) & 63];
        *o++ = b64[(x >> 6) & 63];
        *o++ = b64[x & 63];
    }
    if (n - i == 1) {
        uint32_t x = (uint32_t)p[i] << 16;
        *o++ = b64[x >> 18];
        *o++ = b64[(x >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = b64[x >> 18];
        *o++ = b64[(x >> 12) & 63];
        *o++ = b64[(x >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

/* Strict: padded, canonical (unused bits zero), so one data has one text. */
static unsigned char *base64_decode(const char *s, size_t len, size_t *outlen)
{
    if (len % 4)
        return NULL;
    unsigned char *out = kn_malloc(len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int pad = 0;
        if (i + 4 == len) {
            pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
        }
        int v[4];
        for (int k = 0; k < 4 - pad; k++) {
            v[k] = b64_val(s[i + k]);
            if (v[k] < 0)
                goto bad;
        }
        for (int k = 4 - pad; k < 4; k++)
            v[k] = 0;
        uint32_t x =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(x >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(x >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)x;
        if ((pad == 1 && (x & 0xff)) || (pad == 2 && (x & 0xffff)))
            goto bad;
    }
    *outlen = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* ---- encoding ------------------------------------------------------------ */

struct enc {
    const char *bad; /* first field that could not be encoded (not UTF-8) */
};

static void set_new(struct enc *e, json_t *o, const char *key, json_t *val)
{
    if (!val) {
        if (!e->bad)
            e->bad = key;
        return;
    }
    json_object_set_new(o, key, val);
}

static void set_str(struct enc *e, json_t *o, const char *key, const char *s)
{
    if (s)
        set_new(e, o, key, json_string(s));
}

static json_t *strv_json(struct enc *e, const char *key, char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(v[i] ? v[i] : "");
        if (!s) {
            if (!e->bad)
                e->bad = key;
            continue;
        }
        json_array_append_new(a, s);
    }
    return a;
}

static void set_strv(struct enc *e, json_t *o, const char *key, char *const *v, size_t n)
{
    if (n)
        json_object_set_new(o, key, strv_json(e, key, v, n));
}

static void set_int(json_t *o, const char *key, long long x, long long dflt)
{
    if (x != dflt)
        json_object_set_new(o, key, json_integer(x));
}

static void set_true(json_t *o, const char *key, bool b)
{
    if (b)
        json_object_set_new(o, key, json_true());
}

static void set_enum(json_t *o, const char *key, unsigned x, const char *const *names, size_t n,
                     bool omit_default)
{
    if (omit_default && x == 0)
        return;
    json_object_set_new(o, key, json_string(x < n ? names[x] : "?"));
}

static json_t *mount_json(struct enc *e, const struct ir_mount *m)
{
    json_t *o = json_object();
    set_enum(o, "type", m->type, mount_names, KN_ARRAY_SIZE(mount_names), false);
    set_str(e, o, "target", m->target);
    if (m->type == IR_MOUNT_BIND || m->type == IR_MOUNT_CACHE)
        set_int(o, "input", m->input, -1);
    if (m->source && strcmp(m->source, "/") != 0)
        set_str(e, o, "source", m->source);
    set_true(o, "readonly", m->readonly);
    set_str(e, o, "id", m->id);
    set_enum(o, "sharing", m->sharing, sharing_names, KN_ARRAY_SIZE(sharing_names), true);
    set_int(o, "mode", m->mode, -1);
    set_int(o, "uid", m->uid, -1);
    set_int(o, "gid", m->gid, -1);
    set_true(o, "required", m->required);
    set_str(e, o, "env", m->env);
    set_int(o, "size", (long long)m->size, 0);
    return o;
}

static json_t *action_json(struct enc *e, const struct ir_file_action *a)
{
    json_t *o = json_object();
    set_enum(o, "kind", a->kind, kind_names, KN_ARRAY_SIZE(kind_names), false);
    if (a->kind == IR_FILE_COPY)
        json_object_set_new(o, "src_input", json_integer(a->src_input));
    set_str(e, o, "src", a->src);
    set_str(e, o, "dest", a->dest);
    set_str(e, o, "target", a->target);
    if (a->datalen) {
        char *d = ir_base64_encode((const unsigned char *)a->data, a->datalen);
        json_object_set_new(o, "data", json_string(d));
        free(d);
    }
    set_str(e, o, "chown", a->chown);
    set_int(o, "mode", a->mode, -1);
    set_str(e, o, "chmod", a->chmod);
    if (a->flags) {
        json_t *f = json_array();
        for (size_t i = 0; i < KN_ARRAY_SIZE(flag_names); i++)
            if (a->flags & (1u << i))
                json_array_append_new(f, json_string(flag_names[i]));
        json_object_set_new(o, "flags", f);
    }
    set_strv(e, o, "exclude", a->exclude, a->nexclude);
    return o;
}

/* The parameters of a vertex, defaults omitted. */
static json_t *params_json(struct enc *e, const struct ir_vertex *v)
{
    json_t *o = json_object();
    switch (v->op) {
    case IR_SOURCE_IMAGE: {
        const struct ir_source_image *s = &v->u.image;
        set_str(e, o, "ref", s->ref);
        if (s->platform.os || s->platform.arch || s->platform.variant) {
            json_t *p = json_object();
            set_str(e, p, "os", s->platform.os);
            set_str(e, p, "arch", s->platform.arch);
            set_str(e, p, "variant", s->platform.variant);
            json_object_set_new(o, "platform", p);
        }
        break;
    }
    case IR_SOURCE_LOCAL:
        set_str(e, o, "name", v->u.local.name);
        set_strv(e, o, "include", v->u.local.include, v->u.local.ninclude);
        set_strv(e, o, "exclude", v->u.local.exclude, v->u.local.nexclude);
        break;
    case IR_SOURCE_HTTP:
        set_str(e, o, "url", v->u.http.url);
        set_str(e, o, "checksum", v->u.http.checksum);
        set_str(e, o, "filename", v->u.http.filename);
        break;
    case IR_SOURCE_GIT:
        set_str(e, o, "remote", v->u.git.remote);
        set_str(e, o, "ref", v->u.git.ref);
        set_str(e, o, "subdir", v->u.git.subdir);
        set_true(o, "keep_git_dir", v->u.git.keep_git_dir);
        break;
    case IR_EXEC: {
        const struct ir_exec *x = &v->u.exec;
        set_strv(e, o, "argv", x->argv, x->argc);
        set_strv(e, o, "env", x->env, x->nenv);
        set_str(e, o, "cwd", x->cwd);
        set_str(e, o, "user", x->user);
        set_enum(o, "network", x->network, net_names, KN_ARRAY_SIZE(net_names), true);
        set_enum(o, "security", x->security, sec_names, KN_ARRAY_SIZE(sec_names), true);
        if (x->nmounts) {
            json_t *a = json_array();
            for (size_t i = 0; i < x->nmounts; i++)
                json_array_append_new(a, mount_json(e, &x->mounts[i]));
            json_object_set_new(o, "mounts", a);
        }
        break;
    }
    case IR_FILE: {
        json_t *a = json_array();
        for (size_t i = 0; i < v->u.file.nactions; i++)
            json_array_append_new(a, action_json(e, &v->u.file.actions[i]));
        json_object_set_new(o, "actions", a);
        break;
    }
    case IR_SOURCE_SCRATCH:
    case IR_MERGE:
    case IR_OP_COUNT:
        break;
    }
    return o;
}

static json_t *inputs_json(const struct ir_graph *g, const struct ir_vertex *v)
{
    json_t *a = json_array();
    for (size_t i = 0; i < v->ninputs; i++)
        json_array_append_new(a,
                              json_string(v->inputs[i] < g->nv ? g->v[v->inputs[i]].digest : "?"));
    return a;
}

char *ir_vertex_canonical_json(const struct ir_graph *g, const struct ir_vertex *v)
{
    const char *op = ir_op_name(v->op);
    if (!op)
        return NULL;
    struct enc e = {0};
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string(CANON_FORMAT));
    json_object_set_new(o, "op", json_string(op));
    json_object_set_new(o, "params", params_json(&e, v));
    json_object_set_new(o, "inputs", inputs_json(g, v));
    /* jansson allocates with malloc (the default): the caller's free() fits */
    char *s = e.bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s && !e.bad)
        kn_die("cannot serialize a vertex");
    return s;
}

/* ---- dump ----------------------------------------------------------------- */

static int buf_append(const char *data, size_t n, void *b)
{
    kn_buf_add(b, data, n);
    return 0;
}

static json_t *vertex_json(struct enc *e, const struct ir_graph *g, const struct ir_vertex *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "digest", json_string(v->digest));
    json_object_set_new(o, "op", json_string(ir_op_name(v->op)));
    json_object_set_new(o, "inputs", inputs_json(g, v));
    json_object_set_new(o, "params", params_json(e, v));
    if (v->loc.file || v->loc.line || v->loc.col || v->loc.end_line) {
        json_t *l = json_object();
        set_str(e, l, "file", v->loc.file);
        set_int(l, "line", v->loc.line, 0);
        set_int(l, "col", v->loc.col, 0);
        set_int(l, "end_line", v->loc.end_line, 0);
        json_object_set_new(o, "loc", l);
    }
    set_str(e, o, "name", v->name);
    set_str(e, o, "stage", v->stage);
    set_true(o, "no_cache", v->no_cache);
    return o;
}

static json_t *output_json(struct enc *e, const struct ir_graph *g, const struct ir_output *out,
                           struct kn_error **err)
{
    if (out->vertex >= g->nv) {
        kn_err_set(err, KN_E_INTERNAL, "output '%s' refers to vertex %u of %zu",
                   out->name ? out->name : "", out->vertex, g->nv);
        return NULL;
    }
    json_t *o = json_object();
    set_str(e, o, "name", out->name);
    json_object_set_new(o, "vertex", json_string(g->v[out->vertex].digest));
    if (out->config) {
        json_error_t jerr;
        json_t *c = json_loads(out->config, 0, &jerr);
        if (!c || !json_is_object(c)) {
            if (c)
                kn_err_set(err, KN_E_INTERNAL, "output '%s': config is not a JSON object",
                           out->name ? out->name : "");
            else
                kn_err_set(err, KN_E_INTERNAL, "output '%s': config is not valid JSON: %s",
                           out->name ? out->name : "", jerr.text);
            json_decref(c);
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "config", c);
    }
    if (out->nhistory) {
        json_t *h = json_array();
        for (size_t i = 0; i < out->nhistory; i++) {
            json_t *x = json_object();
            set_str(e, x, "created_by", out->history[i].created_by);
            set_str(e, x, "comment", out->history[i].comment);
            set_true(x, "empty_layer", out->history[i].empty_layer);
            json_array_append_new(h, x);
        }
        json_object_set_new(o, "history", h);
    }
    set_str(e, o, "base_ref", out->base_ref);
    return o;
}

/* Appends v as jansson's JSON_INDENT(2) writes it at nesting depth depth
 * (its lines after the first shifted right by 2 * depth spaces: JSON
 * strings hold no raw newline, so every newline is jansson's). */
static void dump_at(json_t *v, int depth, struct kn_buf *out)
{
    struct kn_buf tmp = KN_BUF_INIT;
    json_dump_callback(v, buf_append, &tmp, JSON_INDENT(2));
    const char *p = tmp.data ? tmp.data : "", *end = p + tmp.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        kn_buf_add(out, p, n);
        if (nl)
            kn_buf_addf(out, "%*s", 2 * depth, "");
        p += n;
    }
    kn_buf_release(&tmp);
}

/* The graph is written a vertex at a time, each one's jansson tree freed
 * before the next is built (a 10,000-vertex graph's whole tree took tens of
 * MiB); the bytes are those json_dump of the whole tree with JSON_INDENT(2)
 * gives. */
int ir_graph_to_json(const struct ir_graph *g, struct kn_buf *out, struct kn_error **err)
{
    struct enc e = {0};
    size_t start = out->len;
    kn_buf_addf(out, "{\n  \"version\": %d,\n  \"vertices\": [", IR_JSON_VERSION);
    for (size_t i = 0; i < g->nv && !e.bad; i++) {
        json_t *v = vertex_json(&e, g, &g->v[i]);
        kn_buf_adds(out, i ? ",\n    " : "\n    ");
        dump_at(v, 2, out);
        json_decref(v);
    }
    kn_buf_adds(out, g->nv ? "\n  ],\n  \"outputs\": [" : "],\n  \"outputs\": [");
    for (size_t i = 0; i < g->noutputs && !e.bad; i++) {
        json_t *o = output_json(&e, g, &g->outputs[i], err);
        if (!o) {
            kn_buf_truncate(out, start);
            return -1;
        }
        kn_buf_adds(out, i ? ",\n    " : "\n    ");
        dump_at(o, 2, out);
        json_decref(o);
    }
    kn_buf_adds(out, g->noutputs ? "\n  ],\n  \"notes\": " : "],\n  \"notes\": ");
    json_t *notes = strv_json(&e, "notes", g->notes, g->nnotes);
    dump_at(notes, 1, out);
    json_decref(notes);
    if (e.bad) {
        kn_buf_truncate(out, start);
        return kn_err_set(err, KN_E_PARSE,
                          "cannot write the graph as JSON: '%s' is not valid UTF-8", e.bad);
    }
    kn_buf_adds(out, "\n}\n");
    return 0;
}

/* ---- load ----------------------------------------------------------------- */

struct dec {
    const char *name; /* the graph, for messages */
    char where[96];   /* "vertex sha256:..." or "output 'x'", for messages */
    char path[64];    /* prefix of field names: "mounts[2]." */
    struct ir_graph *g;
    struct kn_error **err;
};

static int dec_fail(struct dec *d, const char *fmt, ...) KN_PRINTF(2, 3);
static int dec_fail(struct dec *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = kn_vasprintf(fmt, ap);
    va_end(ap);
    if (d->where[0])
        kn_err_set(d->err, KN_E_PARSE, "graph '%s': %s: %s", d->name, d->where, msg);
    else
        kn_err_set(d->err, KN_E_PARSE, "graph '%s': %s", d->name, msg);
    free(msg);
    return -1;
}

static int check_keys(struct dec *d, json_t *o, const char *const *allowed, const char *what)
{
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        bool found = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                found = true;
        if (!found)
            return dec_fail(d, "unknown %s '%s%s'", what, d->path, key);
    }
    return 0;
}

/* A string of at most `max` bytes, copied into the arena; absent -> NULL. */
static int get_str(struct dec *d, json_t *o, const char *key, bool required, char **out)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v) {
        if (required)
            return dec_fail(d, "missing '%s%s'", d->path, key);
        return 0;
    }
    if (!json_is_string(v))
        return dec_fail(d, "'%s%s' is not a string", d->path, key);
    size_t len = json_string_length(v);
    if (len > IR_JSON_MAX_STRING)
        return dec_fail(d, "'%s%s' is longer than %d bytes", d->path, key, IR_JSON_MAX_STRING);
    if (strlen(json_string_value(v)) != len)
        return dec_fail(d, "'%s%s' contains a NUL byte", d->path, key);
    *out = ir_graph_strndup(d->g, json_string_value(v), len);
    return 0;
}

static int get_array(struct dec *d, json_t *o, const char *key, json_t **out)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_array(v))
        return dec_fail(d, "'%s%s' is not an array", d->path, key);
    if (json_array_size(v) > IR_JSON_MAX_ARRAY)
        return dec_fail(d, "'%s%s' has more than %d entries", d->path, key, IR_JSON_MAX_ARRAY);
    *out = v;
    return 0;
}

static int get_strv(struct dec *d, json_t *o, const char *key, char ***out, size_t *n)
{
    json_t *a;
    *out = NULL;
    *n = 0;
    if (get_array(d, o, key, &a) < 0)
        return -1;
    if (!a)
        return 0;
    size_t len = json_array_size(a);
    char **v = ir_graph_alloc(d->g, (len + 1) * sizeof(char *));
    for (size_t i = 0; i < len; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s))
            return dec_fail(d, "'%s%s[%zu]' is not a string", d->path, key, i);
        size_t sl = json_string_length(s);
        if (sl > IR_JSON_MAX_STRING)
            return dec_fail(d, "'%s%s[%zu]' is longer than %d bytes", d->path, key, i,
                            IR_JSON_MAX_STRING);
        if (strlen(json_string_value(s)) != sl)
            return dec_fail(d, "'%s%s[%zu]' contains a NUL byte", d->path, key, i);
        v[i] = ir_graph_strndup(d->g, json_string_value(s), sl);
    }
    *out = v;
    *n = len;
    return 0;
}

static int get_int(struct dec *d, json_t *o, const char *key, long long min, long long max,
                   long long dflt, long long *out)
{
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return dec_fail(d, "'%s%s' is not an integer", d->path, key);
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return dec_fail(d, "'%s%s' %lld is out of range [%lld, %lld]", d->path, key, x, min, max);
    *out = x;
    return 0;
}

static int get_intv(struct dec *d, json_t *o, const char *key, long long min, long long max,
                    int dflt, int *out)
{
    long long x;
    if (get_int(d, o, key, min, max, dflt, &x) < 0)
        return -1;
    *out = (int)x;
    return 0;
}

static int get_bool(struct dec *d, json_t *o, const char *key, bool *out)
{
    json_t *v = json_object_get(o, key);
    *out = false;
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return dec_fail(d, "'%s%s' is not a boolean", d->path, key);
    *out = json_is_true(v);
    return 0;
}

static int get_enum(struct dec *d, json_t *o, const char *key, const char *const *names, size_t n,
                    bool required, unsigned *out)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v) {
        if (required)
            return dec_fail(d, "missing '%s%s'", d->path, key);
        return 0;
    }
    if (!json_is_string(v))
        return dec_fail(d, "'%s%s' is not a string", d->path, key);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], json_string_value(v)) == 0) {
            *out = (unsigned)i;
            return 0;
        }
    }
    return dec_fail(d, "unknown %s%s '%s'", d->path, key, json_string_value(v));
}

static int get_object(struct dec *d, json_t *o, const char *key, json_t **out)
{
    json_t *v = json_object_get(o, key);
    *out = v;
    if (v && !json_is_object(v))
        return dec_fail(d, "'%s%s' is not an object", d->path, key);
    return 0;
}

static int mount_from_json(struct dec *d, json_t *o, struct ir_mount *m)
{
    static const char *const keys[] = {"type",     "target",  "input", "source", "readonly",
                                       "id",       "sharing", "mode",  "uid",    "gid",
                                       "required", "env",     "size",  NULL};
    unsigned type, sharing;
    long long size;
    if (!json_is_object(o))
        return dec_fail(d, "'%s' is not an object", d->path);
    if (check_keys(d, o, keys, "parameter") < 0 ||
        get_enum(d, o, "type", mount_names, KN_ARRAY_SIZE(mount_names), true, &type) < 0 ||
        get_str(d, o, "target", true, &m->target) < 0 ||
        get_intv(d, o, "input", -1, INT_MAX, -1, &m->input) < 0 ||
        get_str(d, o, "source", false, &m->source) < 0 ||
        get_bool(d, o, "readonly", &m->readonly) < 0 || get_str(d, o, "id", false, &m->id) < 0 ||
        get_enum(d, o, "sharing", sharing_names, KN_ARRAY_SIZE(sharing_names), false, &sharing) <
            0 ||
        get_intv(d, o, "mode", -1, 07777, -1, &m->mode) < 0 ||
        get_intv(d, o, "uid", -1, INT_MAX, -1, &m->uid) < 0 ||
        get_intv(d, o, "gid", -1, INT_MAX, -1, &m->gid) < 0 ||
        get_bool(d, o, "required", &m->required) < 0 || get_str(d, o, "env", false, &m->env) < 0 ||
        get_int(d, o, "size", 0, INT64_MAX, 0, &size) < 0)
        return -1;
    m->type = (enum ir_mount_type)type;
    m->sharing = (enum ir_sharing)sharing;
    m->size = (uint64_t)size;
    return 0;
}

static int action_from_json(struct dec *d, json_t *o, struct ir_file_action *a)
{
    static const char *const keys[] = {"kind",  "src_input", "src",   "dest",  "target",  "data",
                                       "chown", "mode",      "chmod", "flags", "exclude", NULL};
    unsigned kind;
    char *data;
    json_t *flags;
    if (!json_is_object(o))
        return dec_fail(d, "'%s' is not an object", d->path);
    if (check_keys(d, o, keys, "parameter") < 0 ||
        get_enum(d, o, "kind", kind_names, KN_ARRAY_SIZE(kind_names), true, &kind) < 0 ||
        get_intv(d, o, "src_input", -1, INT_MAX, -1, &a->src_input) < 0 ||
        get_str(d, o, "src", false, &a->src) < 0 || get_str(d, o, "dest", false, &a->dest) < 0 ||
        get_str(d, o, "target", false, &a->target) < 0 ||
        get_str(d, o, "chown", false, &a->chown) < 0 ||
        get_intv(d, o, "mode", -1, 07777, -1, &a->mode) < 0 ||
        get_str(d, o, "chmod", false, &a->chmod) < 0 ||
        get_strv(d, o, "exclude", &a->exclude, &a->nexclude) < 0 ||
        get_array(d, o, "flags", &flags) < 0)
        return -1;
    a->kind = (enum ir_file_kind)kind;
    if (a->kind == IR_FILE_COPY && !json_object_get(o, "src_input"))
        return dec_fail(d, "missing '%ssrc_input'", d->path);
    if (!json_object_get(o, "dest"))
        return dec_fail(d, "missing '%sdest'", d->path);
    for (size_t i = 0; flags && i < json_array_size(flags); i++) {
        json_t *f = json_array_get(flags, i);
        if (!json_is_string(f))
            return dec_fail(d, "'%sflags[%zu]' is not a string", d->path, i);
        size_t k = 0;
        while (k < KN_ARRAY_SIZE(flag_names) && strcmp(flag_names[k], json_string_value(f)) != 0)
            k++;
        if (k == KN_ARRAY_SIZE(flag_names))
            return dec_fail(d, "unknown flag '%s' in '%sflags'", json_string_value(f), d->path);
        a->flags |= 1u << k;
    }
    json_t *dv = json_object_get(o, "data");
    if (dv) {
        if (!json_is_string(dv))
            return dec_fail(d, "'%sdata' is not a string", d->path);
        size_t len = json_string_length(dv), n = 0;
        if (len > IR_JSON_MAX_DATA)
            return dec_fail(d, "'%sdata' is longer than %d bytes", d->path, IR_JSON_MAX_DATA);
        unsigned char *raw = base64_decode(json_string_value(dv), len, &n);
        if (!raw)
            return dec_fail(d, "'%sdata' is not canonical base64", d->path);
        data = ir_graph_alloc(d->g, n + 1);
        memcpy(data, raw, n);
        free(raw);
        a->data = n ? data : NULL;
        a->datalen = n;
    }
    return 0;
}

static int params_from_json(struct dec *d, json_t *p, struct ir_vertex *v)
{
    static const char *const k_image[] = {"ref", "platform", NULL};
    static const char *const k_platform[] = {"os", "arch", "variant", NULL};
    static const char *const k_local[] = {"name", "include", "exclude", NULL};
    static const char *const k_http[] = {"url", "checksum", "filename", NULL};
    static const char *const k_git[] = {"remote", "ref", "subdir", "keep_git_dir", NULL};
    static const char *const k_exec[] = {"argv",    "env",      "cwd",    "user",
                                         "network", "security", "mounts", NULL};
    static const char *const k_file[] = {"actions", NULL};
    static const char *const k_none[] = {NULL};
    json_t *empty = NULL;
    if (!p)
        p = empty = json_object();
    int rc = -1;
    switch (v->op) {
    case IR_SOURCE_IMAGE: {
        json_t *plat;
        if (check_keys(d, p, k_image, "parameter") < 0 ||
            get_str(d, p, "ref", true, &v->u.image.ref) < 0 ||
            get_object(d, p, "platform", &plat) < 0)
            break;
        if (plat) {
            snprintf(d->path, sizeof(d->path), "platform.");
            if (check_keys(d, plat, k_platform, "parameter") < 0 ||
                get_str(d, plat, "os", false, &v->u.image.platform.os) < 0 ||
                get_str(d, plat, "arch", false, &v->u.image.platform.arch) < 0 ||
                get_str(d, plat, "variant", false, &v->u.image.platform.variant) < 0)
                break;
            d->path[0] = '\0';
        }
        rc = 0;
        break;
    }
    case IR_SOURCE_LOCAL:
        if (check_keys(d, p, k_local, "parameter") < 0 ||
            get_str(d, p, "name", true, &v->u.local.name) < 0 ||
            get_strv(d, p, "include", &v->u.local.include, &v->u.local.ninclude) < 0 ||
            get_strv(d, p, "exclude", &v->u.local.exclude, &v->u.local.nexclude) < 0)
            break;
        rc = 0;
        break;
    case IR_SOURCE_HTTP:
        if (check_keys(d, p, k_http, "parameter") < 0 ||
            get_str(d, p, "url", true, &v->u.http.url) < 0 ||
            get_str(d, p, "checksum", false, &v->u.http.checksum) < 0 ||
            get_str(d, p, "filename", false, &v->u.http.filename) < 0)
            break;
        rc = 0;
        break;
    case IR_SOURCE_GIT:
        if (check_keys(d, p, k_git, "parameter") < 0 ||
            get_str(d, p, "remote", true, &v->u.git.remote) < 0 ||
            get_str(d, p, "ref", false, &v->u.git.ref) < 0 ||
            get_str(d, p, "subdir", false, &v->u.git.subdir) < 0 ||
            get_bool(d, p, "keep_git_dir", &v->u.git.keep_git_dir) < 0)
            break;
        rc = 0;
        break;
    case IR_EXEC: {
        struct ir_exec *x = &v->u.exec;
        unsigned net, sec;
        json_t *mounts;
        if (check_keys(d, p, k_exec, "parameter") < 0 ||
            get_strv(d, p, "argv", &x->argv, &x->argc) < 0 ||
            get_strv(d, p, "env", &x->env, &x->nenv) < 0 ||
            get_str(d, p, "cwd", true, &x->cwd) < 0 || get_str(d, p, "user", false, &x->user) < 0 ||
            get_enum(d, p, "network", net_names, KN_ARRAY_SIZE(net_names), false, &net) < 0 ||
            get_enum(d, p, "security", sec_names, KN_ARRAY_SIZE(sec_names), false, &sec) < 0 ||
            get_array(d, p, "mounts", &mounts) < 0)
            break;
        if (!x->argc) {
            dec_fail(d, "missing 'argv'");
            break;
        }
        x->network = (enum ir_network)net;
        x->security = (enum ir_security)sec;
        x->nmounts = mounts ? json_array_size(mounts) : 0;
        x->mounts = ir_graph_alloc(d->g, x->nmounts * sizeof(*x->mounts));
        size_t i = 0;
        for (; i < x->nmounts; i++) {
            snprintf(d->path, sizeof(d->path), "mounts[%zu].", i);
            if (mount_from_json(d, json_array_get(mounts, i), &x->mounts[i]) < 0)
                break;
        }
        if (i < x->nmounts)
            break;
        d->path[0] = '\0';
        rc = 0;
        break;
    }
    case IR_FILE: {
        struct ir_file *f = &v->u.file;
        json_t *actions;
        if (check_keys(d, p, k_file, "parameter") < 0 || get_array(d, p, "actions", &actions) < 0)
            break;
        if (!actions) {
            dec_fail(d, "missing 'actions'");
            break;
        }
        f->nactions = json_array_size(actions);
        f->actions = ir_graph_alloc(d->g, f->nactions * sizeof(*f->actions));
        size_t i = 0;
        for (; i < f->nactions; i++) {
            snprintf(d->path, sizeof(d->path), "actions[%zu].", i);
            if (action_from_json(d, json_array_get(actions, i), &f->actions[i]) < 0)
                break;
        }
        if (i < f->nactions)
            break;
        d->path[0] = '\0';
        rc = 0;
        break;
    }
    case IR_SOURCE_SCRATCH:
    case IR_MERGE:
    case IR_OP_COUNT:
        if (check_keys(d, p, k_none, "parameter") < 0)
            break;
        rc = 0;
        break;
    }
    json_decref(empty);
    return rc;
}

/* One vertex of the file, as far as ordering needs: its digest and inputs. */
struct fvert {
    json_t *obj;
    const char *digest;
    uint32_t first, n; /* its inputs in the edge array, as file indices */
};

struct dkey {
    const char *digest;
    uint32_t idx;
};

static int dkey_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dkey *)a)->digest, ((const struct dkey *)b)->digest);
}

static int64_t dkey_find(const struct dkey *keys, size_t n, const char *digest)
{
    struct dkey k = {digest, 0};
    const struct dkey *p = bsearch(&k, keys, n, sizeof(k), dkey_cmp);
    return p ? (int64_t)p->idx : -1;
}

static int vertex_from_json(struct dec *d, const struct fvert *fv, size_t fileidx,
                            const uint32_t *edges, const uint32_t *gidx)
{
    static const char *const keys[] = {"digest", "op",    "inputs",   "params", "loc",
                                       "name",   "stage", "no_cache", NULL};
    static const char *const lkeys[] = {"file", "line", "col", "end_line", NULL};
    json_t *o = fv->obj, *params, *loc;
    char *opname;
    struct ir_vertex v;
    memset(&v, 0, sizeof(v));
    d->path[0] = '\0';
    if (check_keys(d, o, keys, "field") < 0 || get_str(d, o, "op", true, &opname) < 0)
        return -1;
    int op = ir_op_from_name(opname);
    if (op < 0)
        return dec_fail(d, "unknown op '%s'", opname);
    v.op = (enum ir_op)op;
    if (get_object(d, o, "params", &params) < 0 || params_from_json(d, params, &v) < 0)
        return -1;
    if (get_object(d, o, "loc", &loc) < 0)
        return -1;
    if (loc) {
        snprintf(d->path, sizeof(d->path), "loc.");
        if (check_keys(d, loc, lkeys, "field") < 0 ||
            get_str(d, loc, "file", false, &v.loc.file) < 0 ||
            get_intv(d, loc, "line", 0, INT_MAX, 0, &v.loc.line) < 0 ||
            get_intv(d, loc, "col", 0, INT_MAX, 0, &v.loc.col) < 0 ||
            get_intv(d, loc, "end_line", 0, INT_MAX, 0, &v.loc.end_line) < 0)
            return -1;
        d->path[0] = '\0';
    }
    if (get_str(d, o, "name", false, &v.name) < 0 || get_str(d, o, "stage", false, &v.stage) < 0 ||
        get_bool(d, o, "no_cache", &v.no_cache) < 0)
        return -1;
    v.ninputs = fv->n;
    v.inputs = ir_graph_alloc(d->g, (fv->n ? fv->n : 1) * sizeof(uint32_t));
    for (uint32_t i = 0; i < fv->n; i++)
        v.inputs[i] = gidx[edges[fv->first + i]];
    struct kn_error *e = NULL;
    int64_t idx = ir_graph_add(d->g, &v, &e);
    if (idx < 0) {
        dec_fail(d, "%s", e->msg);
        kn_err_free(e);
        return -1;
    }
    if (strcmp(d->g->v[idx].digest, fv->digest) != 0) {
        d->where[0] = '\0';
        return dec_fail(d, "vertex #%zu has digest %s but its content hashes to %s", fileidx,
                        fv->digest, d->g->v[idx].digest);
    }
    return (int)idx;
}

static int output_from_json(struct dec *d, json_t *o, size_t i)
{
    static const char *const keys[] = {"name", "vertex", "config", "history", "base_ref", NULL};
    static const char *const hkeys[] = {"created_by", "comment", "empty_layer", NULL};
    struct ir_output out;
    char *vdigest;
    json_t *config, *hist;
    memset(&out, 0, sizeof(out));
    d->path[0] = '\0';
    snprintf(d->where, sizeof(d->where), "output %zu", i);
    if (!json_is_object(o))
        return dec_fail(d, "not an object");
    if (get_str(d, o, "name", false, &out.name) < 0)
        return -1;
    if (out.name)
        snprintf(d->where, sizeof(d->where), "output '%.64s'", out.name);
    if (check_keys(d, o, keys, "field") < 0 || get_str(d, o, "vertex", true, &vdigest) < 0 ||
        get_str(d, o, "base_ref", false, &out.base_ref) < 0 ||
        get_array(d, o, "history", &hist) < 0)
        return -1;
    int64_t vi = ir_graph_find(d->g, vdigest);
    if (vi < 0)
        return dec_fail(d, "refers to unknown vertex %s", vdigest);
    out.vertex = (uint32_t)vi;
    config = json_object_get(o, "config");
    if (config) {
        if (!json_is_object(config))
            return dec_fail(d, "config is not an object");
        out.config = json_dumps(config, JSON_COMPACT);
        if (!out.config)
            kn_die("cannot serialize a config");
    }
    out.nhistory = hist ? json_array_size(hist) : 0;
    out.history = kn_calloc(out.nhistory ? out.nhistory : 1, sizeof(*out.history));
    int rc = 0;
    for (size_t k = 0; k < out.nhistory && rc == 0; k++) {
        json_t *h = json_array_get(hist, k);
        snprintf(d->path, sizeof(d->path), "history[%zu].", k);
        if (!json_is_object(h)) {
            rc = dec_fail(d, "'history[%zu]' is not an object", k);
            break;
        }
        if (check_keys(d, h, hkeys, "field") < 0 ||
            get_str(d, h, "created_by", false, &out.history[k].created_by) < 0 ||
            get_str(d, h, "comment", false, &out.history[k].comment) < 0 ||
            get_bool(d, h, "empty_layer", &out.history[k].empty_layer) < 0)
            rc = -1;
    }
    if (rc == 0)
        ir_graph_add_output(d->g, &out);
    free(out.history);
    free(out.config);
    return rc;
}

/* Orders the file's vertices so inputs come first (a depth-first walk in
 * file order, so an already ordered file keeps its order). Iterative: a
 * million-vertex chain must not overflow the stack. */
static int topo_sort(struct dec *d, const struct fvert *fv, size_t n, const uint32_t *edges,
                     uint32_t *order)
{
    unsigned char *state = kn_calloc(n ? n : 1, 1); /* 0 new, 1 on the stack, 2 done */
    struct frame {
        uint32_t v, k;
    } *stack = kn_malloc((n ? n : 1) * sizeof(*stack));
    size_t norder = 0;
    int rc = 0;
    for (size_t r = 0; r < n && rc == 0; r++) {
        if (state[r])
            continue;
        size_t sp = 0;
        stack[sp++] = (struct frame){(uint32_t)r, 0};
        state[r] = 1;
        while (sp) {
            struct frame *f = &stack[sp - 1];
            if (f->k < fv[f->v].n) {
                uint32_t w = edges[fv[f->v].first + f->k++];
                if (state[w] == 1) {
                    d->where[0] = '\0';
                    rc = dec_fail(d, "cycle through vertex %s", fv[w].digest);
                    break;
                }
                if (state[w] == 0) {
                    state[w] = 1;
                    stack[sp++] = (struct frame){w, 0};
                }
            } else {
                state[f->v] = 2;
                order[norder++] = f->v;
                sp--;
            }
        }
    }
    free(stack);
    free(state);
    return rc;
}

static int load_vertices(struct dec *d, json_t *vs)
{
    size_t n = json_array_size(vs);
    struct fvert *fv = kn_calloc(n ? n : 1, sizeof(*fv));
    struct dkey *keys = kn_calloc(n ? n : 1, sizeof(*keys));
    uint32_t *order = kn_calloc(n ? n : 1, sizeof(*order));
    uint32_t *gidx = kn_calloc(n ? n : 1, sizeof(*gidx));
    KN_VEC(uint32_t) edges = {0};
    int rc = -1;

    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(vs, i);
        snprintf(d->where, sizeof(d->where), "vertex %zu", i);
        if (!json_is_object(o)) {
            dec_fail(d, "not an object");
            goto out;
        }
        json_t *dg = json_object_get(o, "digest");
        if (!dg) {
            dec_fail(d, "missing 'digest'");
            goto out;
        }
        if (!json_is_string(dg) || !kn_digest_valid(json_string_value(dg))) {
            dec_fail(d, "'digest' is not a sha256 digest");
            goto out;
        }
        fv[i].obj = o;
        fv[i].digest = json_string_value(dg);
        keys[i] = (struct dkey){fv[i].digest, (uint32_t)i};
    }
    qsort(keys, n, sizeof(*keys), dkey_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i - 1].digest, keys[i].digest) == 0) {
            d->where[0] = '\0';
            dec_fail(d, "vertex %s is listed twice", keys[i].digest);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *ins;
        snprintf(d->where, sizeof(d->where), "vertex %s", fv[i].digest);
        d->path[0] = '\0';
        if (get_array(d, fv[i].obj, "inputs", &ins) < 0)
            goto out;
        fv[i].first = (uint32_t)edges.n;
        fv[i].n = ins ? (uint32_t)json_array_size(ins) : 0;
        for (uint32_t k = 0; k < fv[i].n; k++) {
            json_t *in = json_array_get(ins, k);
            if (!json_is_string(in)) {
                dec_fail(d, "'inputs[%u]' is not a string", k);
                goto out;
            }
            int64_t w = dkey_find(keys, n, json_string_value(in));
            if (w < 0) {
                d->where[0] = '\0';
                dec_fail(d, "vertex %s refers to unknown input %.80s", fv[i].digest,
                         json_string_value(in));
                goto out;
            }
            kn_vec_push(&edges, (uint32_t)w);
        }
    }
    if (topo_sort(d, fv, n, edges.v, order) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const struct fvert *f = &fv[order[i]];
        snprintf(d->where, sizeof(d->where), "vertex %s", f->digest);
        int idx = vertex_from_json(d, f, order[i], edges.v, gidx);
        if (idx < 0)
            goto out;
        gidx[order[i]] = (uint32_t)idx;
    }
    rc = 0;
out:
    free(edges.v);
    free(gidx);
    free(order);
    free(keys);
    free(fv);
    return rc;
}

struct ir_graph *ir_graph_from_json(const char *data, size_t len, const char *name,
                                    struct kn_error **err)
{
    static const char *const keys[] = {"version", "vertices", "outputs", "notes", NULL};
    struct dec d = {.name = name ? name : "-", .err = err};
    if (len > IR_JSON_MAX_SIZE) {
        kn_err_set(err, KN_E_PARSE, "graph '%s': larger than %d bytes", d.name, IR_JSON_MAX_SIZE);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        kn_err_set(err, KN_E_PARSE, "graph '%s': invalid JSON at line %d:%d: %s", d.name, jerr.line,
                   jerr.column, jerr.text);
        return NULL;
    }
    d.g = ir_graph_new();
    json_t *vs, *os, *ver;
    long long version;
    char **notes;
    size_t nnotes;
    if (!json_is_object(root)) {
        dec_fail(&d, "not a JSON object");
        goto fail;
    }
    ver = json_object_get(root, "version");
    if (!ver) {
        dec_fail(&d, "missing 'version'");
        goto fail;
    }
    if (!json_is_integer(ver)) {
        dec_fail(&d, "'version' is not an integer");
        goto fail;
    }
    version = json_integer_value(ver);
    if (version != IR_JSON_VERSION) {
        dec_fail(&d, "unsupported version %lld (this kiln reads version %d)", version,
                 IR_JSON_VERSION);
        goto fail;
    }
    if (check_keys(&d, root, keys, "field") < 0 || get_array(&d, root, "vertices", &vs) < 0 ||
        get_array(&d, root, "outputs", &os) < 0 || get_strv(&d, root, "notes", &notes, &nnotes) < 0)
        goto fail;
    if (!vs) {
        dec_fail(&d, "missing 'vertices'");
        goto fail;
    }
    if (json_array_size(vs) > IR_JSON_MAX_VERTICES) {
        dec_fail(&d, "more than %d vertices", IR_JSON_MAX_VERTICES);
        goto fail;
    }
    if (load_vertices(&d, vs) < 0)
        goto fail;
    for (size_t i = 0; os && i < json_array_size(os); i++)
        if (output_from_json(&d, json_array_get(os, i), i) < 0)
            goto fail;
    for (size_t i = 0; i < nnotes; i++)
        ir_graph_add_note(d.g, "%s", notes[i]);
    json_decref(root);
    return d.g;
fail:
    json_decref(root);
    ir_graph_free(d.g);
    return NULL;
}
