/*
 * Variable expansion of Dockerfile words, as BuildKit's shell lexer
 * (frontend/dockerfile/shell/lex.go) does it.
 *
 * A word is read left to right: '...' is literal, "..." expands `$` and lets
 * the escape character protect `"`, `$` and itself, the escape character
 * outside quotes protects any character, and `$name`, `${name}` and the
 * ${name<op>word} forms (:- - :+ + :? ? # ## % %% / //) expand variables.
 * The word of a ${...} form is itself a word (quotes, escapes and nested
 * expansions inside). Patterns of # % / are shell patterns without bracket
 * expressions: `*`, `?`, and `\` escapes of `*`, `?`, `\`.
 *
 * fe_expand_words splits the result into words like ProcessWords: on
 * whitespace outside quotes, and also inside the value of an unquoted
 * variable. Errors carry BuildKit's wording, prefixed with
 * `failed to process "WORD"`.
 */
#include "frontend/ast.h"

#include <stdlib.h>
#include <string.h>

#define EX_MAX_DEPTH  64          /* nested ${...} */
#define EX_MAX_RESULT (64u << 20) /* bytes of one expansion */

struct words {
    struct kn_strv *out;
    struct kn_buf word;
    bool in_word;
};

struct lexer {
    const char *s;
    size_t i, n;
    char esc;
    const struct fe_vars *vars;
    bool raw_quotes;
    bool raw_escapes;
    struct kn_strv *names; /* fe_expand_names: records every name looked up */
    char *err;             /* the first error, malloc'd */
    int depth;
};

#define EOF_CH (-1)

static int peek(const struct lexer *lx)
{
    return lx->i < lx->n ? (unsigned char)lx->s[lx->i] : EOF_CH;
}

static int next(struct lexer *lx)
{
    return lx->i < lx->n ? (unsigned char)lx->s[lx->i++] : EOF_CH;
}

static int fail(struct lexer *lx, const char *fmt, ...) KN_PRINTF(2, 3);
static int fail(struct lexer *lx, const char *fmt, ...)
{
    if (!lx->err) {
        va_list ap;
        va_start(ap, fmt);
        lx->err = kn_vasprintf(fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool is_ws(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* ---- word splitting (ProcessWords) ------------------------------------------ */

static void w_raw_char(struct words *w, char c)
{
    if (!w)
        return;
    kn_buf_addc(&w->word, c);
    w->in_word = true;
}

static void w_char(struct words *w, char c)
{
    if (!w)
        return;
    if (is_ws((unsigned char)c)) {
        if (w->in_word && w->word.len) {
            kn_strv_push(w->out, w->word.data);
            kn_buf_reset(&w->word);
            w->in_word = false;
        }
    } else {
        w_raw_char(w, c);
    }
}

static void w_string(struct words *w, const char *s, size_t n)
{
    for (size_t i = 0; w && i < n; i++)
        w_char(w, s[i]);
}

static void w_raw_string(struct words *w, const char *s, size_t n)
{
    if (!w)
        return;
    kn_buf_add(&w->word, s, n);
    w->in_word = true;
}

static void w_finish(struct words *w)
{
    if (w->word.len) {
        kn_strv_push(w->out, w->word.data);
        kn_buf_reset(&w->word);
        w->in_word = false;
    }
}

/* ---- shell patterns ----------------------------------------------------------- */

enum ptok_kind { PT_LIT, PT_ANY, PT_STAR };

struct ptok {
    enum ptok_kind kind;
    uint32_t r; /* PT_LIT: the rune */
};

/* A string as runes, with the byte offset of each rune (offs[n] = length). */
struct runes {
    uint32_t *r;
    size_t *offs;
    size_t n;
};

static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *out)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n) {
        *out = 0x110000u + c; /* an invalid byte: a unit of its own */
        return 1;
    }
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            *out = 0x110000u + c;
            return 1;
        }
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    *out = cp;
    return len;
}

