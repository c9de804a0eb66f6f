/*
 * Unit tests of frontend/parse.c: parser directives, comments, line
 * continuations, heredocs, JSON versus shell form, flags, the arity checks
 * of every instruction, and the exact text, line and column of every error.
 */
#include "frontend/ast.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct fe_dockerfile *P(const char *src)
{
    struct kn_error *err = NULL;
    struct fe_dockerfile *df = fe_parse("Dockerfile", src, strlen(src), &err);
    if (!df) {
        for (struct kn_error *e = err; e; e = e->next)
            printf("# unexpected error: %d:%d: %s\n", e->loc.line, e->loc.col, e->msg);
        kn_err_free(err);
    }
    return df;
}

/* All errors as "LINE:COL: msg" lines; "" when the file parses. */
static const char *E(const char *src)
{
    static char buf[8192];
    struct kn_error *err = NULL;
    struct fe_dockerfile *df = fe_parse("Dockerfile", src, strlen(src), &err);
    buf[0] = 0;
    if (df) {
        fe_dockerfile_free(df);
        return buf;
    }
    for (struct kn_error *e = err; e; e = e->next) {
        size_t l = strlen(buf);
        snprintf(buf + l, sizeof(buf) - l, "%s%d:%d: %s", l ? "\n" : "", e->loc.line, e->loc.col,
                 e->msg);
    }
    kn_err_free(err);
    return buf;
}

static void test_basics(void)
{
    struct fe_dockerfile *df = P("FROM alpine:3.19 AS Build\nrun echo hi\n\tCmd [\"a\"]\n");
    ok(df != NULL, "basic file parses");
    if (!df)
        return;
    is_int(df->ninstrs, 3, "three instructions");
    is_int(df->instrs[0].kind, FE_FROM, "FROM");
    is_int(df->instrs[0].nargs, 3, "FROM has three words");
    is_str(df->instrs[0].args[2], "Build", "stage name kept as written");
    is_int(df->instrs[1].kind, FE_RUN, "lowercase run");
    is_str(df->instrs[1].args[0], "echo hi", "RUN shell form text");
    is_int(df->instrs[1].pos.line, 2, "RUN line");
    is_int(df->instrs[2].kind, FE_CMD, "mixed-case Cmd");
    is_int(df->instrs[2].pos.col, 2, "column after a leading tab");
    ok(df->instrs[2].json, "CMD JSON form");
    is_str(df->instrs[2].text, "Cmd [\"a\"]", "text as written");
    is_str(df->name, "Dockerfile", "file name");
    is_int(df->nlines, 3, "three source lines");
    is_str(df->lines[1], "run echo hi", "lines[] keeps the source");
    is_str(fe_kind_name(FE_HEALTHCHECK), "HEALTHCHECK", "fe_kind_name");
    fe_dockerfile_free(df);

    df = P("");
    ok(df && df->ninstrs == 0, "empty file: no instructions, no error (lowering reports no FROM)");
    fe_dockerfile_free(df);
    df = P("# only a comment\n\n   \n");
    ok(df && df->ninstrs == 0, "comments and blank lines only");
    fe_dockerfile_free(df);
}

static void test_directives(void)
{
    struct fe_dockerfile *df = P("# syntax=docker/dockerfile:1.7\n# ESCAPE = `\n#check=skip=all\n"
                                 "FROM a\nRUN echo a `\n  b\n");
    ok(df != NULL, "directives parse");
    if (df) {
        is_str(df->syntax, "docker/dockerfile:1.7", "syntax directive");
        is_int(df->escape, '`', "escape directive, key case-insensitive, spaces allowed");
        is_str(df->check, "skip=all", "check directive");
        is_str(df->instrs[1].args[0], "echo a   b", "backtick continuation");
        fe_dockerfile_free(df);
    }
    df = P("# comment\n# escape=`\nFROM a\nRUN echo a \\\n");
    ok(df && df->escape == '\\', "directive after a comment is a comment");
    if (df) {
        is_str(df->instrs[1].args[0], "echo a", "continuation at EOF is accepted (as BuildKit)");
        fe_dockerfile_free(df);
    }
    df = P("\n# escape=`\nFROM a\n");
    ok(df && df->escape == '\\', "directive after a blank line is a comment");
    fe_dockerfile_free(df);
    df = P("# foo=bar\n# escape=`\nFROM a\n");
    ok(df && df->escape == '\\', "unknown directive ends the directives");
    fe_dockerfile_free(df);
    df = P("FROM a\n# escape=`\n");
    ok(df && df->escape == '\\', "directive after an instruction is a comment");
    fe_dockerfile_free(df);
    is_str(E("# escape=`\n# escape=\\\nFROM a\n"),
           "2:3: only one escape parser directive can be used", "duplicate directive");
    is_str(E("# syntax=a\n# Syntax=b\nFROM a\n"),
           "2:3: only one syntax parser directive can be used", "duplicate, case-insensitive");
    is_str(E("# escape=x\nFROM a\n"), "1:10: invalid escape token 'x' does not match ` or \\",
           "invalid escape");
    df = P("\xef\xbb\xbf# escape=`\nFROM a\n");
    ok(df && df->escape == '`', "UTF-8 BOM before a directive");
    fe_dockerfile_free(df);
}

