/*
 * Unit tests of frontend/expand.c: every ${...} form, quotes, the escape
 * character (backslash and backtick), word splitting, heredoc-style
 * expansion that keeps quotes, and the exact error messages. Many cases are
 * the behaviour BuildKit's shell lexer documents in its tests.
 */
#include "frontend/ast.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kv {
    const char *k, *v;
};

static const struct kv *cur_env;

static const char *env_lookup(void *ctx, const char *name)
{
    (void)ctx;
    for (const struct kv *e = cur_env; e && e->k; e++)
        if (strcmp(e->k, name) == 0)
            return e->v;
    return NULL;
}

static const struct fe_vars vars = {NULL, env_lookup, NULL};

static void record_unset(void *ctx, const char *name)
{
    struct kn_buf *b = ctx;
    kn_buf_addf(b, "%s%s", b->len ? "," : "", name);
}

/* The unset variables the expansion of word reports, comma-separated. */
static char *unset_of(const struct kv *env, const char *word)
{
    static char buf[256];
    struct kn_buf b = KN_BUF_INIT;
    struct fe_vars v = {&b, env_lookup, record_unset};
    cur_env = env;
    char *out = NULL;
    struct kn_error *err = NULL;
    if (fe_expand_word(word, '\\', &v, &out, &err) < 0)
        kn_err_free(err);
    free(out);
    snprintf(buf, sizeof(buf), "%s", b.data ? b.data : "");
    kn_buf_release(&b);
    return buf;
}

/* Expands with escape '\\' and returns a static copy, or "ERR: msg". */
static const char *xw(const struct kv *env, const char *word, char esc)
{
    static char buf[4096];
    cur_env = env;
    char *out = NULL;
    struct kn_error *err = NULL;
    if (fe_expand_word(word, esc, &vars, &out, &err) < 0) {
        snprintf(buf, sizeof(buf), "ERR: %s", err ? err->msg : "(no error)");
        kn_err_free(err);
        return buf;
    }
    snprintf(buf, sizeof(buf), "%s", out);
    free(out);
    return buf;
}

static const char *x(const struct kv *env, const char *word)
{
    return xw(env, word, '\\');
}

/* fe_expand_words joined with '|' */
static const char *xs(const struct kv *env, const char *text, char esc)
{
    static char buf[4096];
    cur_env = env;
    struct kn_strv out = {0};
    struct kn_error *err = NULL;
    if (fe_expand_words(text, esc, &vars, &out, &err) < 0) {
        snprintf(buf, sizeof(buf), "ERR: %s", err->msg);
        kn_err_free(err);
        kn_strv_release(&out);
        return buf;
    }
    buf[0] = 0;
    for (size_t i = 0; i < out.n; i++) {
        if (i)
            strcat(buf, "|");
        strncat(buf, out.v[i], sizeof(buf) - strlen(buf) - 2);
    }
    kn_strv_release(&out);
    return buf;
}

static const char *xq(const struct kv *env, const char *text)
{
    static char buf[4096];
    cur_env = env;
    char *out = NULL;
    struct kn_error *err = NULL;
    if (fe_expand_keep_quotes(text, '\\', &vars, &out, &err) < 0) {
        snprintf(buf, sizeof(buf), "ERR: %s", err->msg);
        kn_err_free(err);
        return buf;
    }
    snprintf(buf, sizeof(buf), "%s", out);
    free(out);
    return buf;
}

