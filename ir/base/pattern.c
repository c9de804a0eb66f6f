/*
 * Path patterns: Go's filepath.Match for one pattern, and .dockerignore
 * pattern lists with the semantics of moby's patternmatcher (which BuildKit
 * and the docker CLI use): cleaned patterns, `**` for any number of
 * directories, matching a path or any of its parent directories, `!`
 * exceptions, the last matching pattern wins.
 *
 * A pattern is compiled to a short list of tokens (literal, `?`, `*`, a
 * character class, and the two `**` forms) and matched by simulating the
 * automaton over the path's runes: time O(len(path) * len(pattern)), no
 * backtracking, so no pattern can make a walk of a big context slow.
 */
#include "pattern.h"

#include <stdlib.h>
#include <string.h>

/* ---- runes ------------------------------------------------------------------ */

static size_t rune_at(const char *s, size_t n, uint32_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0];
    size_t len = c < 0x80 ? 1 : c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n) {
        *out = 0x110000u + c; /* invalid byte: a unit of its own */
        return 1;
    }
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < len; k++) {
        if ((u[k] & 0xc0) != 0x80) {
            *out = 0x110000u + c;
            return 1;
        }
        cp = (cp << 6) | (u[k] & 0x3f);
    }
    *out = cp;
    return len;
}

static uint32_t *runes(const char *s, size_t *n)
{
    size_t len = strlen(s);
    uint32_t *r = kn_reallocarray(NULL, len + 1, sizeof(uint32_t));
    size_t i = 0, k = 0;
    while (i < len)
        i += rune_at(s + i, len - i, &r[k++]);
    *n = k;
    return r;
}

/* ---- tokens ------------------------------------------------------------------ */

enum tok_kind {
    T_LIT,       /* one rune */
    T_ANY,       /* `?`: one rune but '/' */
    T_STAR,      /* `*`: any run without '/' */
    T_CLASS,     /* `[...]` */
    T_DSTAR_DIR, /* `**` followed by more: any run of directories, or none */
    T_DSTAR_ALL, /* trailing `**`: anything */
};

struct range {
    uint32_t lo, hi;
};

struct tok {
    enum tok_kind kind;
    uint32_t r;
    bool neg;
    struct range *ranges;
    size_t nranges;
};

struct toks {
    struct tok *v;
    size_t n, cap;
};

static void toks_push(struct toks *t, struct tok x)
{
    t->v = kn_grow(t->v, &t->cap, t->n + 1, sizeof(*t->v));
    t->v[t->n++] = x;
}

static void toks_release(struct toks *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].ranges);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* A character class at p[*i] (just after '['), with Go's filepath.Match
 * syntax. Returns false when malformed. */
static bool parse_class(const uint32_t *p, size_t n, size_t *i, struct tok *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = T_CLASS;
    size_t k = *i;
    if (k < n && p[k] == '^') {
        out->neg = true;
        k++;
    }
    size_t cap = 0;
    for (;;) {
        if (k >= n)
            goto bad;
        if (p[k] == ']' && out->nranges > 0) {
            k++;
            break;
        }
        uint32_t lo, hi;
        /* getEsc */
        if (p[k] == '-' || p[k] == ']')
            goto bad;
        if (p[k] == '\\') {
            k++;
            if (k >= n)
                goto bad;
        }
        lo = p[k++];
        hi = lo;
        if (k < n && p[k] == '-') {
            k++;
            if (k >= n || p[k] == '-' || p[k] == ']')
                goto bad;
            if (p[k] == '\\') {
                k++;
                if (k >= n)
                    goto bad;
            }
            hi = p[k++];
            if (hi < lo)
                goto bad;
        }
        out->ranges = kn_grow(out->ranges, &cap, out->nranges + 1, sizeof(struct range));
        out->ranges[out->nranges++] = (struct range){lo, hi};
    }
    *i = k;
    return true;
bad:
    free(out->ranges);
    out->ranges = NULL;
    return false;
}

static bool class_match(const struct tok *t, uint32_t c)
{
    bool in = false;
    for (size_t i = 0; i < t->nranges && !in; i++)
        in = c >= t->ranges[i].lo && c <= t->ranges[i].hi;
    return in != t->neg;
}

