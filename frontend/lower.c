/*
 * The Dockerfile frontend's lowering driver: from a parsed Dockerfile to an
 * ir_graph with one output, the target stage.
 *
 * It splits the instructions into stages, computes the global ARG scope
 * (ARGs before the first FROM, --build-arg overrides, the automatic
 * TARGETPLATFORM & co.), picks the target and lowers only the stages it
 * needs, depth first (a stage may only use earlier stages, so recursion
 * terminates and the graph stays topologically ordered). Each stage starts
 * from its base's config, asked of the resolver; without one it starts empty
 * and the graph carries a note. The per-instruction work is in
 * lower_instr.c, --mount in lower_mount.c, the config JSON in
 * lower_config.c.
 */
#include "frontend/internal.h"
#include "ir/base/pattern.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

/* ---- small helpers ------------------------------------------------------ */

char *lw_strdup(struct lw *lw, const char *s)
{
    return kn_arena_strdup(&lw->arena, s);
}

char *lw_printf(struct lw *lw, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = kn_vasprintf(fmt, ap);
    va_end(ap);
    char *s = kn_arena_strdup(&lw->arena, tmp);
    free(tmp);
    return s;
}

static const char *lw_line(struct lw *lw, int line)
{
    if (line < 1 || (size_t)line > lw->df->nlines || !lw->df->lines)
        return NULL;
    return lw->df->lines[line - 1];
}

int lw_err_at(struct lw *lw, struct kn_error **err, const struct fe_instr *in, int col)
{
    if (!err || !*err)
        return -1;
    if (!(*err)->loc.line && in) {
        kn_err_at(*err, lw->file, in->pos.line, col > 0 ? col : in->pos.col);
        const char *l = lw_line(lw, in->pos.line);
        if (l && !(*err)->detail)
            kn_err_set_detail(*err, l);
    }
    return -1;
}

int lw_err(struct lw *lw, struct kn_error **err, const struct fe_instr *in, int col, int code,
           const char *fmt, ...)
{
    if (!err || *err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    *err = kn_err_newv(code, fmt, ap);
    va_end(ap);
    if (in)
        return lw_err_at(lw, err, in, col);
    kn_err_at(*err, lw->file, 1, 1);
    return -1;
}

const char *lw_env_get(const lw_strvec *env, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = env->n; i-- > 0;) {
        const char *e = env->v[i];
        if (strncmp(e, key, kl) == 0 && e[kl] == '=')
            return e + kl + 1;
    }
    return NULL;
}

void lw_env_set(struct lw *lw, lw_strvec *env, const char *key, const char *value)
{
    size_t kl = strlen(key);
    char *kv = lw_printf(lw, "%s=%s", key, value);
    for (size_t i = 0; i < env->n; i++) {
        if (strncmp(env->v[i], key, kl) == 0 && env->v[i][kl] == '=') {
            env->v[i] = kv;
            return;
        }
    }
    kn_vec_push(env, kv);
}

static const struct lw_kv *kv_find(const lw_kvvec *v, const char *key)
{
    for (size_t i = v->n; i-- > 0;)
        if (strcmp(v->v[i].key, key) == 0)
            return &v->v[i];
    return NULL;
}

/* ---- variable scopes ----------------------------------------------------- */

static const char *scope_lookup(void *ctx, const char *name)
{
    struct lw_scope *sc = ctx;
    if (sc->st) {
        /* ENV always wins over an ARG of the same name */
        const char *v = lw_env_get(&sc->st->img.env, name);
        if (v)
            return v;
        const struct lw_kv *kv = kv_find(&sc->st->args, name);
        return kv ? kv->value : NULL;
    }
    const struct lw_kv *kv = kv_find(&sc->lw->global_args, name);
    if (kv)
        return kv->value;
    kv = kv_find(&sc->lw->auto_args, name);
    return kv ? kv->value : NULL;
}

/* UndefinedVar (in a stage) and UndefinedArgInFrom (FROM's global scope),
 * once per line and name; not in a stage whose base's ENV is unknown. */
static void scope_unset(void *ctx, const char *name)
{
    struct lw_scope *sc = ctx;
    struct lw *lw = sc->lw;
    if (!sc->in || !lw->checks || (sc->st && sc->st->img.env_unknown))
        return;
    /* an ARG declared without a value is declared */
    if (kv_find(sc->st ? &sc->st->args : &lw->global_args, name))
        return;
    char *key = lw_printf(lw, "%d:%s", sc->in->pos.line, name);
    for (size_t i = 0; i < lw->undefined_seen.n; i++)
        if (strcmp(lw->undefined_seen.v[i], key) == 0)
            return;
    kn_vec_push(&lw->undefined_seen, key);
    if (sc->in->kind == FE_FROM)
        fe_checks_warn(lw->checks, sc->in->pos.line, "UndefinedArgInFrom",
                       "FROM argument '%s' is not declared", name);
    else
        fe_checks_warn(lw->checks, sc->in->pos.line, "UndefinedVar",
                       "Usage of undefined variable '$%s'", name);
}