int main(void)
{
    const struct kv env[] = {{"FOO", "xxx"},
                             {"BAR", ""},
                             {"HOME", "/home"},
                             {"SP", "a b  c"},
                             {"P", "/tmp/tmp/bar.txt"},
                             {"K", "\xed\x95\x9c\xea\xb5\xad"},
                             {NULL, NULL}};

    /* plain forms */
    is_str(x(env, "$FOO"), "xxx", "$v");
    is_str(x(env, "${FOO}"), "xxx", "${v}");
    is_str(x(env, "a${FOO}b"), "axxxb", "${v} inside a word");
    is_str(x(env, "$FOO-x"), "xxx-x", "$v ends at a non-name char");
    is_str(x(env, "$NOPE"), "", "unset $v is empty");
    /* what is reported as unset: plain $v and ${v} only (UndefinedVar) */
    is_str(unset_of(env, "$NOPE ${NOPE2} $FOO ${BAR}"), "NOPE,NOPE2", "plain unset forms");
    is_str(unset_of(env, "${A:-x} ${B-x} ${C:+x} ${D+x} ${E#p} ${F/a/b}"), "",
           "forms with a default, a test or a pattern");
    is_str(x(env, "$"), "$", "lone $");
    is_str(x(env, "a$ b"), "a$ b", "$ before a space");
    is_str(x(env, "$1x"), "x", "$1 is a positional name");
    is_str(x(env, "${K}"), "\xed\x95\x9c\xea\xb5\xad", "utf-8 value");

    /* - and :- (unset vs empty) */
    is_str(x(env, "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}"), "xxx  ccc", "${v-w}");
    is_str(x(env, "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}"), "xxx bbb ccc", "${v:-w}");
    is_str(x(env, "${FOO:-}"), "xxx", "${v:-} set");
    is_str(x(env, "${NOPE:-}"), "", "${v:-} unset");
    /* + and :+ */
    is_str(x(env, "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}"), "aaa bbb ", "${v+w}");
    is_str(x(env, "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}"), "aaa  ", "${v:+w}");
    /* nested */
    is_str(x(env, "${NOPE:-${FOO}}"), "xxx", "nested ${a:-${b}}");
    is_str(x(env, "${NOPE:-${ALSO:-deep}}"), "deep", "two levels of nesting");
    is_str(x(env, "${FOO:+-${FOO}}"), "-xxx", "${v:+-${v}}");
    is_str(x(env, "${NOPE:-a b}"), "a b", "default with a space");
    is_str(x(env, "${NOPE:-\"q}\"}"), "q}", "quoted } in a default");
    /* ? and :? */
    is_str(x(env, "${FOO?aaa}"), "xxx", "${v?w} set");
    is_str(x(env, "${BAR?bbb}"), "", "${v?w} empty is fine");
    is_str(x(env, "${BAZ?ccc}"), "ERR: failed to process \"${BAZ?ccc}\": BAZ: ccc",
           "${v?msg} unset");
    is_str(x(env, "${BAZ?}"), "ERR: failed to process \"${BAZ?}\": BAZ: is not allowed to be unset",
           "${v?} default message");
    is_str(x(env, "${BAR:?}"),
           "ERR: failed to process \"${BAR:?}\": BAR: is not allowed to be empty", "${v:?} empty");
    is_str(x(env, "${BAZ:?need $FOO}"),
           "ERR: failed to process \"${BAZ:?need $FOO}\": BAZ: need xxx",
           "${v:?msg} message is expanded");
    is_str(x(env, "${FOO:?x}"), "xxx", "${v:?} set");

    /* patterns */
    const struct kv e2[] = {{"FOO", "xxyy"},
                            {"A", "a***yy*"},
                            {"Q", "???y"},
                            {"S", "xx**"},
                            {"F", "/foo*/*/*.txt"},
                            {"N", "\\*/"},
                            {"T", "/tmp/tmp/bar.txt"},
                            {"U", "/a/foo/b/c.txt"},
                            {"R", "/"},
                            {"H", "http://google.de"},
                            {"SPECIAL", "()[]{}^$.*?|\\x"},
                            {"E", ""},
                            {NULL, NULL}};
    is_str(x(e2, "${FOO#*x*y}"), "y", "${v#p} shortest");
    is_str(x(e2, "${FOO#*}"), "xxyy", "${v#*} removes nothing");
    is_str(x(e2, "${FOO##*x}"), "yy", "${v##p} longest");
    is_str(x(e2, "${FOO#}"), "xxyy", "${v#} empty pattern");
    is_str(x(e2, "${FOO##}"), "xxyy", "${v##} empty pattern");
    is_str(x(e2, "${Q#?\\?}"), "?y", "${v#?\\?}");
    is_str(x(e2, "${A%%\\**\\*}"), "a", "${v%%%%\\**\\*}");
    is_str(x(e2, "${S%%\\**}"), "xx", "${v%%%%\\**}");
    is_str(x(e2, "${FOO%y}"), "xxy", "${v%%p} shortest suffix");
    is_str(x(e2, "${FOO%%y*}"), "xx", "${v%%%%p} longest suffix");
    is_str(x(e2, "${FOO%*y}"), "xxy", "${v%%*y} shortest");
    is_str(x(e2, "${FOO%}"), "xxyy", "${v%%} empty pattern");
    is_str(x(e2, "${FOO#$E}"), "xxyy", "${v#$empty}");
    is_str(x(e2, "${NONE:-.}${FOO%x}${NONE:-.}"), ".xxyy.", "non-matching suffix");
    is_str(x(e2, "${SPECIAL#()[]{\\}^$.\\*\\?|\\\\}"), "x", "regex metacharacters are literal");
    is_str(x(e2, "${F/$N/.} - ${F//$N/.}"), "/foo.*/*.txt - /foo..*.txt", "${v/p/r} wildcards");
    is_str(x(e2, "${T/\\/tmp/} - ${T//\\/tmp/}"), "/tmp/bar.txt - /bar.txt",
           "${v//p/} removes all");
    is_str(x(e2, "${U/\\/?\\//$R} - ${U//\\/?\\//$R}"), "/foo/b/c.txt - /foo/c.txt",
           "? in a pattern");
    is_str(x(e2, "${H/http:\\/\\//https:\\/\\/}"), "https:\\/\\/google.de",
           "replacement keeps its escapes (as BuildKit)");
    is_str(x(e2, "${T//\\//\\/}"), "\\/tmp\\/tmp\\/bar.txt", "escaped separators");
    is_str(x(e2, "${FOO/$E/ww}"), "wwxxyy", "empty pattern inserts at the start");
    is_str(x(e2, "${FOO///}"), "xxyy", "${v///}");
    is_str(x(e2, "${NONE///}"), "", "${unset///}");
    is_str(x(e2, "${FOO/y*/Z}"), "xxZ", "${v/y*/Z} greedy");
    is_str(x(e2, "${FOO//x/-}"), "--yy", "${v//x/-}");
    is_str(x(e2, "${FOO:#xx}"), "yy", "${v:#p} acts as ${v#p} (as BuildKit)");
    is_str(
        x(e2, "${FOO#\\x}"),
        "ERR: failed to process \"${FOO#\\\\x}\": invalid pattern (\\x) in substitution: invalid "
        "escape '\\x'",
        "invalid escape in a pattern");

    /* syntax errors */
    is_str(x(env, "${FOO//ww}"),
           "ERR: failed to process \"${FOO//ww}\": syntax error: missing '/' in ${}",
           "missing / in ${v//p}");
    is_str(x(env, "${FOO//}"),
           "ERR: failed to process \"${FOO//}\": syntax error: missing '/' in ${}", "${v//}");
    is_str(x(env, "${FOO"), "ERR: failed to process \"${FOO\": syntax error: missing '}'",
           "missing }");
    is_str(x(env, "${"), "ERR: failed to process \"${\": syntax error: missing '}'", "${ at end");
    is_str(x(env, "${}"), "ERR: failed to process \"${}\": syntax error: bad substitution", "${}");
    is_str(x(env, "${:a}"), "ERR: failed to process \"${:a}\": syntax error: bad substitution",
           "${:a}");
    is_str(x(env, "${{a}"), "ERR: failed to process \"${{a}\": syntax error: bad substitution",
           "${{a}");
    is_str(x(env, "${FOO=aaa}"),
           "ERR: failed to process \"${FOO=aaa}\": unsupported modifier (=) in substitution",
           "${v=w} unsupported");
    is_str(x(env, "${FOO:=aaa}"),
           "ERR: failed to process \"${FOO:=aaa}\": unsupported modifier (:=) in substitution",
           "${v:=w} unsupported");
    is_str(x(env, "${FOO:-aaa"), "ERR: failed to process \"${FOO:-aaa\": syntax error: missing '}'",
           "unterminated default");
    is_str(x(env, "'abc"),
           "ERR: failed to process \"'abc\": unexpected end of statement while looking for "
           "matching single-quote",
           "unterminated single quote");
    is_str(x(env, "\"abc"),
           "ERR: failed to process \"\\\"abc\": unexpected end of statement while looking for "
           "matching double-quote",
           "unterminated double quote");

    /* quotes and escapes */
    is_str(x(env, "'$FOO'"), "$FOO", "single quotes are literal");
    is_str(x(env, "\"$FOO\""), "xxx", "double quotes expand");
    is_str(x(env, "\"'$FOO'\""), "'xxx'", "single quotes inside double quotes");
    is_str(x(env, "'\"$FOO\"'"), "\"$FOO\"", "double quotes inside single quotes");
    is_str(x(env, "\\$FOO"), "$FOO", "escaped $");
    is_str(x(env, "\\\\$FOO"), "\\xxx", "escaped escape");
    is_str(x(env, "\"\\$FOO\""), "$FOO", "escaped $ in double quotes");
    is_str(x(env, "\"a\\\"b\""), "a\"b", "escaped quote in double quotes");
    is_str(x(env, "\"a\\nb\""), "a\\nb", "other escapes stay in double quotes");
    is_str(x(env, "'a\\'"), "a\\", "no escapes in single quotes");
    is_str(x(env, "a\\ b"), "a b", "escaped space");
    is_str(x(env, "ab\\"), "ab", "escape at the end is dropped");
    is_str(x(env, "\"\""), "", "empty double quotes");
    /* backtick as escape (Windows style) */
    is_str(xw(env, "`$FOO", '`'), "$FOO", "backtick escapes $");
    is_str(xw(env, "C:\\path\\$FOO", '`'), "C:\\path\\xxx", "backslash is literal with escape=`");
    is_str(xw(env, "\"a`\"b\"", '`'), "a\"b", "backtick escapes a quote in double quotes");
    is_str(xw(env, "\\$FOO", '\\'), "$FOO", "backslash escapes $ by default");

    /* words */
    is_str(xs(env, "a b  c", '\\'), "a|b|c", "split on whitespace");
    is_str(xs(env, "\"a b\" c", '\\'), "a b|c", "quoted whitespace stays");
    is_str(xs(env, "$SP x", '\\'), "a|b|c|x", "unquoted value is split");
    is_str(xs(env, "\"$SP\" x", '\\'), "a b  c|x", "quoted value is not split");
    is_str(xs(env, "a\\ b c", '\\'), "a b|c", "escaped space joins");
    is_str(xs(env, "a \"\" b", '\\'), "a|b", "empty quotes make no word (as BuildKit)");
    is_str(xs(env, "pre$FOO post", '\\'), "prexxx|post", "value glued to a word");
    is_str(xs(env, "", '\\'), "", "no words");
    is_str(xs(env, "'a", '\\'),
           "ERR: failed to process \"'a\": unexpected end of statement while looking for matching "
           "single-quote",
           "words: error");

    /* keep quotes (heredoc bodies) */
    is_str(xq(env, "echo \"$FOO\" '$FOO' \\$FOO"), "echo \"xxx\" '$FOO' \\$FOO",
           "keep quotes: quotes and escapes stay, single quotes not expanded");
    is_str(xq(env, "a\nb $HOME\n"), "a\nb /home\n", "keep quotes: newlines stay");

    /* names */
    struct kn_strv names = {0};
    fe_expand_names("$A ${B:-$C} '$D' \"$E\" ${A}", '\\', &names);
    is_int(names.n, 4, "names: four distinct");
    if (names.n == 4) {
        is_str(names.v[0], "A", "names[0]");
        is_str(names.v[1], "C", "names[1] (the default is read first)");
        is_str(names.v[2], "B", "names[2]");
        is_str(names.v[3], "E", "names[3]");
    }
    kn_strv_release(&names);

    /* nesting limit */
    char deep[2000] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "${A:-");
    for (int i = 0; i < 100; i++)
        strcat(deep, "}");
    ok(strstr(x(env, deep), "nested too deeply") != NULL, "deep nesting is an error");

    /* no quadratic pattern matching on long values */
    size_t big = 200000;
    char *long_a = malloc(big + 1);
    memset(long_a, 'a', big);
    long_a[big] = 0;
    const struct kv e3[] = {{"V", long_a}, {NULL, NULL}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *out = NULL;
    struct kn_error *err = NULL;
    cur_env = e3;
    int rc = fe_expand_word("${V//a*x/}", '\\', &vars, &out, &err);
    ok(rc == 0 && strcmp(out, long_a) == 0, "long value, no match: unchanged");
    free(out);
    rc = fe_expand_word("${V//a/b}", '\\', &vars, &out, &err);
    ok(rc == 0 && strlen(out) == big && out[0] == 'b' && out[big - 1] == 'b',
       "replace all in a long value");
    free(out);
    rc = fe_expand_word("${V%%a*b}${V#*a?b}", '\\', &vars, &out, &err);
    ok(rc == 0 && strlen(out) == 2 * big, "trims without a match on a long value");
    free(out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    ok(ms < 2000, "pattern work on 200 KB values is linear (%.1f ms)", ms);
    free(long_a);

    return tap_done();
}
