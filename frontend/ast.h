/*
 * The Dockerfile AST: what frontend/parse.c produces and frontend/lower.c
 * consumes. Private to the frontend (and its unit tests).
 *
 * The parser turns text into typed instructions: it handles parser
 * directives, comments, line continuations, heredocs, JSON vs shell form,
 * instruction-name case, and checks every flag against the instruction's
 * allowed flags (unknown or malformed flag -> error at its column). It does
 * NOT expand variables: values are kept as written (with quotes), because
 * which variables are in scope is only known while lowering.
 *
 * Everything hangs off the dockerfile's arena and is freed with it.
 */
#ifndef KILN_FRONTEND_AST_H
#define KILN_FRONTEND_AST_H

#include "ir/base/base.h"

enum fe_kind {
    FE_FROM,
    FE_RUN,
    FE_CMD,
    FE_LABEL,
    FE_MAINTAINER,
    FE_EXPOSE,
    FE_ENV,
    FE_ADD,
    FE_COPY,
    FE_ENTRYPOINT,
    FE_VOLUME,
    FE_USER,
    FE_WORKDIR,
    FE_ARG,
    FE_ONBUILD,
    FE_STOPSIGNAL,
    FE_HEALTHCHECK,
    FE_SHELL,
    FE_KIND_COUNT
};

/* "FROM", "RUN", ... (upper case) */
const char *fe_kind_name(enum fe_kind k);

struct fe_pos {
    int line;     /* 1-based line of the instruction keyword */
    int col;      /* 1-based column */
    int end_line; /* last line, including continuations and heredoc bodies */
};

/* A flag as written: `--mount=type=cache,target=/x` -> name "mount",
 * value "type=cache,target=/x"; `--link` -> has_value false. Unexpanded.
 * Quotes are removed and `\` escapes resolved, as BuildKit does for flags.
 * A boolean flag's value, when given, is normalized to "true" or "false". */
struct fe_flag {
    char *name;
    char *value; /* NULL when !has_value */
    bool has_value;
    int col; /* column of the "--" */
};

/* KEY=VALUE pairs of ENV, LABEL and ARG as written (value keeps its quotes;
 * the lowering unquotes and expands). For ARG without a default has_value is false.
 * The legacy `ENV key value` form becomes one pair with the rest of the line as value. */
struct fe_kv {
    char *key;
    char *value;
    bool has_value;
};

struct fe_heredoc {
    char *name;    /* the delimiter word, without quotes or "-" */
    char *content; /* the body, with "<<-" leading tabs already stripped */
    bool expand;   /* false when the delimiter was quoted: no variable expansion */
    bool chomp;    /* "<<-" */
    int line;      /* line of the first body line */
};

struct fe_instr {
    enum fe_kind kind;
    struct fe_pos pos;
    char *text; /* the instruction as written (continuation lines joined with the
                   escape+newline removed, comments inside removed), for history */
    struct fe_flag *flags;
    size_t nflags;
    bool json; /* exec (JSON array) form: args are the array elements */
    /* Arguments, unexpanded:
     *  JSON form: the array's strings (already JSON-decoded).
     *  RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK CMD shell form: args[0] = the command text.
     *  FROM: words (image, and "AS", name); COPY/ADD: words (sources..., dest),
     *  quotes kept; EXPOSE, VOLUME (non-JSON): words; USER, WORKDIR, STOPSIGNAL,
     *  MAINTAINER: args[0] = the rest of the line.
     *  HEALTHCHECK: args[0] = "NONE" or "CMD", then the command as for CMD
     *  (json says which form).
     *  ONBUILD: no args; `sub` is the trigger instruction. */
    char **args;
    size_t nargs;
    struct fe_kv *kvs; /* ENV, LABEL, ARG */
    size_t nkvs;
    struct fe_heredoc *heredocs; /* in the order they appear on the line */
    size_t nheredocs;
    struct fe_instr *sub; /* ONBUILD trigger */
};

struct fe_dockerfile {
    struct kn_arena arena;
    char *name;   /* file name for messages */
    char escape;  /* '\\' or '`' */
    char *syntax; /* # syntax= value or NULL */
    char *check;  /* # check= value or NULL */
    struct fe_instr *instrs;
    size_t ninstrs;
    char **lines; /* the source lines (1-based: lines[0] is line 1), for showing errors */
    size_t nlines;
};

/* Parses a whole Dockerfile. All parse errors are reported together (chained
 * through err->next), each with file, line, column and the offending line as
 * detail. Returns NULL on any error. */
struct fe_dockerfile *fe_parse(const char *name, const char *data, size_t len,
                               struct kn_error **err);
void fe_dockerfile_free(struct fe_dockerfile *df);

/* Parses one instruction line (an ONBUILD trigger stored in a base image
 * config) into an instruction allocated in df's arena. */
struct fe_instr *fe_parse_line(struct fe_dockerfile *df, const char *line, struct kn_error **err);

/* The flag named `name` of an instruction, or NULL (the last one if repeated). */
const struct fe_flag *fe_instr_flag(const struct fe_instr *in, const char *name);

/* Parses a Go duration ("1m30s", "500ms", "0") into nanoseconds, as
 * HEALTHCHECK's --interval & co. take them. -1 with *err when malformed. */
int fe_duration_parse(const char *s, int64_t *ns, struct kn_error **err);

/* ---- variable expansion (frontend/expand.c) ------------------------------
 *
 * Shell-like word processing as the Dockerfile reference defines it: quotes
 * ('...' literal, "..." with expansion), the escape character, and $v ${v}
 * ${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?msg} ${v?msg} ${v#p} ${v##p} ${v%p}
 * ${v%%p} ${v/p/r} ${v//p/r}. */
struct fe_vars {
    void *ctx;
    /* Returns the value, or NULL when the variable is not set. */
    const char *(*lookup)(void *ctx, const char *name);
    /* Optional: told of a variable used as $v or ${v} (no default, no
     * test) that is not set. */
    void (*unset)(void *ctx, const char *name);
};

/* Expands one word (quotes removed). ${v:?msg} of an unset var is an error. */
int fe_expand_word(const char *word, char escape, const struct fe_vars *vars, char **out,
                   struct kn_error **err);
/* Splits on unquoted whitespace, then expands each word (quotes removed);
 * used for EXPOSE, VOLUME, COPY/ADD sources, FROM. */
int fe_expand_words(const char *text, char escape, const struct fe_vars *vars, struct kn_strv *out,
                    struct kn_error **err);
/* Expands variables but keeps quotes and escapes as written (heredoc bodies
 * with an unquoted delimiter, RUN is NOT expanded: the shell does that). */
int fe_expand_keep_quotes(const char *text, char escape, const struct fe_vars *vars, char **out,
                          struct kn_error **err);
/* The names of the variables a word references (for --build-arg warnings). */
void fe_expand_names(const char *text, char escape, struct kn_strv *out);

#endif