/* filepath.Match's pattern: `*`, `?`, classes, `\` escapes. */
static bool compile_glob(const char *pattern, struct toks *out)
{
    size_t n;
    uint32_t *p = runes(pattern, &n);
    bool good = true;
    for (size_t i = 0; i < n && good;) {
        uint32_t c = p[i++];
        struct tok t = {0};
        if (c == '*') {
            t.kind = T_STAR;
        } else if (c == '?') {
            t.kind = T_ANY;
        } else if (c == '[') {
            good = parse_class(p, n, &i, &t);
        } else if (c == '\\') {
            if (i >= n) {
                good = false;
            } else {
                t.kind = T_LIT;
                t.r = p[i++];
            }
        } else {
            t.kind = T_LIT;
            t.r = c;
        }
        if (good)
            toks_push(out, t);
    }
    free(p);
    if (!good)
        toks_release(out);
    return good;
}

/* ---- matching --------------------------------------------------------------- */

static void closure(const struct toks *t, bool *at)
{
    for (size_t j = 0; j < t->n; j++)
        if (at[j] &&
            (t->v[j].kind == T_STAR || t->v[j].kind == T_DSTAR_ALL || t->v[j].kind == T_DSTAR_DIR))
            at[j + 1] = true;
}

static bool toks_match(const struct toks *t, const uint32_t *s, size_t n)
{
    size_t m = t->n;
    bool small[4 * 33];
    bool *mem = m + 1 <= 33 ? small : kn_calloc(4 * (m + 1), 1);
    bool *at = mem, *in = mem + (m + 1), *nat = mem + 2 * (m + 1), *nin = mem + 3 * (m + 1);
    memset(mem, 0, 4 * (m + 1));
    at[0] = true;
    closure(t, at);
    for (size_t k = 0; k < n; k++) {
        uint32_t c = s[k];
        bool any = false;
        memset(nat, 0, m + 1);
        memset(nin, 0, m + 1);
        for (size_t j = 0; j < m; j++) {
            const struct tok *x = &t->v[j];
            if (in[j]) {
                nin[j] = any = true;
                if (c == '/')
                    nat[j + 1] = true;
            }
            if (!at[j])
                continue;
            switch (x->kind) {
            case T_LIT:
                if (c == x->r)
                    nat[j + 1] = any = true;
                break;
            case T_ANY:
                if (c != '/')
                    nat[j + 1] = any = true;
                break;
            case T_CLASS:
                if (class_match(x, c))
                    nat[j + 1] = any = true;
                break;
            case T_STAR:
                if (c != '/')
                    nat[j] = any = true;
                break;
            case T_DSTAR_ALL:
                nat[j] = any = true;
                break;
            case T_DSTAR_DIR:
                nin[j] = any = true;
                if (c == '/')
                    nat[j + 1] = true;
                break;
            }
        }
        if (!any) {
            at[m] = false;
            break;
        }
        closure(t, nat);
        memcpy(at, nat, m + 1);
        memcpy(in, nin, m + 1);
    }
    bool res = at[m];
    if (mem != small)
        free(mem);
    return res;
}

bool kn_glob_has_meta(const char *pattern)
{
    return strpbrk(pattern, "*?[\\") != NULL;
}

int kn_glob_match(const char *pattern, const char *name, bool *match, struct kn_error **err)
{
    struct toks t = {0};
    if (!compile_glob(pattern, &t))
        return kn_err_set(err, KN_E_PARSE, "syntax error in pattern '%s'", pattern);
    size_t n;
    uint32_t *s = runes(name, &n);
    *match = toks_match(&t, s, n);
    free(s);
    toks_release(&t);
    return 0;
}

/* ---- cleaning --------------------------------------------------------------- */

