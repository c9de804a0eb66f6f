/*
 * Lowering of one Dockerfile instruction inside a stage, with Docker's
 * semantics: RUN becomes an exec vertex, COPY/ADD a file vertex with one
 * copy action per source (a merge for --link), WORKDIR a mkdir plus a config
 * change; the other instructions only change the stage's image config and
 * add a history entry with empty_layer set, as BuildKit records them.
 *
 * Variables are expanded exactly where the Dockerfile reference says
 * (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR and the
 * flags), never in RUN/CMD/ENTRYPOINT text: the shell does that.
 */
#include "frontend/internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- paths ----------------------------------------------------------------- */

/* Go's path.Clean of an absolute or relative '/' path, in the arena. */
static char *path_clean(struct lw *lw, const char *p)
{
    bool abs = p[0] == '/';
    size_t n = strlen(p);
    char *out = kn_arena_alloc(&lw->arena, n + 2);
    size_t o = 0;
    if (abs)
        out[o++] = '/';
    size_t base = o; /* where ".." cannot go back beyond */
    size_t i = 0;
    while (i < n) {
        while (i < n && p[i] == '/')
            i++;
        if (i == n)
            break;
        size_t s = i;
        while (i < n && p[i] != '/')
            i++;
        size_t len = i - s;
        if (len == 1 && p[s] == '.')
            continue;
        if (len == 2 && p[s] == '.' && p[s + 1] == '.') {
            if (o > base) {
                /* drop the last element unless it is itself ".." */
                size_t e = o;
                while (e > base && out[e - 1] != '/')
                    e--;
                if (!(o - e == 2 && out[e] == '.' && out[e + 1] == '.')) {
                    o = e > base ? e - 1 : base;
                    continue;
                }
            }
            if (abs)
                continue;
        }
        if (o > base)
            out[o++] = '/';
        memcpy(out + o, p + s, len);
        o += len;
    }
    if (o == 0)
        out[o++] = '.';
    out[o] = 0;
    return out;
}

static char *resolve_dest(struct lw *lw, struct lw_stage *st, const char *dest);

static const char *stage_workdir(const struct lw_stage *st)
{
    return st->img.workdir && *st->img.workdir ? st->img.workdir : "/";
}

/* An absolute destination from `dest` relative to the stage's WORKDIR. */
char *lw_resolve_path(struct lw *lw, struct lw_stage *st, const char *dest)
{
    return resolve_dest(lw, st, dest);
}

static char *resolve_dest(struct lw *lw, struct lw_stage *st, const char *dest)
{
    if (dest[0] == '/')
        return path_clean(lw, dest);
    return path_clean(lw, lw_printf(lw, "%s/%s", stage_workdir(st), dest));
}

/* ---- RUN ------------------------------------------------------------------- */

static void default_shell(struct lw_stage *st, lw_strvec *out)
{
    static char *const def[] = {"/bin/sh", "-c"};
    if (st->img.has_shell && st->img.shell.n) {
        for (size_t i = 0; i < st->img.shell.n; i++)
            kn_vec_push(out, st->img.shell.v[i]);
    } else {
        kn_vec_push(out, def[0]);
        kn_vec_push(out, def[1]);
    }
}

/* The environment of a RUN: ENV, then the ARGs in scope that have a value,
 * then proxy build args, then a default PATH. */
static void run_env(struct lw *lw, struct lw_stage *st, lw_strvec *env)
{
    for (size_t i = 0; i < st->img.env.n; i++)
        kn_vec_push(env, st->img.env.v[i]);
    for (size_t i = 0; i < st->args.n; i++) {
        const struct lw_kv *a = &st->args.v[i];
        if (a->value && !lw_env_get(env, a->key))
            lw_env_set(lw, env, a->key, a->value);
    }
    for (size_t i = 0; i < lw->build_args.n; i++) {
        const struct lw_buildarg *b = &lw->build_args.v[i];
        if (b->value && lw_is_proxy_arg(b->key) && !lw_env_get(env, b->key))
            lw_env_set(lw, env, b->key, b->value);
    }
    if (!lw_env_get(env, "PATH"))
        kn_vec_push(env, (char *)"PATH=" LW_DEFAULT_PATH);
}

/* BuildKit's history text of a RUN: "|N K=V ... argv". */
static char *run_history(struct lw *lw, struct lw_stage *st, const lw_strvec *env,
                         const lw_strvec *argv)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "RUN ");
    size_t nargs = 0;
    for (size_t i = 0; i < st->args.n; i++) {
        bool dup = false;
        for (size_t j = i + 1; j < st->args.n; j++)
            dup |= strcmp(st->args.v[i].key, st->args.v[j].key) == 0;
        nargs += !dup;
    }
    if (nargs) {
        kn_buf_addf(&b, "|%zu ", nargs);
        for (size_t i = 0; i < st->args.n; i++) {
            bool dup = false;
            for (size_t j = i + 1; j < st->args.n; j++)
                dup |= strcmp(st->args.v[i].key, st->args.v[j].key) == 0;
            if (dup)
                continue;
            const char *v = lw_env_get(env, st->args.v[i].key);
            kn_buf_addf(&b, "%s=%s ", st->args.v[i].key, v ? v : "");
        }
    }
    for (size_t i = 0; i < argv->n; i++)
        kn_buf_addf(&b, "%s%s", i ? " " : "", argv->v[i]);
    kn_buf_adds(&b, " # buildkit");
    char *s = lw_strdup(lw, b.data);
    kn_buf_release(&b);
    return s;
}

/* True if the command text is nothing but one heredoc word ("<<EOF"). */
static bool only_heredoc(const char *text)
{
    while (isspace((unsigned char)*text))
        text++;
    if (strncmp(text, "<<", 2) != 0)
        return false;
    text += 2;
    if (*text == '-')
        text++;
    while (*text && !isspace((unsigned char)*text))
        text++;
    while (isspace((unsigned char)*text))
        text++;
    return *text == 0;
}

static int add_input(lw_u32vec *inputs, int64_t v)
{
    for (size_t i = 0; i < inputs->n; i++)
        if (inputs->v[i] == (uint32_t)v)
            return (int)i;
    kn_vec_push(inputs, (uint32_t)v);
    return (int)inputs->n - 1;
}