static void test_lines(void)
{
    struct fe_dockerfile *df = P("FROM a\r\nRUN echo \\\r\n  hi\r\n");
    ok(df && df->ninstrs == 2, "CRLF");
    if (df) {
        is_str(df->instrs[1].args[0], "echo   hi", "CRLF continuation");
        is_str(df->lines[0], "FROM a", "CR removed from lines[]");
        fe_dockerfile_free(df);
    }
    df = P(
        "FROM a\nRUN a \\\n# inner comment\n    # indented comment\n\n  \n  b \\   \n  c\nRUN d\n");
    ok(df && df->ninstrs == 3, "comments and empty lines inside a continuation");
    if (df) {
        is_str(df->instrs[1].args[0], "a   b   c", "comment lines dropped, empty lines skipped");
        is_int(df->instrs[1].pos.line, 2, "start line");
        is_int(df->instrs[1].pos.end_line, 8, "end line");
        is_int(df->instrs[2].pos.line, 9, "next instruction line");
        fe_dockerfile_free(df);
    }
    df = P("FROM a\nRUN echo \\\\\nRUN x\n");
    ok(df && df->ninstrs == 2, "escaped escape at end of line still continues (as BuildKit)");
    if (df) {
        is_str(df->instrs[1].args[0], "echo \\RUN x", "joined");
        fe_dockerfile_free(df);
    }
    df = P("FROM a\n\\\nRUN x\n");
    ok(df && df->ninstrs == 2 && df->instrs[1].kind == FE_RUN, "lone escape line continues");
    fe_dockerfile_free(df);
    df = P("FROM a\nRUN echo # not a comment\n");
    ok(df && strcmp(df->instrs[1].args[0], "echo # not a comment") == 0, "# inside a line");
    fe_dockerfile_free(df);
    /* error position on a continuation line */
    is_str(E("FROM a\nCOPY \\\n  --bogus=1 \\\n  a b\n"), "3:3: unknown flag: --bogus",
           "flag on a continuation line: line and column");
}

