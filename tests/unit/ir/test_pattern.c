/*
 * Unit tests of ir/base/pattern.c: Go's filepath.Match semantics (a table
 * of cases that follow Go's documented rules), path cleaning, and
 * .dockerignore pattern lists as moby's patternmatcher defines them
 * (`**`, parent directories, `!` exceptions, last match wins).
 */
#include "ir/base/pattern.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

struct gcase {
    const char *pat, *name;
    int want; /* 1 match, 0 no match, -1 bad pattern */
};

static const struct gcase globs[] = {
    {"abc", "abc", 1},
    {"*", "abc", 1},
    {"*c", "abc", 1},
    {"a*", "a", 1},
    {"a*", "abc", 1},
    {"a*", "ab/c", 0},
    {"a*/b", "abc/b", 1},
    {"a*/b", "a/c/b", 0},
    {"a*b*c*d*e*/f", "axbxcxdxe/f", 1},
    {"a*b*c*d*e*/f", "axbxcxdxexxx/f", 1},
    {"a*b*c*d*e*/f", "axbxcxdxe/xxx/f", 0},
    {"a*b*c*d*e*/f", "axbxcxdxexxx/fff", 0},
    {"a*b?c*x", "abxbbxdbxebxczzx", 1},
    {"a*b?c*x", "abxbbxdbxebxczzy", 0},
    {"ab[c]", "abc", 1},
    {"ab[b-d]", "abc", 1},
    {"ab[e-g]", "abc", 0},
    {"ab[^c]", "abc", 0},
    {"ab[^b-d]", "abc", 0},
    {"ab[^e-g]", "abc", 1},
    {"a\\*b", "a*b", 1},
    {"a\\*b", "ab", 0},
    {"a?b",
     "a\xe2\x98\xba"
     "b",
     1},
    {"a[^a]b",
     "a\xe2\x98\xba"
     "b",
     1},
    {"a???b",
     "a\xe2\x98\xba"
     "b",
     0},
    {"[a-\xce\xb6]*", "\xce\xb1", 1},
    {"*[a-\xce\xb6]", "A", 0},
    {"a?b", "a/b", 0},
    {"a*b", "a/b", 0},
    {"[\\]a]", "]", 1},
    {"[\\-]", "-", 1},
    {"[x\\-]", "x", 1},
    {"[x\\-]", "-", 1},
    {"[x\\-]", "z", 0},
    {"[\\-x]", "-", 1},
    {"[\\-x]", "a", 0},
    {"[]a]", "]", -1},
    {"[-]", "-", -1},
    {"[x-]", "x", -1},
    {"[-x]", "x", -1},
    {"\\", "a", -1},
    {"[a-b-c]", "a", -1},
    {"[", "a", -1},
    {"[^", "a", -1},
    {"[^bc", "a", -1},
    {"a[", "a", -1},
    {"a[", "x", -1},
    {"a/b[", "x", -1},
    {"[z-a]", "m", -1},
    {"*x", "xxx", 1},
    {"", "", 1},
    {"", "a", 0},
    {"*", "", 1},
    {"?", "", 0},
};

struct dcase {
    const char *pats; /* '\n'-separated */
    const char *path;
    bool want;
};

static const struct dcase ignores[] = {
    {"*.md", "README.md", true},
    {"*.md", "docs/a.md", false},
    {"*.md", "README.md.txt", false},
    {"**/*.md", "docs/a.md", true},
    {"**/*.md", "a.md", true},
    {"**/*.go", "a/b/c/main.go", true},
    {"**/*.go", "main.c", false},
    {"**", "anything/at/all", true},
    {"**/file", "file", true},
    {"**/file", "a/b/file", true},
    {"**/file", "a/b/file2", false},
    {"docs/**", "docs/a", true},
    {"docs/**", "docs/a/b/c", true},
    {"docs/**", "docs", false},
    {"docs/**", "docsx/a", false},
    {"docs", "docs", true},
    {"docs", "docs/x/y.txt", true},
    {"docs", "mydocs", false},
    {"dir/", "dir/file", true},
    {"/abs", "abs", true},
    {"/abs", "abs/x", true},
    {"./x/../y", "y", true},
    {"./x/../y", "x", false},
    {"a/*/c", "a/b/c", true},
    {"a/*/c", "a/b/c/d", true},
    {"a/*/c", "a/c", false},
    {"a/*/c", "a/b/x/c", false},
    {"a/**/c", "a/c", true},
    {"a/**/c", "a/b/x/c", true},
    {"a/**/c", "a/b/x/cd", false},
    {"[a-c]*", "apple", true},
    {"[a-c]*", "cat/x", true},
    {"[a-c]*", "dog", false},
    {"[^a-c]*", "dog", true},
    {"?.txt", "a.txt", true},
    {"?.txt", "ab.txt", false},
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"a\\[b", "a[b", true},
    {"*.md\n!README.md", "README.md", false},
    {"*.md\n!README.md", "CHANGES.md", true},
    {"!a\na", "a", true},
    {"a\n!a", "a", false},
    {"a\n!a\na", "a", true},
    {"docs\n!docs/keep.md", "docs/a.md", true},
    {"docs\n!docs/keep.md", "docs/keep.md", false},
    {"*\n!src", "src/main.c", false},
    {"*\n!src", "lib/x.c", true},
    {"**foo", "afoo", true},
    {"**foo", "a/b/xfoo", true},
    {"a**b", "ab", true},
    {"a**b", "ax/b", true},
    {"a**b", "axb", false},
    {"  spaced  ", "spaced", true},
    {"", "a", false},
    {"node_modules\n.git", ".git/HEAD", true},
    {"node_modules\n.git", "src/.git", false},
};