struct run_ctx {
    lw_u32vec inputs;
    KN_VEC(struct ir_mount) mounts;
    lw_strvec argv, env;
};

static int lower_run_in(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                        struct run_ctx *c, struct kn_error **err)
{
    struct ir_vertex v = {0};
    v.op = IR_EXEC;
    struct ir_exec *x = &v.u.exec;
    kn_vec_push(&c->inputs, (uint32_t)st->root);

    int nssh = 0;
    for (size_t i = 0; i < in->nflags; i++) {
        const struct fe_flag *f = &in->flags[i];
        if (strcmp(f->name, "mount") == 0) {
            struct ir_mount m;
            if (lw_parse_mount(lw, st, in, f, &m, &c->inputs, nssh, err) < 0)
                return -1;
            nssh += m.type == IR_MOUNT_SSH;
            kn_vec_push(&c->mounts, m);
        }
    }
    char *net = NULL, *sec = NULL;
    if (lw_flag(lw, st, in, "network", &net, err) < 0 ||
        lw_flag(lw, st, in, "security", &sec, err) < 0)
        return -1;
    if (net) {
        if (strcmp(net, "default") == 0) {
            x->network = IR_NET_DEFAULT;
        } else if (strcmp(net, "none") == 0) {
            x->network = IR_NET_NONE;
        } else if (strcmp(net, "host") == 0) {
            x->network = IR_NET_HOST;
        } else {
            lw_err(lw, err, in, fe_instr_flag(in, "network")->col, KN_E_PARSE,
                   "unsupported network mode '%s' (want default, none or host)", net);
            return -1;
        }
    }
    if (sec) {
        if (strcmp(sec, "sandbox") == 0) {
            x->security = IR_SEC_SANDBOX;
        } else if (strcmp(sec, "insecure") == 0) {
            x->security = IR_SEC_INSECURE;
        } else {
            lw_err(lw, err, in, fe_instr_flag(in, "security")->col, KN_E_PARSE,
                   "unsupported security mode '%s' (want sandbox or insecure)", sec);
            return -1;
        }
    }

    if (in->json) {
        for (size_t i = 0; i < in->nargs; i++)
            kn_vec_push(&c->argv, in->args[i]);
        if (c->argv.n == 0) {
            lw_err(lw, err, in, 0, KN_E_PARSE, "RUN requires at least one argument");
            return -1;
        }
    } else {
        const char *text = in->nargs ? in->args[0] : "";
        default_shell(st, &c->argv);
        if (in->nheredocs == 1 && only_heredoc(text)) {
            /* as BuildKit: the document becomes an executable file mounted
             * at /dev/pipes/ and the shell runs it (its #! line, if any,
             * picks the interpreter) */
            const struct fe_heredoc *h = &in->heredocs[0];
            struct ir_vertex fv = {0};
            fv.op = IR_FILE;
            struct ir_file_action *a = ir_graph_alloc(lw->g, sizeof(*a));
            a->kind = IR_FILE_MKFILE;
            a->src_input = -1;
            a->dest = ir_graph_strdup(lw->g, lw_printf(lw, "/%s", h->name));
            a->datalen = strlen(h->content);
            a->data = ir_graph_strdup(lw->g, h->content);
            a->mode = 0755;
            fv.u.file.actions = a;
            fv.u.file.nactions = 1;
            int64_t sv = lw_scratch_vertex(lw, err);
            if (sv < 0)
                return -1;
            fv.inputs = ir_graph_alloc(lw->g, sizeof(uint32_t));
            fv.inputs[0] = (uint32_t)sv;
            fv.ninputs = 1;
            int64_t id = lw_add_vertex(lw, st, in, &fv, "preparing inline document", err);
            if (id < 0)
                return -1;
            struct ir_mount m = {0};
            m.type = IR_MOUNT_BIND;
            m.target = ir_graph_strdup(lw->g, "/dev/pipes");
            m.input = add_input(&c->inputs, id);
            m.source = ir_graph_strdup(lw->g, "/");
            m.readonly = true;
            m.mode = m.uid = m.gid = -1;
            kn_vec_push(&c->mounts, m);
            kn_vec_push(&c->argv, lw_printf(lw, "/dev/pipes/%s", h->name));
        } else if (in->nheredocs) {
            /* the shell reads the documents itself: append them to the script */
            struct kn_buf b = KN_BUF_INIT;
            kn_buf_adds(&b, text);
            for (size_t i = 0; i < in->nheredocs; i++) {
                const struct fe_heredoc *h = &in->heredocs[i];
                kn_buf_addc(&b, '\n');
                kn_buf_adds(&b, h->content);
                if (b.len && b.data[b.len - 1] != '\n')
                    kn_buf_addc(&b, '\n');
                kn_buf_adds(&b, h->name);
            }
            kn_vec_push(&c->argv, lw_strdup(lw, b.data));
            kn_buf_release(&b);
        } else {
            kn_vec_push(&c->argv, (char *)text);
        }
    }

    run_env(lw, st, &c->env);
    x->argv = ir_graph_strv(lw->g, c->argv.v, c->argv.n);
    x->argc = c->argv.n;
    x->env = ir_graph_strv(lw->g, c->env.v, c->env.n);
    x->nenv = c->env.n;
    x->cwd = ir_graph_strdup(lw->g, stage_workdir(st));
    x->user = st->img.user && *st->img.user ? ir_graph_strdup(lw->g, st->img.user) : NULL;
    if (c->mounts.n) {
        x->mounts = ir_graph_alloc(lw->g, c->mounts.n * sizeof(*x->mounts));
        memcpy(x->mounts, c->mounts.v, c->mounts.n * sizeof(*x->mounts));
        x->nmounts = c->mounts.n;
    }
    v.inputs = ir_graph_alloc(lw->g, c->inputs.n * sizeof(uint32_t));
    memcpy(v.inputs, c->inputs.v, c->inputs.n * sizeof(uint32_t));
    v.ninputs = c->inputs.n;
    int64_t id =
        lw_add_vertex(lw, st, in, &v, lw_progress_name(lw, st, lw_instr_text(lw, in)), err);
    if (id < 0)
        return -1;
    st->root = id;
    lw_history(lw, st, run_history(lw, st, &c->env, &c->argv), false);
    return 0;
}