static void test_heredocs(void)
{
    struct fe_dockerfile *df =
        P("FROM a\nRUN <<EOF\necho $x\n  two\nEOF\nRUN cat <<-\"END\" > /f && cat <<'B'\n"
          "\tindented $y\n\t\tdouble\n\tEND\nraw\nB\nCOPY <<A <<B /dst/\naaa\nA\nbbb\nB\n"
          "ADD --chmod=644 <<EOF /x\nbody\nEOF\nRUN 3<<X cat\nx\nX\nCMD cat <<EOF\n");
    ok(df != NULL, "heredocs parse");
    if (!df)
        return;
    is_int(df->ninstrs, 7, "seven instructions");
    const struct fe_instr *r = &df->instrs[1];
    is_int(r->nheredocs, 1, "RUN one heredoc");
    is_str(r->heredocs[0].name, "EOF", "name");
    is_str(r->heredocs[0].content, "echo $x\n  two\n", "content keeps leading spaces");
    ok(r->heredocs[0].expand && !r->heredocs[0].chomp, "unquoted: expand, no chomp");
    is_int(r->heredocs[0].line, 3, "first body line");
    is_int(r->pos.end_line, 5, "end line is the terminator");
    is_str(r->args[0], "<<EOF", "command text keeps the heredoc word");
    r = &df->instrs[2];
    is_int(r->nheredocs, 2, "two heredocs on one line");
    is_str(r->args[0], "cat <<-\"END\" > /f && cat <<'B'", "command text kept");
    is_str(r->heredocs[0].name, "END", "quoted name unquoted");
    is_str(r->heredocs[0].content, "indented $y\ndouble\n", "<<- strips leading tabs");
    ok(!r->heredocs[0].expand && r->heredocs[0].chomp, "double-quoted: no expansion, chomp");
    is_str(r->heredocs[1].content, "raw\n", "second body");
    ok(!r->heredocs[1].expand, "single-quoted: no expansion");
    r = &df->instrs[3];
    is_int(r->kind, FE_COPY, "COPY heredoc");
    is_int(r->nargs, 3, "COPY args: two heredoc words and the destination");
    is_str(r->args[2], "/dst/", "destination");
    is_int(r->nheredocs, 2, "COPY two heredocs");
    is_str(r->heredocs[1].content, "bbb\n", "COPY second heredoc");
    r = &df->instrs[4];
    is_int(r->nheredocs, 1, "ADD heredoc with a flag");
    is_str(r->heredocs[0].content, "body\n", "ADD body");
    r = &df->instrs[5];
    is_int(r->nheredocs, 1, "fd-prefixed heredoc 3<<X");
    is_str(r->heredocs[0].name, "X", "fd heredoc name");
    r = &df->instrs[6];
    is_int(r->nheredocs, 0, "no heredocs for CMD");
    fe_dockerfile_free(df);

    df = P("FROM a\nRUN [\"cat\", \"<<EOF\"]\nRUN b\n");
    ok(df && df->ninstrs == 3 && df->instrs[1].nheredocs == 0, "no heredocs in JSON form");
    fe_dockerfile_free(df);
    df = P("FROM a\nRUN <<EOF\nEOF\n");
    ok(df && df->instrs[1].nheredocs == 1 && strcmp(df->instrs[1].heredocs[0].content, "") == 0,
       "empty heredoc");
    fe_dockerfile_free(df);
    df = P("FROM a\nRUN <<EOF\r\nline\r\nEOF\r\n");
    ok(df && strcmp(df->instrs[1].heredocs[0].content, "line\n") == 0, "CRLF heredoc");
    fe_dockerfile_free(df);
    df = P("FROM a\nONBUILD RUN <<EOF\nx\nEOF\n");
    ok(df && df->instrs[1].sub && df->instrs[1].sub->nheredocs == 1, "ONBUILD RUN heredoc");
    fe_dockerfile_free(df);

    /* BuildKit's heredoc word rules */
    df = P("FROM a\nRUN <<  EOF\nEOF\nRUN <<  E2  > foo\nE2\nRUN <<- E3\n\tE3\nRUN << -E4\n-E4\n"
           "RUN '<<NO1'\nRUN \"<<NO2\"\nRUN <<eo'f'\nx\neof\nRUN <<eo\\'f\ny\neo'f\n"
           "RUN <<'e'o\\'f\nz\neo'f\nRUN <<'one two'\nw\none two\nRUN <<$EOF\n$EOF\n"
           "RUN echo '<<X\nRUN x\n");
    ok(df != NULL, "BuildKit heredoc cases parse");
    if (df) {
        is_int(df->ninstrs, 14, "fourteen instructions");
        static const char *const names[] = {"EOF",  "E2",   "E3",      "-E4",  NULL, NULL, "eof",
                                            "eo'f", "eo'f", "one two", "$EOF", NULL, NULL};
        static const int expand[] = {1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0};
        for (size_t i = 0; i < 13 && i + 1 < df->ninstrs; i++) {
            const struct fe_instr *in = &df->instrs[i + 1];
            if (!names[i]) {
                is_int(in->nheredocs, 0, "no heredoc in '%s'", in->text);
                continue;
            }
            ok(in->nheredocs == 1 && strcmp(in->heredocs[0].name, names[i]) == 0 &&
                   in->heredocs[0].expand == expand[i],
               "heredoc '%s': name %s, expand %d", in->text, names[i], expand[i]);
        }
        ok(df->instrs[3].heredocs[0].chomp, "<<- EOF chomps");
        fe_dockerfile_free(df);
    }
    is_str(E("FROM a\nRUN echo <<EOF\nbody\n"), "2:10: unterminated heredoc 'EOF'",
           "unterminated heredoc: at the heredoc word");
    is_str(E("FROM a\nRUN <<A <<B\na\nA\nb\n"), "2:9: unterminated heredoc 'B'",
           "second heredoc unterminated");
    is_str(E("FROM a\nCOPY a <<EOF\nx\nEOF\n"),
           "2:8: COPY cannot accept a heredoc as a destination", "heredoc as destination");
    is_str(E("FROM a\nRUN --bogus <<EOF\nRUNN\nEOF\nRUN x\n"), "2:5: unknown flag: --bogus",
           "a wrong instruction's heredoc body is skipped");
}

