/*
 * Build checks: the rules of BuildKit's Dockerfile linter that can be
 * decided from the text alone, with its rule names and wording. Each
 * violation becomes a warning on the graph ("Dockerfile:5: JSONArgsRecommended:
 * ..."), which `kiln build` and `kiln graph` print. The `# check=` directive
 * (or the BUILDKIT_DOCKERFILE_CHECK build argument, which wins) configures
 * them as BuildKit does: `skip=RULE,RULE` (or `skip=all`) and `error=true`,
 * which turns any violation into a failed build.
 *
 * Rules: ConsistentInstructionCasing, ExposeProtoCasing, FromAsCasing,
 * JSONArgsRecommended, LegacyKeyValueFormat, MaintainerDeprecated,
 * MultipleInstructionsDisallowed, RedundantTargetPlatform, ReservedStageName,
 * SecretsUsedInArgOrEnv, StageNameCasing, WorkdirRelativePath; and, from
 * the lowering (which knows the variables in scope and the context's
 * .dockerignore), UndefinedVar, UndefinedArgInFrom and CopyIgnoredFile.
 */
#include "frontend/internal.h"

#include "ir/base/cleanup.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct fe_checks {
    const char *file;
    struct ir_graph *g;
    bool all_skipped;
    struct kn_strv skip;
    bool error;
    struct kn_strv hit; /* rules violated, once each */
    int first_line;
};

static bool skipped(const struct fe_checks *c, const char *rule)
{
    if (c->all_skipped)
        return true;
    for (size_t i = 0; i < c->skip.n; i++)
        if (strcmp(c->skip.v[i], rule) == 0)
            return true;
    return false;
}

static void vwarn(struct fe_checks *c, int line, const char *rule, const char *fmt, va_list ap)
    KN_PRINTF(4, 0);
static void vwarn(struct fe_checks *c, int line, const char *rule, const char *fmt, va_list ap)
{
    if (skipped(c, rule))
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    ir_graph_add_note(c->g, "%s:%d: %s: %s", c->file, line, rule, msg);
    c->g->nviolations++;
    bool seen = false;
    for (size_t i = 0; i < c->hit.n && !seen; i++)
        seen = strcmp(c->hit.v[i], rule) == 0;
    if (!seen)
        kn_strv_push(&c->hit, rule);
    if (!c->first_line)
        c->first_line = line;
}

static void warn(struct fe_checks *c, const struct fe_instr *in, const char *rule, const char *fmt,
                 ...) KN_PRINTF(4, 5);
static void warn(struct fe_checks *c, const struct fe_instr *in, const char *rule, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(c, in->pos.line, rule, fmt, ap);
    va_end(ap);
}

void fe_checks_warn(struct fe_checks *c, int line, const char *rule, const char *fmt, ...)
{
    if (!c)
        return;
    va_list ap;
    va_start(ap, fmt);
    vwarn(c, line, rule, fmt, ap);
    va_end(ap);
}

/* "skip=A,B;error=true" */
static int parse_config(struct fe_checks *c, const char *spec, struct kn_error **err)
{
    _cleanup_free_ char *copy = kn_strdup(spec);
    char *save = NULL;
    for (char *part = strtok_r(copy, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
        while (isspace((unsigned char)*part))
            part++;
        if (!*part)
            continue;
        char *eq = strchr(part, '=');
        if (!eq)
            return kn_err_set(err, KN_E_PARSE,
                              "invalid check configuration '%s': want "
                              "skip=RULE,... and error=true|false",
                              spec);
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(part, "skip") == 0) {
            _cleanup_free_ char *list = kn_strdup(v);
            char *s2 = NULL;
            for (char *r = strtok_r(list, ",", &s2); r; r = strtok_r(NULL, ",", &s2)) {
                while (isspace((unsigned char)*r))
                    r++;
                if (strcmp(r, "all") == 0)
                    c->all_skipped = true;
                else if (*r)
                    kn_strv_push(&c->skip, r);
            }
        } else if (strcmp(part, "error") == 0) {
            if (strcasecmp(v, "true") != 0 && strcasecmp(v, "false") != 0)
                return kn_err_set(err, KN_E_PARSE,
                                  "invalid check configuration '%s': error must be true or false",
                                  spec);
            c->error = strcasecmp(v, "true") == 0;
        } else {
            return kn_err_set(err, KN_E_PARSE, "invalid check configuration '%s': unknown key '%s'",
                              spec, part);
        }
    }
    return 0;
}