static void runes_of(const char *s, size_t n, struct runes *out)
{
    out->r = kn_reallocarray(NULL, n + 1, sizeof(uint32_t));
    out->offs = kn_reallocarray(NULL, n + 1, sizeof(size_t));
    out->n = 0;
    size_t i = 0;
    while (i < n) {
        out->offs[out->n] = i;
        i += utf8_decode((const unsigned char *)s + i, n - i, &out->r[out->n]);
        out->n++;
    }
    out->offs[out->n] = n;
}

static void runes_release(struct runes *r)
{
    free(r->r);
    free(r->offs);
}

/* Compiles a shell pattern (convertShellPatternToRegex). */
static int pattern_compile(struct lexer *lx, const char *pat, struct ptok **out, size_t *nout)
{
    struct runes pr;
    runes_of(pat, strlen(pat), &pr);
    struct ptok *t = kn_reallocarray(NULL, pr.n + 1, sizeof(*t));
    size_t m = 0;
    for (size_t i = 0; i < pr.n; i++) {
        uint32_t c = pr.r[i];
        if (c == '*') {
            t[m++] = (struct ptok){PT_STAR, 0};
        } else if (c == '?') {
            t[m++] = (struct ptok){PT_ANY, 0};
        } else if (c == '\\') {
            /* `\}` and `\/` were escaped for ${...}: the escape is not part of it */
            if (i + 1 < pr.n && (pr.r[i + 1] == '}' || pr.r[i + 1] == '/'))
                continue;
            if (i + 1 >= pr.n ||
                (pr.r[i + 1] != '*' && pr.r[i + 1] != '?' && pr.r[i + 1] != '\\')) {
                size_t a = i + 1 < pr.n ? pr.offs[i + 1] : pr.offs[i];
                size_t b = i + 1 < pr.n ? pr.offs[i + 2] : pr.offs[i];
                fail(lx, "invalid pattern (%s) in substitution: invalid escape '\\%.*s'", pat,
                     (int)(b - a), pat + a);
                free(t);
                runes_release(&pr);
                return -1;
            }
            t[m++] = (struct ptok){PT_LIT, pr.r[++i]};
        } else {
            t[m++] = (struct ptok){PT_LIT, c};
        }
    }
    runes_release(&pr);
    *out = t;
    *nout = m;
    return 0;
}

static void closure(const struct ptok *t, size_t m, bool *set)
{
    for (size_t j = 0; j < m; j++)
        if (set[j] && t[j].kind == PT_STAR)
            set[j + 1] = true;
}

/* Matches the pattern against r[from, ...) anchored at `from`: the shortest
 * (*lo) and longest (*hi) end positions of a match. False if none. */