static void test_json(void)
{
    struct fe_dockerfile *df = P(
        "FROM a\nCMD [\"echo\", \"a\\\"b\", \"\\u00e9\\ud83d\\ude00\", \"t\\tn\\n\\/\"]\n"
        "ENTRYPOINT []\nRUN [ \"a\" ] \nCMD [\"unterminated\"\nRUN [not json]\n"
        "VOLUME [\"/a\", \"/b\"]\nVOLUME /c /d\nCOPY [\"a b\", \"/c\"]\nSHELL [\"bash\",\"-c\"]\n");
    ok(df != NULL, "JSON forms parse");
    if (!df)
        return;
    const struct fe_instr *c = &df->instrs[1];
    ok(c->json && c->nargs == 4, "CMD JSON four strings");
    is_str(c->args[1], "a\"b", "escaped quote");
    is_str(c->args[2], "\xc3\xa9\xf0\x9f\x98\x80", "\\u escapes and a surrogate pair");
    is_str(c->args[3], "t\tn\n/", "control escapes");
    ok(df->instrs[2].json && df->instrs[2].nargs == 0, "ENTRYPOINT [] is empty JSON");
    ok(df->instrs[3].json && df->instrs[3].nargs == 1, "JSON with inner spaces");
    ok(!df->instrs[4].json, "invalid JSON is shell form");
    is_str(df->instrs[4].args[0], "[\"unterminated\"", "shell text kept");
    ok(!df->instrs[5].json, "[not json] is shell form");
    ok(df->instrs[6].json && df->instrs[6].nargs == 2, "VOLUME JSON");
    ok(!df->instrs[7].json && df->instrs[7].nargs == 2, "VOLUME words");
    ok(df->instrs[8].json && strcmp(df->instrs[8].args[0], "a b") == 0, "COPY JSON with a space");
    ok(df->instrs[9].json && df->instrs[9].nargs == 2, "SHELL JSON");
    fe_dockerfile_free(df);

    is_str(E("FROM a\nCMD [\"a\", 1]\n"),
           "2:5: when using JSON array syntax, arrays must be comprised of strings only",
           "JSON array with a number");
    is_str(E("FROM a\nRUN [\"a\", {\"b\": [null, true]}]\n"),
           "2:5: when using JSON array syntax, arrays must be comprised of strings only",
           "JSON array with an object");
    is_str(E("FROM a\nSHELL /bin/sh -c\n"), "2:1: SHELL requires the arguments to be in JSON form",
           "SHELL shell form");
    is_str(E("FROM a\nSHELL [\"sh\"\n"), "2:1: SHELL requires the arguments to be in JSON form",
           "SHELL invalid JSON");
    is_str(E("FROM a\nSHELL []\n"), "2:1: SHELL requires at least one argument", "SHELL []");
    is_str(E("FROM a\nCMD [\"a\\u0000b\"]\n"), "2:5: invalid NUL character in JSON string",
           "NUL in a JSON string");
}

static void test_flags(void)
{
    struct fe_dockerfile *df =
        P("FROM --platform=$BUILDPLATFORM a\n"
          "RUN --mount=type=cache,target=/x --mount=type=secret,id=\"s\" --network=none "
          "--security=insecure make\n"
          "COPY --from=b --chown=1:2 --chmod=755 --link --parents=false --exclude=*.md "
          "--exclude=x a b\n"
          "ADD --checksum=sha256:abc --keep-git-dir=true --unpack=False --link=TRUE a b\n"
          "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=0 --start-interval=5ms "
          "--retries=3 CMD [\"true\"]\n"
          "COPY -- --from=x b\n"
          "COPY a --from=x b\n");
    ok(df != NULL, "all flags parse");
    if (!df)
        return;
    const struct fe_instr *r = &df->instrs[1];
    is_int(r->nflags, 4, "RUN four flags");
    is_str(r->flags[0].name, "mount", "flag name");
    is_str(r->flags[0].value, "type=cache,target=/x", "raw mount value");
    is_str(r->flags[1].value, "type=secret,id=s", "quotes removed from a flag (as BuildKit)");
    is_int(r->flags[0].col, 5, "flag column");
    is_str(fe_instr_flag(r, "mount")->value, "type=secret,id=s", "fe_instr_flag: last one");
    ok(fe_instr_flag(r, "nope") == NULL, "fe_instr_flag: absent");
    is_str(r->args[0], "make", "RUN command after flags");
    is_str(df->instrs[0].flags[0].value, "$BUILDPLATFORM", "flag value unexpanded");
    const struct fe_instr *c = &df->instrs[2];
    is_int(c->nflags, 7, "COPY seven flags");
    ok(!c->flags[3].has_value && strcmp(c->flags[3].name, "link") == 0, "--link without value");
    is_int(c->nargs, 2, "COPY two args");
    is_int(df->instrs[3].nflags, 4, "ADD four flags");
    is_str(df->instrs[3].flags[2].value, "false", "bool value normalized (False)");
    is_str(df->instrs[3].flags[3].value, "true", "bool value normalized (TRUE)");
    is_int(df->instrs[4].nflags, 5, "HEALTHCHECK five flags");
    is_str(df->instrs[4].args[0], "CMD", "HEALTHCHECK args[0]");
    ok(df->instrs[4].json && df->instrs[4].nargs == 2, "HEALTHCHECK CMD JSON");
    is_int(df->instrs[5].nflags, 0, "-- ends the flags");
    is_str(df->instrs[5].args[0], "--from=x", "flag-like word after -- is an argument");
    is_int(df->instrs[6].nflags, 0, "flags only before the arguments");
    is_int(df->instrs[6].nargs, 3, "--from=x after an argument is a source");
    fe_dockerfile_free(df);

    int64_t ns = 0;
    struct kn_error *err = NULL;
    ok(fe_duration_parse("1m30.5s", &ns, &err) == 0 && ns == 90500000000LL, "duration 1m30.5s");
    ok(fe_duration_parse("250ms", &ns, &err) == 0 && ns == 250000000LL, "duration 250ms");
    ok(fe_duration_parse("1h", &ns, &err) == 0 && ns == 3600000000000LL, "duration 1h");
    ok(fe_duration_parse("5", &ns, &err) < 0, "duration without unit");
    is_str(err ? err->msg : NULL, "time: invalid duration \"5\"", "duration error text");
    kn_err_free(err);

    is_str(E("FROM a\nRUN --foo x\n"), "2:5: unknown flag: --foo", "unknown flag");
    is_str(E("FROM a\nENV --foo=1 a=b\n"), "2:5: unknown flag: --foo", "ENV takes no flags");
    is_str(E("FROM a\nCOPY --chown a b\n"), "2:6: missing a value on flag: --chown",
           "string flag without value");
    is_str(E("FROM a\nCOPY --link= a b\n"), "2:6: missing a value on flag: --link",
           "bool flag with =");
    is_str(E("FROM a\nCOPY --link=yes a b\n"),
           "2:6: expecting boolean value for flag --link, not: yes", "bool flag bad value");
    is_str(E("FROM a\nCOPY --from=a --from=b a b\n"), "2:15: duplicate flag specified: --from",
           "duplicate flag");
    is_str(E("FROM a\nRUN --network=bridge x\n"),
           "2:5: invalid value 'bridge' for flag --network: must be default, none or host",
           "network value");
    is_str(E("FROM a\nRUN --security=root x\n"),
           "2:5: invalid value 'root' for flag --security: must be sandbox or insecure",
           "security value");
    is_str(E("FROM a\nHEALTHCHECK --interval=5x CMD a\n"),
           "2:13: invalid value '5x' for flag --interval: time: invalid duration \"5x\"",
           "bad duration");
    is_str(E("FROM a\nHEALTHCHECK --timeout=10us CMD a\n"),
           "2:13: interval \"timeout\" cannot be less than 1ms", "too short");
    is_str(E("FROM a\nHEALTHCHECK --retries=x CMD a\n"),
           "2:13: invalid value 'x' for flag --retries: not an integer", "retries not a number");
    is_str(E("FROM a\nHEALTHCHECK --retries=-2 CMD a\n"), "2:13: --retries cannot be negative (-2)",
           "negative retries");
    is_str(E("FROM a\nHEALTHCHECK --interval=5s NONE\n"), "2:13: HEALTHCHECK NONE takes no flags",
           "NONE with a flag");
    is_str(E("FROM --platform a\n"), "1:6: missing a value on flag: --platform",
           "FROM --platform without value");
    is_str(E("FROM a\nADD --from=x a b\n"), "2:5: unknown flag: --from", "ADD has no --from");
    is_str(E("FROM a\nCOPY --unpack a b\n"), "2:6: unknown flag: --unpack", "COPY has no --unpack");
}

