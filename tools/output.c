/*
 * Parsing of -o/--output SPEC, shared by kiln pull and kiln build:
 * comma-separated key=value fields as buildx writes them (a field may be
 * double-quoted to hold commas: "name=a,b"):
 *
 *   type=oci,dest=PATH[,tar=true|false]   OCI layout dir, or archive (PATH ends in .tar)
 *   type=docker,dest=FILE                 docker archive
 *   type=local,dest=DIR                   root filesystem
 *   type=registry  (also type=image,push=true)
 *   name=REF[,REF...]                     image names
 *
 * A SPEC without '=' is a dest for the default type. Every error is a
 * usage error (KN_E_USAGE) that quotes the spec.
 */
#include "kiln.h"

#include "exec/image/image.h"

#include <stdlib.h>
#include <string.h>

/* Splits spec into fields at commas outside double quotes; quotes removed. */
static int split_fields(const char *spec, struct kn_strv *out, struct kn_error **err)
{
    struct kn_buf cur = KN_BUF_INIT;
    bool quoted = false;
    for (const char *p = spec;; p++) {
        if (*p == '"') {
            quoted = !quoted;
            continue;
        }
        if (*p == 0 || (*p == ',' && !quoted)) {
            if (quoted) {
                kn_buf_release(&cur);
                return kn_err_set(err, KN_E_USAGE, "invalid output '%s': unterminated quote", spec);
            }
            if (cur.len == 0) {
                kn_buf_release(&cur);
                return kn_err_set(err, KN_E_USAGE, "invalid output '%s': empty field", spec);
            }
            kn_strv_take(out, kn_buf_detach(&cur));
            if (*p == 0)
                break;
            continue;
        }
        kn_buf_addc(&cur, *p);
    }
    kn_buf_release(&cur);
    return 0;
}

static int parse_bool(const char *spec, const char *key, const char *v, bool *out,
                      struct kn_error **err)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
        *out = false;
        return 0;
    }
    return kn_err_set(err, KN_E_USAGE, "invalid output '%s': %s wants true or false, not '%s'",
                      spec, key, v);
}

static int apply_fields(const char *spec, const struct kn_strv *f, int default_type,
                        struct ex_output *out, struct kn_error **err)
{
    const char *type = NULL;
    int tar = -1, push = -1;
    for (size_t i = 0; i < f->n; i++) {
        char *kv = f->v[i];
        char *eq = strchr(kv, '=');
        if (!eq) {
            if (f->n == 1) {
                /* a bare path: dest for the default type */
                out->dest = kn_strdup(kv);
                continue;
            }
            return kn_err_set(err, KN_E_USAGE, "invalid output '%s': field '%s' is not key=value",
                              spec, kv);
        }
        *eq = 0;
        const char *key = kv, *val = eq + 1;
        if (strcmp(key, "type") == 0) {
            if (type)
                return kn_err_set(err, KN_E_USAGE, "invalid output '%s': type given twice", spec);
            type = val;
        } else if (strcmp(key, "dest") == 0) {
            if (out->dest)
                return kn_err_set(err, KN_E_USAGE, "invalid output '%s': dest given twice", spec);
            if (!*val)
                return kn_err_set(err, KN_E_USAGE, "invalid output '%s': empty dest", spec);
            if (strcmp(val, "-") == 0)
                return kn_err_set(err, KN_E_USAGE,
                                  "invalid output '%s': dest=- (stdout) is not supported", spec);
            out->dest = kn_strdup(val);
        } else if (strcmp(key, "tar") == 0) {
            bool b = false;
            if (parse_bool(spec, key, val, &b, err) < 0)
                return -1;
            tar = b;
        } else if (strcmp(key, "push") == 0) {
            bool b = false;
            if (parse_bool(spec, key, val, &b, err) < 0)
                return -1;
            push = b;
        } else if (strcmp(key, "name") == 0) {
            const char *p = val;
            while (*p) {
                const char *c = strchr(p, ',');
                size_t n = c ? (size_t)(c - p) : strlen(p);
                if (n == 0)
                    return kn_err_set(err, KN_E_USAGE, "invalid output '%s': empty name", spec);
                kn_strv_take(&out->names, kn_strndup(p, n));
                p += n + (c ? 1 : 0);
            }
            if (!*val)
                return kn_err_set(err, KN_E_USAGE, "invalid output '%s': empty name", spec);
        } else {
            return kn_err_set(err, KN_E_USAGE, "invalid output '%s': unknown key '%s'", spec, key);
        }
    }
    if (!type)
        out->type = (enum ex_output_type)default_type;
    else if (strcmp(type, "oci") == 0)
        out->type = EX_OUTPUT_OCI;
    else if (strcmp(type, "docker") == 0)
        out->type = EX_OUTPUT_DOCKER;
    else if (strcmp(type, "local") == 0)
        out->type = EX_OUTPUT_LOCAL;
    else if (strcmp(type, "registry") == 0)
        out->type = EX_OUTPUT_REGISTRY;
    else if (strcmp(type, "image") == 0 && push == 1)
        out->type = EX_OUTPUT_REGISTRY;
    else
        return kn_err_set(err, KN_E_USAGE,
                          "invalid output '%s': unknown type '%s' (want oci, docker, local or "
                          "registry)",
                          spec, type);
    if (push == 1 && out->type != EX_OUTPUT_REGISTRY)
        return kn_err_set(err, KN_E_USAGE, "invalid output '%s': push=true needs type=registry",
                          spec);
    if (tar >= 0 && out->type != EX_OUTPUT_OCI)
        return kn_err_set(err, KN_E_USAGE, "invalid output '%s': tar= applies to type=oci only",
                          spec);
    if (out->type == EX_OUTPUT_REGISTRY) {
        if (out->dest)
            return kn_err_set(err, KN_E_USAGE, "invalid output '%s': type=registry takes no dest",
                              spec);
        return 0;
    }
    if (!out->dest)
        return kn_err_set(err, KN_E_USAGE, "invalid output '%s': missing dest=PATH", spec);
    if (out->type == EX_OUTPUT_OCI)
        out->tar = tar >= 0 ? tar == 1 : kn_str_endswith(out->dest, ".tar");
    return 0;
}

int kiln_output_parse(const char *spec, int default_type, struct ex_output *out,
                      struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    if (!spec || !*spec)
        return kn_err_set(err, KN_E_USAGE, "invalid output '': empty");
    struct kn_strv f = {0};
    int rc = split_fields(spec, &f, err);
    if (rc == 0)
        rc = apply_fields(spec, &f, default_type, out, err);
    kn_strv_release(&f);
    if (rc < 0)
        ex_output_release(out);
    return rc;
}
