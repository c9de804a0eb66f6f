/*
 * The Dockerfile parser: text in, typed instructions (frontend/ast.h) out.
 *
 * It follows BuildKit's frontend/dockerfile/parser and instructions packages:
 * parser directives at the very top (# syntax=, # escape=, # check=), a UTF-8
 * BOM, CRLF line endings, comments (also between continuation lines, where
 * they are dropped), line continuations with the escape character (and, as
 * BuildKit, a continuation at the end of the file is simply the end of the
 * instruction), heredocs for RUN, COPY and ADD, JSON (exec) versus shell
 * form, the builder flags in front of the arguments and their checks, and
 * the arity checks of every instruction with BuildKit's wording.
 *
 * Nothing is expanded here: values keep their quotes, because which
 * variables are in scope is only known while lowering. Every error of the
 * file is collected (chained through err->next) with its line, column and
 * the source line as detail; a wrong instruction is dropped and parsing goes
 * on with the next one. Everything is allocated in the dockerfile's arena;
 * the work per instruction is linear in its length.
 */
#include "frontend/ast.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Caps on untrusted input. */
#define FE_MAX_FILE       (16u << 20) /* bytes of a Dockerfile */
#define FE_MAX_LINES      1000000     /* physical lines */
#define FE_MAX_LINE       (1u << 20)  /* bytes of one physical line */
#define FE_MAX_INSTR      (4u << 20)  /* bytes of one instruction, continuations joined */
#define FE_MAX_ERRORS     100         /* errors reported before giving up */
#define FE_MAX_JSON_DEPTH 64
#define FE_MAX_DETAIL     4096 /* bytes of a source line shown with an error */

static const char *const kind_names[FE_KIND_COUNT] = {
    [FE_FROM] = "FROM",
    [FE_RUN] = "RUN",
    [FE_CMD] = "CMD",
    [FE_LABEL] = "LABEL",
    [FE_MAINTAINER] = "MAINTAINER",
    [FE_EXPOSE] = "EXPOSE",
    [FE_ENV] = "ENV",
    [FE_ADD] = "ADD",
    [FE_COPY] = "COPY",
    [FE_ENTRYPOINT] = "ENTRYPOINT",
    [FE_VOLUME] = "VOLUME",
    [FE_USER] = "USER",
    [FE_WORKDIR] = "WORKDIR",
    [FE_ARG] = "ARG",
    [FE_ONBUILD] = "ONBUILD",
    [FE_STOPSIGNAL] = "STOPSIGNAL",
    [FE_HEALTHCHECK] = "HEALTHCHECK",
    [FE_SHELL] = "SHELL",
};

const char *fe_kind_name(enum fe_kind k)
{
    if ((int)k < 0 || k >= FE_KIND_COUNT)
        return "UNKNOWN";
    return kind_names[k];
}

const struct fe_flag *fe_instr_flag(const struct fe_instr *in, const char *name)
{
    const struct fe_flag *found = NULL;
    for (size_t i = 0; in && i < in->nflags; i++)
        if (strcmp(in->flags[i].name, name) == 0)
            found = &in->flags[i];
    return found;
}

/* ---- builder flags each instruction accepts ------------------------------ */

enum flag_type { FL_STRING, FL_STRINGS, FL_BOOL };

struct flag_spec {
    enum fe_kind kind;
    const char *name;
    enum flag_type type;
};

static const struct flag_spec flag_specs[] = {
    {FE_FROM, "platform", FL_STRING},
    {FE_RUN, "mount", FL_STRINGS},
    {FE_RUN, "network", FL_STRING},
    {FE_RUN, "security", FL_STRING},
    {FE_COPY, "from", FL_STRING},
    {FE_COPY, "chown", FL_STRING},
    {FE_COPY, "chmod", FL_STRING},
    {FE_COPY, "link", FL_BOOL},
    {FE_COPY, "parents", FL_BOOL},
    {FE_COPY, "exclude", FL_STRINGS},
    {FE_ADD, "chown", FL_STRING},
    {FE_ADD, "chmod", FL_STRING},
    {FE_ADD, "checksum", FL_STRING},
    {FE_ADD, "keep-git-dir", FL_BOOL},
    {FE_ADD, "link", FL_BOOL},
    {FE_ADD, "exclude", FL_STRINGS},
    {FE_ADD, "unpack", FL_BOOL},
    {FE_HEALTHCHECK, "interval", FL_STRING},
    {FE_HEALTHCHECK, "timeout", FL_STRING},
    {FE_HEALTHCHECK, "start-period", FL_STRING},
    {FE_HEALTHCHECK, "start-interval", FL_STRING},
    {FE_HEALTHCHECK, "retries", FL_STRING},
};

static const struct flag_spec *flag_lookup(enum fe_kind kind, const char *name)
{
    for (size_t i = 0; i < KN_ARRAY_SIZE(flag_specs); i++)
        if (flag_specs[i].kind == kind && strcmp(flag_specs[i].name, name) == 0)
            return &flag_specs[i];
    return NULL;
}

/* ---- the parser state ------------------------------------------------------ */

/* A piece of the joined instruction text and where it came from, so an offset
 * in the text maps back to a line and a column. */
struct seg {
    size_t off;
    int line;
    int col;
};

struct parser {
    struct fe_dockerfile *df;
    struct kn_arena *a;
    char esc;
    bool located; /* false for fe_parse_line: no file positions */
    char **lines; /* the lines being parsed (df->lines, or a trigger's) */
    size_t nlines;
    struct kn_error *errs;
    int nerrs;
    bool too_many;
    KN_VEC(struct seg) segs;
};

static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static void pos_of(const struct parser *p, size_t off, int *line, int *col)
{
    *line = 0;
    *col = 0;
    if (!p->segs.n)
        return;
    size_t lo = 0, hi = p->segs.n; /* last seg with seg.off <= off */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->segs.v[mid].off <= off)
            lo = mid;
        else
            hi = mid;
    }
    const struct seg *s = &p->segs.v[lo];
    *line = s->line;
    *col = s->col + (int)(off - s->off);
}

static void add_error_at(struct parser *p, int line, int col, const char *fmt, va_list ap)
    KN_PRINTF(4, 0);

static void add_error_at(struct parser *p, int line, int col, const char *fmt, va_list ap)
{
    if (p->too_many)
        return;
    struct kn_error *e;
    if (p->nerrs >= FE_MAX_ERRORS) {
        e = kn_err_new(KN_E_PARSE, "too many errors, giving up");
        p->too_many = true;
    } else {
        e = kn_err_newv(KN_E_PARSE, fmt, ap);
    }
    p->nerrs++;
    if (line > 0 && (size_t)line <= p->nlines) {
        if (p->located)
            kn_err_at(e, p->df->name, line, col);
        const char *src = p->lines[line - 1];
        if (strlen(src) > FE_MAX_DETAIL)
            e->detail = kn_asprintf("%.*s...", FE_MAX_DETAIL, src);
        else
            kn_err_set_detail(e, src);
    }
    kn_err_append(&p->errs, e);
}