static void test_arity(void)
{
    struct fe_dockerfile *df =
        P("FROM a\nENV A=1 B=\"x y\" C= D='q'\nENV LEG value with  spaces\nLABEL a=b \"c d\"=e\n"
          "LABEL legacy v\nARG X Y=2 Z=\nEXPOSE 80 443/udp\nUSER app:grp\nWORKDIR /a b\n"
          "STOPSIGNAL SIGTERM\nMAINTAINER Jane <j@x>\nCMD\nRUN\nENV E=a\\ b F=\"$A\"\n");
    ok(df != NULL, "arity: good file");
    if (!df)
        return;
    const struct fe_instr *e = &df->instrs[1];
    is_int(e->nkvs, 4, "ENV four pairs");
    is_str(e->kvs[1].value, "\"x y\"", "value keeps quotes");
    is_str(e->kvs[2].value, "", "empty value");
    is_str(e->kvs[3].value, "'q'", "single quotes kept");
    e = &df->instrs[2];
    ok(e->nkvs == 1 && strcmp(e->kvs[0].key, "LEG") == 0, "legacy ENV key");
    is_str(e->kvs[0].value, "value with  spaces", "legacy ENV value is the rest of the line");
    e = &df->instrs[3];
    is_str(e->kvs[1].key, "\"c d\"", "LABEL quoted key kept");
    e = &df->instrs[4];
    ok(e->nkvs == 1 && strcmp(e->kvs[0].value, "v") == 0, "legacy LABEL");
    e = &df->instrs[5];
    is_int(e->nkvs, 3, "ARG three");
    ok(!e->kvs[0].has_value && e->kvs[0].value == NULL, "ARG without default");
    ok(e->kvs[2].has_value && strcmp(e->kvs[2].value, "") == 0, "ARG with empty default");
    is_int(df->instrs[6].nargs, 2, "EXPOSE two");
    is_str(df->instrs[7].args[0], "app:grp", "USER");
    is_str(df->instrs[8].args[0], "/a b", "WORKDIR rest of line");
    is_str(df->instrs[10].args[0], "Jane <j@x>", "MAINTAINER");
    is_int(df->instrs[11].nargs, 0, "empty CMD allowed");
    is_int(df->instrs[12].nargs, 0, "empty RUN allowed (as BuildKit)");
    is_str(df->instrs[13].kvs[0].value, "a\\ b", "escaped space in ENV value kept");
    fe_dockerfile_free(df);

    is_str(E("FROM\n"), "1:1: FROM requires either one or three arguments", "FROM empty");
    is_str(E("FROM a AS\n"), "1:1: FROM requires either one or three arguments", "FROM a AS");
    is_str(E("FROM a b c\n"), "1:1: FROM requires either one or three arguments", "FROM a b c");
    is_str(E("FROM a AS b c\n"), "1:1: FROM requires either one or three arguments", "four words");
    is_str(E("FROM a AS 9x\n"),
           "1:11: invalid name for build stage: \"9x\", name can't start with a number or contain "
           "symbols",
           "bad stage name");
    is_str(E("FROM a as B-2.x_y\n"), "", "stage name lowercased before the check");
    is_str(
        E("FROM a\nCOPY a\n"),
        "2:1: COPY requires at least two arguments, but only one was provided. Destination could "
        "not be determined",
        "COPY one arg");
    is_str(E("FROM a\nADD\n"),
           "2:1: ADD requires at least two arguments, but only one was provided. Destination could "
           "not be determined",
           "ADD none");
    is_str(
        E("FROM a\nCOPY <<EOF\nx\nEOF\n"),
        "2:1: COPY requires at least two arguments, but only one was provided. Destination could "
        "not be determined",
        "COPY heredoc without destination");
    is_str(E("FROM a\nENV\n"), "2:1: ENV requires at least one argument", "ENV empty");
    is_str(E("FROM a\nENV onlykey\n"), "2:5: ENV must have two arguments", "ENV key only");
    is_str(E("FROM a\nENV a=b c\n"),
           "2:9: syntax error - can't find = in \"c\": must be of the form name=value",
           "ENV mixed forms");
    is_str(E("FROM a\nENV =x\n"), "2:5: ENV names can not be blank", "ENV blank name");
    is_str(E("FROM a\nLABEL\n"), "2:1: LABEL requires at least one argument", "LABEL empty");
    is_str(E("FROM a\nARG\n"), "2:1: ARG requires at least one argument", "ARG empty");
    is_str(E("FROM a\nARG =v\n"), "2:5: ARG names can not be blank", "ARG blank name");
    is_str(E("FROM a\nEXPOSE\n"), "2:1: EXPOSE requires at least one argument", "EXPOSE empty");
    is_str(E("FROM a\nVOLUME\n"), "2:1: VOLUME requires at least one argument", "VOLUME empty");
    is_str(E("FROM a\nVOLUME [\" \"]\n"), "2:8: VOLUME specified can not be an empty string",
           "VOLUME empty string");
    is_str(E("FROM a\nUSER\n"), "2:1: USER requires exactly one argument", "USER empty");
    is_str(E("FROM a\nWORKDIR\n"), "2:1: WORKDIR requires exactly one argument", "WORKDIR empty");
    is_str(E("FROM a\nSTOPSIGNAL\n"), "2:1: STOPSIGNAL requires exactly one argument",
           "STOPSIGNAL empty");
    is_str(E("FROM a\nMAINTAINER\n"), "2:1: MAINTAINER requires exactly one argument",
           "MAINTAINER empty");
    is_str(E("FROM a\nHEALTHCHECK\n"), "2:1: HEALTHCHECK requires at least one argument",
           "HEALTHCHECK empty");
    is_str(E("FROM a\nHEALTHCHECK NONE x\n"), "2:18: HEALTHCHECK NONE takes no arguments",
           "HEALTHCHECK NONE args");
    is_str(E("FROM a\nHEALTHCHECK CMD\n"), "2:13: missing command after HEALTHCHECK CMD",
           "HEALTHCHECK CMD empty");
    is_str(E("FROM a\nHEALTHCHECK CMD []\n"), "2:13: missing command after HEALTHCHECK CMD",
           "HEALTHCHECK CMD []");
    is_str(E("FROM a\nHEALTHCHECK RUN x\n"), "2:13: unknown type \"RUN\" in HEALTHCHECK (try CMD)",
           "HEALTHCHECK bad type");
    is_str(E("FROM a\nONBUILD\n"), "2:1: ONBUILD requires at least one argument", "ONBUILD empty");
    is_str(E("FROM a\nONBUILD ONBUILD RUN x\n"),
           "2:9: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", "ONBUILD ONBUILD");
    is_str(E("FROM a\nONBUILD from x\n"), "2:9: FROM isn't allowed as an ONBUILD trigger",
           "ONBUILD FROM");
    is_str(E("FROM a\nONBUILD MAINTAINER x\n"),
           "2:9: MAINTAINER isn't allowed as an ONBUILD trigger", "ONBUILD MAINTAINER");
    is_str(E("FROM a\nONBUILD COPY --bad a b\n"), "2:14: unknown flag: --bad",
           "ONBUILD trigger flags are checked");

    df = P("FROM a\nHEALTHCHECK none\nHEALTHCHECK CMD curl -f http://x/ || exit 1\n"
           "ONBUILD RUN --mount=type=cache,target=/c make\n");
    ok(df != NULL, "HEALTHCHECK and ONBUILD parse");
    if (df) {
        is_str(df->instrs[1].args[0], "NONE", "NONE upper-cased");
        ok(!df->instrs[2].json && df->instrs[2].nargs == 2, "HEALTHCHECK CMD shell form");
        is_str(df->instrs[2].args[1], "curl -f http://x/ || exit 1", "HEALTHCHECK command text");
        const struct fe_instr *sub = df->instrs[3].sub;
        ok(sub && sub->kind == FE_RUN && sub->nflags == 1, "ONBUILD sub with a flag");
        if (sub) {
            is_str(sub->text, "RUN --mount=type=cache,target=/c make", "trigger text");
            is_int(sub->pos.col, 9, "trigger column");
        }
        is_int(df->instrs[3].nargs, 0, "ONBUILD has no args");
        fe_dockerfile_free(df);
    }
}