struct fe_vars lw_vars(struct lw_scope *scope)
{
    struct fe_vars v = {scope, scope_lookup, scope_unset};
    return v;
}

int lw_expand(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, const char *word,
              char **out, struct kn_error **err)
{
    struct lw_scope sc = {lw, st, in};
    struct fe_vars vars = lw_vars(&sc);
    char *res = NULL;
    if (fe_expand_word(word, lw->df->escape, &vars, &res, err) < 0)
        return lw_err_at(lw, err, in, 0);
    *out = lw_strdup(lw, res);
    free(res);
    return 0;
}

int lw_expand_words(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, const char *text,
                    lw_strvec *out, struct kn_error **err)
{
    struct lw_scope sc = {lw, st, in};
    struct fe_vars vars = lw_vars(&sc);
    struct kn_strv words = {0};
    if (fe_expand_words(text, lw->df->escape, &vars, &words, err) < 0) {
        kn_strv_release(&words);
        return lw_err_at(lw, err, in, 0);
    }
    for (size_t i = 0; i < words.n; i++)
        kn_vec_push(out, lw_strdup(lw, words.v[i]));
    kn_strv_release(&words);
    return 0;
}

int lw_flag(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, const char *name,
            char **out, struct kn_error **err)
{
    const struct fe_flag *f = fe_instr_flag(in, name);
    *out = NULL;
    if (!f)
        return 0;
    if (!f->has_value) {
        *out = lw_strdup(lw, "");
        return 0;
    }
    if (lw_expand(lw, st, in, f->value, out, err) < 0)
        return lw_err_at(lw, err, in, f->col);
    return 0;
}

/* ---- platforms ------------------------------------------------------------ */

static void host_platform(struct lw *lw, struct ir_platform *p)
{
    struct utsname u;
    const char *arch = "amd64";
    const char *variant = NULL;
    if (uname(&u) == 0) {
        if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0) {
            arch = "arm64";
        } else if (kn_str_startswith(u.machine, "armv7")) {
            arch = "arm";
            variant = "v7";
        } else if (kn_str_startswith(u.machine, "armv6")) {
            arch = "arm";
            variant = "v6";
        } else if (strcmp(u.machine, "i686") == 0 || strcmp(u.machine, "i386") == 0) {
            arch = "386";
        } else if (strcmp(u.machine, "ppc64le") == 0 || strcmp(u.machine, "s390x") == 0 ||
                   strcmp(u.machine, "riscv64") == 0) {
            arch = u.machine;
        }
    }
    p->os = lw_strdup(lw, "linux");
    p->arch = lw_strdup(lw, arch);
    p->variant = variant ? lw_strdup(lw, variant) : NULL;
}

static bool platform_word_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    return true;
}

