/*
 * The WWW-Authenticate header (RFC 7235 section 4.1): one or more
 * challenges, each an auth-scheme followed by a token68 or by a
 * comma-separated list of auth-params `name = token | quoted-string`. The
 * parser is strict about what it returns and lenient about whitespace and
 * empty list elements, as the RFC asks. Also base64 and the header
 * redaction used by the traces.
 */
#include "exec/registry/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* tchar per RFC 7230 */
static bool is_tchar(char c)
{
    return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ows(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static char *lower_dup(const char *s, size_t n)
{
    char *r = kn_strndup(s, n);
    for (char *q = r; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return r;
}

static size_t token_len(const char *p)
{
    size_t n = 0;
    while (is_tchar(p[n]))
        n++;
    return n;
}

/* quoted-string starting at *p == '"'; appends the unescaped value to b */
static int parse_quoted(const char **p, struct kn_buf *b, const char *header, struct kn_error **err)
{
    const char *q = *p + 1;
    kn_buf_add(b, "", 0);
    for (;;) {
        if (*q == '\0')
            return kn_err_set(err, KN_E_PARSE,
                              "malformed authentication challenge '%s': unterminated quoted string",
                              header);
        if (*q == '"')
            break;
        if (*q == '\\') {
            q++;
            if (*q == '\0')
                continue; /* reported as unterminated above */
        }
        kn_buf_addc(b, *q);
        q++;
    }
    *p = q + 1;
    return 0;
}

static void challenge_release(struct ex_challenge *c)
{
    free(c->scheme);
    for (size_t i = 0; i < c->nparams; i++) {
        free(c->params[i].name);
        free(c->params[i].value);
    }
    free(c->params);
}

/* Looks ahead from p (just after a comma): is the next element an auth-param
 * ("name =") rather than a new challenge ("scheme" SP ...)? */
static bool next_is_param(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
    size_t n = token_len(p);
    if (n == 0)
        return false;
    p += n;
    skip_ows(&p);
    if (*p != '=')
        return false;
    p++;
    skip_ows(&p);
    return *p == '"' || is_tchar(*p);
}

int ex_challenges_parse(const char *header, struct ex_challenges *out, struct kn_error **err)
{
    const char *p = header;
    size_t cap = out->n;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return 0;
        size_t n = token_len(p);
        if (n == 0)
            return kn_err_set(err, KN_E_PARSE,
                              "malformed authentication challenge '%s': expected a scheme at '%s'",
                              header, p);
        struct ex_challenge c = {0};
        c.scheme = lower_dup(p, n);
        p += n;
        size_t pcap = 0;
        if (*p != '\0' && *p != ' ' && *p != '\t' && *p != ',') {
            challenge_release(&c);
            return kn_err_set(err, KN_E_PARSE,
                              "malformed authentication challenge '%s': unexpected '%c' after "
                              "scheme",
                              header, *p);
        }
        skip_ows(&p);
        if (!next_is_param(p)) {
            /* token68 ("Negotiate abc=="), or a scheme without parameters */
            size_t t68 = 0;
            while (isalnum((unsigned char)p[t68]) || (p[t68] && strchr("-._~+/", p[t68])))
                t68++;
            while (t68 > 0 && p[t68] == '=')
                t68++;
            const char *after = p + t68;
            skip_ows(&after);
            if (*after != '\0' && *after != ',') {
                challenge_release(&c);
                return kn_err_set(err, KN_E_PARSE,
                                  "malformed authentication challenge '%s': unexpected '%c'",
                                  header, *after);
            }
            if (t68 > 0) {
                c.params = kn_grow(c.params, &pcap, 1, sizeof(*c.params));
                c.params[0].name = kn_strdup("");
                c.params[0].value = kn_strndup(p, t68);
                c.nparams = 1;
            }
            p = after;
        }
        /* auth-params */
        while (c.nparams == 0 || c.params[0].name[0]) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            if (*p == '\0' || !next_is_param(p))
                break;
            size_t kn = token_len(p);
            char *key = lower_dup(p, kn);
            p += kn;
            skip_ows(&p);
            p++; /* '=' */
            skip_ows(&p);
            struct kn_buf val = KN_BUF_INIT;
            if (*p == '"') {
                if (parse_quoted(&p, &val, header, err) < 0) {
                    free(key);
                    kn_buf_release(&val);
                    challenge_release(&c);
                    return -1;
                }
            } else {
                size_t vn = token_len(p);
                if (vn == 0) {
                    int rc = kn_err_set(err, KN_E_PARSE,
                                        "malformed authentication challenge '%s': parameter '%s' "
                                        "has no value",
                                        header, key);
                    free(key);
                    challenge_release(&c);
                    return rc;
                }
                kn_buf_add(&val, p, vn);
                p += vn;
            }
            skip_ows(&p);
            if (*p != '\0' && *p != ',') {
                int rc = kn_err_set(err, KN_E_PARSE,
                                    "malformed authentication challenge '%s': unexpected '%c' "
                                    "after parameter '%s'",
                                    header, *p, key);
                free(key);
                kn_buf_release(&val);
                challenge_release(&c);
                return rc;
            }
            c.params = kn_grow(c.params, &pcap, c.nparams + 1, sizeof(*c.params));
            c.params[c.nparams].name = key;
            c.params[c.nparams].value = kn_buf_detach(&val);
            c.nparams++;
            kn_buf_release(&val);
        }
        out->v = kn_grow(out->v, &cap, out->n + 1, sizeof(*out->v));
        out->v[out->n++] = c;
    }
}

void ex_challenges_release(struct ex_challenges *c)
{
    for (size_t i = 0; i < c->n; i++)
        challenge_release(&c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

const struct ex_challenge *ex_challenges_find(const struct ex_challenges *c, const char *scheme)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcasecmp(c->v[i].scheme, scheme) == 0)
            return &c->v[i];
    return NULL;
}

const char *ex_challenge_param(const struct ex_challenge *c, const char *name)
{
    for (size_t i = 0; i < c->nparams; i++)
        if (strcasecmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *ex_base64_encode(const void *data, size_t n)
{
    const unsigned char *s = data;
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_add(&b, "", 0);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        kn_buf_addc(&b, b64[(v >> 18) & 63]);
        kn_buf_addc(&b, b64[(v >> 12) & 63]);
        kn_buf_addc(&b, i + 1 < n ? b64[(v >> 6) & 63] : '=');
        kn_buf_addc(&b, i + 2 < n ? b64[v & 63] : '=');
    }
    return kn_buf_detach(&b);
}

int ex_base64_decode(const char *s, struct kn_buf *out)
{
    unsigned v = 0;
    int bits = 0;
    size_t pad = 0;
    kn_buf_add(out, "", 0);
    for (const char *p = s; *p; p++) {
        if (*p == '=') {
            pad++;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        const char *q = strchr(b64, *p);
        if (!q || !*p)
            return -1;
        v = (v << 6) | (unsigned)(q - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            kn_buf_addc(out, (char)((v >> bits) & 0xff));
        }
    }
    if (pad > 2)
        return -1;
    return 0;
}

char *ex_header_redact(const char *line)
{
    static const char *secret[] = {
        "authorization:", "proxy-authorization:", "cookie:", "set-cookie:"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(secret); i++) {
        size_t n = strlen(secret[i]);
        if (strncasecmp(line, secret[i], n) == 0) {
            /* keep the scheme word ("Bearer", "Basic") for debugging */
            const char *v = line + n;
            while (*v == ' ')
                v++;
            size_t w = 0;
            if (i < 2)
                while (v[w] && v[w] != ' ')
                    w++;
            return kn_asprintf("%.*s %.*s%s<redacted>", (int)(n - 0), line, (int)w, v,
                               w ? " " : "");
        }
    }
    return kn_strdup(line);
}