char *kn_path_clean(const char *path)
{
    size_t n = strlen(path);
    if (n == 0)
        return kn_strdup(".");
    bool rooted = path[0] == '/';
    char *out = kn_malloc(n + 2);
    size_t w = 0, r = 0, dotdot = 0;
    if (rooted) {
        out[w++] = '/';
        r = 1;
        dotdot = 1;
    }
    while (r < n) {
        if (path[r] == '/') {
            r++;
        } else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
            r++;
        } else if (path[r] == '.' && path[r + 1] == '.' && (r + 2 == n || path[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                w--;
                while (w > dotdot && out[w] != '/')
                    w--;
            } else if (!rooted) {
                if (w > 0)
                    out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0))
                out[w++] = '/';
            while (r < n && path[r] != '/')
                out[w++] = path[r++];
        }
    }
    if (w == 0)
        out[w++] = '.';
    out[w] = '\0';
    return out;
}

/* ---- .dockerignore pattern lists ---------------------------------------------- */

enum match_type { M_EXACT, M_PREFIX, M_SUFFIX, M_REGEXP };

struct pat {
    bool exclusion;
    char *cleaned;
    enum match_type type;
    struct toks toks;
};

struct kn_patterns {
    struct pat *v;
    size_t n;
    bool exclusions;
};

/* The pattern as patternmatcher compiles it: `**` forms, and the cheaper
 * exact / prefix / suffix matches when the pattern allows them. */
static bool compile_moby(struct pat *p)
{
    size_t n;
    uint32_t *r = runes(p->cleaned, &n);
    p->type = M_EXACT;
    bool good = true;
    size_t i = 0;
    for (int iter = 0; i < n && good; iter++) {
        uint32_t c = r[i++];
        struct tok t = {0};
        if (c == '*') {
            if (i < n && r[i] == '*') {
                i++;
                if (i < n && r[i] == '/')
                    i++;
                if (i >= n) {
                    if (p->type == M_EXACT) {
                        p->type = M_PREFIX;
                    } else {
                        t.kind = T_DSTAR_ALL;
                        toks_push(&p->toks, t);
                        p->type = M_REGEXP;
                    }
                } else {
                    t.kind = T_DSTAR_DIR;
                    toks_push(&p->toks, t);
                    p->type = M_REGEXP;
                }
                if (iter == 0)
                    p->type = M_SUFFIX;
                continue;
            }
            t.kind = T_STAR;
            p->type = M_REGEXP;
        } else if (c == '?') {
            t.kind = T_ANY;
            p->type = M_REGEXP;
        } else if (c == '\\') {
            t.kind = T_LIT;
            t.r = '\\';
            if (i < n) {
                t.r = r[i++];
                p->type = M_REGEXP;
            }
        } else if (c == '[') {
            good = parse_class(r, n, &i, &t);
            p->type = M_REGEXP;
        } else {
            t.kind = T_LIT;
            t.r = c;
            if (c == ']')
                p->type = M_REGEXP;
        }
        if (good)
            toks_push(&p->toks, t);
    }
    free(r);
    return good;
}

static bool pat_match(const struct pat *p, const char *path, size_t len)
{
    const char *c = p->cleaned;
    size_t cl = strlen(c);
    switch (p->type) {
    case M_EXACT:
        return len == cl && memcmp(path, c, len) == 0;
    case M_PREFIX:
        return len >= cl - 2 && memcmp(path, c, cl - 2) == 0;
    case M_SUFFIX: {
        const char *suffix = c + 2;
        size_t sl = cl - 2;
        if (len >= sl && memcmp(path + len - sl, suffix, sl) == 0)
            return true;
        return sl > 0 && suffix[0] == '/' && len == sl - 1 && memcmp(path, suffix + 1, len) == 0;
    }
    case M_REGEXP: {
        char *tmp = kn_strndup(path, len);
        size_t n;
        uint32_t *s = runes(tmp, &n);
        bool m = toks_match(&p->toks, s, n);
        free(s);
        free(tmp);
        return m;
    }
    }
    return false;
}

static char *trim_dup(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' ||
                     s[n - 1] == '\v' || s[n - 1] == '\f'))
        n--;
    return kn_strndup(s, n);
}