static int lower_run(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                     struct kn_error **err)
{
    struct run_ctx c;
    memset(&c, 0, sizeof(c));
    int rc = lower_run_in(lw, st, in, &c, err);
    free(c.inputs.v);
    free(c.mounts.v);
    free(c.argv.v);
    free(c.env.v);
    return rc;
}

/* ---- COPY / ADD ------------------------------------------------------------ */

/* --chmod: octal ("0755", "755") or symbolic ("u+x,g-w"). */
static int parse_chmod(const char *s, int *mode, bool *symbolic)
{
    *symbolic = false;
    size_t n = strlen(s);
    if (n == 0)
        return -1;
    bool octal = true;
    for (size_t i = 0; i < n; i++)
        octal &= s[i] >= '0' && s[i] <= '7';
    if (octal) {
        if (n > 4)
            return -1;
        *mode = (int)strtol(s, NULL, 8);
        return 0;
    }
    /* [ugoa]*[-+=][rwxXst]* (, ...)* */
    const char *p = s;
    for (;;) {
        while (*p && strchr("ugoa", *p))
            p++;
        if (!*p || !strchr("+-=", *p))
            return -1;
        while (*p && strchr("+-=", *p)) {
            p++;
            while (*p && strchr("rwxXst", *p))
                p++;
        }
        if (*p == 0)
            break;
        if (*p != ',')
            return -1;
        p++;
    }
    *symbolic = true;
    *mode = -1;
    return 0;
}

static bool is_url(const char *s)
{
    return kn_str_startswith(s, "http://") || kn_str_startswith(s, "https://");
}

static bool is_git(const char *s)
{
    if (kn_str_startswith(s, "git@") || kn_str_startswith(s, "git://") ||
        kn_str_startswith(s, "ssh://"))
        return true;
    if (!is_url(s))
        return false;
    const char *frag = strchr(s, '#');
    size_t n = frag ? (size_t)(frag - s) : strlen(s);
    return (n > 4 && memcmp(s + n - 4, ".git", 4) == 0) || strstr(s, ".git#") != NULL;
}

static char *url_filename(struct lw *lw, const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "?#");
    const char *end = p + n;
    const char *slash = NULL;
    for (const char *c = p; c < end; c++)
        if (*c == '/')
            slash = c;
    if (!slash || slash + 1 == end)
        return lw_strdup(lw, "__unnamed__");
    return kn_arena_strndup(&lw->arena, slash + 1, (size_t)(end - slash - 1));
}

static bool checksum_ok(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon)
        return false;
    size_t want;
    if ((size_t)(colon - s) == 6 && memcmp(s, "sha256", 6) == 0)
        want = 64;
    else if ((size_t)(colon - s) == 6 && memcmp(s, "sha384", 6) == 0)
        want = 96;
    else if ((size_t)(colon - s) == 6 && memcmp(s, "sha512", 6) == 0)
        want = 128;
    else
        return false;
    const char *h = colon + 1;
    if (strlen(h) != want)
        return false;
    for (; *h; h++)
        if (!isxdigit((unsigned char)*h) || isupper((unsigned char)*h))
            return false;
    return true;
}

struct copy_ctx {
    lw_u32vec inputs;
    KN_VEC(struct ir_file_action) actions;
    lw_strvec words, excludes;
};