static bool match_prefix(const struct ptok *t, size_t m, const uint32_t *r, size_t n, size_t from,
                         size_t *lo, size_t *hi)
{
    bool *cur = kn_calloc(m + 1, 1), *nxt = kn_calloc(m + 1, 1);
    bool found = false;
    cur[0] = true;
    closure(t, m, cur);
    for (size_t k = from;; k++) {
        if (cur[m]) {
            if (!found)
                *lo = k;
            *hi = k;
            found = true;
        }
        if (k >= n)
            break;
        bool any = false;
        memset(nxt, 0, m + 1);
        for (size_t j = 0; j < m; j++) {
            if (!cur[j])
                continue;
            if (t[j].kind == PT_STAR) {
                nxt[j] = any = true;
            } else if (t[j].kind == PT_ANY || t[j].r == r[k]) {
                nxt[j + 1] = any = true;
            }
        }
        if (!any)
            break;
        closure(t, m, nxt);
        bool *tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(cur);
    free(nxt);
    return found;
}

/* The leftmost match at or after `from`, longest at that start: one pass
 * over r, each automaton state remembering the leftmost start that reaches
 * it (two threads in the same state continue alike, so the leftmost one is
 * all that matters). O(len(r) * len(pattern)). */
static bool match_find(const struct ptok *t, size_t m, const uint32_t *r, size_t n, size_t from,
                       size_t *start, size_t *end)
{
    const size_t none = (size_t)-1;
    size_t *cur = kn_reallocarray(NULL, m + 1, sizeof(size_t));
    size_t *nxt = kn_reallocarray(NULL, m + 1, sizeof(size_t));
    for (size_t j = 0; j <= m; j++)
        cur[j] = none;
    size_t best_s = none, best_e = 0;
    for (size_t k = from;; k++) {
        if (best_s == none && cur[0] > k)
            cur[0] = k;                /* a new attempt starting here */
        for (size_t j = 0; j < m; j++) /* closure: a star may match nothing */
            if (t[j].kind == PT_STAR && cur[j] < cur[j + 1])
                cur[j + 1] = cur[j];
        if (cur[m] != none &&
            (best_s == none || cur[m] < best_s || (cur[m] == best_s && k > best_e))) {
            best_s = cur[m];
            best_e = k;
        }
        if (k >= n)
            break;
        bool alive = false;
        for (size_t j = 0; j <= m; j++)
            nxt[j] = none;
        for (size_t j = 0; j < m; j++) {
            size_t s = cur[j];
            if (s == none || (best_s != none && s > best_s))
                continue;
            size_t to = t[j].kind == PT_STAR                      ? j
                        : (t[j].kind == PT_ANY || t[j].r == r[k]) ? j + 1
                                                                  : none;
            if (to != none && s < nxt[to]) {
                nxt[to] = s;
                alive = true;
            }
        }
        if (!alive && best_s != none)
            break;
        size_t *tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    free(cur);
    free(nxt);
    if (best_s == none)
        return false;
    *start = best_s;
    *end = best_e;
    return true;
}

/* ${v#p} ${v##p} ${v%p} ${v%%p} */
static int trim_pattern(struct lexer *lx, const char *value, const char *pat, bool suffix,
                        bool longest, struct kn_buf *out)
{
    struct ptok *t;
    size_t m;
    if (pattern_compile(lx, pat, &t, &m) < 0)
        return -1;
    struct runes v;
    size_t vlen = strlen(value);
    runes_of(value, vlen, &v);
    if (!suffix) {
        size_t lo, hi;
        if (match_prefix(t, m, v.r, v.n, 0, &lo, &hi))
            kn_buf_adds(out, value + v.offs[longest ? hi : lo]);
        else
            kn_buf_adds(out, value);
    } else {
        /* reverse both: a suffix match is a prefix match of the reversals */
        for (size_t a = 0, b = m ? m - 1 : 0; m && a < b; a++, b--) {
            struct ptok x = t[a];
            t[a] = t[b];
            t[b] = x;
        }
        uint32_t *rev = kn_reallocarray(NULL, v.n + 1, sizeof(uint32_t));
        for (size_t k = 0; k < v.n; k++)
            rev[k] = v.r[v.n - 1 - k];
        size_t lo, hi;
        if (match_prefix(t, m, rev, v.n, 0, &lo, &hi)) {
            size_t cut = longest ? hi : lo; /* runes removed from the end */
            kn_buf_add(out, value, v.offs[v.n - cut]);
        } else {
            kn_buf_adds(out, value);
        }
        free(rev);
    }
    runes_release(&v);
    free(t);
    return 0;
}

/* ${v/p/r} ${v//p/r}, with Go's ReplaceAllString rules for empty matches. */
static int replace_pattern(struct lexer *lx, const char *value, const char *pat, const char *repl,
                           bool all, struct kn_buf *out)
{
    struct ptok *t;
    size_t m;
    if (pattern_compile(lx, pat, &t, &m) < 0)
        return -1;
    struct runes v;
    runes_of(value, strlen(value), &v);
    size_t last = 0; /* rune index after the last match */
    size_t pos = 0;
    bool had = false;
    while (pos <= v.n) {
        size_t s, e;
        if (!match_find(t, m, v.r, v.n, pos, &s, &e))
            break;
        kn_buf_add(out, value + v.offs[last], v.offs[s] - v.offs[last]);
        if (e > last || s == 0 || !had)
            kn_buf_adds(out, repl);
        last = e;
        had = true;
        if (!all)
            break;
        pos = e > pos ? e : pos + 1;
        if (out->len > EX_MAX_RESULT) {
            runes_release(&v);
            free(t);
            return fail(lx, "expansion too large");
        }
    }
    kn_buf_adds(out, value + v.offs[last]);
    runes_release(&v);
    free(t);
    return 0;
}

/* ---- the lexer ------------------------------------------------------------------ */

static const char *lookup(struct lexer *lx, const char *name)
{
    if (lx->names) {
        bool seen = false;
        for (size_t i = 0; i < lx->names->n; i++)
            if (strcmp(lx->names->v[i], name) == 0)
                seen = true;
        if (!seen)
            kn_strv_push(lx->names, name);
    }
    if (!lx->vars || !lx->vars->lookup)
        return NULL;
    return lx->vars->lookup(lx->vars->ctx, name);
}

static int process_stop_on(struct lexer *lx, int stop, bool raw_escapes, struct kn_buf *result,
                           struct words *w);

static int single_quote(struct lexer *lx, struct kn_buf *out)
{
    int ch = next(lx);
    if (lx->raw_quotes)
        kn_buf_addc(out, (char)ch);
    for (;;) {
        ch = next(lx);
        if (ch == EOF_CH)
            return fail(lx, "unexpected end of statement while looking for matching single-quote");
        if (ch == '\'') {
            if (lx->raw_quotes)
                kn_buf_addc(out, (char)ch);
            return 0;
        }
        kn_buf_addc(out, (char)ch);
    }
}

static int dollar(struct lexer *lx, struct kn_buf *out);

static int double_quote(struct lexer *lx, struct kn_buf *out)
{
    int ch = next(lx);
    if (lx->raw_quotes)
        kn_buf_addc(out, (char)ch);
    for (;;) {
        int c = peek(lx);
        if (c == EOF_CH)
            return fail(lx, "unexpected end of statement while looking for matching double-quote");
        if (c == '"') {
            next(lx);
            if (lx->raw_quotes)
                kn_buf_addc(out, '"');
            return 0;
        }
        if (c == '$') {
            if (dollar(lx, out) < 0)
                return -1;
            continue;
        }
        ch = next(lx);
        if (ch == (unsigned char)lx->esc) {
            if (lx->raw_escapes)
                kn_buf_addc(out, (char)ch);
            int p = peek(lx);
            if (p == EOF_CH)
                continue;
            if (p == '"' || p == '$' || p == (unsigned char)lx->esc)
                ch = next(lx);
        }
        kn_buf_addc(out, (char)ch);
    }
}

static bool is_special_param(int c)
{
    return c == '@' || c == '*' || c == '#' || c == '?' || c == '-' || c == '$' || c == '!' ||
           c == '0';
}

static bool is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c >= 0x80;
}

static void process_name(struct lexer *lx, struct kn_buf *name)
{
    kn_buf_reset(name);
    kn_buf_adds(name, "");
    while (peek(lx) != EOF_CH) {
        int c = peek(lx);
        if (name->len == 0 && c >= '0' && c <= '9') {
            while (peek(lx) >= '0' && peek(lx) <= '9')
                kn_buf_addc(name, (char)next(lx));
            return;
        }
        if (name->len == 0 && is_special_param(c)) {
            kn_buf_addc(name, (char)next(lx));
            return;
        }
        if (!is_name_char(c))
            break;
        kn_buf_addc(name, (char)next(lx));
    }
}

/* A nested word of ${...} up to `stop`, into a fresh string. */
static int sub_word(struct lexer *lx, int stop, bool raw_escapes, char **out, const char *eof_msg)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "");
    if (process_stop_on(lx, stop, raw_escapes, &b, NULL) < 0) {
        kn_buf_release(&b);
        if (peek(lx) == EOF_CH && eof_msg) {
            free(lx->err);
            lx->err = kn_strdup(eof_msg);
        }
        return -1;
    }
    *out = kn_buf_detach(&b);
    return 0;
}