int lw_parse_platform(struct lw *lw, const char *s, struct ir_platform *out)
{
    const char *parts[3];
    size_t lens[3];
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 3 || !platform_word_ok(p, len))
            return -1;
        parts[n] = p;
        lens[n++] = len;
        if (!slash)
            break;
        p = slash + 1;
    }
    if (n < 2)
        return -1;
    char *os = kn_arena_strndup(&lw->arena, parts[0], lens[0]);
    char *arch = kn_arena_strndup(&lw->arena, parts[1], lens[1]);
    for (char *c = os; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    for (char *c = arch; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    out->os = os;
    out->arch = arch;
    out->variant = n == 3 ? kn_arena_strndup(&lw->arena, parts[2], lens[2]) : NULL;
    return 0;
}

char *lw_platform_string(struct lw *lw, const struct ir_platform *p)
{
    if (p->variant && *p->variant)
        return lw_printf(lw, "%s/%s/%s", p->os, p->arch, p->variant);
    return lw_printf(lw, "%s/%s", p->os, p->arch);
}

static void add_platform_args(struct lw *lw, const char *prefix, const struct ir_platform *p)
{
    struct {
        const char *suffix;
        const char *value;
    } a[] = {
        {"PLATFORM", lw_platform_string(lw, p)},
        {"OS", p->os},
        {"ARCH", p->arch},
        {"VARIANT", p->variant ? p->variant : ""},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(a); i++) {
        struct lw_kv kv = {lw_printf(lw, "%s%s", prefix, a[i].suffix), lw_strdup(lw, a[i].value)};
        kn_vec_push(&lw->auto_args, kv);
    }
}

/* ---- image references ------------------------------------------------------ */

static bool ref_component_ok(const char *s, size_t n)
{
    /* [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
    if (n == 0 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return false;
    size_t i = 0;
    while (i < n) {
        if (islower((unsigned char)s[i]) || isdigit((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t sep = i;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == n || i == sep || !(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i])))
            return false;
    }
    return true;
}

const char *lw_check_ref(const char *ref)
{
    if (!*ref)
        return "invalid reference format";
    if (strlen(ref) > 4096)
        return "invalid reference format: reference too long";
    const char *at = strchr(ref, '@');
    size_t namelen = at ? (size_t)(at - ref) : strlen(ref);
    if (at) {
        const char *d = at + 1;
        const char *colon = strchr(d, ':');
        if (!colon || colon == d)
            return "invalid reference format: bad digest";
        for (const char *c = d; c < colon; c++)
            if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && !strchr("+._-", *c))
                return "invalid reference format: bad digest";
        size_t hl = strlen(colon + 1);
        if (hl < 32)
            return "invalid reference format: bad digest";
        for (const char *c = colon + 1; *c; c++)
            if (!isxdigit((unsigned char)*c) || isupper((unsigned char)*c))
                return "invalid reference format: bad digest";
    }
    /* split off the tag: the last ':' after the last '/' */
    const char *lastslash = NULL;
    for (const char *c = ref; c < ref + namelen; c++)
        if (*c == '/')
            lastslash = c;
    const char *tag = NULL;
    for (const char *c = lastslash ? lastslash : ref; c < ref + namelen; c++)
        if (*c == ':')
            tag = c;
    size_t repolen = tag ? (size_t)(tag - ref) : namelen;
    if (tag) {
        size_t tl = namelen - repolen - 1;
        const char *t = tag + 1;
        if (tl == 0 || tl > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
            return "invalid reference format: bad tag";
        for (size_t i = 1; i < tl; i++)
            if (!isalnum((unsigned char)t[i]) && !strchr("_.-", t[i]))
                return "invalid reference format: bad tag";
    }
    if (repolen == 0)
        return "invalid reference format";
    /* components; the first may be a registry domain */
    const char *p = ref;
    const char *end = ref + repolen;
    const char *slash = memchr(p, '/', repolen);
    if (slash) {
        size_t dl = (size_t)(slash - p);
        bool domain =
            memchr(p, '.', dl) || memchr(p, ':', dl) || (dl == 9 && memcmp(p, "localhost", 9) == 0);
        for (size_t i = 0; i < dl; i++)
            if (isupper((unsigned char)p[i]))
                domain = true;
        if (domain) {
            for (size_t i = 0; i < dl; i++)
                if (!isalnum((unsigned char)p[i]) && !strchr(".-:[]", p[i]))
                    return "invalid reference format: bad registry host";
            p = slash + 1;
        }
    }
    while (p < end) {
        const char *s = memchr(p, '/', (size_t)(end - p));
        size_t n = s ? (size_t)(s - p) : (size_t)(end - p);
        for (size_t i = 0; i < n; i++)
            if (isupper((unsigned char)p[i]))
                return "invalid reference format: repository name must be lowercase";
        if (!ref_component_ok(p, n))
            return "invalid reference format";
        if (!s)
            break;
        p = s + 1;
        if (p == end)
            return "invalid reference format";
    }
    return NULL;
}

/* ---- vertices ------------------------------------------------------------- */

char *lw_instr_text(struct lw *lw, const struct fe_instr *in)
{
    const char *t = in->text ? in->text : "";
    while (*t == ' ' || *t == '\t')
        t++;
    const char *kw = fe_kind_name(in->kind);
    size_t kl = strlen(kw);
    if (strncasecmp(t, kw, kl) == 0 && (t[kl] == 0 || isspace((unsigned char)t[kl])))
        t += kl;
    while (*t == ' ' || *t == '\t')
        t++;
    return *t ? lw_printf(lw, "%s %s", kw, t) : lw_strdup(lw, kw);
}

char *lw_progress_name(struct lw *lw, struct lw_stage *st, const char *text)
{
    if (!st)
        return lw_strdup(lw, text);
    if (st->in_onbuild)
        return st->name ? lw_printf(lw, "[%s] ONBUILD %s", st->name, text)
                        : lw_printf(lw, "ONBUILD %s", text);
    st->cmd_index++;
    int width = 1 + (int)log10((double)(st->cmd_total > 0 ? st->cmd_total : 1));
    if (st->name)
        return lw_printf(lw, "[%s %*d/%d] %s", st->name, width, st->cmd_index, st->cmd_total, text);
    return lw_printf(lw, "[%*d/%d] %s", width, st->cmd_index, st->cmd_total, text);
}

int64_t lw_add_vertex(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                      struct ir_vertex *v, const char *name, struct kn_error **err)
{
    if (in) {
        v->loc.file = ir_graph_strdup(lw->g, lw->file);
        v->loc.line = in->pos.line;
        v->loc.col = in->pos.col;
        v->loc.end_line = in->pos.end_line ? in->pos.end_line : in->pos.line;
    }
    if (name)
        v->name = ir_graph_strdup(lw->g, name);
    if (st)
        v->stage = ir_graph_strdup(lw->g, st->label);
    int64_t id = ir_graph_add(lw->g, v, err);
    if (id < 0)
        return lw_err_at(lw, err, in, 0);
    return id;
}

int64_t lw_scratch_vertex(struct lw *lw, struct kn_error **err)
{
    if (lw->scratch_vertex < 0) {
        struct ir_vertex v = {0};
        v.op = IR_SOURCE_SCRATCH;
        lw->scratch_vertex = lw_add_vertex(lw, NULL, NULL, &v, NULL, err);
    }
    return lw->scratch_vertex;
}

int64_t lw_context_vertex(struct lw *lw, struct kn_error **err)
{
    if (lw->context_vertex >= 0)
        return lw->context_vertex;
    struct ir_vertex v = {0};
    v.op = IR_SOURCE_LOCAL;
    v.u.local.name = ir_graph_strdup(lw->g, "context");
    if (lw->req->dockerignore && lw->req->dockerignore_len) {
        struct kn_strv pats = {0};
        fe_dockerignore_parse(lw->req->dockerignore, lw->req->dockerignore_len, &pats);
        v.u.local.exclude = ir_graph_strv(lw->g, pats.v, pats.n);
        v.u.local.nexclude = pats.n;
        kn_strv_release(&pats);
    }
    v.name = ir_graph_strdup(lw->g, "[internal] load build context");
    lw->context_vertex = ir_graph_add(lw->g, &v, err);
    return lw->context_vertex;
}

bool lw_context_ignores(struct lw *lw, const char *path)
{
    if (!lw->ignore_done) {
        lw->ignore_done = true;
        if (lw->req->dockerignore && lw->req->dockerignore_len) {
            struct kn_strv pats = {0};
            fe_dockerignore_parse(lw->req->dockerignore, lw->req->dockerignore_len, &pats);
            struct kn_error *e = NULL;
            lw->ignore = kn_patterns_new(pats.v, pats.n, &e);
            kn_err_free(e); /* a bad pattern fails the COPY itself, with its message */
            kn_strv_release(&pats);
        }
    }
    return lw->ignore && kn_patterns_match(lw->ignore, path);
}

void lw_history(struct lw *lw, struct lw_stage *st, const char *created_by, bool empty_layer)
{
    struct ir_history h = {lw_strdup(lw, created_by), (char *)LW_HISTORY_COMMENT, empty_layer};
    kn_vec_push(&st->history, h);
}

char *lw_quote_vec(struct lw *lw, char *const *v, size_t n)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_addc(&b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            kn_buf_addc(&b, ' ');
        kn_buf_addc(&b, '"');
        for (const unsigned char *c = (const unsigned char *)v[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                kn_buf_addf(&b, "\\%c", *c);
            else if (*c == '\n')
                kn_buf_adds(&b, "\\n");
            else if (*c == '\t')
                kn_buf_adds(&b, "\\t");
            else if (*c < 0x20 || *c == 0x7f)
                kn_buf_addf(&b, "\\x%02x", *c);
            else
                kn_buf_addc(&b, (char)*c);
        }
        kn_buf_addc(&b, '"');
    }
    kn_buf_addc(&b, ']');
    char *s = lw_strdup(lw, b.data);
    kn_buf_release(&b);
    return s;
}

/* ---- stages ---------------------------------------------------------------- */

static int lower_stage(struct lw *lw, struct lw_stage *st, struct kn_error **err);

static struct lw_stage *stage_by_name(struct lw *lw, const char *name)
{
    for (size_t i = 0; i < lw->nstages; i++)
        if (lw->stages[i].name && strcasecmp(lw->stages[i].name, name) == 0)
            return &lw->stages[i];
    return NULL;
}

static struct lw_stage *stage_by_index(struct lw *lw, const char *s)
{
    if (!*s || strlen(s) > 9)
        return NULL;
    for (const char *c = s; *c; c++)
        if (!isdigit((unsigned char)*c))
            return NULL;
    size_t i = (size_t)strtoul(s, NULL, 10);
    return i < lw->nstages ? &lw->stages[i] : NULL;
}

static const struct fe_named_context *named_context(struct lw *lw, const char *name)
{
    for (size_t i = 0; i < lw->req->ncontexts; i++)
        if (lw->req->contexts[i].name && strcmp(lw->req->contexts[i].name, name) == 0)
            return &lw->req->contexts[i];
    return NULL;
}

/* oci-layout://PATH[:TAG] is passed to the resolver and the executor as the
 * image reference "oci-layout://PATH:TAG" (TAG defaults to "latest"; a
 * "@sha256:..." suffix is kept as is instead). The ':' that starts the tag
 * is the last one after the last '/'. */
static char *oci_layout_ref(struct lw *lw, const char *src)
{
    const char *path = src + strlen("oci-layout://");
    if (strchr(path, '@'))
        return lw_strdup(lw, src);
    const char *slash = strrchr(path, '/');
    const char *colon = strrchr(slash ? slash : path, ':');
    if (colon)
        return lw_strdup(lw, src);
    return lw_printf(lw, "%s:latest", src);
}

static int64_t image_vertex(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                            const char *ref, const char *name, struct kn_error **err)
{
    struct ir_vertex v = {0};
    v.op = IR_SOURCE_IMAGE;
    v.u.image.ref = ir_graph_strdup(lw->g, ref);
    const struct ir_platform *p = st ? &st->platform : &lw->target_platform;
    v.u.image.platform.os = ir_graph_strdup(lw->g, p->os);
    v.u.image.platform.arch = ir_graph_strdup(lw->g, p->arch);
    v.u.image.platform.variant = p->variant ? ir_graph_strdup(lw->g, p->variant) : NULL;
    return lw_add_vertex(lw, st, in, &v, name ? name : lw_printf(lw, "FROM %s", ref), err);
}

int lw_resolve_source(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, int col,
                      const char *name, bool for_from, struct lw_source *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    out->vertex = -1;
    const struct fe_named_context *nc = named_context(lw, name);
    if (nc) {
        const char *src = nc->src ? nc->src : "";
        if (kn_str_startswith(src, "docker-image://")) {
            out->image_ref = lw_strdup(lw, src + strlen("docker-image://"));
            const char *bad = lw_check_ref(out->image_ref);
            if (bad)
                return lw_err(lw, err, in, col, KN_E_PARSE, "%s: '%s' (build context '%s')", bad,
                              out->image_ref, name);
        } else if (kn_str_startswith(src, "oci-layout://")) {
            out->image_ref = oci_layout_ref(lw, src);
        } else if (strstr(src, "://")) {
            return lw_err(lw, err, in, col, KN_E_USAGE,
                          "unsupported build context source '%s' for '%s'", src, name);
        } else {
            struct ir_vertex v = {0};
            v.op = IR_SOURCE_LOCAL;
            v.u.local.name = ir_graph_strdup(lw->g, name);
            out->vertex = lw_add_vertex(
                lw, NULL, in, &v, lw_printf(lw, "[internal] load build context %s", name), err);
            return out->vertex < 0 ? -1 : 0;
        }
        if (!for_from) {
            out->vertex = image_vertex(lw, st, in, out->image_ref, NULL, err);
            return out->vertex < 0 ? -1 : 0;
        }
        return 0;
    }
    struct lw_stage *ref = stage_by_name(lw, name);
    if (!ref && !for_from)
        ref = stage_by_index(lw, name);
    if (ref) {
        if (st && ref->index >= st->index)
            return lw_err(lw, err, in, col, KN_E_PARSE,
                          "circular dependency detected on stage '%s'", ref->label);
        if (ref->state == LW_STAGE_NEW) {
            if (lw->depth >= LW_MAX_STAGE_DEPTH)
                return lw_err(lw, err, in, col, KN_E_UNSAFE,
                              "stage '%s' is more than %d stages deep in dependencies", ref->label,
                              LW_MAX_STAGE_DEPTH);
            lw->depth++;
            int rc = lower_stage(lw, ref, err);
            lw->depth--;
            if (rc < 0)
                return -1;
        }
        if (ref->state != LW_STAGE_DONE)
            return lw_err(lw, err, in, col, KN_E_PARSE,
                          "circular dependency detected on stage '%s'", ref->label);
        out->stage = ref;
        out->vertex = ref->root;
        return 0;
    }
    if (strcmp(name, "scratch") == 0) {
        out->scratch = true;
        out->vertex = lw_scratch_vertex(lw, err);
        return out->vertex < 0 ? -1 : 0;
    }
    const char *bad = lw_check_ref(name);
    if (bad)
        return lw_err(lw, err, in, col, KN_E_PARSE, "%s: '%s'", bad, name);
    out->image_ref = lw_strdup(lw, name);
    if (!for_from) {
        out->vertex = image_vertex(lw, st, in, name, NULL, err);
        return out->vertex < 0 ? -1 : 0;
    }
    return 0;
}

static void add_unresolved(struct lw *lw, const char *ref)
{
    for (size_t i = 0; i < lw->unresolved.n; i++)
        if (strcmp(lw->unresolved.v[i], ref) == 0)
            return;
    kn_vec_push(&lw->unresolved, lw_strdup(lw, ref));
}

/* A resolver that answers 0 with *config_json == NULL cannot resolve that
 * kind of reference (kiln graph's OCI-layout resolver): the stage starts
 * with an empty config and the graph says so, as without a resolver. */
static int resolve_base_config(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                               const char *ref, struct kn_error **err)
{
    const struct fe_resolver *r = lw->req->resolver;
    if (!r || !r->resolve) {
        add_unresolved(lw, ref);
        st->img.env_unknown = true;
        return 0;
    }
    char *json = NULL;
    char digest[KN_DIGEST_SIZE] = "";
    if (r->resolve(r->ctx, ref, &st->platform, &json, digest, err) < 0) {
        kn_err_wrap(err, "cannot resolve base image '%s'", ref);
        return lw_err_at(lw, err, in, 0);
    }
    if (!json) {
        add_unresolved(lw, ref);
        st->img.env_unknown = true;
        return 0;
    }
    int rc = lw_image_from_json(lw, json, &st->img, err);
    free(json);
    if (rc < 0) {
        kn_err_wrap(err, "config of base image '%s'", ref);
        return lw_err_at(lw, err, in, 0);
    }
    return 0;
}

static int run_onbuild(struct lw *lw, struct lw_stage *st, const struct fe_instr *from,
                       struct kn_error **err)
{
    if (st->img.onbuild.n == 0)
        return 0;
    lw_strvec triggers = st->img.onbuild;
    memset(&st->img.onbuild, 0, sizeof(st->img.onbuild));
    int rc = 0;
    st->in_onbuild = true;
    for (size_t i = 0; i < triggers.n && rc == 0; i++) {
        struct fe_instr *sub = fe_parse_line(lw->df, triggers.v[i], err);
        if (!sub) {
            kn_err_wrap(err, "ONBUILD trigger '%s' of the base image", triggers.v[i]);
            rc = lw_err_at(lw, err, from, 0);
            break;
        }
        if (sub->kind == FE_ONBUILD || sub->kind == FE_FROM || sub->kind == FE_MAINTAINER) {
            rc = lw_err(lw, err, from, 0, KN_E_PARSE, "%s isn't allowed as an ONBUILD trigger",
                        fe_kind_name(sub->kind));
            break;
        }
        sub->pos = from->pos;
        rc = lw_instr(lw, st, sub, err);
    }
    st->in_onbuild = false;
    free(triggers.v);
    return rc;
}

static int lower_stage(struct lw *lw, struct lw_stage *st, struct kn_error **err)
{
    st->state = LW_STAGE_BUSY;
    const struct fe_instr *in = &lw->df->instrs[st->from];
    if (in->nargs < 1)
        return lw_err(lw, err, in, 0, KN_E_PARSE, "FROM requires at least one argument");

    /* FROM is expanded with the global scope only */
    char *plat = NULL;
    if (lw_flag(lw, NULL, in, "platform", &plat, err) < 0)
        return -1;
    st->platform = lw->target_platform;
    if (plat) {
        const struct fe_flag *f = fe_instr_flag(in, "platform");
        if (!*plat || lw_parse_platform(lw, plat, &st->platform) < 0)
            return lw_err(lw, err, in, f ? f->col : 0, KN_E_PARSE, "invalid platform '%s'", plat);
    }
    char *base = NULL;
    if (lw_expand(lw, NULL, in, in->args[0], &base, err) < 0)
        return -1;
    if (!base || !*base)
        return lw_err(lw, err, in, 0, KN_E_PARSE, "base name (%s) should not be blank",
                      in->args[0]);

    struct lw_source src;
    if (lw_resolve_source(lw, st, in, 0, base, true, &src, err) < 0)
        return -1;
    if (src.stage) {
        lw_image_copy(&st->img, &src.stage->img);
        for (size_t i = 0; i < src.stage->history.n; i++)
            kn_vec_push(&st->history, src.stage->history.v[i]);
        st->base_ref = src.stage->base_ref;
        st->root = src.stage->root;
        if (!plat)
            st->platform = src.stage->platform;
    } else if (src.image_ref) {
        const char *name = lw_progress_name(lw, st, lw_printf(lw, "FROM %s", src.image_ref));
        st->root = image_vertex(lw, st, in, src.image_ref, name, err);
        if (st->root < 0)
            return -1;
        st->base_ref = src.image_ref;
        if (resolve_base_config(lw, st, in, src.image_ref, err) < 0)
            return -1;
    } else {
        st->root = src.vertex;
    }
    if (!src.image_ref)
        st->cmd_index++; /* FROM is step 1 whatever the base */

    if (run_onbuild(lw, st, in, err) < 0)
        return -1;
    for (size_t i = st->from + 1; i < st->end; i++)
        if (lw_instr(lw, st, &lw->df->instrs[i], err) < 0)
            return -1;
    st->state = LW_STAGE_DONE;
    return 0;
}

/* ---- the driver -------------------------------------------------------- */

static bool stage_name_ok(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return false;
    for (const char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_.", *c))
            return false;
    return true;
}

static int split_stages(struct lw *lw, struct kn_error **err)
{
    struct fe_dockerfile *df = lw->df;
    size_t n = 0;
    for (size_t i = 0; i < df->ninstrs; i++)
        if (df->instrs[i].kind == FE_FROM)
            n++;
    lw->stages = kn_calloc(n ? n : 1, sizeof(*lw->stages));
    size_t k = 0;
    for (size_t i = 0; i < df->ninstrs; i++) {
        const struct fe_instr *in = &df->instrs[i];
        if (in->kind != FE_FROM) {
            if (k == 0 && in->kind != FE_ARG)
                return lw_err(lw, err, in, 0, KN_E_PARSE,
                              "%s before the first FROM: only ARG may come before FROM",
                              fe_kind_name(in->kind));
            if (k > 0) {
                lw->stages[k - 1].end = i + 1;
                if (in->kind == FE_RUN || in->kind == FE_COPY || in->kind == FE_ADD ||
                    in->kind == FE_WORKDIR)
                    lw->stages[k - 1].cmd_total++;
            }
            continue;
        }
        struct lw_stage *st = &lw->stages[k];
        st->index = k;
        st->from = i;
        st->end = i + 1;
        st->root = -1;
        st->cmd_total = 1;
        if (in->nargs == 3 && strcasecmp(in->args[1], "as") == 0) {
            char *name = lw_strdup(lw, in->args[2]);
            for (char *c = name; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!stage_name_ok(name))
                return lw_err(lw, err, in, 0, KN_E_PARSE,
                              "invalid name for build stage '%s': it must start with a letter "
                              "and contain only letters, digits, '-', '_' and '.'",
                              in->args[2]);
            if (stage_by_name(lw, name))
                return lw_err(lw, err, in, 0, KN_E_PARSE, "duplicate stage name '%s'", name);
            st->name = name;
            st->label = name;
        } else if (in->nargs != 1) {
            return lw_err(lw, err, in, 0, KN_E_PARSE,
                          "FROM requires either one or three arguments (IMAGE [AS NAME])");
        } else {
            st->label = lw_printf(lw, "%zu", k);
        }
        k++;
        lw->nstages = k;
    }
    if (k == 0) {
        const struct fe_instr *first = df->ninstrs ? &df->instrs[0] : NULL;
        return lw_err(lw, err, first, 0, KN_E_PARSE, "no FROM instruction: nothing to build");
    }
    return 0;
}

static struct lw_buildarg *build_arg(struct lw *lw, const char *key)
{
    for (size_t i = lw->build_args.n; i-- > 0;)
        if (strcmp(lw->build_args.v[i].key, key) == 0 && lw->build_args.v[i].value)
            return &lw->build_args.v[i];
    return NULL;
}

const char *lw_arg_override(struct lw *lw, const char *key)
{
    struct lw_buildarg *b = build_arg(lw, key);
    if (!b)
        return NULL;
    b->used = true;
    return b->value;
}

static int global_args(struct lw *lw, struct kn_error **err)
{
    struct fe_dockerfile *df = lw->df;
    for (size_t i = 0; i < df->ninstrs && df->instrs[i].kind == FE_ARG; i++) {
        const struct fe_instr *in = &df->instrs[i];
        for (size_t j = 0; j < in->nkvs; j++) {
            const struct fe_kv *kv = &in->kvs[j];
            struct lw_kv a = {lw_strdup(lw, kv->key), NULL};
            const char *o = lw_arg_override(lw, kv->key);
            if (o)
                a.value = lw_strdup(lw, o);
            else if (kv->has_value && lw_expand(lw, NULL, in, kv->value, &a.value, err) < 0)
                return -1;
            kn_vec_push(&lw->global_args, a);
        }
    }
    return 0;
}

static void parse_build_args(struct lw *lw)
{
    for (size_t i = 0; i < lw->req->nbuild_args; i++) {
        const char *s = lw->req->build_args[i];
        const char *eq = strchr(s, '=');
        struct lw_buildarg b = {0};
        if (eq) {
            b.key = kn_arena_strndup(&lw->arena, s, (size_t)(eq - s));
            b.value = lw_strdup(lw, eq + 1);
        } else {
            b.key = lw_strdup(lw, s);
            const char *env = getenv(s);
            b.value = env ? lw_strdup(lw, env) : NULL;
        }
        kn_vec_push(&lw->build_args, b);
    }
}

bool lw_is_proxy_arg(const char *key)
{
    static const char *const names[] = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                        "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                        "ALL_PROXY",  "all_proxy"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(names); i++)
        if (strcmp(key, names[i]) == 0)
            return true;
    return false;
}

static void stage_list(struct lw *lw, struct kn_buf *b)
{
    for (size_t i = 0; i < lw->nstages; i++)
        kn_buf_addf(b, "%s%s", i ? ", " : "", lw->stages[i].label);
}

static int lower_all(struct lw *lw, struct kn_error **err)
{
    lw->context_vertex = -1;
    lw->scratch_vertex = -1;
    host_platform(lw, &lw->build_platform);
    if (lw->req->platform && *lw->req->platform) {
        if (lw_parse_platform(lw, lw->req->platform, &lw->target_platform) < 0)
            return kn_err_set(err, KN_E_USAGE, "invalid platform '%s' (want os/arch[/variant])",
                              lw->req->platform);
    } else {
        lw->target_platform = lw->build_platform;
    }
    add_platform_args(lw, "TARGET", &lw->target_platform);
    add_platform_args(lw, "BUILD", &lw->build_platform);
    parse_build_args(lw);
    if (split_stages(lw, err) < 0 || global_args(lw, err) < 0)
        return -1;
    /* UndefinedArgInFrom for every stage, built or not, as BuildKit checks */
    for (size_t i = 0; i < lw->nstages; i++) {
        const struct fe_instr *in = &lw->df->instrs[lw->stages[i].from];
        if (!in->nargs)
            continue;
        struct lw_scope sc = {lw, NULL, in};
        struct fe_vars vars = lw_vars(&sc);
        char *res = NULL;
        struct kn_error *e = NULL;
        if (fe_expand_word(in->args[0], lw->df->escape, &vars, &res, &e) < 0)
            kn_err_free(e); /* the stage's own lowering reports it, if built */
        free(res);
    }

    struct lw_stage *target = &lw->stages[lw->nstages - 1];
    if (lw->req->target && *lw->req->target) {
        target = stage_by_name(lw, lw->req->target);
        if (!target) {
            struct kn_buf b = KN_BUF_INIT;
            stage_list(lw, &b);
            kn_err_set(err, KN_E_NOTFOUND, "target stage '%s' could not be found (stages: %s)",
                       lw->req->target, b.data);
            kn_buf_release(&b);
            kn_err_at(*err, lw->file, 0, 0);
            return -1;
        }
    }
    if (lower_stage(lw, target, err) < 0)
        return -1;

    /* notes shown with the graph */
    if (lw->unresolved.n) {
        struct kn_buf b = KN_BUF_INIT;
        for (size_t i = 0; i < lw->unresolved.n; i++)
            kn_buf_addf(&b, "%s%s", i ? ", " : "", lw->unresolved.v[i]);
        ir_graph_add_note(lw->g, "base image configs not resolved: %s", b.data);
        kn_buf_release(&b);
    }
    struct kn_buf unused = KN_BUF_INIT;
    for (size_t i = 0; i < lw->build_args.n; i++) {
        struct lw_buildarg *b = &lw->build_args.v[i];
        if (b->used || lw_is_proxy_arg(b->key) || strcmp(b->key, "BUILDKIT_DOCKERFILE_CHECK") == 0)
            continue;
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(lw->build_args.v[j].key, b->key) == 0;
        if (!dup)
            kn_buf_addf(&unused, "%s%s", unused.len ? ", " : "", b->key);
    }
    if (unused.len)
        ir_graph_add_note(lw->g, "build args were not consumed: %s", unused.data);
    kn_buf_release(&unused);

    /* the output */
    struct lw_image *img = &target->img;
    for (size_t i = 0; i < lw->req->nlabels; i++) {
        const char *s = lw->req->labels[i];
        const char *eq = strchr(s, '=');
        struct lw_kv kv = {eq ? kn_arena_strndup(&lw->arena, s, (size_t)(eq - s))
                              : lw_strdup(lw, s),
                           lw_strdup(lw, eq ? eq + 1 : "")};
        size_t j = 0;
        for (; j < img->labels.n; j++)
            if (strcmp(img->labels.v[j].key, kv.key) == 0)
                break;
        if (j < img->labels.n)
            img->labels.v[j] = kv;
        else
            kn_vec_push(&img->labels, kv);
    }
    struct ir_output out = {0};
    out.name = target->name ? target->name : (char *)"default";
    out.vertex = (uint32_t)target->root;
    out.config = lw_image_to_json(lw, img, &target->platform);
    out.history = target->history.v;
    out.nhistory = target->history.n;
    out.base_ref = target->base_ref;
    ir_graph_add_output(lw->g, &out);
    free(out.config);
    return 0;
}

static void lw_release(struct lw *lw)
{
    for (size_t i = 0; i < lw->nstages; i++) {
        struct lw_stage *st = &lw->stages[i];
        lw_image_release(&st->img);
        free(st->history.v);
        free(st->args.v);
    }
    free(lw->stages);
    free(lw->global_args.v);
    free(lw->auto_args.v);
    free(lw->build_args.v);
    free(lw->unresolved.v);
    free(lw->undefined_seen.v);
    kn_patterns_free(lw->ignore);
    kn_arena_release(&lw->arena);
}

struct ir_graph *fe_dockerfile_lower(const struct fe_request *req, struct kn_error **err)
{
    const char *file = req->file_name ? req->file_name : "Dockerfile";
    struct fe_dockerfile *df = fe_parse(file, req->data ? req->data : "", req->len, err);
    if (!df)
        return NULL;
    struct lw lw;
    memset(&lw, 0, sizeof(lw));
    kn_arena_init(&lw.arena);
    lw.req = req;
    lw.df = df;
    lw.file = file;
    lw.g = ir_graph_new();
    /* the checks' configuration: BUILDKIT_DOCKERFILE_CHECK wins over # check= */
    const char *check_cfg = NULL;
    for (size_t i = 0; i < req->nbuild_args; i++)
        if (kn_str_startswith(req->build_args[i], "BUILDKIT_DOCKERFILE_CHECK="))
            check_cfg = req->build_args[i] + strlen("BUILDKIT_DOCKERFILE_CHECK=");
    lw.checks = fe_checks_new(df, file, check_cfg, lw.g, err);
    int rc = lw.checks ? lower_all(&lw, err) : -1;
    if (rc == 0)
        rc = fe_checks_finish(lw.checks, err);
    fe_checks_free(lw.checks);
    lw_release(&lw);
    fe_dockerfile_free(df);
    if (rc < 0) {
        ir_graph_free(lw.g);
        return NULL;
    }
    return lw.g;
}

int fe_dockerfile_stages(const char *name, const char *data, size_t len, struct kn_strv *out,
                         struct kn_error **err)
{
    struct fe_dockerfile *df = fe_parse(name ? name : "Dockerfile", data, len, err);
    if (!df)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < df->ninstrs; i++) {
        const struct fe_instr *in = &df->instrs[i];
        if (in->kind != FE_FROM)
            continue;
        if (in->nargs == 3 && strcasecmp(in->args[1], "as") == 0) {
            char *s = kn_strdup(in->args[2]);
            for (char *c = s; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            kn_strv_take(out, s);
        } else {
            kn_strv_take(out, kn_asprintf("%zu", k));
        }
        k++;
    }
    fe_dockerfile_free(df);
    return 0;
}
