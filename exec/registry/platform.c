/*
 * Manifests and platforms: classifying what a registry served (OCI manifest
 * or index, docker schema2 manifest or list; schema 1 is refused), parsing an
 * image manifest into descriptors with their sizes checked, and picking one
 * platform's manifest from an index the way containerd's default matcher
 * does (arm64 means arm64/v8, arm means arm/v7, aarch64 and x86_64 are
 * aliases; entries of os "unknown" are attestations and never chosen).
 */
#include "exec/registry/internal.h"

#include <jansson.h>
#include <string.h>
#include <sys/utsname.h>

#define MAX_LAYERS        1000u
#define MAX_INDEX_ENTRIES 10000u

void ex_platform_normalize(const char *arch, const char *variant, char **narch, char **nvariant)
{
    const char *a = arch ? arch : "";
    const char *v = variant ? variant : "";
    if (strcmp(a, "aarch64") == 0)
        a = "arm64";
    else if (strcmp(a, "x86_64") == 0 || strcmp(a, "x86-64") == 0)
        a = "amd64";
    else if (strcmp(a, "i386") == 0 || strcmp(a, "i686") == 0)
        a = "386";
    else if (strcmp(a, "armhf") == 0)
        a = "arm", v = "v7";
    else if (strcmp(a, "armel") == 0)
        a = "arm", v = "v6";
    if (strcmp(a, "arm64") == 0 && (!*v || strcmp(v, "8") == 0))
        v = "v8";
    else if (strcmp(a, "arm") == 0 && !*v)
        v = "v7";
    else if (strcmp(a, "arm") == 0 && (strcmp(v, "5") == 0 || strcmp(v, "6") == 0 ||
                                       strcmp(v, "7") == 0 || strcmp(v, "8") == 0))
        v = strcmp(v, "5") == 0   ? "v5"
            : strcmp(v, "6") == 0 ? "v6"
            : strcmp(v, "7") == 0 ? "v7"
                                  : "v8";
    else if (strcmp(a, "amd64") == 0 && strcmp(v, "v1") == 0)
        v = "";
    *narch = kn_strdup(a);
    *nvariant = kn_strdup(v);
}

void ex_platform_host(struct ir_platform *p)
{
    struct utsname u;
    const char *m = "amd64";
    if (uname(&u) == 0)
        m = u.machine;
    char *a, *v;
    ex_platform_normalize(m, NULL, &a, &v);
    p->os = kn_strdup("linux");
    p->arch = a;
    /* the host asks for no particular variant except where one is implied */
    if (*v) {
        p->variant = v;
    } else {
        free(v);
        p->variant = NULL;
    }
}

void ex_platform_release(struct ir_platform *p)
{
    free(p->os);
    free(p->arch);
    free(p->variant);
    p->os = p->arch = p->variant = NULL;
}

char *ex_platform_string(const struct ir_platform *p)
{
    if (p->variant && *p->variant)
        return kn_asprintf("%s/%s/%s", p->os ? p->os : "", p->arch ? p->arch : "", p->variant);
    return kn_asprintf("%s/%s", p->os ? p->os : "", p->arch ? p->arch : "");
}

static bool platform_matches(const struct ir_platform *want, const char *os, const char *arch,
                             const char *variant)
{
    if (!os || strcmp(os, want->os ? want->os : "linux") != 0)
        return false;
    char *wa, *wv, *ca, *cv;
    ex_platform_normalize(want->arch, want->variant, &wa, &wv);
    ex_platform_normalize(arch, variant, &ca, &cv);
    bool ok = strcmp(wa, ca) == 0;
    /* a request without a variant takes any variant of amd64 & co.; arm's
     * normalized defaults (v8, v7) make the others exact */
    if (ok && (*wv || strcmp(wa, "arm") == 0 || strcmp(wa, "arm64") == 0))
        ok = strcmp(wv, cv) == 0;
    free(wa);
    free(wv);
    free(ca);
    free(cv);
    return ok;
}

static int parse_descriptor(json_t *d, const char *what, const char *field,
                            struct ex_descriptor *out, struct kn_error **err)
{
    const char *mt = json_string_value(json_object_get(d, "mediaType"));
    const char *dg = json_string_value(json_object_get(d, "digest"));
    json_t *sz = json_object_get(d, "size");
    if (!json_is_object(d) || !dg || !json_is_integer(sz))
        return kn_err_set(err, KN_E_PARSE,
                          "malformed manifest of %s: %s descriptor needs "
                          "\"digest\" and \"size\"",
                          what, field);
    if (!kn_digest_valid(dg))
        return kn_err_set(err, KN_E_PARSE, "malformed manifest of %s: unsupported digest '%s'",
                          what, dg);
    if (json_integer_value(sz) < 0)
        return kn_err_set(err, KN_E_PARSE, "malformed manifest of %s: negative size for %s", what,
                          dg);
    out->media_type = kn_strdup(mt ? mt : "");
    memcpy(out->digest, dg, KN_DIGEST_SIZE);
    out->size = (uint64_t)json_integer_value(sz);
    return 0;
}