static int lower_copy_in(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                         struct copy_ctx *c, struct kn_error **err)
{
    bool add = in->kind == FE_ADD;
    const char *kw = add ? "ADD" : "COPY";

    if (in->nargs < 2) {
        lw_err(lw, err, in, 0, KN_E_PARSE, "%s requires at least two arguments", kw);
        return -1;
    }
    char *from = NULL, *chown = NULL, *chmod = NULL, *checksum = NULL;
    if (lw_flag(lw, st, in, "from", &from, err) < 0 ||
        lw_flag(lw, st, in, "chown", &chown, err) < 0 ||
        lw_flag(lw, st, in, "chmod", &chmod, err) < 0 ||
        (add && lw_flag(lw, st, in, "checksum", &checksum, err) < 0))
        return -1;
    bool link = fe_instr_flag(in, "link") != NULL;
    bool parents = fe_instr_flag(in, "parents") != NULL;
    bool keep_git = add && fe_instr_flag(in, "keep-git-dir") != NULL;
    /* --unpack: local archives are extracted unless it is false, downloads
     * only when it is true */
    const struct fe_flag *unpack_flag = add ? fe_instr_flag(in, "unpack") : NULL;
    bool unpack_set = unpack_flag != NULL, unpack = unpack_flag != NULL;
    for (size_t i = 0; i < in->nflags; i++) {
        const struct fe_flag *f = &in->flags[i];
        if (strcmp(f->name, "exclude") != 0)
            continue;
        char *p = NULL;
        if (!f->has_value || !*f->value) {
            lw_err(lw, err, in, f->col, KN_E_PARSE, "--exclude requires a pattern");
            return -1;
        }
        if (lw_expand(lw, st, in, f->value, &p, err) < 0) {
            lw_err_at(lw, err, in, f->col);
            return -1;
        }
        kn_vec_push(&c->excludes, p);
    }
    /* the parser has checked boolean flags and made their values "true" or
     * "false" */
    const char *bools[] = {"link", "keep-git-dir", "unpack"};
    bool *vals[] = {&link, &keep_git, &unpack};
    for (size_t i = 0; i < 3; i++) {
        const struct fe_flag *bf = fe_instr_flag(in, bools[i]);
        if (bf && bf->has_value)
            *vals[i] = strcmp(bf->value, "false") != 0;
    }
    int mode = -1;
    bool symbolic = false;
    if (chmod && parse_chmod(chmod, &mode, &symbolic) < 0) {
        lw_err(lw, err, in, fe_instr_flag(in, "chmod")->col, KN_E_PARSE,
               "invalid chmod '%s': want octal permission bits (0755) or a symbolic mode (u+x)",
               chmod);
        return -1;
    }
    if (checksum && !checksum_ok(checksum)) {
        lw_err(lw, err, in, fe_instr_flag(in, "checksum")->col, KN_E_PARSE,
               "invalid checksum '%s': want sha256:<64 hex digits>", checksum);
        return -1;
    }

    /* sources and destination, expanded (JSON form keeps quotes literal) */
    for (size_t i = 0; i < in->nargs; i++) {
        const char *a = in->args[i];
        char *w = NULL;
        if (kn_str_startswith(a, "<<") && in->nheredocs) {
            w = lw_strdup(lw, a);
        } else if (in->json) {
            struct lw_scope sc = {lw, st, in};
            struct fe_vars vars = lw_vars(&sc);
            char *res = NULL;
            if (fe_expand_keep_quotes(a, lw->df->escape, &vars, &res, err) < 0) {
                lw_err_at(lw, err, in, 0);
                return -1;
            }
            w = lw_strdup(lw, res);
            free(res);
        } else if (lw_expand(lw, st, in, a, &w, err) < 0) {
            return -1;
        }
        kn_vec_push(&c->words, w);
    }
    const char *dest_raw = c->words.v[c->words.n - 1];
    size_t nsrc = c->words.n - 1;
    if (!*dest_raw) {
        lw_err(lw, err, in, 0, KN_E_PARSE, "%s: the destination is empty", kw);
        return -1;
    }
    bool dest_dir = kn_str_endswith(dest_raw, "/") || strcmp(dest_raw, ".") == 0 ||
                    strcmp(dest_raw, "..") == 0 || kn_str_endswith(dest_raw, "/.") ||
                    kn_str_endswith(dest_raw, "/..");
    bool wildcard = false;
    for (size_t i = 0; i < nsrc; i++)
        wildcard |=
            !kn_str_startswith(c->words.v[i], "<<") && strpbrk(c->words.v[i], "*?[") != NULL;
    if ((nsrc > 1 || wildcard) && !dest_dir) {
        lw_err(lw, err, in, 0, KN_E_PARSE,
               "when using %s with more than one source file, the destination must be a "
               "directory and end with a /",
               kw);
        return -1;
    }
    char *dest = resolve_dest(lw, st, dest_raw);
    if (checksum) {
        if (nsrc != 1) {
            lw_err(lw, err, in, fe_instr_flag(in, "checksum")->col, KN_E_PARSE,
                   "checksum can't be specified for multiple sources");
            return -1;
        }
        if (!is_url(c->words.v[0]) || is_git(c->words.v[0])) {
            lw_err(lw, err, in, fe_instr_flag(in, "checksum")->col, KN_E_PARSE,
                   "checksum requires an HTTP(S) source");
            return -1;
        }
    }

    /* the input everything is copied onto: the stage, or scratch for --link */
    int64_t base = link ? lw_scratch_vertex(lw, err) : st->root;
    if (base < 0)
        return -1;
    kn_vec_push(&c->inputs, (uint32_t)base);
    int src_default = -1;
    if (from && !*from) {
        lw_err(lw, err, in, fe_instr_flag(in, "from")->col, KN_E_PARSE,
               "--from requires a stage, an image or a build context");
        return -1;
    }
    if (from) {
        struct lw_source src;
        if (lw_resolve_source(lw, st, in, fe_instr_flag(in, "from")->col, from, false, &src, err) <
            0)
            return -1;
        src_default = add_input(&c->inputs, src.vertex);
    }
    char *chown_g = chown && *chown ? ir_graph_strdup(lw->g, chown) : NULL;
    char *chmod_g = symbolic ? ir_graph_strdup(lw->g, chmod) : NULL;
    size_t nheredoc = 0;
    for (size_t i = 0; i < nsrc; i++) {
        const char *s = c->words.v[i];
        struct ir_file_action a = {0};
        a.chown = chown_g;
        a.mode = mode;
        a.chmod = chmod_g;
        if (kn_str_startswith(s, "<<") && nheredoc < in->nheredocs) {
            const struct fe_heredoc *h = &in->heredocs[nheredoc++];
            char *data = h->content;
            if (h->expand) {
                struct lw_scope sc = {lw, st, in};
                struct fe_vars vars = lw_vars(&sc);
                char *res = NULL;
                if (fe_expand_keep_quotes(h->content, lw->df->escape, &vars, &res, err) < 0) {
                    lw_err_at(lw, err, in, 0);
                    return -1;
                }
                data = lw_strdup(lw, res);
                free(res);
            }
            a.kind = IR_FILE_MKFILE;
            a.src_input = -1;
            a.dest = ir_graph_strdup(
                lw->g,
                dest_dir ? resolve_dest(lw, st, lw_printf(lw, "%s/%s", dest, h->name)) : dest);
            a.datalen = strlen(data);
            a.data = ir_graph_strdup(lw->g, data);
            if (a.mode < 0 && !a.chmod)
                a.mode = 0644;
            a.flags = IR_FF_CREATE_PARENTS;
            kn_vec_push(&c->actions, a);
            continue;
        }
        a.kind = IR_FILE_COPY;
        a.dest = ir_graph_strdup(
            lw->g, dest_dir && strcmp(dest, "/") != 0 ? lw_printf(lw, "%s/", dest) : dest);
        a.flags = IR_FF_FOLLOW_SYMLINKS | IR_FF_DIR_CONTENTS | IR_FF_CREATE_PARENTS |
                  IR_FF_ALLOW_EMPTY_WILDCARD;
        if (dest_dir)
            a.flags |= IR_FF_DEST_IS_DIR;
        if (add && is_git(s)) {
            /* REMOTE[#REF[:SUBDIR]], as BuildKit reads it: the checkout's
             * contents go into dest */
            const char *hash = strchr(s, '#');
            struct ir_vertex gv = {0};
            gv.op = IR_SOURCE_GIT;
            gv.u.git.remote = ir_graph_strdup(
                lw->g, hash ? kn_arena_strndup(&lw->arena, s, (size_t)(hash - s)) : s);
            if (hash && hash[1]) {
                const char *colon = strchr(hash + 1, ':');
                size_t rl = colon ? (size_t)(colon - hash - 1) : strlen(hash + 1);
                if (rl)
                    gv.u.git.ref =
                        ir_graph_strdup(lw->g, kn_arena_strndup(&lw->arena, hash + 1, rl));
                if (colon && colon[1])
                    gv.u.git.subdir = ir_graph_strdup(lw->g, colon + 1);
            }
            gv.u.git.keep_git_dir = keep_git;
            int64_t gid = lw_add_vertex(lw, st, in, &gv, lw_printf(lw, "ADD %s", s), err);
            if (gid < 0)
                return -1;
            a.src_input = add_input(&c->inputs, gid);
            a.src = ir_graph_strdup(lw->g, "/");
            if (c->excludes.n) {
                a.exclude = ir_graph_strv(lw->g, c->excludes.v, c->excludes.n);
                a.nexclude = c->excludes.n;
            }
        } else if (add && is_url(s)) {
            if (from) {
                lw_err(lw, err, in, 0, KN_E_PARSE, "ADD --from cannot be used with a URL: '%s'", s);
                return -1;
            }
            struct ir_vertex hv = {0};
            hv.op = IR_SOURCE_HTTP;
            hv.u.http.url = ir_graph_strdup(lw->g, s);
            hv.u.http.checksum = checksum ? ir_graph_strdup(lw->g, checksum) : NULL;
            char *fname = url_filename(lw, s);
            hv.u.http.filename = ir_graph_strdup(lw->g, fname);
            int64_t hid = lw_add_vertex(lw, st, in, &hv, lw_printf(lw, "ADD %s", s), err);
            if (hid < 0)
                return -1;
            a.src_input = add_input(&c->inputs, hid);
            a.src = ir_graph_strdup(lw->g, lw_printf(lw, "/%s", fname));
            if (a.mode < 0 && !a.chmod)
                a.mode = 0600;
            if (unpack)
                a.flags |= IR_FF_UNPACK; /* ADD --unpack=true of a download */
        } else {
            if (src_default < 0) {
                int64_t ctx = lw_context_vertex(lw, err);
                if (ctx < 0)
                    return -1;
                src_default = add_input(&c->inputs, ctx);
            }
            a.src_input = src_default;
            char *clean = path_clean(lw, lw_printf(lw, "/%s", s));
            a.src = ir_graph_strdup(lw->g, clean);
            if (strpbrk(s, "*?["))
                a.flags |= IR_FF_WILDCARD;
            else if (!from && clean[1] && lw_context_ignores(lw, clean + 1))
                fe_checks_warn(lw->checks, in->pos.line, "CopyIgnoredFile",
                               "Attempting to %s file \"%s\" that is excluded by .dockerignore",
                               add ? "Add" : "Copy", clean + 1);
            if (add && (!unpack_set || unpack))
                a.flags |= IR_FF_UNPACK; /* exec unpacks it if it is a tar archive */
            if (parents)
                a.flags |= IR_FF_PARENTS;
            if (c->excludes.n) {
                a.exclude = ir_graph_strv(lw->g, c->excludes.v, c->excludes.n);
                a.nexclude = c->excludes.n;
            }
        }
        kn_vec_push(&c->actions, a);
    }

    struct ir_vertex v = {0};
    v.op = IR_FILE;
    v.u.file.actions = ir_graph_alloc(lw->g, c->actions.n * sizeof(*c->actions.v));
    memcpy(v.u.file.actions, c->actions.v, c->actions.n * sizeof(*c->actions.v));
    v.u.file.nactions = c->actions.n;
    v.inputs = ir_graph_alloc(lw->g, c->inputs.n * sizeof(uint32_t));
    memcpy(v.inputs, c->inputs.v, c->inputs.n * sizeof(uint32_t));
    v.ninputs = c->inputs.n;
    char *name = lw_progress_name(lw, st, lw_instr_text(lw, in));
    int64_t id = lw_add_vertex(lw, st, in, &v, name, err);
    if (id < 0)
        return -1;
    if (link) {
        struct ir_vertex mv = {0};
        mv.op = IR_MERGE;
        mv.inputs = ir_graph_alloc(lw->g, 2 * sizeof(uint32_t));
        mv.inputs[0] = (uint32_t)st->root;
        mv.inputs[1] = (uint32_t)id;
        mv.ninputs = 2;
        id = lw_add_vertex(lw, st, in, &mv, name, err);
        if (id < 0)
            return -1;
    }
    st->root = id;

    struct kn_buf h = KN_BUF_INIT;
    kn_buf_adds(&h, kw);
    for (size_t i = 0; i < c->words.n; i++)
        kn_buf_addf(&h, " %s", c->words.v[i]);
    kn_buf_adds(&h, " # buildkit");
    lw_history(lw, st, h.data, false);
    kn_buf_release(&h);
    return 0;
}