struct kn_patterns *kn_patterns_new(char *const *patterns, size_t n, struct kn_error **err)
{
    struct kn_patterns *pm = kn_calloc(1, sizeof(*pm));
    pm->v = kn_calloc(n ? n : 1, sizeof(struct pat));
    for (size_t i = 0; i < n; i++) {
        char *t = trim_dup(patterns[i]);
        if (!*t) {
            free(t);
            continue;
        }
        bool excl = false;
        const char *body = t;
        if (t[0] == '!') {
            excl = true;
            char *rest = trim_dup(t + 1);
            free(t);
            t = rest;
            body = t;
            if (!*t) {
                free(t);
                kn_patterns_free(pm);
                kn_err_set(err, KN_E_PARSE, "illegal exclusion pattern: \"!\"");
                return NULL;
            }
        }
        char *cleaned = kn_path_clean(body);
        free(t);
        if (cleaned[0] == '/' && cleaned[1]) {
            char *s = kn_strdup(cleaned + 1);
            free(cleaned);
            cleaned = s;
        }
        struct toks check = {0};
        if (!compile_glob(cleaned, &check)) {
            kn_err_set(err, KN_E_PARSE, "syntax error in pattern '%s%s'", excl ? "!" : "", cleaned);
            free(cleaned);
            kn_patterns_free(pm);
            return NULL;
        }
        toks_release(&check);
        struct pat *p = &pm->v[pm->n];
        p->exclusion = excl;
        p->cleaned = cleaned;
        if (!compile_moby(p)) {
            kn_err_set(err, KN_E_PARSE, "syntax error in pattern '%s'", cleaned);
            free(cleaned);
            toks_release(&p->toks);
            memset(p, 0, sizeof(*p));
            kn_patterns_free(pm);
            return NULL;
        }
        pm->n++;
        if (excl)
            pm->exclusions = true;
    }
    return pm;
}

void kn_patterns_free(struct kn_patterns *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].cleaned);
        toks_release(&p->v[i].toks);
    }
    free(p->v);
    free(p);
}

bool kn_patterns_match(const struct kn_patterns *pm, const char *path)
{
    if (!pm)
        return false;
    size_t len = strlen(path);
    const char *slash = strrchr(path, '/');
    bool matched = false;
    for (size_t i = 0; i < pm->n; i++) {
        const struct pat *p = &pm->v[i];
        /* an include that already matched, or an exception with nothing to undo */
        if (p->exclusion != matched)
            continue;
        bool m = pat_match(p, path, len);
        /* or a parent directory: "a", "a/b", ... up to the path's directory */
        for (size_t k = 1; !m && slash && k <= (size_t)(slash - path); k++)
            if (path[k] == '/')
                m = pat_match(p, path, k);
        if (m)
            matched = !p->exclusion;
    }
    return matched;
}

bool kn_patterns_has_exceptions_under(const struct kn_patterns *pm, const char *dir)
{
    if (!pm || !pm->exclusions)
        return false;
    for (size_t i = 0; i < pm->n; i++) {
        const struct pat *p = &pm->v[i];
        if (!p->exclusion)
            continue;
        /* compare component by component as far as the directory goes */
        const char *pc = p->cleaned, *dc = dir;
        bool possible = true;
        while (*dc) {
            const char *pe = strchr(pc, '/');
            const char *de = strchr(dc, '/');
            size_t pl = pe ? (size_t)(pe - pc) : strlen(pc);
            size_t dl = de ? (size_t)(de - dc) : strlen(dc);
            char *pcomp = kn_strndup(pc, pl);
            char *dcomp = kn_strndup(dc, dl);
            bool m = false;
            bool deep = strstr(pcomp, "**") != NULL;
            struct kn_error *e = NULL;
            if (!deep && kn_glob_match(pcomp, dcomp, &m, &e) < 0) {
                kn_err_free(e);
                m = true;
            }
            free(pcomp);
            free(dcomp);
            if (deep)
                return true;
            if (!m) {
                possible = false;
                break;
            }
            if (!pe) {
                /* the pattern ends at or above the directory: it re-includes it */
                break;
            }
            pc = pe + 1;
            dc = de ? de + 1 : dc + dl;
        }
        if (possible)
            return true;
    }
    return false;
}
