/*
 * Image configs and platforms: validation of config documents, the config
 * builder kiln build uses to append layers and history (rootfs.diff_ids,
 * history[] with created / created_by / empty_layer), the image timestamp
 * (SOURCE_DATE_EPOCH) and "os/arch[/variant]" platforms.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

/* ---- platforms ---- */

static bool platform_part_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

int ex_platform_parse(const char *s, struct ir_platform *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    char *parts[4] = {0};
    size_t n = 0;
    const char *p = s;
    while (n < 4) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        parts[n++] = kn_strndup(p, len);
        if (!slash)
            break;
        p = slash + 1;
    }
    bool good = (n == 2 || n == 3) && strchr(p, '/') == NULL;
    for (size_t i = 0; i < n && good; i++)
        good = platform_part_ok(parts[i]);
    if (!good) {
        for (size_t i = 0; i < n; i++)
            free(parts[i]);
        return kn_err_set(err, KN_E_PARSE, "invalid platform '%s' (want os/arch[/variant])", s);
    }
    out->os = parts[0];
    out->arch = parts[1];
    out->variant = n == 3 ? parts[2] : NULL;
    return 0;
}

void ex_platform_default(struct ir_platform *out)
{
    struct utsname u;
    const char *arch = "amd64";
    const char *variant = NULL;
    if (uname(&u) == 0) {
        if (strcmp(u.machine, "aarch64") == 0) {
            arch = "arm64";
        } else if (strncmp(u.machine, "armv7", 5) == 0) {
            arch = "arm";
            variant = "v7";
        } else if (strcmp(u.machine, "ppc64le") == 0 || strcmp(u.machine, "s390x") == 0 ||
                   strcmp(u.machine, "riscv64") == 0) {
            arch = u.machine;
        } else if (strcmp(u.machine, "i686") == 0 || strcmp(u.machine, "i386") == 0) {
            arch = "386";
        }
    }
    out->os = kn_strdup("linux");
    out->arch = kn_strdup(arch);
    out->variant = variant ? kn_strdup(variant) : NULL;
}

void ex_platform_clear(struct ir_platform *p)
{
    free(p->os);
    free(p->arch);
    free(p->variant);
    memset(p, 0, sizeof(*p));
}

char *ex_platform_format(const struct ir_platform *p)
{
    const char *os = p->os ? p->os : "unknown";
    const char *arch = p->arch ? p->arch : "unknown";
    if (p->variant && *p->variant)
        return kn_asprintf("%s/%s/%s", os, arch, p->variant);
    return kn_asprintf("%s/%s", os, arch);
}

bool ex_platform_match(const struct ir_platform *want, const struct ir_platform *have)
{
    if (!want->os || !have->os || !want->arch || !have->arch)
        return false;
    if (strcmp(want->os, have->os) != 0 || strcmp(want->arch, have->arch) != 0)
        return false;
    if (!want->variant || !*want->variant)
        return true;
    const char *hv = have->variant && *have->variant ? have->variant : NULL;
    if (!hv && strcmp(want->arch, "arm64") == 0 && strcmp(want->variant, "v8") == 0)
        return true;
    return hv && strcmp(hv, want->variant) == 0;
}

/* ---- time ---- */

bool ex_image_epoch(int64_t sde, int64_t *t)
{
    if (sde >= 0) {
        *t = sde;
        return true;
    }
    const char *env = getenv("SOURCE_DATE_EPOCH");
    if (env && *env) {
        char *end;
        errno = 0;
        long long v = strtoll(env, &end, 10);
        if (!*end && errno == 0 && v >= 0) {
            *t = v;
            return true;
        }
    }
    return false;
}

int64_t ex_image_created(int64_t sde)
{
    int64_t t;
    return ex_image_epoch(sde, &t) ? t : (int64_t)time(NULL);
}