int ex_platform_select(const char *index_json, size_t len, const struct ir_platform *want,
                       const char *what, struct ex_descriptor *out, struct kn_error **err)
{
    json_error_t je;
    json_t *j = json_loadb(index_json, len, 0, &je);
    json_t *ms = j ? json_object_get(j, "manifests") : NULL;
    if (!json_is_array(ms)) {
        json_decref(j);
        return kn_err_set(err, KN_E_PARSE, "malformed index of %s: %s", what,
                          j ? "no \"manifests\" array" : je.text);
    }
    if (json_array_size(ms) > MAX_INDEX_ENTRIES) {
        json_decref(j);
        return kn_err_set(err, KN_E_UNSAFE, "index of %s has too many entries (%zu > %u)", what,
                          json_array_size(ms), MAX_INDEX_ENTRIES);
    }
    struct ir_platform host = {0};
    if (!want || !want->arch) {
        ex_platform_host(&host);
        want = &host;
    }
    struct kn_buf avail = KN_BUF_INIT;
    size_t i;
    json_t *m;
    int rc = 1;
    json_array_foreach(ms, i, m)
    {
        json_t *p = json_object_get(m, "platform");
        const char *os = json_string_value(json_object_get(p, "os"));
        const char *arch = json_string_value(json_object_get(p, "architecture"));
        const char *var = json_string_value(json_object_get(p, "variant"));
        if (!os || !arch || strcmp(os, "unknown") == 0)
            continue;
        if (platform_matches(want, os, arch, var)) {
            rc = parse_descriptor(m, what, "platform manifest", out, err);
            break;
        }
        kn_buf_addf(&avail, "%s%s/%s%s%s", avail.len ? ", " : "", os, arch, var && *var ? "/" : "",
                    var && *var ? var : "");
    }
    if (rc == 1) {
        char *ws = ex_platform_string(want);
        rc = kn_err_set(err, KN_E_NOTFOUND, "no image for platform %s in %s (available: %s)", ws,
                        what, avail.len ? avail.data : "none");
        free(ws);
    }
    kn_buf_release(&avail);
    ex_platform_release(&host);
    json_decref(j);
    return rc;
}

int ex_manifest_kind(const char *content_type, const char *json, size_t len, const char *what,
                     char **media_type, bool *is_index, struct kn_error **err)
{
    json_error_t je;
    json_t *j = json_loadb(json, len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return kn_err_set(err, KN_E_PARSE, "malformed manifest of %s: %s", what,
                          j ? "not a JSON object" : je.text);
    }
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    json_int_t sv = json_integer_value(json_object_get(j, "schemaVersion"));
    char *ct = NULL;
    if (content_type) {
        size_t n = strcspn(content_type, "; ");
        ct = kn_strndup(content_type, n);
    }
    const char *t = mt ? mt : ct;
    if (!t || !*t || strcmp(t, "application/json") == 0 ||
        strcmp(t, "application/octet-stream") == 0 || strcmp(t, "text/plain") == 0) {
        /* no media type: an OCI index has "manifests", an OCI manifest "config" */
        if (json_is_array(json_object_get(j, "manifests")))
            t = EX_MT_OCI_INDEX;
        else if (json_object_get(j, "config"))
            t = EX_MT_OCI_MANIFEST;
        else
            t = NULL;
    }
    int rc = 0;
    if (sv == 1 ||
        (t && (strcmp(t, EX_MT_DOCKER_V1) == 0 || strcmp(t, EX_MT_DOCKER_V1_SIGNED) == 0))) {
        rc = kn_err_set(err, KN_E_PARSE,
                        "%s has a docker schema 1 manifest, which is not supported (push it "
                        "again with a current client)",
                        what);
    } else if (t && (strcmp(t, EX_MT_OCI_INDEX) == 0 || strcmp(t, EX_MT_DOCKER_LIST) == 0)) {
        *is_index = true;
        *media_type = kn_strdup(t);
    } else if (t && (strcmp(t, EX_MT_OCI_MANIFEST) == 0 || strcmp(t, EX_MT_DOCKER_MANIFEST) == 0)) {
        *is_index = false;
        *media_type = kn_strdup(t);
    } else {
        rc = kn_err_set(err, KN_E_PARSE, "unsupported manifest media type '%s' for %s",
                        t ? t : "(none)", what);
    }
    free(ct);
    json_decref(j);
    return rc;
}

int ex_manifest_parse(const char *json, size_t len, const char *what, struct ex_image_manifest *out,
                      struct kn_error **err)
{
    json_error_t je;
    json_t *j = json_loadb(json, len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return kn_err_set(err, KN_E_PARSE, "malformed manifest of %s: %s", what,
                          j ? "not a JSON object" : je.text);
    }
    int rc = 0;
    json_t *layers = json_object_get(j, "layers");
    if (parse_descriptor(json_object_get(j, "config"), what, "config", &out->config, err) < 0) {
        rc = -1;
    } else if (out->config.size > EX_REG_CONFIG_MAX) {
        rc = kn_err_set(err, KN_E_UNSAFE, "config of %s is too big (%llu bytes, limit %u)", what,
                        (unsigned long long)out->config.size, EX_REG_CONFIG_MAX);
    } else if (!json_is_array(layers)) {
        rc = kn_err_set(err, KN_E_PARSE, "malformed manifest of %s: no \"layers\" array", what);
    } else if (json_array_size(layers) > MAX_LAYERS) {
        rc = kn_err_set(err, KN_E_UNSAFE, "manifest of %s has too many layers (%zu > %u)", what,
                        json_array_size(layers), MAX_LAYERS);
    } else {
        size_t n = json_array_size(layers);
        out->layers = kn_calloc(n ? n : 1, sizeof(*out->layers));
        for (size_t i = 0; i < n && rc == 0; i++) {
            rc = parse_descriptor(json_array_get(layers, i), what, "layer", &out->layers[i], err);
            if (rc == 0)
                out->nlayers++;
        }
    }
    json_decref(j);
    return rc;
}

void ex_image_manifest_release(struct ex_image_manifest *m)
{
    if (!m)
        return;
    free(m->media_type);
    free(m->manifest);
    free(m->config.media_type);
    free(m->config_json);
    for (size_t i = 0; i < m->nlayers; i++)
        free(m->layers[i].media_type);
    free(m->layers);
    memset(m, 0, sizeof(*m));
}