static int lower_copy(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                      struct kn_error **err)
{
    struct copy_ctx c;
    memset(&c, 0, sizeof(c));
    int rc = lower_copy_in(lw, st, in, &c, err);
    free(c.inputs.v);
    free(c.actions.v);
    free(c.words.v);
    free(c.excludes.v);
    return rc;
}

/* ---- WORKDIR ---------------------------------------------------------------- */

static int lower_workdir(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                         struct kn_error **err)
{
    char *w = NULL;
    if (in->nargs < 1 || lw_expand(lw, st, in, in->args[0], &w, err) < 0)
        return in->nargs < 1 ? lw_err(lw, err, in, 0, KN_E_PARSE, "WORKDIR requires an argument")
                             : -1;
    if (!*w)
        return lw_err(lw, err, in, 0, KN_E_PARSE, "WORKDIR cannot be empty");
    char *wd = resolve_dest(lw, st, w);
    st->img.workdir = wd;
    char *name = lw_progress_name(lw, st, lw_instr_text(lw, in));
    bool layer = strcmp(wd, "/") != 0;
    if (layer) {
        struct ir_vertex v = {0};
        v.op = IR_FILE;
        struct ir_file_action *a = ir_graph_alloc(lw->g, sizeof(*a));
        a->kind = IR_FILE_MKDIR;
        a->src_input = -1;
        a->dest = ir_graph_strdup(lw->g, wd);
        a->mode = 0755;
        a->flags = IR_FF_CREATE_PARENTS;
        a->chown = st->img.user && *st->img.user ? ir_graph_strdup(lw->g, st->img.user) : NULL;
        v.u.file.actions = a;
        v.u.file.nactions = 1;
        v.inputs = ir_graph_alloc(lw->g, sizeof(uint32_t));
        v.inputs[0] = (uint32_t)st->root;
        v.ninputs = 1;
        int64_t id = lw_add_vertex(lw, st, in, &v, name, err);
        if (id < 0)
            return -1;
        st->root = id;
    }
    lw_history(lw, st, lw_printf(lw, "WORKDIR %s", wd), !layer);
    return 0;
}

/* ---- config-only instructions ------------------------------------------------ */

