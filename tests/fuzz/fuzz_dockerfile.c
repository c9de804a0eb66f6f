/*
 * libFuzzer target for the Dockerfile frontend's text handling: parse the
 * input as a Dockerfile and expand every instruction's arguments, key/value
 * pairs, flag values and heredoc bodies with a fixed variable table; re-parse
 * every instruction's text as an ONBUILD trigger; and read the input as a
 * .dockerignore and match a few paths with it. Nothing may crash, leak or
 * hang. Built with `CC=clang cmake -DKILN_FUZZ=ON` (target fuzz_dockerfile).
 */
#include "frontend/ast.h"
#include "frontend/frontend.h"
#include "ir/base/pattern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const table[][2] = {
    {"A", "a"},
    {"EMPTY", ""},
    {"SP", "x y  z"},
    {"PATH", "/usr/bin:/bin"},
    {"Q", "\"'`\\"},
    {"STAR", "*?[]"},
    {"U", "\xc3\xa9\xe2\x98\xba"},
};

static const char *lookup(void *ctx, const char *name)
{
    (void)ctx;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i][0], name) == 0)
            return table[i][1];
    return NULL;
}

static void expand_all(const char *s, char esc, const struct fe_vars *vars)
{
    if (!s)
        return;
    char *out = NULL;
    struct kn_error *err = NULL;
    if (fe_expand_word(s, esc, vars, &out, &err) == 0)
        free(out);
    kn_err_free(err);
    err = NULL;
    struct kn_strv words = {0};
    fe_expand_words(s, esc, vars, &words, &err);
    kn_strv_release(&words);
    kn_err_free(err);
    err = NULL;
    out = NULL;
    if (fe_expand_keep_quotes(s, esc, vars, &out, &err) == 0)
        free(out);
    kn_err_free(err);
    struct kn_strv names = {0};
    fe_expand_names(s, esc, &names);
    kn_strv_release(&names);
}

static void visit(struct fe_dockerfile *df, const struct fe_instr *in, const struct fe_vars *vars,
                  int depth)
{
    for (size_t i = 0; i < in->nargs; i++)
        expand_all(in->args[i], df->escape, vars);
    for (size_t i = 0; i < in->nkvs; i++) {
        expand_all(in->kvs[i].key, df->escape, vars);
        expand_all(in->kvs[i].value, df->escape, vars);
    }
    for (size_t i = 0; i < in->nflags; i++)
        expand_all(in->flags[i].value, df->escape, vars);
    for (size_t i = 0; i < in->nheredocs; i++)
        expand_all(in->heredocs[i].content, df->escape, vars);
    (void)fe_instr_flag(in, "mount");
    if (in->sub && depth < 2)
        visit(df, in->sub, vars, depth + 1);
    if (depth == 0 && in->text) {
        struct kn_error *err = NULL;
        struct fe_instr *again = fe_parse_line(df, in->text, &err);
        if (again && again->kind != in->kind)
            abort(); /* the same text must parse the same way */
        kn_err_free(err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fe_vars vars = {NULL, lookup};
    struct kn_error *err = NULL;
    struct fe_dockerfile *df = fe_parse("Dockerfile", (const char *)data, size, &err);
    if (df) {
        for (size_t i = 0; i < df->ninstrs; i++)
            visit(df, &df->instrs[i], &vars, 0);
        fe_dockerfile_free(df);
    } else {
        /* every error has a message and a location inside the file */
        for (struct kn_error *e = err; e; e = e->next)
            if (!e->msg || e->loc.line < 0)
                abort();
    }
    kn_err_free(err);

    struct kn_strv pats = {0};
    fe_dockerignore_parse((const char *)data, size, &pats);
    err = NULL;
    struct kn_patterns *p = kn_patterns_new(pats.v, pats.n, &err);
    if (p) {
        static const char *const paths[] = {"a",    "a/b",       "src/main.c", "docs/x/README.md",
                                            ".git", "x/y/z/w.go"};
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
            (void)kn_patterns_match(p, paths[i]);
            (void)kn_patterns_has_exceptions_under(p, paths[i]);
        }
        kn_patterns_free(p);
    }
    kn_err_free(err);
    for (size_t i = 0; i < pats.n && i < 8; i++) {
        bool m;
        struct kn_error *e2 = NULL;
        kn_glob_match(pats.v[i], "some/path.txt", &m, &e2);
        kn_err_free(e2);
    }
    kn_strv_release(&pats);
    return 0;
}