/* The instruction's keyword as written. */
static size_t keyword(const struct fe_instr *in, char *out, size_t cap)
{
    const char *t = in->text ? in->text : "";
    size_t n = 0;
    while (t[n] && !isspace((unsigned char)t[n]) && n + 1 < cap) {
        out[n] = t[n];
        n++;
    }
    out[n] = '\0';
    return n;
}

static bool all_case(const char *s, int (*is)(int))
{
    for (; *s; s++)
        if (isalpha((unsigned char)*s) && !is((unsigned char)*s))
            return false;
    return true;
}

/* BuildKit's pattern: a word (split on _) that names a secret */
static bool secret_name(const char *key)
{
    static const char *const words[] = {"apikey",   "auth",  "credential", "credentials", "key",
                                        "password", "pword", "passwd",     "secret",      "token"};
    _cleanup_free_ char *k = kn_strdup(key);
    for (char *p = k; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    char *save = NULL;
    for (char *w = strtok_r(k, "_", &save); w; w = strtok_r(NULL, "_", &save))
        for (size_t i = 0; i < KN_ARRAY_SIZE(words); i++)
            if (strcmp(w, words[i]) == 0)
                return true;
    return false;
}

/* ENV/LABEL in the legacy "KEY VALUE" form: no '=' in the first word. */
static bool legacy_kv(const struct fe_instr *in)
{
    const char *t = in->text ? in->text : "";
    while (*t && !isspace((unsigned char)*t))
        t++;
    while (*t && isspace((unsigned char)*t))
        t++;
    size_t n = strcspn(t, " \t");
    return n && !memchr(t, '=', n);
}

static void check_instr(struct fe_checks *c, const struct fe_instr *in, int upper_majority)
{
    char kw[32];
    keyword(in, kw, sizeof(kw));
    const char *name = fe_kind_name(in->kind);
    if (kw[0] && !(all_case(kw, isupper) && upper_majority > 0) &&
        !(all_case(kw, islower) && upper_majority < 0))
        warn(c, in, "ConsistentInstructionCasing",
             "Command '%s' should match the case of the command majority (%s)", kw,
             upper_majority >= 0 ? "uppercase" : "lowercase");
    switch (in->kind) {
    case FE_CMD:
    case FE_ENTRYPOINT:
        if (!in->json)
            warn(c, in, "JSONArgsRecommended",
                 "JSON arguments recommended for %s to prevent unintended behavior related to "
                 "OS signals",
                 name);
        break;
    case FE_MAINTAINER:
        warn(c, in, "MaintainerDeprecated",
             "Maintainer instruction is deprecated in favor of using label");
        break;
    case FE_ENV:
    case FE_LABEL:
    case FE_ARG:
        if (in->kind != FE_ARG && legacy_kv(in))
            warn(c, in, "LegacyKeyValueFormat",
                 "\"%s key=value\" should be used instead of legacy \"%s key value\" format", name,
                 name);
        if (in->kind != FE_LABEL)
            for (size_t i = 0; i < in->nkvs; i++)
                if (secret_name(in->kvs[i].key))
                    warn(c, in, "SecretsUsedInArgOrEnv",
                         "Do not use ARG or ENV instructions for sensitive data (%s \"%s\")", name,
                         in->kvs[i].key);
        break;
    case FE_EXPOSE:
        for (size_t i = 0; i < in->nargs; i++) {
            const char *slash = strchr(in->args[i], '/');
            if (slash && !all_case(slash + 1, islower))
                warn(c, in, "ExposeProtoCasing",
                     "Defined protocol '%s' in EXPOSE instruction should be lowercase",
                     in->args[i]);
        }
        break;
    case FE_FROM: {
        const struct fe_flag *pf = fe_instr_flag(in, "platform");
        if (pf && pf->value &&
            (strcmp(pf->value, "$TARGETPLATFORM") == 0 ||
             strcmp(pf->value, "${TARGETPLATFORM}") == 0))
            warn(c, in, "RedundantTargetPlatform",
                 "Setting platform to predefined %s in FROM is redundant as this is the default "
                 "behavior",
                 pf->value);
        if (in->nargs == 3 && strcasecmp(in->args[1], "as") == 0) {
            bool from_upper = all_case(kw, isupper), as_upper = all_case(in->args[1], isupper);
            if (from_upper != as_upper)
                warn(c, in, "FromAsCasing", "'%s' and '%s' keywords' casing do not match",
                     in->args[1], kw);
            const char *stage = in->args[2];
            if (!all_case(stage, islower))
                warn(c, in, "StageNameCasing", "Stage name '%s' should be lowercase", stage);
            if (strcasecmp(stage, "scratch") == 0 || strcasecmp(stage, "context") == 0)
                warn(c, in, "ReservedStageName",
                     "'%s' is reserved and should not be used as a stage name", stage);
        }
        break;
    }
    default:
        break;
    }
}

struct fe_checks *fe_checks_new(const struct fe_dockerfile *df, const char *file,
                                const char *config, struct ir_graph *g, struct kn_error **err)
{
    struct fe_checks *c = kn_calloc(1, sizeof(*c));
    c->file = file;
    c->g = g;
    const char *spec = config ? config : df->check;
    if (spec && parse_config(c, spec, err) < 0) {
        kn_err_at(*err, file, 1, 1);
        fe_checks_free(c);
        return NULL;
    }
    /* the casing the majority of the instructions use */
    int majority = 0;
    for (size_t i = 0; i < df->ninstrs; i++) {
        char kw[32];
        keyword(&df->instrs[i], kw, sizeof(kw));
        majority += all_case(kw, isupper) ? 1 : all_case(kw, islower) ? -1 : 0;
    }
    /* per stage: CMD, ENTRYPOINT and HEALTHCHECK more than once; relative
     * WORKDIR before any absolute one */
    const struct fe_instr *last[3] = {NULL, NULL, NULL};
    bool abs_workdir = false;
    for (size_t i = 0; i < df->ninstrs; i++) {
        const struct fe_instr *in = &df->instrs[i];
        if (in->kind == FE_FROM) {
            memset(last, 0, sizeof(last));
            abs_workdir = false;
        }
        check_instr(c, in, majority);
        int slot = in->kind == FE_CMD           ? 0
                   : in->kind == FE_ENTRYPOINT  ? 1
                   : in->kind == FE_HEALTHCHECK ? 2
                                                : -1;
        if (slot >= 0) {
            if (last[slot])
                warn(c, last[slot], "MultipleInstructionsDisallowed",
                     "Multiple %s instructions should not be used in the same stage because "
                     "only the last one will be used",
                     fe_kind_name(in->kind));
            last[slot] = in;
        }
        if (in->kind == FE_WORKDIR && in->nargs) {
            const char *w = in->args[0];
            if (w[0] == '/' || w[0] == '$')
                abs_workdir = true;
            else if (!abs_workdir)
                warn(c, in, "WorkdirRelativePath",
                     "Relative workdir \"%s\" can have unexpected results if the base image "
                     "changes",
                     w);
        }
    }
    return c;
}

int fe_checks_finish(struct fe_checks *c, struct kn_error **err)
{
    if (!c->error || !c->hit.n)
        return 0;
    struct kn_buf b = KN_BUF_INIT;
    for (size_t i = 0; i < c->hit.n; i++)
        kn_buf_addf(&b, "%s%s", i ? ", " : "", c->hit.v[i]);
    kn_err_set(err, KN_E_PARSE, "lint violation found for rules: %s", b.data);
    kn_err_at(*err, c->file, c->first_line, 1);
    kn_buf_release(&b);
    return -1;
}

void fe_checks_free(struct fe_checks *c)
{
    if (!c)
        return;
    kn_strv_release(&c->skip);
    kn_strv_release(&c->hit);
    free(c);
}