static int lower_env_label(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                           struct kn_error **err)
{
    bool env = in->kind == FE_ENV;
    if (in->nkvs == 0)
        return lw_err(lw, err, in, 0, KN_E_PARSE, "%s requires at least one argument",
                      fe_kind_name(in->kind));
    /* every value is expanded with the scope before the instruction */
    char **keys = kn_calloc(in->nkvs, sizeof(char *));
    char **vals = kn_calloc(in->nkvs, sizeof(char *));
    int rc = 0;
    for (size_t i = 0; i < in->nkvs && rc == 0; i++) {
        const struct fe_kv *kv = &in->kvs[i];
        if (env)
            keys[i] = lw_strdup(lw, kv->key);
        else
            rc = lw_expand(lw, st, in, kv->key, &keys[i], err);
        if (rc == 0)
            rc = lw_expand(lw, st, in, kv->has_value ? kv->value : "", &vals[i], err);
        if (rc == 0 && !*keys[i])
            rc = lw_err(lw, err, in, 0, KN_E_PARSE, "%s names can not be blank",
                        fe_kind_name(in->kind));
    }
    if (rc == 0 && (env ? st->img.env.n : st->img.labels.n) + in->nkvs > LW_MAX_CONFIG_ITEMS)
        rc = lw_err(lw, err, in, 0, KN_E_UNSAFE, "more than %d %s entries in one image",
                    LW_MAX_CONFIG_ITEMS, fe_kind_name(in->kind));
    if (rc == 0) {
        struct kn_buf h = KN_BUF_INIT;
        kn_buf_adds(&h, fe_kind_name(in->kind));
        for (size_t i = 0; i < in->nkvs; i++) {
            if (env) {
                lw_env_set(lw, &st->img.env, keys[i], vals[i]);
            } else {
                size_t j = 0;
                for (; j < st->img.labels.n; j++)
                    if (strcmp(st->img.labels.v[j].key, keys[i]) == 0)
                        break;
                struct lw_kv kv = {keys[i], vals[i]};
                if (j < st->img.labels.n)
                    st->img.labels.v[j] = kv;
                else
                    kn_vec_push(&st->img.labels, kv);
            }
            kn_buf_addf(&h, " %s=%s", keys[i], vals[i]);
        }
        lw_history(lw, st, h.data, true);
        kn_buf_release(&h);
    }
    free(keys);
    free(vals);
    return rc;
}

static int lower_arg(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                     struct kn_error **err)
{
    struct kn_buf h = KN_BUF_INIT;
    kn_buf_adds(&h, "ARG");
    for (size_t i = 0; i < in->nkvs; i++) {
        const struct fe_kv *kv = &in->kvs[i];
        struct lw_kv a = {lw_strdup(lw, kv->key), NULL};
        const struct lw_kv *autoarg = NULL;
        for (size_t j = 0; j < lw->auto_args.n; j++)
            if (strcmp(lw->auto_args.v[j].key, kv->key) == 0)
                autoarg = &lw->auto_args.v[j];
        const char *o = lw_arg_override(lw, kv->key);
        if (autoarg && !o) {
            a.value = autoarg->value;
        } else if (o) {
            a.value = lw_strdup(lw, o);
        } else if (kv->has_value) {
            if (lw_expand(lw, st, in, kv->value, &a.value, err) < 0) {
                kn_buf_release(&h);
                return -1;
            }
        } else {
            /* `ARG NAME` picks up the global default */
            for (size_t j = lw->global_args.n; j-- > 0;)
                if (strcmp(lw->global_args.v[j].key, kv->key) == 0) {
                    a.value = lw->global_args.v[j].value;
                    break;
                }
        }
        kn_vec_push(&st->args, a);
        if (a.value)
            kn_buf_addf(&h, " %s=%s", a.key, a.value);
        else
            kn_buf_addf(&h, " %s", a.key);
    }
    lw_history(lw, st, h.data, true);
    kn_buf_release(&h);
    return 0;
}