static int dollar_braced(struct lexer *lx, struct kn_buf *out, const char *name)
{
    int ch = next(lx);
    char chs[3] = {(char)(ch == EOF_CH ? 0 : ch), 0, 0};
    bool null_is_unset = false;
    if (ch == '}') {
        const char *v = lookup(lx, name);
        if (!v && lx->vars && lx->vars->unset)
            lx->vars->unset(lx->vars->ctx, name);
        kn_buf_adds(out, v ? v : "");
        return 0;
    }
    if (ch == ':') {
        null_is_unset = true;
        ch = next(lx);
        chs[1] = (char)(ch == EOF_CH ? 0 : ch);
    }
    if (ch == '+' || ch == '-' || ch == '?' || ch == '#' || ch == '%' || null_is_unset) {
        bool raw = ch == '#' || ch == '%';
        char *word;
        if (sub_word(lx, '}', raw, &word, "syntax error: missing '}'") < 0)
            return -1;
        const char *value = lookup(lx, name);
        bool set = value != NULL;
        bool empty = !set || (null_is_unset && !*value);
        int rc = 0;
        switch (ch) {
        case '-':
            kn_buf_adds(out, empty ? word : value);
            break;
        case '+':
            if (!empty)
                kn_buf_adds(out, word);
            break;
        case '?':
            if (!set)
                rc = fail(lx, "%s: %s", name, *word ? word : "is not allowed to be unset");
            else if (null_is_unset && !*value)
                rc = fail(lx, "%s: %s", name, *word ? word : "is not allowed to be empty");
            else
                kn_buf_adds(out, value);
            break;
        case '#':
        case '%': {
            /* BuildKit treats ${v:#p} as ${v#p} */
            bool longest = word[0] == (char)ch;
            rc = trim_pattern(lx, value ? value : "", word + (longest ? 1 : 0), ch == '%', longest,
                              out);
            break;
        }
        default:
            rc = fail(lx, "unsupported modifier (%s) in substitution", chs);
            break;
        }
        free(word);
        return rc;
    }
    if (ch == '/') {
        bool all = peek(lx) == '/';
        if (all)
            next(lx);
        char *pat, *repl;
        if (sub_word(lx, '/', true, &pat, "syntax error: missing '/' in ${}") < 0)
            return -1;
        if (sub_word(lx, '}', true, &repl, "syntax error: missing '}'") < 0) {
            free(pat);
            return -1;
        }
        const char *value = lookup(lx, name);
        int rc = replace_pattern(lx, value ? value : "", pat, repl, all, out);
        free(pat);
        free(repl);
        return rc;
    }
    if (ch == EOF_CH)
        return fail(lx, "syntax error: missing '}'");
    return fail(lx, "unsupported modifier (%s) in substitution", chs);
}

