/*
 * RUN --mount: the comma-separated option list of the Dockerfile reference
 * (type=bind|cache|tmpfs|secret|ssh and every documented option), checked
 * per type, with defaults filled in the way BuildKit does, and from=
 * resolved to a stage, an image or a named build context input of the exec
 * vertex. A bad option is an error at the flag's column.
 */
#include "frontend/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    MO_TARGET = 1 << 0,
    MO_SOURCE = 1 << 1,
    MO_FROM = 1 << 2,
    MO_RO = 1 << 3,
    MO_ID = 1 << 4,
    MO_SHARING = 1 << 5,
    MO_MODE = 1 << 6,
    MO_UID = 1 << 7,
    MO_GID = 1 << 8,
    MO_REQUIRED = 1 << 9,
    MO_ENV = 1 << 10,
    MO_SIZE = 1 << 11,
};

static const struct {
    const char *name;
    enum ir_mount_type type;
    unsigned allowed;
} mount_types[] = {
    {"bind", IR_MOUNT_BIND, MO_TARGET | MO_SOURCE | MO_FROM | MO_RO},
    {"cache", IR_MOUNT_CACHE,
     MO_TARGET | MO_SOURCE | MO_FROM | MO_RO | MO_ID | MO_SHARING | MO_MODE | MO_UID | MO_GID},
    {"tmpfs", IR_MOUNT_TMPFS, MO_TARGET | MO_SIZE},
    {"secret", IR_MOUNT_SECRET,
     MO_TARGET | MO_ID | MO_REQUIRED | MO_MODE | MO_UID | MO_GID | MO_ENV},
    {"ssh", IR_MOUNT_SSH, MO_TARGET | MO_ID | MO_REQUIRED | MO_MODE | MO_UID | MO_GID},
};

static const struct {
    const char *key;
    unsigned opt;
} mount_keys[] = {
    {"target", MO_TARGET},
    {"dst", MO_TARGET},
    {"destination", MO_TARGET},
    {"source", MO_SOURCE},
    {"src", MO_SOURCE},
    {"from", MO_FROM},
    {"ro", MO_RO},
    {"readonly", MO_RO},
    {"rw", MO_RO},
    {"readwrite", MO_RO},
    {"id", MO_ID},
    {"sharing", MO_SHARING},
    {"mode", MO_MODE},
    {"uid", MO_UID},
    {"gid", MO_GID},
    {"required", MO_REQUIRED},
    {"env", MO_ENV},
    {"size", MO_SIZE},
};

/* Splits a CSV record (double quotes group, "" is a literal quote). */
static void split_csv(struct lw *lw, const char *s, lw_strvec *out)
{
    struct kn_buf b = KN_BUF_INIT;
    bool quoted = false;
    for (const char *p = s;; p++) {
        if (*p == 0 || (*p == ',' && !quoted)) {
            kn_vec_push(out, lw_strdup(lw, b.data ? b.data : ""));
            kn_buf_reset(&b);
            if (*p == 0)
                break;
            continue;
        }
        if (*p == '"') {
            if (quoted && p[1] == '"') {
                kn_buf_addc(&b, '"');
                p++;
            } else {
                quoted = !quoted;
            }
            continue;
        }
        kn_buf_addc(&b, *p);
    }
    kn_buf_release(&b);
}

static int parse_bool(const char *v, bool *out)
{
    if (!v || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

static int parse_id(const char *v, int *out)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < 0 || n > 0x7fffffff)
        return -1;
    *out = (int)n;
    return 0;
}