void ex_time_format(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- validation ---- */

static int config_fields(const json_t *j, bool require_rootfs, struct kn_error **err)
{
    const char *fields[] = {"architecture", "os"};
    for (size_t i = 0; i < KN_ARRAY_SIZE(fields); i++) {
        const json_t *v = json_object_get(j, fields[i]);
        if (!json_is_string(v))
            return kn_err_set(err, KN_E_PARSE, "invalid image config: %s: %s", fields[i],
                              v ? "not a string" : "missing");
    }
    const json_t *created = json_object_get(j, "created");
    if (created && !json_is_string(created))
        return kn_err_set(err, KN_E_PARSE, "invalid image config: created: not a string");
    const json_t *cfg = json_object_get(j, "config");
    if (cfg && !json_is_object(cfg) && !json_is_null(cfg))
        return kn_err_set(err, KN_E_PARSE, "invalid image config: config: not an object");
    const json_t *rootfs = json_object_get(j, "rootfs");
    if (rootfs || require_rootfs) {
        if (!json_is_object(rootfs))
            return kn_err_set(err, KN_E_PARSE, "invalid image config: rootfs: %s",
                              rootfs ? "not an object" : "missing");
        const char *type = json_string_value(json_object_get(rootfs, "type"));
        if (!type || strcmp(type, "layers") != 0)
            return kn_err_set(err, KN_E_PARSE,
                              "invalid image config: rootfs.type: want \"layers\"");
        const json_t *ids = json_object_get(rootfs, "diff_ids");
        if (!json_is_array(ids))
            return kn_err_set(err, KN_E_PARSE, "invalid image config: rootfs.diff_ids: %s",
                              ids ? "not an array" : "missing");
        if (json_array_size(ids) > EX_LAYERS_MAX)
            return kn_err_set(err, KN_E_UNSAFE,
                              "invalid image config: %zu diff_ids exceed the limit of %u",
                              json_array_size(ids), EX_LAYERS_MAX);
        size_t i;
        const json_t *v;
        json_array_foreach(ids, i, v)
        {
            if (!json_is_string(v) || !kn_digest_valid(json_string_value(v)))
                return kn_err_set(err, KN_E_PARSE,
                                  "invalid image config: rootfs.diff_ids[%zu]: bad digest '%s'", i,
                                  json_is_string(v) ? json_string_value(v) : "(not a string)");
        }
    }
    const json_t *hist = json_object_get(j, "history");
    if (hist && !json_is_null(hist)) {
        if (!json_is_array(hist))
            return kn_err_set(err, KN_E_PARSE, "invalid image config: history: not an array");
        size_t i;
        const json_t *h;
        json_array_foreach(hist, i, h)
        {
            const json_t *el = json_object_get(h, "empty_layer");
            if (!json_is_object(h) || (el && !json_is_boolean(el)))
                return kn_err_set(err, KN_E_PARSE, "invalid image config: history[%zu]: malformed",
                                  i);
            const char *str[] = {"created", "created_by", "comment", "author"};
            for (size_t k = 0; k < KN_ARRAY_SIZE(str); k++) {
                const json_t *v = json_object_get(h, str[k]);
                if (v && !json_is_string(v))
                    return kn_err_set(err, KN_E_PARSE,
                                      "invalid image config: history[%zu].%s: not a string", i,
                                      str[k]);
            }
        }
    }
    return 0;
}

int ex_config_validate(const char *data, size_t len, bool require_rootfs, struct kn_error **err)
{
    json_t *j = exi_json_load(data, len, EX_CONFIG_MAX, "image config", err);
    if (!j)
        return -1;
    int rc = config_fields(j, require_rootfs, err);
    json_decref(j);
    return rc;
}

/* ---- the config builder ---- */

struct ex_config {
    json_t *root;
};

static json_t *empty_rootfs(void)
{
    json_t *r = json_object();
    json_object_set_new(r, "type", json_string("layers"));
    json_object_set_new(r, "diff_ids", json_array());
    return r;
}

struct ex_config *ex_config_parse(const char *data, size_t len, struct kn_error **err)
{
    json_t *j = exi_json_load(data, len, EX_CONFIG_MAX, "image config", err);
    if (!j)
        return NULL;
    const json_t *rootfs = json_object_get(j, "rootfs");
    const json_t *ids = json_object_get(rootfs, "diff_ids");
    if (!json_is_object(rootfs) || !json_is_array(ids))
        json_object_set_new(j, "rootfs", empty_rootfs());
    if (!json_is_array(json_object_get(j, "history")))
        json_object_set_new(j, "history", json_array());
    struct ex_config *c = kn_calloc(1, sizeof(*c));
    c->root = j;
    return c;
}

void ex_config_free(struct ex_config *c)
{
    if (!c)
        return;
    json_decref(c->root);
    free(c);
}

int ex_config_set_base(struct ex_config *c, const char *base_json, size_t len,
                       struct kn_error **err)
{
    if (!base_json) {
        json_object_set_new(c->root, "rootfs", empty_rootfs());
        json_object_set_new(c->root, "history", json_array());
        return 0;
    }
    if (ex_config_validate(base_json, len, true, err) < 0)
        return kn_err_wrap(err, "base image");
    json_t *b = exi_json_load(base_json, len, EX_CONFIG_MAX, "image config", err);
    if (!b)
        return -1;
    json_t *rootfs = empty_rootfs();
    json_array_extend(json_object_get(rootfs, "diff_ids"),
                      json_object_get(json_object_get(b, "rootfs"), "diff_ids"));
    json_object_set_new(c->root, "rootfs", rootfs);
    json_t *hist = json_array();
    if (json_is_array(json_object_get(b, "history")))
        json_array_extend(hist, json_object_get(b, "history"));
    json_object_set_new(c->root, "history", json_deep_copy(hist));
    json_decref(hist);
    json_decref(b);
    return 0;
}

void ex_config_add_history(struct ex_config *c, const char *diff_id, const char *created_by,
                           const char *comment, int64_t created)
{
    char ts[32];
    ex_time_format(created, ts);
    json_t *h = json_object();
    json_object_set_new(h, "created", json_string(ts));
    if (created_by)
        json_object_set_new(h, "created_by", json_string(created_by));
    if (comment)
        json_object_set_new(h, "comment", json_string(comment));
    if (diff_id)
        json_array_append_new(json_object_get(json_object_get(c->root, "rootfs"), "diff_ids"),
                              json_string(diff_id));
    else
        json_object_set_new(h, "empty_layer", json_true());
    json_array_append_new(json_object_get(c->root, "history"), h);
}

void ex_config_set_created(struct ex_config *c, int64_t created)
{
    char ts[32];
    ex_time_format(created, ts);
    json_object_set_new(c->root, "created", json_string(ts));
}

size_t ex_config_ndiff_ids(const struct ex_config *c)
{
    return json_array_size(json_object_get(json_object_get(c->root, "rootfs"), "diff_ids"));
}

void ex_config_serialize(const struct ex_config *c, struct kn_buf *out)
{
    size_t len;
    char *s = exi_json_dump(c->root, &len);
    kn_buf_add(out, s, len);
    free(s);
}