static int dollar(struct lexer *lx, struct kn_buf *out)
{
    next(lx); /* '$' */
    struct kn_buf name = KN_BUF_INIT;
    int rc = 0;
    if (peek(lx) != '{') {
        process_name(lx, &name);
        if (!name.len) {
            kn_buf_addc(out, '$');
        } else {
            const char *v = lookup(lx, name.data);
            if (!v && lx->vars && lx->vars->unset)
                lx->vars->unset(lx->vars->ctx, name.data);
            kn_buf_adds(out, v ? v : "");
        }
        kn_buf_release(&name);
        return 0;
    }
    next(lx); /* '{' */
    int c = peek(lx);
    if (c == EOF_CH) {
        rc = fail(lx, "syntax error: missing '}'");
    } else if (c == '{' || c == '}' || c == ':') {
        rc = fail(lx, "syntax error: bad substitution");
    } else if (lx->depth >= EX_MAX_DEPTH) {
        rc = fail(lx, "substitutions nested too deeply");
    } else {
        lx->depth++;
        process_name(lx, &name);
        rc = dollar_braced(lx, out, name.data);
        lx->depth--;
    }
    kn_buf_release(&name);
    return rc;
}

static int process_stop_on(struct lexer *lx, int stop, bool raw_escapes, struct kn_buf *result,
                           struct words *w)
{
    bool saved = lx->raw_escapes;
    lx->raw_escapes = raw_escapes;
    struct kn_buf tmp = KN_BUF_INIT;
    int rc = 0;
    bool stopped = false;
    while (peek(lx) != EOF_CH) {
        int c = peek(lx);
        if (stop != EOF_CH && c == stop) {
            next(lx);
            stopped = true;
            break;
        }
        if (c == '\'' || c == '"' || c == '$') {
            kn_buf_reset(&tmp);
            kn_buf_adds(&tmp, "");
            rc = c == '\''  ? single_quote(lx, &tmp)
                 : c == '"' ? double_quote(lx, &tmp)
                            : dollar(lx, &tmp);
            if (rc < 0)
                break;
            kn_buf_add(result, tmp.data, tmp.len);
            if (c == '$')
                w_string(w, tmp.data, tmp.len);
            else
                w_raw_string(w, tmp.data, tmp.len);
        } else {
            int ch = next(lx);
            if (ch == (unsigned char)lx->esc) {
                if (lx->raw_escapes) {
                    w_raw_char(w, (char)ch);
                    kn_buf_addc(result, (char)ch);
                }
                ch = next(lx);
                if (ch == EOF_CH)
                    break;
                w_raw_char(w, (char)ch);
            } else {
                w_char(w, (char)ch);
            }
            kn_buf_addc(result, (char)ch);
        }
        if (result->len > EX_MAX_RESULT) {
            rc = fail(lx, "expansion too large");
            break;
        }
    }
    kn_buf_release(&tmp);
    lx->raw_escapes = saved;
    if (rc < 0)
        return -1;
    if (stop != EOF_CH && !stopped)
        return fail(lx, "unexpected end of statement while looking for matching %c", stop);
    return 0;
}