static void test_errors(void)
{
    is_str(E("FROM a\nRUNN echo\n"), "2:1: unknown instruction: RUNN (did you mean RUN?)",
           "unknown instruction with a suggestion");
    is_str(E("FROM a\n  cpy a b\n"), "2:3: unknown instruction: CPY (did you mean COPY?)",
           "suggestion for a lowercase typo, column after indentation");
    is_str(E("FROM a\nFORM b\n"), "2:1: unknown instruction: FORM (did you mean FROM?)",
           "transposed letters");
    is_str(E("FROM a\nXYZZYPLUGH x\n"), "2:1: unknown instruction: XYZZYPLUGH",
           "no suggestion when nothing is close");
    /* all errors of a file, in order */
    is_str(E("FROM a\nRUNN x\nCOPY a\nRUN --bad y\nENV\n"),
           "2:1: unknown instruction: RUNN (did you mean RUN?)\n"
           "3:1: COPY requires at least two arguments, but only one was provided. Destination "
           "could not be determined\n"
           "4:5: unknown flag: --bad\n"
           "5:1: ENV requires at least one argument",
           "all errors collected");

    struct kn_error *err = NULL;
    const char *src = "FROM a\n\tRUN --bogus x\n";
    struct fe_dockerfile *bad1 = fe_parse("my.Dockerfile", src, strlen(src), &err);
    ok(bad1 == NULL, "parse fails");
    if (err) {
        is_int(err->code, KN_E_PARSE, "KN_E_PARSE");
        is_str(err->loc.file, "my.Dockerfile", "error file name");
        is_int(err->loc.line, 2, "error line");
        is_int(err->loc.col, 6, "error column");
        is_str(err->detail, "\tRUN --bogus x", "detail is the source line");
        ok(err->next == NULL, "one error");
    }
    kn_err_free(err);
    err = NULL;

    /* a NUL byte */
    const char nul[] = "FROM a\nRUN a\0b\n";
    struct fe_dockerfile *bad2 = fe_parse("Dockerfile", nul, sizeof(nul) - 1, &err);
    ok(bad2 == NULL, "NUL byte rejected");
    if (err) {
        is_str(err->msg, "invalid NUL byte in dockerfile", "NUL message");
        is_int(err->loc.line, 2, "NUL line");
        is_int(err->loc.col, 6, "NUL column");
    }
    kn_err_free(err);
    err = NULL;

    /* caps */
    size_t big = (16u << 20) + 1;
    char *huge = malloc(big);
    memset(huge, 'a', big);
    struct fe_dockerfile *bad3 = fe_parse("Dockerfile", huge, big, &err);
    ok(bad3 == NULL && err && err->code == KN_E_UNSAFE, "file over 16 MiB rejected");
    if (err)
        is_str(err->msg, "dockerfile too large (16777217 bytes, max 16777216)", "size message");
    kn_err_free(err);
    err = NULL;
    size_t longl = (1u << 20) + 10;
    memcpy(huge, "FROM a\nRUN ", 11);
    huge[longl] = '\n';
    struct fe_dockerfile *bad4 = fe_parse("Dockerfile", huge, longl + 1, &err);
    ok(bad4 == NULL && err, "line over 1 MiB rejected");
    if (err) {
        is_str(err->msg, "line too long (more than 1048576 bytes)", "line length message");
        is_int(err->loc.line, 2, "line length error line");
    }
    kn_err_free(err);
    err = NULL;
    memset(huge, '\n', 1000001);
    struct fe_dockerfile *bad5 = fe_parse("Dockerfile", huge, 1000001, &err);
    ok(bad5 == NULL && err, "too many lines rejected");
    if (err)
        is_str(err->msg, "dockerfile has too many lines (max 1000000)", "line count message");
    kn_err_free(err);
    err = NULL;
    memset(huge, '\n', 1000000);
    struct fe_dockerfile *lots = fe_parse("Dockerfile", huge, 1000000, &err);
    ok(lots && lots->ninstrs == 0, "a million empty lines are fine");
    fe_dockerfile_free(lots);
    memset(huge, 'x', 8000);
    memcpy(huge, "FROM a\nRUNX ", 12);
    huge[8000] = '\n';
    struct fe_dockerfile *bad6 = fe_parse("Dockerfile", huge, 8001, &err);
    ok(bad6 == NULL && err, "long bad line");
    if (err)
        ok(err->detail && strlen(err->detail) == 4099, "detail of a long line is cut (%zu)",
           err->detail ? strlen(err->detail) : (size_t)0);
    kn_err_free(err);
    err = NULL;
    free(huge);

    /* many errors stop at a cap */
    struct kn_buf b = KN_BUF_INIT;
    for (int i = 0; i < 300; i++)
        kn_buf_adds(&b, "BOGUS\n");
    struct fe_dockerfile *bad7 = fe_parse("Dockerfile", b.data, b.len, &err);
    ok(bad7 == NULL, "many errors");
    int n = 0;
    const struct kn_error *last = NULL;
    for (const struct kn_error *e = err; e; e = e->next, n++)
        last = e;
    is_int(n, 101, "100 errors and a final one");
    is_str(last ? last->msg : NULL, "too many errors, giving up", "cap message");
    kn_err_free(err);
    kn_buf_release(&b);
}