static struct kn_patterns *compile_list(const char *list, struct kn_error **err)
{
    char *copy = strdup(list);
    char *v[32];
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(copy, "\n", &save); t && n < 32;
         t = strtok_r(NULL, "\n", &save))
        v[n++] = t;
    struct kn_patterns *p = kn_patterns_new(v, n, err);
    free(copy);
    return p;
}

int main(void)
{
    for (size_t i = 0; i < KN_ARRAY_SIZE(globs); i++) {
        const struct gcase *c = &globs[i];
        bool m = false;
        struct kn_error *err = NULL;
        int rc = kn_glob_match(c->pat, c->name, &m, &err);
        int got = rc < 0 ? -1 : m ? 1 : 0;
        is_int(got, c->want, "glob '%s' on '%s'", c->pat, c->name);
        kn_err_free(err);
    }
    struct kn_error *err = NULL;
    bool m;
    ok(kn_glob_match("a[", "a", &m, &err) < 0 && err, "bad pattern error");
    if (err) {
        is_str(err->msg, "syntax error in pattern 'a['", "bad pattern message");
        is_int(err->code, KN_E_PARSE, "bad pattern code");
    }
    kn_err_free(err);
    err = NULL;

    ok(kn_glob_has_meta("a*"), "meta *");
    ok(kn_glob_has_meta("a?"), "meta ?");
    ok(kn_glob_has_meta("[a]"), "meta [");
    ok(kn_glob_has_meta("a\\b"), "meta \\");
    ok(!kn_glob_has_meta("a/b.c"), "no meta");

    static const char *const cleans[][2] = {
        {"a/./b/../c/", "a/c"},
        {"", "."},
        {"/../a", "/a"},
        {"../../a", "../../a"},
        {"a/../..", ".."},
        {"//a//b", "/a/b"},
        {".", "."},
        {"/", "/"},
        {"./a", "a"},
        {"a/b/..", "a"},
        {"abc/def/", "abc/def"},
        {"a/../b/../c", "c"},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(cleans); i++) {
        char *c = kn_path_clean(cleans[i][0]);
        is_str(c, cleans[i][1], "clean '%s'", cleans[i][0]);
        free(c);
    }

    for (size_t i = 0; i < KN_ARRAY_SIZE(ignores); i++) {
        const struct dcase *c = &ignores[i];
        struct kn_patterns *p = compile_list(c->pats, &err);
        char desc[256];
        snprintf(desc, sizeof(desc), "%s", c->pats);
        for (char *d = desc; *d; d++)
            if (*d == '\n')
                *d = ',';
        ok(p != NULL, "compile [%s]", desc);
        ok(kn_patterns_match(p, c->path) == c->want, "[%s] %s '%s'", desc,
           c->want ? "excludes" : "keeps", c->path);
        kn_patterns_free(p);
        kn_err_free(err);
        err = NULL;
    }

    /* exceptions below excluded directories */
    struct kn_patterns *p = compile_list("docs\n!docs/keep.md\n*\n!src/**/*.c", &err);
    ok(p != NULL, "exception list compiles");
    ok(kn_patterns_has_exceptions_under(p, "docs"), "exception under docs");
    ok(kn_patterns_has_exceptions_under(p, "src"), "exception under src");
    ok(kn_patterns_has_exceptions_under(p, "src/deep/er"), "exception under src/deep/er (**)");
    ok(!kn_patterns_has_exceptions_under(p, "lib"), "none under lib");
    ok(!kn_patterns_has_exceptions_under(p, "docs/sub"), "none under docs/sub");
    kn_patterns_free(p);
    p = compile_list("build", &err);
    ok(!kn_patterns_has_exceptions_under(p, "build"), "no exceptions at all");
    kn_patterns_free(p);
    p = compile_list("*\n!*/keep", &err);
    ok(kn_patterns_has_exceptions_under(p, "any"), "wildcard exception component");
    kn_patterns_free(p);

    /* errors */
    p = compile_list("a\n!", &err);
    ok(p == NULL && err, "lone ! is an error");
    if (err)
        is_str(err->msg, "illegal exclusion pattern: \"!\"", "lone ! message");
    kn_err_free(err);
    err = NULL;
    p = compile_list("ok\n[abc", &err);
    ok(p == NULL && err, "malformed pattern is an error");
    if (err)
        is_str(err->msg, "syntax error in pattern '[abc'", "malformed message");
    kn_err_free(err);
    err = NULL;
    ok(!kn_patterns_match(NULL, "a"), "NULL list matches nothing");

    return tap_done();
}
