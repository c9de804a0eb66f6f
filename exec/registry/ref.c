/*
 * Image references, parsed and normalized the way docker does
 * (distribution/reference's ParseNormalizedNamed): "alpine" becomes
 * "docker.io/library/alpine:latest", "index.docker.io" becomes "docker.io",
 * only single-component Docker Hub names get "library/", the first
 * component is a registry domain when it has a '.' or a ':', is
 * "localhost", or has an uppercase letter. Every error names the reference.
 */
#include "exec/registry/internal.h"

#include <ctype.h>
#include <string.h>

#define REF_NAME_MAX 255 /* distribution's NameTotalLengthMax */
#define REF_TAG_MAX  128

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* ; sets *upper when the
 * component would be valid in lowercase. */
static bool valid_component(const char *s, size_t n, bool *upper)
{
    size_t i = 0;
    if (n == 0)
        return false;
    while (i < n) {
        size_t start = i;
        while (i < n && (is_lower_alnum(s[i]) || isupper((unsigned char)s[i]))) {
            if (isupper((unsigned char)s[i]))
                *upper = true;
            i++;
        }
        if (i == start)
            return false; /* separator at the start or two separators */
        if (i == n)
            return true;
        /* a separator */
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
        if (i == n)
            return false; /* separator at the end */
    }
    return true;
}