static int port_num(const char *s, size_t n, long *out)
{
    if (n == 0 || n > 5)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

#define LW_MAX_PORTS 65536

static int proto_index(const char *p)
{
    return strcmp(p, "udp") == 0 ? 1 : strcmp(p, "sctp") == 0 ? 2 : 0;
}

static int lower_expose(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                        struct kn_error **err)
{
    lw_strvec words = {0};
    struct kn_buf h = KN_BUF_INIT;
    int rc = 0;
    /* the ports already exposed, as bitmaps per protocol: dedup in O(1),
     * whatever the size of a range */
    unsigned char(*seen)[65536 / 8] = kn_calloc(3, sizeof(*seen));
    for (size_t i = 0; i < st->img.ports.n; i++) {
        const char *e = st->img.ports.v[i];
        const char *sl = strchr(e, '/');
        long p;
        if (sl && port_num(e, (size_t)(sl - e), &p) == 0)
            seen[proto_index(sl + 1)][p / 8] |= (unsigned char)(1u << (p % 8));
    }
    kn_buf_adds(&h, "EXPOSE");
    for (size_t i = 0; i < in->nargs && rc == 0; i++)
        rc = lw_expand_words(lw, st, in, in->args[i], &words, err);
    if (rc == 0 && words.n == 0)
        rc = lw_err(lw, err, in, 0, KN_E_PARSE, "EXPOSE requires at least one argument");
    for (size_t i = 0; i < words.n && rc == 0; i++) {
        const char *w = words.v[i];
        const char *slash = strchr(w, '/');
        const char *proto = slash ? slash + 1 : "tcp";
        size_t plen = slash ? (size_t)(slash - w) : strlen(w);
        char *pr = lw_strdup(lw, proto);
        for (char *c = pr; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (strcmp(pr, "tcp") != 0 && strcmp(pr, "udp") != 0 && strcmp(pr, "sctp") != 0) {
            rc = lw_err(lw, err, in, 0, KN_E_PARSE, "invalid proto '%s' in EXPOSE '%s'", proto, w);
            break;
        }
        const char *dash = memchr(w, '-', plen);
        long lo, hi;
        if (dash ? port_num(w, (size_t)(dash - w), &lo) < 0 ||
                       port_num(dash + 1, plen - (size_t)(dash - w) - 1, &hi) < 0 || hi < lo
                 : port_num(w, plen, &lo) < 0) {
            rc = lw_err(lw, err, in, 0, KN_E_PARSE, "invalid port '%s' in EXPOSE", w);
            break;
        }
        if (!dash)
            hi = lo;
        int pi = proto_index(pr);
        for (long p = lo; p <= hi; p++) {
            if (seen[pi][p / 8] & (1u << (p % 8)))
                continue;
            seen[pi][p / 8] |= (unsigned char)(1u << (p % 8));
            if (st->img.ports.n >= LW_MAX_PORTS) {
                rc = lw_err(lw, err, in, 0, KN_E_UNSAFE, "too many exposed ports");
                break;
            }
            kn_vec_push(&st->img.ports, lw_printf(lw, "%ld/%s", p, pr));
        }
        kn_buf_addf(&h, " %s", w);
    }
    if (rc == 0)
        lw_history(lw, st, h.data, true);
    kn_buf_release(&h);
    free(words.v);
    free(seen);
    return rc;
}

static int lower_volume(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                        struct kn_error **err)
{
    lw_strvec vols = {0};
    int rc = 0;
    for (size_t i = 0; i < in->nargs && rc == 0; i++) {
        if (in->json) {
            char *w = NULL;
            rc = lw_expand(lw, st, in, in->args[i], &w, err);
            if (rc == 0)
                kn_vec_push(&vols, w);
        } else {
            rc = lw_expand_words(lw, st, in, in->args[i], &vols, err);
        }
    }
    if (rc == 0 && vols.n == 0)
        rc = lw_err(lw, err, in, 0, KN_E_PARSE, "VOLUME requires at least one argument");
    if (rc == 0 && st->img.volumes.n + vols.n > LW_MAX_CONFIG_ITEMS)
        rc = lw_err(lw, err, in, 0, KN_E_UNSAFE, "more than %d VOLUME entries in one image",
                    LW_MAX_CONFIG_ITEMS);
    for (size_t i = 0; i < vols.n && rc == 0; i++) {
        if (!*vols.v[i]) {
            rc = lw_err(lw, err, in, 0, KN_E_PARSE, "VOLUME specified can not be an empty string");
            break;
        }
        bool dup = false;
        for (size_t j = 0; j < st->img.volumes.n && !dup; j++)
            dup = strcmp(st->img.volumes.v[j], vols.v[i]) == 0;
        if (!dup)
            kn_vec_push(&st->img.volumes, vols.v[i]);
    }
    if (rc == 0) {
        struct kn_buf h = KN_BUF_INIT;
        kn_buf_adds(&h, "VOLUME [");
        for (size_t i = 0; i < vols.n; i++)
            kn_buf_addf(&h, "%s%s", i ? " " : "", vols.v[i]);
        kn_buf_adds(&h, "]");
        lw_history(lw, st, h.data, true);
        kn_buf_release(&h);
    }
    free(vols.v);
    return rc;
}

static void command_vec(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, size_t first,
                        lw_strvec *out)
{
    (void)lw;
    if (in->json) {
        for (size_t i = first; i < in->nargs; i++)
            kn_vec_push(out, in->args[i]);
    } else {
        default_shell(st, out);
        kn_vec_push(out, in->nargs > first ? in->args[first] : (char *)"");
    }
}

static int lower_cmd(struct lw *lw, struct lw_stage *st, const struct fe_instr *in)
{
    lw_strvec v = {0};
    command_vec(lw, st, in, 0, &v);
    lw_strvec *dst = in->kind == FE_CMD ? &st->img.cmd : &st->img.entrypoint;
    dst->n = 0;
    for (size_t i = 0; i < v.n; i++)
        kn_vec_push(dst, v.v[i]);
    if (in->kind == FE_CMD) {
        st->img.has_cmd = true;
        st->cmd_set = true;
    } else {
        st->img.has_entrypoint = true;
        /* Docker: an ENTRYPOINT drops the CMD inherited from the base */
        if (!st->cmd_set) {
            st->img.cmd.n = 0;
            st->img.has_cmd = false;
        }
    }
    lw_history(lw, st, lw_printf(lw, "%s %s", fe_kind_name(in->kind), lw_quote_vec(lw, v.v, v.n)),
               true);
    free(v.v);
    return 0;
}

static bool signal_ok(const char *s)
{
    static const char *const names[] = {
        "HUP",  "INT",   "QUIT", "ILL",  "TRAP", "ABRT", "IOT",   "BUS",    "FPE",
        "KILL", "USR1",  "SEGV", "USR2", "PIPE", "ALRM", "TERM",  "STKFLT", "CHLD",
        "CONT", "STOP",  "TSTP", "TTIN", "TTOU", "URG",  "XCPU",  "XFSZ",   "VTALRM",
        "PROF", "WINCH", "IO",   "POLL", "PWR",  "SYS",  "RTMIN", "RTMAX"};
    if (isdigit((unsigned char)s[0])) {
        char *end = NULL;
        long v = strtol(s, &end, 10);
        return *end == 0 && v >= 1 && v <= 64;
    }
    const char *n = kn_str_startswith(s, "SIG") ? s + 3 : s;
    for (size_t i = 0; i < KN_ARRAY_SIZE(names); i++)
        if (strcmp(n, names[i]) == 0)
            return true;
    /* RTMIN+3, RTMAX-2 */
    if (kn_str_startswith(n, "RTMIN+") || kn_str_startswith(n, "RTMAX-")) {
        char *end = NULL;
        long v = strtol(n + 6, &end, 10);
        return *end == 0 && end != n + 6 && v >= 1 && v <= 30;
    }
    return false;
}

static int lower_healthcheck(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                             struct kn_error **err)
{
    if (in->nargs < 1)
        return lw_err(lw, err, in, 0, KN_E_PARSE, "HEALTHCHECK requires an argument");
    struct lw_health h = {0};
    h.set = true;
    if (strcasecmp(in->args[0], "NONE") == 0) {
        if (in->nflags)
            return lw_err(lw, err, in, in->flags[0].col, KN_E_PARSE,
                          "HEALTHCHECK NONE takes no options");
        kn_vec_push(&h.test, (char *)"NONE");
    } else if (strcasecmp(in->args[0], "CMD") == 0) {
        if (in->json) {
            kn_vec_push(&h.test, (char *)"CMD");
            for (size_t i = 1; i < in->nargs; i++)
                kn_vec_push(&h.test, in->args[i]);
        } else {
            kn_vec_push(&h.test, (char *)"CMD-SHELL");
            kn_vec_push(&h.test, in->nargs > 1 ? in->args[1] : (char *)"");
        }
        if (h.test.n < 2 || !*h.test.v[1]) {
            free(h.test.v);
            return lw_err(lw, err, in, 0, KN_E_PARSE, "HEALTHCHECK CMD requires a command");
        }
        static const char *const durs[] = {"interval", "timeout", "start-period", "start-interval"};
        int64_t *dst[] = {&h.interval, &h.timeout, &h.start_period, &h.start_interval};
        for (size_t i = 0; i < KN_ARRAY_SIZE(durs); i++) {
            char *val = NULL;
            if (lw_flag(lw, st, in, durs[i], &val, err) < 0) {
                free(h.test.v);
                return -1;
            }
            if (!val)
                continue;
            const struct fe_flag *f = fe_instr_flag(in, durs[i]);
            struct kn_error *derr = NULL;
            if (fe_duration_parse(val, dst[i], &derr) < 0 || *dst[i] < 0) {
                kn_err_free(derr);
                free(h.test.v);
                return lw_err(lw, err, in, f->col, KN_E_PARSE, "invalid duration '%s' for --%s",
                              val, durs[i]);
            }
            if (*dst[i] != 0 && *dst[i] < 1000000) {
                free(h.test.v);
                return lw_err(lw, err, in, f->col, KN_E_PARSE, "--%s cannot be less than 1ms",
                              durs[i]);
            }
        }
        char *r = NULL;
        if (lw_flag(lw, st, in, "retries", &r, err) < 0) {
            free(h.test.v);
            return -1;
        }
        if (r) {
            char *end = NULL;
            errno = 0;
            long v = strtol(r, &end, 10);
            if (!*r || *end || errno || v < 0 || v > INT_MAX) {
                free(h.test.v);
                return lw_err(lw, err, in, fe_instr_flag(in, "retries")->col, KN_E_PARSE,
                              "invalid --retries '%s': want a number >= 0", r);
            }
            h.retries = (int)v;
        }
    } else {
        return lw_err(lw, err, in, 0, KN_E_PARSE, "HEALTHCHECK wants NONE or CMD, not '%s'",
                      in->args[0]);
    }
    free(st->img.health.test.v);
    st->img.health = h;
    lw_history(lw, st, lw_printf(lw, "HEALTHCHECK %s", lw_quote_vec(lw, h.test.v, h.test.n)), true);
    return 0;
}

int lw_instr(struct lw *lw, struct lw_stage *st, const struct fe_instr *in, struct kn_error **err)
{
    char *s = NULL;
    switch (in->kind) {
    case FE_RUN:
        return lower_run(lw, st, in, err);
    case FE_COPY:
    case FE_ADD:
        return lower_copy(lw, st, in, err);
    case FE_WORKDIR:
        return lower_workdir(lw, st, in, err);
    case FE_ENV:
    case FE_LABEL:
        return lower_env_label(lw, st, in, err);
    case FE_ARG:
        return lower_arg(lw, st, in, err);
    case FE_EXPOSE:
        return lower_expose(lw, st, in, err);
    case FE_VOLUME:
        return lower_volume(lw, st, in, err);
    case FE_CMD:
    case FE_ENTRYPOINT:
        return lower_cmd(lw, st, in);
    case FE_HEALTHCHECK:
        return lower_healthcheck(lw, st, in, err);
    case FE_USER:
        if (in->nargs < 1 || lw_expand(lw, st, in, in->args[0], &s, err) < 0)
            return in->nargs < 1 ? lw_err(lw, err, in, 0, KN_E_PARSE, "USER requires an argument")
                                 : -1;
        if (!*s)
            return lw_err(lw, err, in, 0, KN_E_PARSE, "USER cannot be empty");
        st->img.user = s;
        lw_history(lw, st, lw_printf(lw, "USER %s", s), true);
        return 0;
    case FE_STOPSIGNAL:
        if (in->nargs < 1 || lw_expand(lw, st, in, in->args[0], &s, err) < 0)
            return in->nargs < 1
                       ? lw_err(lw, err, in, 0, KN_E_PARSE, "STOPSIGNAL requires an argument")
                       : -1;
        if (!signal_ok(s))
            return lw_err(lw, err, in, 0, KN_E_PARSE, "invalid signal '%s'", s);
        st->img.stopsignal = s;
        lw_history(lw, st, lw_printf(lw, "STOPSIGNAL %s", s), true);
        return 0;
    case FE_SHELL:
        if (!in->json)
            return lw_err(lw, err, in, 0, KN_E_PARSE,
                          "SHELL requires the arguments to be in JSON form");
        if (in->nargs == 0)
            return lw_err(lw, err, in, 0, KN_E_PARSE, "SHELL requires at least one argument");
        st->img.shell.n = 0;
        for (size_t i = 0; i < in->nargs; i++)
            kn_vec_push(&st->img.shell, in->args[i]);
        st->img.has_shell = true;
        lw_history(lw, st, lw_printf(lw, "SHELL %s", lw_quote_vec(lw, in->args, in->nargs)), true);
        return 0;
    case FE_MAINTAINER:
        st->img.author = in->nargs ? in->args[0] : (char *)"";
        lw_history(lw, st, lw_printf(lw, "MAINTAINER %s", st->img.author), true);
        return 0;
    case FE_ONBUILD:
        if (!in->sub)
            return lw_err(lw, err, in, 0, KN_E_PARSE, "ONBUILD requires an instruction");
        if (in->sub->kind == FE_ONBUILD || in->sub->kind == FE_FROM ||
            in->sub->kind == FE_MAINTAINER)
            return lw_err(lw, err, in, 0, KN_E_PARSE, "%s isn't allowed as an ONBUILD trigger",
                          fe_kind_name(in->sub->kind));
        s = lw_instr_text(lw, in->sub);
        kn_vec_push(&st->img.onbuild, s);
        lw_history(lw, st, lw_printf(lw, "ONBUILD %s", s), true);
        return 0;
    case FE_FROM:
    case FE_KIND_COUNT:
        break;
    }
    return lw_err(lw, err, in, 0, KN_E_INTERNAL, "unexpected %s instruction",
                  fe_kind_name(in->kind));
}