static int parse_mount_in(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                          const struct fe_flag *flag, struct ir_mount *m, lw_u32vec *inputs,
                          int ssh_index, lw_strvec *fieldsp, struct kn_error **err)
{
    int col = flag->col;
    memset(m, 0, sizeof(*m));
    m->input = -1;
    m->mode = m->uid = m->gid = -1;
    if (!flag->has_value || !*flag->value)
        return lw_err(lw, err, in, col, KN_E_PARSE, "--mount requires a value");

    lw_strvec *fields = fieldsp;
    split_csv(lw, flag->value, fields);
    size_t ti = 0; /* bind */
    /* the type first: it decides which options are valid */
    for (size_t i = 0; i < fields->n; i++) {
        if (strncasecmp(fields->v[i], "type=", 5) != 0)
            continue;
        char *t = NULL;
        if (lw_expand(lw, st, in, fields->v[i] + 5, &t, err) < 0) {
            lw_err_at(lw, err, in, col);
            return -1;
        }
        size_t k = 0;
        for (; k < KN_ARRAY_SIZE(mount_types); k++)
            if (strcmp(mount_types[k].name, t) == 0)
                break;
        if (k == KN_ARRAY_SIZE(mount_types)) {
            lw_err(lw, err, in, col, KN_E_PARSE,
                   "unsupported mount type '%s' (want bind, cache, tmpfs, secret or ssh)", t);
            return -1;
        }
        ti = k;
    }
    m->type = mount_types[ti].type;
    const char *tname = mount_types[ti].name;
    m->readonly = m->type == IR_MOUNT_BIND || m->type == IR_MOUNT_SECRET || m->type == IR_MOUNT_SSH;
    m->sharing = IR_SHARING_SHARED;
    char *from = NULL;
    bool have_env = false;

    for (size_t i = 0; i < fields->n; i++) {
        const char *f = fields->v[i];
        if (!*f)
            continue;
        const char *eq = strchr(f, '=');
        char *key = eq ? kn_arena_strndup(&lw->arena, f, (size_t)(eq - f)) : lw_strdup(lw, f);
        for (char *c = key; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (strcmp(key, "type") == 0)
            continue;
        unsigned opt = 0;
        for (size_t k = 0; k < KN_ARRAY_SIZE(mount_keys); k++)
            if (strcmp(mount_keys[k].key, key) == 0)
                opt = mount_keys[k].opt;
        if (!opt) {
            lw_err(lw, err, in, col, KN_E_PARSE, "unknown mount option '%s'", key);
            return -1;
        }
        if (!(mount_types[ti].allowed & opt)) {
            lw_err(lw, err, in, col, KN_E_PARSE, "mount option '%s' is not valid for type=%s", key,
                   tname);
            return -1;
        }
        char *val = NULL;
        if (eq && lw_expand(lw, st, in, eq + 1, &val, err) < 0) {
            lw_err_at(lw, err, in, col);
            return -1;
        }
        bool b = false;
        if (opt == MO_RO) {
            if (parse_bool(val, &b) < 0) {
                lw_err(lw, err, in, col, KN_E_PARSE, "invalid value '%s' for mount option '%s'",
                       val, key);
                return -1;
            }
            bool rw = strcmp(key, "rw") == 0 || strcmp(key, "readwrite") == 0;
            m->readonly = rw ? !b : b;
            continue;
        }
        if (opt == MO_REQUIRED) {
            if (parse_bool(val, &b) < 0) {
                lw_err(lw, err, in, col, KN_E_PARSE, "invalid value '%s' for mount option '%s'",
                       val, key);
                return -1;
            }
            m->required = b;
            continue;
        }
        if (!val) {
            lw_err(lw, err, in, col, KN_E_PARSE, "mount option '%s' requires a value", key);
            return -1;
        }
        switch (opt) {
        case MO_TARGET:
            if (!*val) {
                lw_err(lw, err, in, col, KN_E_PARSE, "mount target cannot be empty");
                return -1;
            }
            m->target = val;
            break;
        case MO_SOURCE:
            m->source = val;
            break;
        case MO_FROM:
            if (!*val) {
                lw_err(lw, err, in, col, KN_E_PARSE, "mount option 'from' cannot be empty");
                return -1;
            }
            from = val;
            break;
        case MO_ID:
            m->id = val;
            break;
        case MO_SHARING:
            if (strcmp(val, "shared") == 0) {
                m->sharing = IR_SHARING_SHARED;
            } else if (strcmp(val, "private") == 0) {
                m->sharing = IR_SHARING_PRIVATE;
            } else if (strcmp(val, "locked") == 0) {
                m->sharing = IR_SHARING_LOCKED;
            } else {
                lw_err(lw, err, in, col, KN_E_PARSE,
                       "invalid sharing '%s' (want shared, private or locked)", val);
                return -1;
            }
            break;
        case MO_MODE: {
            char *end = NULL;
            errno = 0;
            long md = strtol(val, &end, 8);
            if (!*val || *end || errno || md < 0 || md > 07777) {
                lw_err(lw, err, in, col, KN_E_PARSE, "invalid mount mode '%s': want octal bits",
                       val);
                return -1;
            }
            m->mode = (int)md;
            break;
        }
        case MO_UID:
        case MO_GID:
            if (parse_id(val, opt == MO_UID ? &m->uid : &m->gid) < 0) {
                lw_err(lw, err, in, col, KN_E_PARSE, "invalid %s '%s': want a number", key, val);
                return -1;
            }
            break;
        case MO_ENV:
            if (!*val) {
                lw_err(lw, err, in, col, KN_E_PARSE, "mount option 'env' cannot be empty");
                return -1;
            }
            m->env = val;
            have_env = true;
            break;
        case MO_SIZE: {
            struct kn_error *e = NULL;
            if (kn_parse_size(val, &m->size, &e) < 0) {
                kn_err_free(e);
                lw_err(lw, err, in, col, KN_E_PARSE, "invalid tmpfs size '%s'", val);
                return -1;
            }
            break;
        }
        default:
            break;
        }
    }

    /* defaults and cross-checks */
    switch (m->type) {
    case IR_MOUNT_BIND:
    case IR_MOUNT_CACHE:
    case IR_MOUNT_TMPFS:
        if (!m->target) {
            lw_err(lw, err, in, col, KN_E_PARSE, "mount type=%s requires a target", tname);
            return -1;
        }
        break;
    case IR_MOUNT_SECRET:
        if (!m->id && !m->target) {
            if (!have_env) {
                lw_err(lw, err, in, col, KN_E_PARSE, "secret mount requires an id or a target");
                return -1;
            }
        }
        if (!m->id) {
            const char *t = m->target ? m->target : m->env;
            const char *slash = strrchr(t, '/');
            m->id = lw_strdup(lw, slash ? slash + 1 : t);
        }
        /* the IR wants a target even for env= secrets: the file is there too */
        if (!m->target)
            m->target = lw_printf(lw, "/run/secrets/%s", m->id);
        break;
    case IR_MOUNT_SSH:
        if (!m->id)
            m->id = lw_strdup(lw, "default");
        if (!m->target)
            m->target = lw_printf(lw, "/run/buildkit/ssh_agent.%d", ssh_index);
        break;
    }
    if (m->target)
        m->target = lw_resolve_path(lw, st, m->target);
    if (m->type == IR_MOUNT_CACHE && !m->id)
        m->id = m->target;
    if (m->type == IR_MOUNT_BIND || (m->type == IR_MOUNT_CACHE && from)) {
        int64_t vx;
        if (from) {
            struct lw_source src;
            if (lw_resolve_source(lw, st, in, col, from, false, &src, err) < 0)
                return -1;
            vx = src.vertex;
        } else {
            vx = lw_context_vertex(lw, err);
        }
        if (vx < 0)
            return -1;
        size_t k = 0;
        for (; k < inputs->n; k++)
            if (inputs->v[k] == (uint32_t)vx)
                break;
        if (k == inputs->n)
            kn_vec_push(inputs, (uint32_t)vx);
        m->input = (int)k;
        if (!m->source)
            m->source = lw_strdup(lw, "/");
    }
    /* strings move into the graph's arena */
    m->target = m->target ? ir_graph_strdup(lw->g, m->target) : NULL;
    m->source = m->source ? ir_graph_strdup(lw->g, m->source) : NULL;
    m->id = m->id ? ir_graph_strdup(lw->g, m->id) : NULL;
    m->env = m->env ? ir_graph_strdup(lw->g, m->env) : NULL;
    return 0;
}

int lw_parse_mount(struct lw *lw, struct lw_stage *st, const struct fe_instr *in,
                   const struct fe_flag *flag, struct ir_mount *m, lw_u32vec *inputs, int ssh_index,
                   struct kn_error **err)
{
    lw_strvec fields = {0};
    int rc = parse_mount_in(lw, st, in, flag, m, inputs, ssh_index, &fields, err);
    free(fields.v);
    return rc;
}