/* domain: label ('.' label)* [':' port] or '[' ipv6 ']' [':' port] */
static bool valid_domain(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return false;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return false;
        for (const char *p = s + 1; p < close; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return false;
        i = (size_t)(close - s) + 1;
    } else {
        for (;;) {
            size_t start = i;
            while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '-'))
                i++;
            if (i == start || s[start] == '-' || s[i - 1] == '-')
                return false;
            if (i < n && s[i] == '.') {
                i++;
                continue;
            }
            break;
        }
    }
    if (i == n)
        return true;
    if (s[i] != ':' || i + 1 == n)
        return false;
    for (i++; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > REF_TAG_MAX)
        return false;
    if (!(isalnum((unsigned char)t[0]) || t[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
            return false;
    return true;
}

static bool all_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int bad(struct kn_error **err, const char *s, const char *why)
{
    return kn_err_set(err, KN_E_PARSE, "invalid reference '%s': %s", s, why);
}

static int check_digest(const char *s, const char *dg, struct kn_error **err)
{
    const char *colon = strchr(dg, ':');
    if (!colon || colon == dg)
        return bad(err, s, "invalid digest format");
    for (const char *p = dg; p < colon; p++)
        if (!is_lower_alnum(*p) && *p != '+' && *p != '.' && *p != '_' && *p != '-')
            return bad(err, s, "invalid digest format");
    if ((size_t)(colon - dg) != 6 || strncmp(dg, "sha256", 6) != 0)
        return kn_err_set(err, KN_E_PARSE,
                          "invalid reference '%s': unsupported digest algorithm '%.*s'", s,
                          (int)(colon - dg), dg);
    if (!kn_digest_valid(dg))
        return bad(err, s, "invalid sha256 digest (want 64 lowercase hex digits)");
    return 0;
}

int ex_ref_parse(const char *s, struct ex_ref *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return kn_err_set(err, KN_E_PARSE, "invalid reference '': empty reference");
    size_t total = strlen(s);
    if (total > 4096)
        return kn_err_set(err, KN_E_PARSE, "invalid reference '%.64s...': too long", s);
    for (const char *p = s; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return bad(err, s, "contains whitespace or a control character");
    if (all_hex64(s))
        return bad(err, s, "cannot be a 64-character hexadecimal string (an image id)");

    /* name [":" tag] ["@" digest] */
    const char *at = strchr(s, '@');
    size_t namelen = at ? (size_t)(at - s) : total;
    const char *digest = NULL;
    if (at) {
        digest = at + 1;
        if (strchr(digest, '@'))
            return bad(err, s, "more than one '@'");
        if (check_digest(s, digest, err) < 0)
            return -1;
    }
    /* the tag is after the last ':' that follows the last '/' */
    const char *slash = NULL, *colon = NULL;
    for (size_t i = 0; i < namelen; i++) {
        if (s[i] == '/')
            slash = s + i, colon = NULL;
        else if (s[i] == ':')
            colon = s + i;
    }
    /* in "host:5000" (no slash), the colon belongs to a tag: docker reads it so */
    char *tag = NULL;
    if (colon) {
        tag = kn_strndup(colon + 1, (size_t)(s + namelen - (colon + 1)));
        namelen = (size_t)(colon - s);
        if (!valid_tag(tag)) {
            int rc = kn_err_set(err, KN_E_PARSE,
                                "invalid reference '%s': invalid tag '%s' (want at most 128 of "
                                "[A-Za-z0-9_.-], not starting with '.' or '-')",
                                s, tag);
            free(tag);
            return rc;
        }
    }
    (void)slash;
    if (namelen == 0) {
        free(tag);
        return bad(err, s, "missing repository name");
    }
    if (namelen > REF_NAME_MAX) {
        free(tag);
        return bad(err, s, "repository name is longer than 255 characters");
    }

    /* split the domain off */
    const char *name = s;
    const char *first_slash = memchr(name, '/', namelen);
    const char *dom = NULL;
    size_t domlen = 0;
    const char *path = name;
    size_t pathlen = namelen;
    if (first_slash) {
        size_t flen = (size_t)(first_slash - name);
        bool is_domain = memchr(name, '.', flen) || memchr(name, ':', flen) ||
                         (flen == 9 && strncmp(name, "localhost", 9) == 0);
        for (size_t i = 0; !is_domain && i < flen; i++)
            if (isupper((unsigned char)name[i]))
                is_domain = true;
        if (name[0] == '[')
            is_domain = true;
        if (is_domain) {
            dom = name;
            domlen = flen;
            path = first_slash + 1;
            pathlen = namelen - flen - 1;
        }
    }
    if (dom && !valid_domain(dom, domlen)) {
        free(tag);
        return kn_err_set(err, KN_E_PARSE, "invalid reference '%s': invalid registry host '%.*s'",
                          s, (int)domlen, dom);
    }
    /* path components */
    bool upper = false;
    const char *p = path;
    const char *end = path + pathlen;
    if (pathlen == 0) {
        free(tag);
        return bad(err, s, "missing repository name");
    }
    while (p <= end) {
        const char *q = memchr(p, '/', (size_t)(end - p));
        if (!q)
            q = end;
        if (!valid_component(p, (size_t)(q - p), &upper)) {
            free(tag);
            return kn_err_set(err, KN_E_PARSE,
                              "invalid reference '%s': invalid repository name component '%.*s'", s,
                              (int)(q - p), p);
        }
        p = q + 1;
    }
    if (upper) {
        free(tag);
        return bad(err, s, "repository name must be lowercase");
    }

    if (!dom || (domlen == 15 && strncmp(dom, "index.docker.io", 15) == 0))
        out->domain = kn_strdup("docker.io");
    else
        out->domain = kn_strndup(dom, domlen);
    if (strcmp(out->domain, "docker.io") == 0 && !memchr(path, '/', pathlen))
        out->path = kn_asprintf("library/%.*s", (int)pathlen, path);
    else
        out->path = kn_strndup(path, pathlen);
    out->tag = tag;
    out->digest = digest ? kn_strdup(digest) : NULL;
    if (!out->tag && !out->digest)
        out->tag = kn_strdup("latest");
    return 0;
}

void ex_ref_release(struct ex_ref *r)
{
    if (!r)
        return;
    free(r->domain);
    free(r->path);
    free(r->tag);
    free(r->digest);
    memset(r, 0, sizeof(*r));
}

char *ex_ref_string(const struct ex_ref *r)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_addf(&b, "%s/%s", r->domain, r->path);
    if (r->tag)
        kn_buf_addf(&b, ":%s", r->tag);
    if (r->digest)
        kn_buf_addf(&b, "@%s", r->digest);
    return kn_buf_detach(&b);
}

char *ex_ref_familiar(const struct ex_ref *r)
{
    struct kn_buf b = KN_BUF_INIT;
    if (strcmp(r->domain, "docker.io") == 0) {
        const char *p = r->path;
        if (kn_str_startswith(p, "library/") && !strchr(p + 8, '/'))
            p += 8;
        kn_buf_adds(&b, p);
    } else {
        kn_buf_addf(&b, "%s/%s", r->domain, r->path);
    }
    if (r->tag)
        kn_buf_addf(&b, ":%s", r->tag);
    if (r->digest)
        kn_buf_addf(&b, "@%s", r->digest);
    return kn_buf_detach(&b);
}