static int perr_line(struct parser *p, int line, int col, const char *fmt, ...) KN_PRINTF(4, 5);
static int perr_line(struct parser *p, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_error_at(p, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

/* An error at offset `off` of the current instruction text. */
static int perr(struct parser *p, size_t off, const char *fmt, ...) KN_PRINTF(3, 4);
static int perr(struct parser *p, size_t off, const char *fmt, ...)
{
    int line, col;
    pos_of(p, off, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    add_error_at(p, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- small vectors that end up in the arena -------------------------------- */

typedef KN_VEC(char *) strvec;

static char **arena_strv(struct kn_arena *a, strvec *v, size_t *n)
{
    *n = v->n;
    char **out = v->n ? kn_arena_memdup(a, v->v, v->n * sizeof(char *)) : NULL;
    free(v->v);
    memset(v, 0, sizeof(*v));
    return out;
}

/* ---- JSON string arrays ------------------------------------------------------
 *
 * `["a", "b"]` is the exec form. Anything that is not valid JSON is shell
 * form (as BuildKit); valid JSON that is not an array of strings is an error.
 */
enum json_result { JSON_INVALID, JSON_OK, JSON_NOT_STRINGS, JSON_NUL };

struct json {
    const char *s;
    size_t i, n;
};

static void json_ws(struct json *j)
{
    while (j->i < j->n &&
           (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool json_hex4(struct json *j, unsigned *out)
{
    if (j->n - j->i < 4)
        return false;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval((unsigned char)j->s[j->i + k]);
        if (h < 0)
            return false;
        v = v * 16 + (unsigned)h;
    }
    j->i += 4;
    *out = v;
    return true;
}

static void utf8_put(struct kn_buf *b, unsigned cp)
{
    if (cp < 0x80) {
        kn_buf_addc(b, (char)cp);
    } else if (cp < 0x800) {
        kn_buf_addc(b, (char)(0xc0 | (cp >> 6)));
        kn_buf_addc(b, (char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        kn_buf_addc(b, (char)(0xe0 | (cp >> 12)));
        kn_buf_addc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        kn_buf_addc(b, (char)(0x80 | (cp & 0x3f)));
    } else {
        kn_buf_addc(b, (char)(0xf0 | (cp >> 18)));
        kn_buf_addc(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
        kn_buf_addc(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        kn_buf_addc(b, (char)(0x80 | (cp & 0x3f)));
    }
}

/* A JSON string at j->i (the opening quote); decoded into b when b != NULL.
 * Returns false when it is not a valid string; *nul when it holds U+0000. */
static bool json_string(struct json *j, struct kn_buf *b, bool *nul)
{
    j->i++; /* '"' */
    while (j->i < j->n) {
        unsigned char c = (unsigned char)j->s[j->i++];
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c != '\\') {
            if (b)
                kn_buf_addc(b, (char)c);
            continue;
        }
        if (j->i >= j->n)
            return false;
        c = (unsigned char)j->s[j->i++];
        unsigned cp;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            cp = c;
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (!json_hex4(j, &cp))
                return false;
            if (cp >= 0xd800 && cp < 0xdc00) {
                /* a surrogate pair, or U+FFFD for a lone half (as Go) */
                unsigned lo;
                size_t save = j->i;
                if (j->n - j->i >= 6 && j->s[j->i] == '\\' && j->s[j->i + 1] == 'u') {
                    j->i += 2;
                    if (json_hex4(j, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    } else {
                        j->i = save;
                        cp = 0xfffd;
                    }
                } else {
                    cp = 0xfffd;
                }
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                cp = 0xfffd;
            }
            break;
        default:
            return false;
        }
        if (cp == 0)
            *nul = true;
        if (b)
            utf8_put(b, cp);
    }
    return false;
}

static bool json_value(struct json *j, int depth, bool *nul);

static bool json_number(struct json *j)
{
    size_t start = j->i;
    if (j->i < j->n && j->s[j->i] == '-')
        j->i++;
    if (j->i >= j->n)
        return false;
    if (j->s[j->i] == '0') {
        j->i++;
    } else if (j->s[j->i] >= '1' && j->s[j->i] <= '9') {
        while (j->i < j->n && isdigit((unsigned char)j->s[j->i]))
            j->i++;
    } else {
        return false;
    }
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        size_t d = j->i;
        while (j->i < j->n && isdigit((unsigned char)j->s[j->i]))
            j->i++;
        if (j->i == d)
            return false;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        size_t d = j->i;
        while (j->i < j->n && isdigit((unsigned char)j->s[j->i]))
            j->i++;
        if (j->i == d)
            return false;
    }
    return j->i > start;
}

static bool json_lit(struct json *j, const char *lit)
{
    size_t l = strlen(lit);
    if (j->n - j->i < l || memcmp(j->s + j->i, lit, l) != 0)
        return false;
    j->i += l;
    return true;
}

static bool json_value(struct json *j, int depth, bool *nul)
{
    if (depth > FE_MAX_JSON_DEPTH)
        return false;
    json_ws(j);
    if (j->i >= j->n)
        return false;
    char c = j->s[j->i];
    if (c == '"')
        return json_string(j, NULL, nul);
    if (c == '[' || c == '{') {
        char close = c == '[' ? ']' : '}';
        j->i++;
        json_ws(j);
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                json_ws(j);
                if (j->i >= j->n || j->s[j->i] != '"' || !json_string(j, NULL, nul))
                    return false;
                json_ws(j);
                if (j->i >= j->n || j->s[j->i] != ':')
                    return false;
                j->i++;
            }
            if (!json_value(j, depth + 1, nul))
                return false;
            json_ws(j);
            if (j->i >= j->n)
                return false;
            if (j->s[j->i] == ',') {
                j->i++;
                continue;
            }
            if (j->s[j->i] == close) {
                j->i++;
                return true;
            }
            return false;
        }
    }
    if (c == 't')
        return json_lit(j, "true");
    if (c == 'f')
        return json_lit(j, "false");
    if (c == 'n')
        return json_lit(j, "null");
    return json_number(j);
}

static enum json_result json_string_array(struct kn_arena *a, const char *s, size_t n, strvec *out)
{
    struct json j = {s, 0, n};
    struct kn_buf b = KN_BUF_INIT;
    bool strings = true, nul = false;
    json_ws(&j);
    if (j.i >= n || s[j.i] != '[')
        return JSON_INVALID;
    j.i++;
    json_ws(&j);
    if (j.i < n && s[j.i] == ']') {
        j.i++;
    } else {
        for (;;) {
            json_ws(&j);
            if (j.i >= n)
                goto invalid;
            if (s[j.i] == '"') {
                kn_buf_reset(&b);
                kn_buf_adds(&b, "");
                if (!json_string(&j, &b, &nul))
                    goto invalid;
                kn_vec_push(out, kn_arena_strndup(a, b.data, b.len));
            } else {
                if (!json_value(&j, 1, &nul))
                    goto invalid;
                strings = false;
            }
            json_ws(&j);
            if (j.i >= n)
                goto invalid;
            if (s[j.i] == ',') {
                j.i++;
                continue;
            }
            if (s[j.i] == ']') {
                j.i++;
                break;
            }
            goto invalid;
        }
    }
    json_ws(&j);
    if (j.i != n)
        goto invalid;
    kn_buf_release(&b);
    if (!strings)
        return JSON_NOT_STRINGS;
    return nul ? JSON_NUL : JSON_OK;
invalid:
    kn_buf_release(&b);
    out->n = 0;
    return JSON_INVALID;
}

/* ---- words ------------------------------------------------------------------ */

struct word {
    size_t start, end; /* offsets in the instruction text */
};
typedef KN_VEC(struct word) wordvec;

/* Splits s[start, end) into words as BuildKit's parseWords does: whitespace
 * separates words except inside quotes; the escape character protects the
 * next character; quotes and escapes are kept in the words. */
static void split_words(const char *s, size_t start, size_t end, char esc, wordvec *out)
{
    size_t i = start;
    while (i < end) {
        while (i < end && is_space((unsigned char)s[i]))
            i++;
        if (i >= end)
            break;
        size_t ws = i;
        char quote = 0;
        while (i < end) {
            char c = s[i];
            if (!quote) {
                if (is_space((unsigned char)c))
                    break;
                if (c == '\'' || c == '"') {
                    quote = c;
                } else if (c == esc) {
                    if (i + 1 < end)
                        i++;
                }
            } else if (c == quote) {
                quote = 0;
            } else if (c == esc && quote != '\'') {
                if (i + 1 < end)
                    i++;
            }
            i++;
        }
        struct word w = {ws, i};
        /* an escape character that ends the text is dropped (BuildKit) */
        if (w.end - w.start >= 1 && w.end == end && s[w.end - 1] == esc) {
            size_t k = w.end - 1, nesc = 0;
            while (k > w.start && s[k - 1] == esc) {
                k--;
                nesc++;
            }
            if (nesc % 2 == 0)
                w.end--;
        }
        kn_vec_push(out, w);
    }
}

/* Splits on whitespace only (BuildKit's parseStringsWhitespaceDelimited). */
static void split_ws(const char *s, size_t start, size_t end, wordvec *out)
{
    size_t i = start;
    while (i < end) {
        while (i < end && is_space((unsigned char)s[i]))
            i++;
        if (i >= end)
            break;
        size_t ws = i;
        while (i < end && !is_space((unsigned char)s[i]))
            i++;
        struct word w = {ws, i};
        kn_vec_push(out, w);
    }
}

/* ---- heredoc words -------------------------------------------------------------
 *
 * BuildKit lexes the whole instruction line with the shell lexer (backslash
 * escapes, quotes kept) and takes every word of the form [n]<<[-]NAME as a
 * heredoc. The name is the word with quotes removed; a quoted name turns
 * variable expansion of the body off.
 */
struct hd_word {
    size_t start;
    char *name;
    bool chomp, expand;
};
typedef KN_VEC(struct hd_word) hdvec;

static void heredoc_words(struct parser *p, const char *s, size_t start, size_t end, hdvec *out)
{
    /* the words of the line; an unterminated quote means none (BuildKit's
     * lexer fails on the line and finds no heredoc) */
    wordvec words = {0};
    size_t i = start;
    while (i < end) {
        while (i < end && is_space((unsigned char)s[i]))
            i++;
        if (i >= end)
            break;
        size_t ws = i;
        char quote = 0;
        while (i < end && (quote || !is_space((unsigned char)s[i]))) {
            char c = s[i];
            if (quote) {
                if (c == quote)
                    quote = 0;
                else if (c == '\\' && quote == '"' && i + 1 < end)
                    i++;
            } else if (c == '\'' || c == '"') {
                quote = c;
            } else if (c == '\\' && i + 1 < end) {
                i++;
            } else if (c == '<' && i + 1 < end && s[i + 1] == '<') {
                /* `<< EOF` and `<<- EOF`: the blanks belong to the word */
                i += 2;
                if (i < end && s[i] == '-')
                    i++;
                while (i < end && is_space((unsigned char)s[i]))
                    i++;
                continue;
            }
            i++;
        }
        if (quote) {
            free(words.v);
            return;
        }
        struct word w = {ws, i};
        kn_vec_push(&words, w);
    }
    for (size_t wi = 0; wi < words.n; wi++) {
        size_t ws = words.v[wi].start;
        i = words.v[wi].end;
        /* ^(\d*)<<(-?)\s*([^<]*)$ */
        size_t k = ws;
        while (k < i && isdigit((unsigned char)s[k]))
            k++;
        if (i - k < 2 || s[k] != '<' || s[k + 1] != '<')
            continue;
        k += 2;
        bool chomp = false;
        if (k < i && s[k] == '-') {
            chomp = true;
            k++;
        }
        while (k < i && is_space((unsigned char)s[k]))
            k++;
        if (k >= i || memchr(s + k, '<', i - k))
            continue;
        /* the name: quotes removed, backslash escapes resolved */
        struct kn_buf name = KN_BUF_INIT;
        bool quoted = false;
        char q = 0;
        kn_buf_adds(&name, "");
        for (size_t m = k; m < i; m++) {
            char c = s[m];
            if (q) {
                if (c == q) {
                    q = 0;
                    continue;
                }
                if (c == '\\' && q == '"' && m + 1 < i &&
                    (s[m + 1] == '"' || s[m + 1] == '\\' || s[m + 1] == '$'))
                    c = s[++m];
                kn_buf_addc(&name, c);
                continue;
            }
            if (c == '\'' || c == '"') {
                q = c;
                quoted = true;
                continue;
            }
            if (c == '\\') {
                if (m + 1 >= i)
                    continue;
                c = s[++m];
            }
            kn_buf_addc(&name, c);
        }
        if (name.len) {
            struct hd_word h = {ws, kn_arena_strndup(p->a, name.data, name.len), chomp, !quoted};
            kn_vec_push(out, h);
        }
        kn_buf_release(&name);
    }
    free(words.v);
}

static bool is_heredoc_word(const char *w)
{
    const char *k = w;
    while (isdigit((unsigned char)*k))
        k++;
    if (k[0] != '<' || k[1] != '<')
        return false;
    k += 2;
    if (*k == '-')
        k++;
    return *k && !strchr(k, '<');
}

/* ---- flags --------------------------------------------------------------------- */

struct raw_flag {
    size_t off;
    char *word; /* "--name=value", quotes removed */
};
typedef KN_VEC(struct raw_flag) flagvec;

/* BuildKit's extractBuilderFlags: the leading words that start with "--"
 * (quotes removed, backslash escapes resolved); "--" alone ends them.
 * Returns the offset where the arguments start. */
static size_t extract_flags(struct parser *p, const char *s, size_t start, size_t end, flagvec *out)
{
    size_t i = start;
    struct kn_buf w = KN_BUF_INIT;
    for (;;) {
        while (i < end && is_space((unsigned char)s[i]))
            i++;
        if (i + 1 >= end || s[i] != '-' || s[i + 1] != '-')
            break;
        size_t ws = i;
        kn_buf_reset(&w);
        kn_buf_adds(&w, "");
        char quote = 0;
        while (i < end && (quote || !is_space((unsigned char)s[i]))) {
            char c = s[i++];
            if (quote) {
                if (c == quote) {
                    quote = 0;
                    continue;
                }
            } else if (c == '\'' || c == '"') {
                quote = c;
                continue;
            }
            if (c == '\\') {
                if (i >= end)
                    continue;
                c = s[i++];
            }
            kn_buf_addc(&w, c);
        }
        if (strcmp(w.data, "--") == 0)
            break;
        struct raw_flag f = {ws, kn_arena_strndup(p->a, w.data, w.len)};
        kn_vec_push(out, f);
    }
    kn_buf_release(&w);
    return i;
}

static bool parse_bool(const char *v, bool *out)
{
    if (strcasecmp(v, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(v, "false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* Go's time.ParseDuration, to nanoseconds. */
static bool go_duration(const char *s, int64_t *ns)
{
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
                 {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
    bool neg = false;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return true;
    }
    if (!*s)
        return false;
    double total = 0;
    while (*s) {
        if (!isdigit((unsigned char)*s) && *s != '.')
            return false;
        char *endp;
        double v = strtod(s, &endp);
        if (endp == s || (!isdigit((unsigned char)endp[-1]) && endp - s < 2))
            return false;
        s = endp;
        size_t ul = 0;
        double mult = 0;
        for (size_t k = 0; k < KN_ARRAY_SIZE(units); k++) {
            size_t l = strlen(units[k].unit);
            if (strncmp(s, units[k].unit, l) == 0 && l > ul) {
                ul = l;
                mult = units[k].mult;
            }
        }
        if (!ul)
            return false;
        s += ul;
        total += v * mult;
        if (total > 9.2e18)
            return false;
    }
    *ns = (int64_t)(neg ? -total : total);
    return true;
}

int fe_duration_parse(const char *s, int64_t *ns, struct kn_error **err)
{
    if (!go_duration(s, ns))
        return kn_err_set(err, KN_E_PARSE, "time: invalid duration \"%s\"", s);
    return 0;
}

/* Checks the raw flags of an instruction and stores them. */
static int check_flags(struct parser *p, struct fe_instr *in, flagvec *raw, bool none_form)
{
    int rc = 0;
    in->flags = raw->n ? kn_arena_alloc(p->a, raw->n * sizeof(struct fe_flag)) : NULL;
    in->nflags = 0;
    for (size_t i = 0; i < raw->n; i++) {
        const char *w = raw->v[i].word + 2;
        const char *eq = strchr(w, '=');
        struct fe_flag f = {0};
        f.col = 0;
        f.name = eq ? kn_arena_strndup(p->a, w, (size_t)(eq - w)) : kn_arena_strdup(p->a, w);
        f.has_value = eq != NULL;
        f.value = eq ? kn_arena_strdup(p->a, eq + 1) : NULL;
        int line;
        pos_of(p, raw->v[i].off, &line, &f.col);
        size_t off = raw->v[i].off;
        if (none_form) {
            rc = perr(p, off, "HEALTHCHECK NONE takes no flags");
            continue;
        }
        const struct flag_spec *spec = flag_lookup(in->kind, f.name);
        if (!spec) {
            rc = perr(p, off, "unknown flag: --%s", f.name);
            continue;
        }
        if (spec->type != FL_STRINGS) {
            bool dup = false;
            for (size_t k = 0; k < in->nflags; k++)
                if (strcmp(in->flags[k].name, f.name) == 0)
                    dup = true;
            if (dup) {
                rc = perr(p, off, "duplicate flag specified: --%s", f.name);
                continue;
            }
        }
        if (spec->type == FL_BOOL) {
            bool b;
            if (f.has_value && !*f.value) {
                rc = perr(p, off, "missing a value on flag: --%s", f.name);
                continue;
            }
            if (f.has_value && !parse_bool(f.value, &b)) {
                rc =
                    perr(p, off, "expecting boolean value for flag --%s, not: %s", f.name, f.value);
                continue;
            }
            if (f.has_value)
                f.value = kn_arena_strdup(p->a, b ? "true" : "false"); /* as BuildKit */
        } else if (!f.has_value) {
            rc = perr(p, off, "missing a value on flag: --%s", f.name);
            continue;
        }
        /* values that can be checked before expansion */
        const char *v = f.value;
        bool literal = v && !strchr(v, '$');
        if (in->kind == FE_RUN && literal && strcmp(f.name, "network") == 0 &&
            strcmp(v, "default") != 0 && strcmp(v, "none") != 0 && strcmp(v, "host") != 0) {
            rc = perr(p, off,
                      "invalid value '%s' for flag --network: must be default, none or host", v);
            continue;
        }
        if (in->kind == FE_RUN && literal && strcmp(f.name, "security") == 0 &&
            strcmp(v, "sandbox") != 0 && strcmp(v, "insecure") != 0) {
            rc = perr(p, off, "invalid value '%s' for flag --security: must be sandbox or insecure",
                      v);
            continue;
        }
        if (in->kind == FE_HEALTHCHECK && strcmp(f.name, "retries") == 0 && *v) {
            char *endp;
            long long r = strtoll(v, &endp, 10);
            if (*endp || endp == v || r > INT32_MAX || r < INT32_MIN) {
                rc = perr(p, off, "invalid value '%s' for flag --retries: not an integer", v);
                continue;
            }
            if (r < 0) {
                rc = perr(p, off, "--retries cannot be negative (%lld)", r);
                continue;
            }
        } else if (in->kind == FE_HEALTHCHECK && *v) {
            int64_t ns;
            if (!go_duration(v, &ns)) {
                rc = perr(p, off, "invalid value '%s' for flag --%s: time: invalid duration \"%s\"",
                          v, f.name, v);
                continue;
            }
            if (ns < 0) {
                rc = perr(p, off, "interval \"%s\" cannot be negative", f.name);
                continue;
            }
            if (ns != 0 && ns < 1000000) {
                rc = perr(p, off, "interval \"%s\" cannot be less than 1ms", f.name);
                continue;
            }
        }
        in->flags[in->nflags++] = f;
    }
    return rc;
}

/* ---- instructions -------------------------------------------------------------- */

static int kind_lookup(const char *s, size_t n)
{
    for (int k = 0; k < FE_KIND_COUNT; k++)
        if (strlen(kind_names[k]) == n && strncasecmp(kind_names[k], s, n) == 0)
            return k;
    return -1;
}

static size_t levenshtein(const char *a, size_t la, const char *b, size_t lb)
{
    size_t row[40];
    if (lb >= KN_ARRAY_SIZE(row))
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t cost = toupper((unsigned char)a[i - 1]) == b[j - 1] ? 0 : 1;
            size_t best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

static const char *suggest_kind(const char *s, size_t n)
{
    if (n > 32)
        return NULL;
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (int k = 0; k < FE_KIND_COUNT; k++) {
        size_t d = levenshtein(s, n, kind_names[k], strlen(kind_names[k]));
        if (d < bestd) {
            bestd = d;
            best = kind_names[k];
        }
    }
    size_t limit = strlen(best) <= 3 ? 1 : 2;
    return bestd <= limit && bestd < n ? best : NULL;
}

static char *upper_dup(struct kn_arena *a, const char *s, size_t n)
{
    char *u = kn_arena_strndup(a, s, n);
    for (char *c = u; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    return u;
}

static char *sub_str(struct parser *p, const char *s, size_t start, size_t end)
{
    return kn_arena_strndup(p->a, s + start, end - start);
}

/* Tries the JSON form of s[start, end). Returns 1 when it is JSON (args set),
 * 0 when it is shell form, -1 on an error. */
static int maybe_json(struct parser *p, struct fe_instr *in, const char *s, size_t start,
                      size_t end)
{
    if (start >= end || s[start] != '[')
        return 0;
    strvec v = {0};
    switch (json_string_array(p->a, s + start, end - start, (void *)&v)) {
    case JSON_OK:
        in->args = arena_strv(p->a, &v, &in->nargs);
        in->json = true;
        return 1;
    case JSON_NOT_STRINGS:
        free(v.v);
        return perr(p, start,
                    "when using JSON array syntax, arrays must be comprised of strings only");
    case JSON_NUL:
        free(v.v);
        return perr(p, start, "invalid NUL character in JSON string");
    case JSON_INVALID:
        break;
    }
    free(v.v);
    return 0;
}

static void words_to_args(struct parser *p, struct fe_instr *in, const char *s, wordvec *w)
{
    in->nargs = w->n;
    in->args = w->n ? kn_arena_alloc(p->a, w->n * sizeof(char *)) : NULL;
    for (size_t i = 0; i < w->n; i++)
        in->args[i] = sub_str(p, s, w->v[i].start, w->v[i].end);
}

/* The arguments of COPY, ADD and VOLUME: the JSON form, else the words of
 * the shell form (kept in w for error columns). -1 on a JSON error. */
static int json_or_words(struct parser *p, struct fe_instr *in, const char *s, size_t start,
                         size_t end, wordvec *w)
{
    int j = maybe_json(p, in, s, start, end);
    if (j == 0) {
        split_words(s, start, end, p->esc, w);
        words_to_args(p, in, s, w);
    }
    return j < 0 ? -1 : 0;
}

static void shell_arg(struct parser *p, struct fe_instr *in, const char *s, size_t start,
                      size_t end)
{
    if (start >= end)
        return;
    in->args = kn_arena_alloc(p->a, sizeof(char *));
    in->args[0] = sub_str(p, s, start, end);
    in->nargs = 1;
}

static bool valid_stage_name(const char *n)
{
    if (!islower((unsigned char)n[0]))
        return false;
    for (const char *c = n + 1; *c; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-' && *c != '_' &&
            *c != '.')
            return false;
    return true;
}

/* ENV and LABEL: `KEY=VALUE ...`, or the legacy `KEY VALUE`. */
static int parse_name_val(struct parser *p, struct fe_instr *in, const char *s, size_t r,
                          size_t end, size_t kw_off)
{
    const char *kw = fe_kind_name(in->kind);
    wordvec w = {0};
    split_words(s, r, end, p->esc, &w);
    int rc = 0;
    if (!w.n) {
        rc = perr(p, kw_off, "%s requires at least one argument", kw);
    } else if (!memchr(s + w.v[0].start, '=', w.v[0].end - w.v[0].start)) {
        size_t k = r;
        while (k < end && !is_space((unsigned char)s[k]))
            k++;
        size_t v = k;
        while (v < end && is_space((unsigned char)s[v]))
            v++;
        if (v >= end) {
            rc = perr(p, r, "%s must have two arguments", kw);
        } else {
            in->kvs = kn_arena_alloc(p->a, sizeof(struct fe_kv));
            in->kvs[0].key = sub_str(p, s, r, k);
            in->kvs[0].value = sub_str(p, s, v, end);
            in->kvs[0].has_value = true;
            in->nkvs = 1;
        }
    } else {
        in->kvs = kn_arena_alloc(p->a, w.n * sizeof(struct fe_kv));
        for (size_t i = 0; i < w.n; i++) {
            const char *ws = s + w.v[i].start;
            size_t wl = w.v[i].end - w.v[i].start;
            const char *eq = memchr(ws, '=', wl);
            if (!eq) {
                rc = perr(p, w.v[i].start,
                          "syntax error - can't find = in \"%.*s\": must be of the form name=value",
                          (int)wl, ws);
                continue;
            }
            if (eq == ws) {
                rc = perr(p, w.v[i].start, "%s names can not be blank", kw);
                continue;
            }
            struct fe_kv *kv = &in->kvs[in->nkvs++];
            kv->key = kn_arena_strndup(p->a, ws, (size_t)(eq - ws));
            kv->value = kn_arena_strndup(p->a, eq + 1, wl - (size_t)(eq - ws) - 1);
            kv->has_value = true;
        }
    }
    free(w.v);
    return rc;
}

static int parse_instr(struct parser *p, const char *s, size_t start, size_t end,
                       struct fe_instr *in, hdvec *hd);

/* The arguments of one instruction, after its flags. */
static int parse_args(struct parser *p, struct fe_instr *in, const char *s, size_t r, size_t end,
                      size_t kw_off, hdvec *hd, bool *none_form)
{
    const char *kw = fe_kind_name(in->kind);
    wordvec w = {0};
    int rc = 0;
    switch (in->kind) {
    case FE_FROM:
        split_ws(s, r, end, &w);
        words_to_args(p, in, s, &w);
        if (!(in->nargs == 1 || (in->nargs == 3 && strcasecmp(in->args[1], "as") == 0))) {
            rc = perr(p, kw_off, "FROM requires either one or three arguments");
        } else if (in->nargs == 3) {
            char *lname = kn_arena_strdup(p->a, in->args[2]);
            for (char *c = lname; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            if (!valid_stage_name(lname))
                rc = perr(p, w.v[2].start,
                          "invalid name for build stage: \"%s\", name can't start with a number "
                          "or contain symbols",
                          in->args[2]);
        }
        break;
    case FE_RUN:
    case FE_CMD:
    case FE_ENTRYPOINT:
    case FE_SHELL: {
        int j = maybe_json(p, in, s, r, end);
        if (j < 0) {
            rc = -1;
            break;
        }
        if (!j)
            shell_arg(p, in, s, r, end);
        if (in->kind == FE_SHELL) {
            if (!in->nargs)
                rc = perr(p, kw_off, "SHELL requires at least one argument");
            else if (!in->json)
                rc = perr(p, kw_off, "SHELL requires the arguments to be in JSON form");
        }
        if (in->kind == FE_RUN && !in->json && hd)
            heredoc_words(p, s, kw_off, end, hd);
        break;
    }
    case FE_COPY:
    case FE_ADD: {
        if (json_or_words(p, in, s, r, end, &w) < 0) {
            rc = -1;
            break;
        }
        if (in->nargs < 2) {
            rc = perr(p, kw_off,
                      "%s requires at least two arguments, but only one was provided. "
                      "Destination could not be determined",
                      kw);
        } else if (!in->json && is_heredoc_word(in->args[in->nargs - 1])) {
            rc = perr(p, w.v[w.n - 1].start, "%s cannot accept a heredoc as a destination", kw);
        }
        if (!in->json && hd)
            heredoc_words(p, s, kw_off, end, hd);
        break;
    }
    case FE_VOLUME: {
        if (json_or_words(p, in, s, r, end, &w) < 0) {
            rc = -1;
            break;
        }
        if (!in->nargs) {
            rc = perr(p, kw_off, "VOLUME requires at least one argument");
            break;
        }
        for (size_t i = 0; i < in->nargs; i++) {
            const char *v = in->args[i];
            while (is_space((unsigned char)*v))
                v++;
            if (!*v) {
                rc = perr(p, r, "VOLUME specified can not be an empty string");
                break;
            }
        }
        break;
    }
    case FE_EXPOSE:
        split_words(s, r, end, p->esc, &w);
        words_to_args(p, in, s, &w);
        if (!in->nargs)
            rc = perr(p, kw_off, "EXPOSE requires at least one argument");
        break;
    case FE_ENV:
    case FE_LABEL:
        rc = parse_name_val(p, in, s, r, end, kw_off);
        break;
    case FE_ARG:
        split_words(s, r, end, p->esc, &w);
        if (!w.n) {
            rc = perr(p, kw_off, "ARG requires at least one argument");
            break;
        }
        in->kvs = kn_arena_alloc(p->a, w.n * sizeof(struct fe_kv));
        for (size_t i = 0; i < w.n; i++) {
            const char *ws = s + w.v[i].start;
            size_t wl = w.v[i].end - w.v[i].start;
            const char *eq = memchr(ws, '=', wl);
            if (eq == ws) {
                rc = perr(p, w.v[i].start, "ARG names can not be blank");
                continue;
            }
            struct fe_kv *kv = &in->kvs[in->nkvs++];
            if (eq) {
                kv->key = kn_arena_strndup(p->a, ws, (size_t)(eq - ws));
                kv->value = kn_arena_strndup(p->a, eq + 1, wl - (size_t)(eq - ws) - 1);
                kv->has_value = true;
            } else {
                kv->key = kn_arena_strndup(p->a, ws, wl);
            }
        }
        break;
    case FE_MAINTAINER:
    case FE_USER:
    case FE_WORKDIR:
    case FE_STOPSIGNAL:
        shell_arg(p, in, s, r, end);
        if (!in->nargs)
            rc = perr(p, kw_off, "%s requires exactly one argument", kw);
        break;
    case FE_HEALTHCHECK: {
        if (r >= end) {
            rc = perr(p, kw_off, "HEALTHCHECK requires at least one argument");
            break;
        }
        size_t sep = r;
        while (sep < end && !is_space((unsigned char)s[sep]))
            sep++;
        size_t next = sep;
        while (next < end && is_space((unsigned char)s[next]))
            next++;
        char *typ = upper_dup(p->a, s + r, sep - r);
        if (strcmp(typ, "NONE") == 0) {
            *none_form = true;
            in->args = kn_arena_alloc(p->a, sizeof(char *));
            in->args[0] = typ;
            in->nargs = 1;
            if (next < end)
                rc = perr(p, next, "HEALTHCHECK NONE takes no arguments");
            break;
        }
        if (strcmp(typ, "CMD") != 0) {
            rc = perr(p, r, "unknown type \"%s\" in HEALTHCHECK (try CMD)", typ);
            break;
        }
        struct fe_instr tmp = {0};
        int j = maybe_json(p, &tmp, s, next, end);
        if (j < 0) {
            rc = -1;
            break;
        }
        if (!j)
            shell_arg(p, &tmp, s, next, end);
        if (!tmp.nargs) {
            rc = perr(p, r, "missing command after HEALTHCHECK CMD");
            break;
        }
        in->json = tmp.json;
        in->nargs = tmp.nargs + 1;
        in->args = kn_arena_alloc(p->a, in->nargs * sizeof(char *));
        in->args[0] = typ;
        memcpy(in->args + 1, tmp.args, tmp.nargs * sizeof(char *));
        break;
    }
    case FE_ONBUILD: {
        if (r >= end) {
            rc = perr(p, kw_off, "ONBUILD requires at least one argument");
            break;
        }
        size_t sep = r;
        while (sep < end && !is_space((unsigned char)s[sep]))
            sep++;
        char *trig = upper_dup(p->a, s + r, sep - r);
        if (strcmp(trig, "ONBUILD") == 0) {
            rc = perr(p, r, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
            break;
        }
        if (strcmp(trig, "FROM") == 0 || strcmp(trig, "MAINTAINER") == 0) {
            rc = perr(p, r, "%s isn't allowed as an ONBUILD trigger", trig);
            break;
        }
        in->sub = kn_arena_alloc(p->a, sizeof(struct fe_instr));
        rc = parse_instr(p, s, r, end, in->sub, hd);
        break;
    }
    case FE_KIND_COUNT:
        break;
    }
    free(w.v);
    return rc;
}

/* Parses the instruction in s[start, end) into *in. Heredoc words of a RUN,
 * COPY or ADD are appended to *hd when hd is not NULL. */
static int parse_instr(struct parser *p, const char *s, size_t start, size_t end,
                       struct fe_instr *in, hdvec *hd)
{
    while (start < end && is_space((unsigned char)s[start]))
        start++;
    while (end > start && is_space((unsigned char)s[end - 1]))
        end--;
    memset(in, 0, sizeof(*in));
    pos_of(p, start, &in->pos.line, &in->pos.col);
    in->pos.end_line = in->pos.line;
    size_t w = start;
    while (w < end && !is_space((unsigned char)s[w]))
        w++;
    int kind = kind_lookup(s + start, w - start);
    if (kind < 0) {
        char *word = upper_dup(p->a, s + start, w - start);
        const char *sugg = suggest_kind(s + start, w - start);
        if (sugg)
            return perr(p, start, "unknown instruction: %s (did you mean %s?)", word, sugg);
        return perr(p, start, "unknown instruction: %s", word);
    }
    in->kind = (enum fe_kind)kind;
    in->text = sub_str(p, s, start, end);

    flagvec raw = {0};
    size_t r = extract_flags(p, s, w, end, &raw);
    bool none_form = false;
    int rc = parse_args(p, in, s, r, end, start, hd, &none_form);
    if (check_flags(p, in, &raw, none_form) < 0)
        rc = -1;
    free(raw.v);
    return rc;
}

/* ---- lines -------------------------------------------------------------------- */

static bool line_is_comment(const char *l)
{
    while (is_space((unsigned char)*l))
        l++;
    return *l == '#';
}

static bool line_is_blank(const char *l)
{
    while (is_space((unsigned char)*l))
        l++;
    return !*l;
}

/* Length of l without a trailing "ESC[ \t]*"; *cont tells whether there was one. */
static size_t trim_continuation(const char *l, size_t n, char esc, bool *cont)
{
    size_t k = n;
    while (k > 0 && (l[k - 1] == ' ' || l[k - 1] == '\t'))
        k--;
    if (k > 0 && l[k - 1] == esc) {
        *cont = true;
        return k - 1;
    }
    *cont = false;
    return n;
}

/* `# name=value` at the top of the file. Returns true when the line is a
 * parser directive (known or not); false ends the directives. */
static bool directive(struct parser *p, const char *l, int lineno, bool seen[3])
{
    const char *c = l;
    while (is_space((unsigned char)*c))
        c++;
    if (*c != '#')
        return false;
    c++;
    while (is_space((unsigned char)*c))
        c++;
    const char *ks = c;
    if (!isalpha((unsigned char)*c))
        return false;
    while (isalnum((unsigned char)*c))
        c++;
    size_t klen = (size_t)(c - ks);
    while (is_space((unsigned char)*c))
        c++;
    if (*c != '=')
        return false;
    c++;
    while (is_space((unsigned char)*c))
        c++;
    const char *vs = c;
    const char *ve = vs + strlen(vs);
    while (ve > vs && is_space((unsigned char)ve[-1]))
        ve--;
    if (ve == vs)
        return false;
    static const char *const names[3] = {"syntax", "escape", "check"};
    int idx = -1;
    for (int k = 0; k < 3; k++)
        if (strlen(names[k]) == klen && strncasecmp(names[k], ks, klen) == 0)
            idx = k;
    if (idx < 0)
        return false; /* unknown directives are comments, and end the directives */
    int col = (int)(ks - l) + 1;
    if (seen[idx]) {
        perr_line(p, lineno, col, "only one %s parser directive can be used", names[idx]);
        return true;
    }
    seen[idx] = true;
    char *v = kn_arena_strndup(p->a, vs, (size_t)(ve - vs));
    if (idx == 0) {
        p->df->syntax = v;
    } else if (idx == 2) {
        p->df->check = v;
    } else if (strcmp(v, "\\") == 0 || strcmp(v, "`") == 0) {
        p->esc = v[0];
        p->df->escape = v[0];
    } else {
        perr_line(p, lineno, (int)(vs - l) + 1, "invalid escape token '%s' does not match ` or \\",
                  v);
    }
    return true;
}

/* Reads the bodies of the heredocs of one instruction from lines[*i...].
 * Returns -1 (error reported) for an unterminated one. */
static int read_heredocs(struct parser *p, struct fe_instr *in, hdvec *hd, size_t *i)
{
    in->heredocs = kn_arena_alloc(p->a, hd->n * sizeof(struct fe_heredoc));
    in->nheredocs = hd->n;
    struct kn_buf body = KN_BUF_INIT;
    for (size_t k = 0; k < hd->n; k++) {
        struct fe_heredoc *h = &in->heredocs[k];
        h->name = hd->v[k].name;
        h->chomp = hd->v[k].chomp;
        h->expand = hd->v[k].expand;
        h->line = (int)*i + 1;
        kn_buf_reset(&body);
        kn_buf_adds(&body, "");
        bool done = false;
        while (*i < p->nlines) {
            const char *l = p->lines[(*i)++];
            if (h->chomp)
                while (*l == '\t')
                    l++;
            if (strcmp(l, h->name) == 0) {
                done = true;
                break;
            }
            kn_buf_adds(&body, l);
            kn_buf_addc(&body, '\n');
        }
        if (!done) {
            kn_buf_release(&body);
            return perr(p, hd->v[k].start, "unterminated heredoc '%s'", h->name);
        }
        h->content = kn_arena_strndup(p->a, body.data, body.len);
    }
    kn_buf_release(&body);
    in->pos.end_line = (int)*i;
    return 0;
}

/* The main loop over p->lines: at most max_instrs instructions (0 = all). */
typedef KN_VEC(struct fe_instr) instrvec;

static void parse_lines(struct parser *p, bool directives, size_t max_instrs, instrvec *out)
{
    bool seen[3] = {false, false, false};
    bool in_directives = directives;
    struct kn_buf text = KN_BUF_INIT;
    size_t i = 0;
    while (i < p->nlines && !p->too_many && (!max_instrs || out->n < max_instrs)) {
        const char *raw = p->lines[i];
        int lineno = (int)i + 1;
        if (in_directives) {
            if (directive(p, raw, lineno, seen)) {
                i++;
                continue;
            }
            in_directives = false;
        }
        i++;
        if (line_is_comment(raw))
            continue;
        const char *t = raw;
        while (is_space((unsigned char)*t))
            t++;
        bool cont;
        size_t n = trim_continuation(t, strlen(t), p->esc, &cont);
        if (!cont && n == 0)
            continue;
        kn_buf_reset(&text);
        p->segs.n = 0;
        struct seg sg = {0, lineno, (int)(t - raw) + 1};
        kn_vec_push(&p->segs, sg);
        kn_buf_add(&text, t, n);
        kn_buf_adds(&text, "");
        bool too_long = false;
        while (cont && i < p->nlines) {
            const char *l = p->lines[i++];
            if (line_is_comment(l) || line_is_blank(l))
                continue;
            n = trim_continuation(l, strlen(l), p->esc, &cont);
            if (text.len + n > FE_MAX_INSTR) {
                too_long = true;
                continue;
            }
            struct seg s2 = {text.len, (int)i, 1};
            kn_vec_push(&p->segs, s2);
            kn_buf_add(&text, l, n);
        }
        if (too_long) {
            perr_line(p, lineno, 1, "instruction too long (more than %u bytes)", FE_MAX_INSTR);
            continue;
        }
        struct fe_instr in;
        hdvec hd = {0};
        int end_line = (int)i;
        if (parse_instr(p, text.data, 0, text.len, &in, &hd) < 0) {
            /* skip the bodies of its heredocs all the same */
            if (hd.n) {
                struct fe_instr dummy = {0};
                read_heredocs(p, &dummy, &hd, &i);
            }
            free(hd.v);
            continue;
        }
        in.pos.end_line = end_line;
        if (hd.n) {
            struct fe_instr *target = in.kind == FE_ONBUILD && in.sub ? in.sub : &in;
            int rc = read_heredocs(p, target, &hd, &i);
            in.pos.end_line = (int)i;
            if (target != &in)
                target->pos.end_line = in.pos.end_line;
            if (rc < 0) {
                free(hd.v);
                continue;
            }
        }
        free(hd.v);
        kn_vec_push(out, in);
    }
    kn_buf_release(&text);
}

/* Splits buf (owned, in the arena) into NUL-terminated lines in place,
 * without "\n" or "\r\n". */
static int split_lines(struct parser *p, char *buf, size_t len, char ***lines, size_t *nlines)
{
    size_t n = 1;
    for (size_t k = 0; k < len; k++)
        if (buf[k] == '\n')
            n++;
    if (len && buf[len - 1] == '\n')
        n--;
    if (n > FE_MAX_LINES)
        return -1;
    char **v = kn_arena_alloc(p->a, (n ? n : 1) * sizeof(char *));
    size_t idx = 0, start = 0;
    for (size_t k = 0; k <= len && idx < n; k++) {
        if (k == len || buf[k] == '\n') {
            size_t e = k;
            if (e > start && buf[e - 1] == '\r')
                e--;
            buf[e] = '\0';
            if (k < len)
                buf[k] = '\0';
            v[idx++] = buf + start;
            start = k + 1;
        }
    }
    *lines = v;
    *nlines = idx;
    return 0;
}

/* Reports over-long lines; such lines are cut. */
static void check_lines(struct parser *p)
{
    for (size_t l = 0; l < p->nlines; l++) {
        char *line = p->lines[l];
        if (strlen(line) > FE_MAX_LINE) {
            perr_line(p, (int)l + 1, 1, "line too long (more than %u bytes)", FE_MAX_LINE);
            line[0] = '\0';
        }
    }
}

static struct fe_dockerfile *df_new(const char *name)
{
    struct fe_dockerfile *df = kn_calloc(1, sizeof(*df));
    kn_arena_init(&df->arena);
    df->name = kn_arena_strdup(&df->arena, name ? name : "Dockerfile");
    df->escape = '\\';
    return df;
}

void fe_dockerfile_free(struct fe_dockerfile *df)
{
    if (!df)
        return;
    kn_arena_release(&df->arena);
    free(df);
}

struct fe_dockerfile *fe_parse(const char *name, const char *data, size_t len,
                               struct kn_error **err)
{
    if (len > FE_MAX_FILE) {
        struct kn_error *e =
            kn_err_new(KN_E_UNSAFE, "dockerfile too large (%zu bytes, max %u)", len, FE_MAX_FILE);
        kn_err_at(e, name ? name : "Dockerfile", 0, 0);
        kn_err_propagate(err, &e);
        return NULL;
    }
    struct fe_dockerfile *df = df_new(name);
    struct parser p = {0};
    p.df = df;
    p.a = &df->arena;
    p.esc = '\\';
    p.located = true;

    /* NUL bytes are not text: report the first and treat it as a line end */
    char *buf = kn_arena_alloc(p.a, len + 1);
    if (len)
        memcpy(buf, data, len);
    size_t skip = 0;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
        skip = 3;
    const char *nul = len ? memchr(buf + skip, '\0', len - skip) : NULL;
    if (split_lines(&p, buf + skip, len - skip, &df->lines, &df->nlines) < 0) {
        struct kn_error *e =
            kn_err_new(KN_E_UNSAFE, "dockerfile has too many lines (max %d)", FE_MAX_LINES);
        kn_err_at(e, df->name, 0, 0);
        kn_err_propagate(err, &e);
        fe_dockerfile_free(df);
        return NULL;
    }
    p.lines = df->lines;
    p.nlines = df->nlines;
    if (nul) {
        size_t off = (size_t)(nul - (buf + skip));
        size_t lo = 0;
        for (size_t l = 0; l < p.nlines; l++)
            if ((size_t)(p.lines[l] - (buf + skip)) <= off)
                lo = l;
        perr_line(&p, (int)lo + 1, (int)(off - (size_t)(p.lines[lo] - (buf + skip))) + 1,
                  "invalid NUL byte in dockerfile");
    }
    check_lines(&p);

    instrvec out = {0};
    parse_lines(&p, true, 0, &out);
    df->instrs = out.n ? kn_arena_memdup(p.a, out.v, out.n * sizeof(struct fe_instr)) : NULL;
    df->ninstrs = out.n;
    free(out.v);
    free(p.segs.v);
    if (p.errs) {
        kn_err_propagate(err, &p.errs);
        fe_dockerfile_free(df);
        return NULL;
    }
    return df;
}

struct fe_instr *fe_parse_line(struct fe_dockerfile *df, const char *line, struct kn_error **err)
{
    struct parser p = {0};
    p.df = df;
    p.a = &df->arena;
    p.esc = df->escape ? df->escape : '\\';
    p.located = false;
    size_t len = strlen(line);
    if (len > FE_MAX_INSTR) {
        kn_err_set(err, KN_E_PARSE, "instruction too long (more than %u bytes)", FE_MAX_INSTR);
        return NULL;
    }
    char *buf = kn_arena_strndup(p.a, line, len);
    if (split_lines(&p, buf, len, &p.lines, &p.nlines) < 0) {
        kn_err_set(err, KN_E_PARSE, "instruction has too many lines");
        return NULL;
    }
    instrvec out = {0};
    parse_lines(&p, false, 1, &out);
    free(p.segs.v);
    struct fe_instr *in = NULL;
    if (!p.errs && out.n == 1)
        in = kn_arena_memdup(p.a, &out.v[0], sizeof(*in));
    else if (!p.errs)
        kn_err_set(&p.errs, KN_E_PARSE, "empty instruction");
    free(out.v);
    if (p.errs)
        kn_err_propagate(err, &p.errs);
    return in;
}