static void test_parse_line(void)
{
    struct fe_dockerfile *df = P("# escape=`\nFROM a\n");
    if (!df)
        return;
    struct kn_error *err = NULL;
    struct fe_instr *in = fe_parse_line(df, "RUN echo `\n  hi", &err);
    ok(in && in->kind == FE_RUN, "fe_parse_line: RUN");
    if (in)
        is_str(in->args[0], "echo   hi", "fe_parse_line uses the file's escape");
    in = fe_parse_line(df, "COPY --from=x a b", &err);
    ok(in && in->nflags == 1, "fe_parse_line: COPY with a flag");
    in = fe_parse_line(df, "RUN <<EOF\nbody\nEOF", &err);
    ok(in && in->nheredocs == 1 && strcmp(in->heredocs[0].content, "body\n") == 0,
       "fe_parse_line: trigger with a heredoc body");
    ok(err == NULL, "no error so far");
    in = fe_parse_line(df, "RUNN x", &err);
    ok(!in && err, "fe_parse_line: error");
    if (err) {
        is_str(err->msg, "unknown instruction: RUNN (did you mean RUN?)", "fe_parse_line message");
        ok(err->loc.file == NULL && err->loc.line == 0, "no location (lowering stamps ONBUILD's)");
    }
    kn_err_free(err);
    err = NULL;
    in = fe_parse_line(df, "   ", &err);
    ok(!in && err && strcmp(err->msg, "empty instruction") == 0, "fe_parse_line: empty");
    kn_err_free(err);
    fe_dockerfile_free(df);
}