/* Runs the lexer over the whole text; on error sets *err (KN_E_PARSE). */
static int run(const char *text, char escape, const struct fe_vars *vars, bool raw,
               struct kn_buf *result, struct words *w, struct kn_strv *names, struct kn_error **err)
{
    struct lexer lx = {0};
    lx.s = text ? text : "";
    lx.n = strlen(lx.s);
    lx.esc = escape ? escape : '\\';
    lx.vars = vars;
    lx.raw_quotes = raw;
    lx.names = names;
    kn_buf_adds(result, "");
    if (process_stop_on(&lx, EOF_CH, raw, result, w) < 0) {
        /* Go's %q of the source, roughly */
        struct kn_buf q = KN_BUF_INIT;
        kn_buf_adds(&q, "");
        for (size_t i = 0; i < lx.n && i < 256; i++) {
            char c = lx.s[i];
            if (c == '"' || c == '\\')
                kn_buf_addc(&q, '\\');
            if (c == '\n')
                kn_buf_adds(&q, "\\n");
            else if (c == '\t')
                kn_buf_adds(&q, "\\t");
            else
                kn_buf_addc(&q, c);
        }
        if (lx.n > 256)
            kn_buf_adds(&q, "...");
        kn_err_set(err, KN_E_PARSE, "failed to process \"%s\": %s", q.data,
                   lx.err ? lx.err : "invalid word");
        kn_buf_release(&q);
        free(lx.err);
        return -1;
    }
    free(lx.err);
    return 0;
}

int fe_expand_word(const char *word, char escape, const struct fe_vars *vars, char **out,
                   struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    if (run(word, escape, vars, false, &b, NULL, NULL, err) < 0) {
        kn_buf_release(&b);
        return -1;
    }
    *out = kn_buf_detach(&b);
    return 0;
}

int fe_expand_words(const char *text, char escape, const struct fe_vars *vars, struct kn_strv *out,
                    struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    struct kn_strv tmp = {0};
    struct words w = {&tmp, KN_BUF_INIT, false};
    kn_buf_adds(&w.word, "");
    int rc = run(text, escape, vars, false, &b, &w, NULL, err);
    if (rc == 0) {
        w_finish(&w);
        for (size_t i = 0; i < tmp.n; i++)
            kn_strv_push(out, tmp.v[i]);
    }
    kn_strv_release(&tmp);
    kn_buf_release(&w.word);
    kn_buf_release(&b);
    return rc;
}

int fe_expand_keep_quotes(const char *text, char escape, const struct fe_vars *vars, char **out,
                          struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    if (run(text, escape, vars, true, &b, NULL, NULL, err) < 0) {
        kn_buf_release(&b);
        return -1;
    }
    *out = kn_buf_detach(&b);
    return 0;
}

void fe_expand_names(const char *text, char escape, struct kn_strv *out)
{
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    /* variables are unset here: a ${v:?} ends the walk, what was seen stays */
    run(text, escape, NULL, false, &b, NULL, out, &err);
    kn_err_free(err);
    kn_buf_release(&b);
}
