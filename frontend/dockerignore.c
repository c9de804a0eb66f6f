/*
 * .dockerignore files: one pattern a line, as the docker CLI and BuildKit
 * read them (moby's dockerignore.ReadAll). A leading UTF-8 BOM is dropped;
 * a line starting with `#` (in its first column) is a comment; the rest is
 * trimmed, empty lines are skipped, a leading `!` marks an exception, and
 * the pattern is cleaned like a path with a leading `/` removed, so `/a/`
 * and `./a` both mean `a`. Matching is ir/base/pattern.h's business.
 */
#include "frontend/frontend.h"
#include "ir/base/pattern.h"

#include <stdlib.h>
#include <string.h>

static bool ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

void fe_dockerignore_parse(const char *data, size_t len, struct kn_strv *out)
{
    if (!data)
        return;
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - data) : len;
        const char *s = data + i;
        size_t n = end - i;
        i = end + 1;
        if (n && s[0] == '#')
            continue;
        while (n && ws(*s)) {
            s++;
            n--;
        }
        while (n && ws(s[n - 1]))
            n--;
        if (!n)
            continue;
        bool invert = s[0] == '!';
        if (invert) {
            s++;
            n--;
            while (n && ws(*s)) {
                s++;
                n--;
            }
        }
        char *pat = kn_strndup(s, n);
        if (n) {
            char *clean = kn_path_clean(pat);
            free(pat);
            pat = clean;
            if (pat[0] == '/' && pat[1]) {
                char *rel = kn_strdup(pat + 1);
                free(pat);
                pat = rel;
            }
        }
        if (invert) {
            char *ex = kn_asprintf("!%s", pat);
            free(pat);
            pat = ex;
        }
        kn_strv_take(out, pat);
    }
}