static void test_performance(void)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "FROM alpine AS base\n");
    for (int i = 0; i < 10000; i++) {
        switch (i % 5) {
        case 0:
            kn_buf_addf(&b, "RUN --mount=type=cache,target=/c%d echo %d && \\\n  make all\n", i, i);
            break;
        case 1:
            kn_buf_addf(&b, "COPY --chown=1:1 src%d/ /dst%d/\n", i, i);
            break;
        case 2:
            kn_buf_addf(&b, "ENV K%d=\"value %d\" L%d=x\n", i, i, i);
            break;
        case 3:
            kn_buf_addf(&b, "CMD [\"echo\", \"%d\"]\n", i);
            break;
        default:
            kn_buf_addf(&b, "RUN <<EOF\necho %d\nEOF\n", i);
            break;
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct kn_error *err = NULL;
    struct fe_dockerfile *df = fe_parse("Dockerfile", b.data, b.len, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    ok(df && df->ninstrs == 10001, "10,000 instructions parse");
    printf("# parsed %zu bytes, 10001 instructions in %.2f ms, arena %zu bytes\n", b.len, ms,
           df ? df->arena.used : 0);
    /* generous: sanitizer builds are slower */
    ok(ms < 500, "parse of 10,000 instructions is fast (%.1f ms)", ms);
    fe_dockerfile_free(df);
    kn_err_free(err);
    kn_buf_release(&b);
}

int main(void)
{
    test_basics();
    test_directives();
    test_lines();
    test_heredocs();
    test_json();
    test_flags();
    test_arity();
    test_errors();
    test_parse_line();
    test_performance();
    return tap_done();
}
