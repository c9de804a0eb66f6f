/*
 * Unit tests of frontend/dockerignore.c: comments, trimming, empty lines,
 * `!` exceptions, cleaning and the leading `/`, a BOM, CRLF; and the parsed
 * list fed to the pattern matcher end to end.
 */
#include "frontend/frontend.h"
#include "ir/base/pattern.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static const char *joined(const char *data)
{
    static char buf[2048];
    struct kn_strv v = {0};
    fe_dockerignore_parse(data, strlen(data), &v);
    buf[0] = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (i)
            strcat(buf, "|");
        strncat(buf, v.v[i], sizeof(buf) - strlen(buf) - 2);
    }
    kn_strv_release(&v);
    return buf;
}

int main(void)
{
    is_str(joined(""), "", "empty file");
    is_str(joined("a\nb\n"), "a|b", "one pattern a line");
    is_str(joined("# comment\na\n#b\n"), "a", "comments");
    is_str(joined("  # not a comment\n"), "# not a comment",
           "# only in the first column is a comment (as moby)");
    is_str(joined("\n\n   \n\t\na\n"), "a", "empty and blank lines skipped");
    is_str(joined("  *.md  \n"), "*.md", "trimmed");
    is_str(joined("!README.md\n"), "!README.md", "exception kept");
    is_str(joined("!  spaced/../x  \n"), "!x", "exception trimmed and cleaned");
    is_str(joined("/abs/\n"), "abs", "leading / and trailing / removed");
    is_str(joined("./rel/./a/../b\n"), "rel/b", "cleaned");
    is_str(joined("!/abs\n"), "!abs", "exception with a leading /");
    is_str(joined("/\n"), "/", "a lone / stays");
    is_str(joined("!\n"), "!", "a lone ! stays (the matcher rejects it)");
    is_str(joined("a\r\nb\r\n"), "a|b", "CRLF");
    is_str(joined("\xef\xbb\xbf"
                  "first\n"),
           "first", "BOM dropped");
    is_str(joined("last-without-newline"), "last-without-newline", "no final newline");
    is_str(joined("dir/**/\n"), "dir/**", "trailing slash of ** removed");

    struct kn_strv v = {0};
    const char *di =
        "# build context\nnode_modules\n*.log\n!important.log\ndocs/\n!docs/README.md\n";
    fe_dockerignore_parse(di, strlen(di), &v);
    is_int(v.n, 5, "five patterns");
    struct kn_error *err = NULL;
    struct kn_patterns *p = kn_patterns_new(v.v, v.n, &err);
    ok(p != NULL, "patterns compile");
    ok(kn_patterns_match(p, "node_modules/x/y.js"), "node_modules excluded");
    ok(kn_patterns_match(p, "debug.log"), "*.log excluded");
    ok(!kn_patterns_match(p, "important.log"), "exception kept");
    ok(!kn_patterns_match(p, "sub/debug.log"), "*.log is only at the top");
    ok(kn_patterns_match(p, "docs/guide.md"), "docs/ excluded");
    ok(!kn_patterns_match(p, "docs/README.md"), "docs/README.md re-included");
    ok(kn_patterns_has_exceptions_under(p, "docs"), "walk must enter docs");
    ok(!kn_patterns_has_exceptions_under(p, "node_modules"), "walk may skip node_modules");
    ok(!kn_patterns_match(p, "src/main.c"), "other files kept");
    kn_patterns_free(p);
    kn_strv_release(&v);
    fe_dockerignore_parse(NULL, 0, &v);
    is_int(v.n, 0, "NULL data");
    return tap_done();
}
