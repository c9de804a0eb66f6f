/*
 * Manifests and indexes: parsing with validation (required fields, media
 * types, digest formats, size caps), serialization of OCI manifests, the
 * docker schema 2 -> OCI conversion, and platform selection in an index.
 * Also the JSON helpers the rest of the module uses.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

json_t *exi_json_load(const char *data, size_t len, size_t max, const char *what,
                      struct kn_error **err)
{
    if (len > max) {
        kn_err_set(err, KN_E_UNSAFE, "%s too large (%zu bytes, limit %zu)", what, len, max);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(data, len, 0, &je);
    if (!j) {
        kn_err_set(err, KN_E_PARSE, "invalid %s: %s at line %d column %d", what, je.text, je.line,
                   je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        kn_err_set(err, KN_E_PARSE, "invalid %s: not a JSON object", what);
        return NULL;
    }
    return j;
}

char *exi_json_dump(const json_t *j, size_t *len)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s)
        kn_die("cannot serialize JSON");
    if (len)
        *len = strlen(s);
    return s;
}

int exi_descriptor_parse(const json_t *o, const char *what, const char *field, bool mt_optional,
                         struct ex_descriptor *d, struct kn_error **err)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(o))
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s: not an object", what, field);
    const json_t *mt = json_object_get(o, "mediaType");
    if (mt && !json_is_string(mt))
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s.mediaType: not a string", what, field);
    if (!mt && !mt_optional)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s.mediaType: missing", what, field);
    const json_t *dg = json_object_get(o, "digest");
    if (!dg)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s.digest: missing", what, field);
    if (!json_is_string(dg) || !kn_digest_valid(json_string_value(dg)))
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s.digest: bad digest '%s'", what, field,
                          json_is_string(dg) ? json_string_value(dg) : "(not a string)");
    const json_t *sz = json_object_get(o, "size");
    if (!sz)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s.size: missing", what, field);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: %s.size: not a non-negative integer", what,
                          field);
    d->media_type = mt ? kn_strdup(json_string_value(mt)) : NULL;
    snprintf(d->digest, sizeof(d->digest), "%s", json_string_value(dg));
    d->size = (uint64_t)json_integer_value(sz);
    return 0;
}

json_t *exi_descriptor_json(const struct ex_descriptor *d)
{
    json_t *o = json_object();
    if (d->media_type)
        json_object_set_new(o, "mediaType", json_string(d->media_type));
    json_object_set_new(o, "digest", json_string(d->digest));
    json_object_set_new(o, "size", json_integer((json_int_t)d->size));
    return o;
}

void exi_descriptor_copy(struct ex_descriptor *dst, const struct ex_descriptor *src)
{
    dst->media_type = src->media_type ? kn_strdup(src->media_type) : NULL;
    memcpy(dst->digest, src->digest, sizeof(dst->digest));
    dst->size = src->size;
}

void exi_descriptor_release(struct ex_descriptor *d)
{
    free(d->media_type);
    d->media_type = NULL;
}

void exi_platform_from_json(const json_t *o, struct ir_platform *p)
{
    memset(p, 0, sizeof(*p));
    if (!json_is_object(o))
        return;
    const char *os = json_string_value(json_object_get(o, "os"));
    const char *arch = json_string_value(json_object_get(o, "architecture"));
    const char *var = json_string_value(json_object_get(o, "variant"));
    p->os = os ? kn_strdup(os) : NULL;
    p->arch = arch ? kn_strdup(arch) : NULL;
    p->variant = var && *var ? kn_strdup(var) : NULL;
}

/* ---- media types ---- */

bool ex_media_type_is_index(const char *mt)
{
    return mt && (strcmp(mt, EX_MT_OCI_INDEX) == 0 || strcmp(mt, EX_MT_DOCKER_LIST) == 0);
}

bool ex_media_type_is_manifest(const char *mt)
{
    return mt && (strcmp(mt, EX_MT_OCI_MANIFEST) == 0 || strcmp(mt, EX_MT_DOCKER_MANIFEST) == 0);
}

const char *ex_media_type_sniff(const char *data, size_t len)
{
    json_t *j = exi_json_load(data, len, EX_MANIFEST_MAX, "manifest", NULL);
    if (!j)
        return NULL;
    const char *res = NULL;
    const char *mt = json_string_value(json_object_get(j, "mediaType"));
    if (mt && (ex_media_type_is_index(mt) || ex_media_type_is_manifest(mt))) {
        res = strcmp(mt, EX_MT_OCI_INDEX) == 0      ? EX_MT_OCI_INDEX
              : strcmp(mt, EX_MT_DOCKER_LIST) == 0  ? EX_MT_DOCKER_LIST
              : strcmp(mt, EX_MT_OCI_MANIFEST) == 0 ? EX_MT_OCI_MANIFEST
                                                    : EX_MT_DOCKER_MANIFEST;
    } else if (!mt) {
        if (json_is_array(json_object_get(j, "manifests")))
            res = EX_MT_OCI_INDEX;
        else if (json_is_object(json_object_get(j, "config")))
            res = EX_MT_OCI_MANIFEST;
    }
    json_decref(j);
    return res;
}

const char *ex_media_type_to_oci(const char *mt)
{
    static const struct {
        const char *docker, *oci;
    } map[] = {
        {EX_MT_DOCKER_MANIFEST, EX_MT_OCI_MANIFEST},
        {EX_MT_DOCKER_LIST, EX_MT_OCI_INDEX},
        {EX_MT_DOCKER_CONFIG, EX_MT_OCI_CONFIG},
        {EX_MT_DOCKER_LAYER_GZIP, EX_MT_OCI_LAYER_GZIP},
        {EX_MT_DOCKER_LAYER, EX_MT_OCI_LAYER},
        {EX_MT_DOCKER_FOREIGN_LAYER,
         "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"},
    };
    if (!mt)
        return mt;
    for (size_t i = 0; i < KN_ARRAY_SIZE(map); i++)
        if (strcmp(mt, map[i].docker) == 0)
            return map[i].oci;
    return mt;
}

/* ---- manifests ---- */

static int check_schema(const json_t *j, const char *what, struct kn_error **err)
{
    const json_t *v = json_object_get(j, "schemaVersion");
    if (!v)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: schemaVersion: missing", what);
    if (!json_is_integer(v) || json_integer_value(v) != 2)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: schemaVersion: unsupported (want 2)", what);
    return 0;
}

/* The effective media type: the hint, else the document's; they must agree. */
static int effective_mt(const json_t *j, const char *hint, const char *what, const char **out,
                        struct kn_error **err)
{
    const json_t *m = json_object_get(j, "mediaType");
    if (m && !json_is_string(m))
        return kn_err_set(err, KN_E_PARSE, "invalid %s: mediaType: not a string", what);
    const char *doc = json_string_value(m);
    if (hint && doc && strcmp(hint, doc) != 0)
        return kn_err_set(err, KN_E_PARSE, "invalid %s: mediaType '%s' does not match '%s'", what,
                          doc, hint);
    *out = hint ? hint : doc;
    return 0;
}

static int manifest_fields(const json_t *j, const char *media_type, struct ex_manifest *out,
                           struct kn_error **err)
{
    const char *mt = NULL;
    if (check_schema(j, "manifest", err) < 0 ||
        effective_mt(j, media_type, "manifest", &mt, err) < 0)
        return -1;
    if (!mt)
        mt = EX_MT_OCI_MANIFEST;
    if (!ex_media_type_is_manifest(mt))
        return kn_err_set(err, KN_E_PARSE, "invalid manifest: unsupported media type '%s'", mt);
    bool docker = strcmp(mt, EX_MT_DOCKER_MANIFEST) == 0;
    if (docker && !json_object_get(j, "mediaType"))
        return kn_err_set(err, KN_E_PARSE, "invalid manifest: mediaType: missing");
    if (exi_descriptor_parse(json_object_get(j, "config"), "manifest", "config", false,
                             &out->config, err) < 0)
        return -1;
    if (docker && strcmp(out->config.media_type, EX_MT_DOCKER_CONFIG) != 0)
        return kn_err_set(err, KN_E_PARSE, "invalid manifest: config.mediaType: unexpected '%s'",
                          out->config.media_type);
    if (out->config.size > EX_CONFIG_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "invalid manifest: config.size: %llu bytes exceeds %u",
                          (unsigned long long)out->config.size, EX_CONFIG_MAX);
    const json_t *layers = json_object_get(j, "layers");
    if (!json_is_array(layers))
        return kn_err_set(err, KN_E_PARSE, "invalid manifest: layers: %s",
                          layers ? "not an array" : "missing");
    size_t n = json_array_size(layers);
    if (n > EX_LAYERS_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "invalid manifest: %zu layers exceed the limit of %u",
                          n, EX_LAYERS_MAX);
    out->layers = kn_calloc(n ? n : 1, sizeof(*out->layers));
    for (size_t i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof(field), "layers[%zu]", i);
        if (exi_descriptor_parse(json_array_get(layers, i), "manifest", field, false,
                                 &out->layers[i], err) < 0)
            return -1;
        out->nlayers++;
    }
    out->media_type = kn_strdup(mt);
    return 0;
}

int ex_manifest_decode(const char *data, size_t len, const char *media_type,
                       struct ex_manifest *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    if (media_type && ex_media_type_is_index(media_type))
        return kn_err_set(err, KN_E_PARSE, "invalid manifest: '%s' is an index, not a manifest",
                          media_type);
    json_t *j = exi_json_load(data, len, EX_MANIFEST_MAX, "manifest", err);
    if (!j)
        return -1;
    int rc = manifest_fields(j, media_type, out, err);
    json_decref(j);
    if (rc < 0)
        ex_manifest_release(out);
    return rc;
}

void ex_manifest_release(struct ex_manifest *m)
{
    free(m->media_type);
    exi_descriptor_release(&m->config);
    for (size_t i = 0; i < m->nlayers; i++)
        exi_descriptor_release(&m->layers[i]);
    free(m->layers);
    memset(m, 0, sizeof(*m));
}

void ex_manifest_build(const struct ex_descriptor *config, const struct ex_descriptor *layers,
                       size_t nlayers, struct kn_buf *out)
{
    json_t *j = json_object();
    json_object_set_new(j, "schemaVersion", json_integer(2));
    json_object_set_new(j, "mediaType", json_string(EX_MT_OCI_MANIFEST));
    json_object_set_new(j, "config", exi_descriptor_json(config));
    json_t *arr = json_array();
    for (size_t i = 0; i < nlayers; i++)
        json_array_append_new(arr, exi_descriptor_json(&layers[i]));
    json_object_set_new(j, "layers", arr);
    size_t len;
    char *s = exi_json_dump(j, &len);
    kn_buf_add(out, s, len);
    free(s);
    json_decref(j);
}

static void map_descriptor_mt(json_t *o)
{
    const char *mt = json_string_value(json_object_get(o, "mediaType"));
    const char *oci = ex_media_type_to_oci(mt);
    if (mt && oci != mt)
        json_object_set_new(o, "mediaType", json_string(oci));
}

int ex_manifest_to_oci(const char *data, size_t len, struct kn_buf *out, struct kn_error **err)
{
    struct ex_manifest m;
    if (ex_manifest_decode(data, len, NULL, &m, err) < 0)
        return -1;
    bool docker = strcmp(m.media_type, EX_MT_DOCKER_MANIFEST) == 0;
    ex_manifest_release(&m);
    if (!docker) {
        kn_buf_add(out, data, len);
        return 0;
    }
    json_t *j = exi_json_load(data, len, EX_MANIFEST_MAX, "manifest", err);
    if (!j)
        return -1;
    map_descriptor_mt(j);
    map_descriptor_mt(json_object_get(j, "config"));
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(j, "layers"), i, l)
    {
        map_descriptor_mt(l);
    }
    size_t n;
    char *s = exi_json_dump(j, &n);
    kn_buf_add(out, s, n);
    free(s);
    json_decref(j);
    return 0;
}

/* ---- indexes ---- */

static void index_entry_release(struct ex_index_entry *e)
{
    exi_descriptor_release(&e->desc);
    ex_platform_clear(&e->platform);
    free(e->ref_name);
    free(e->image_name);
}

static int index_fields(const json_t *j, const char *media_type, struct ex_index *out,
                        struct kn_error **err)
{
    const char *mt = NULL;
    if (check_schema(j, "index", err) < 0 || effective_mt(j, media_type, "index", &mt, err) < 0)
        return -1;
    if (!mt)
        mt = EX_MT_OCI_INDEX;
    if (!ex_media_type_is_index(mt))
        return kn_err_set(err, KN_E_PARSE, "invalid index: unsupported media type '%s'", mt);
    const json_t *ms = json_object_get(j, "manifests");
    if (!json_is_array(ms))
        return kn_err_set(err, KN_E_PARSE, "invalid index: manifests: %s",
                          ms ? "not an array" : "missing");
    size_t n = json_array_size(ms);
    if (n > EX_INDEX_ENTRIES_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "invalid index: %zu manifests exceed the limit of %u",
                          n, EX_INDEX_ENTRIES_MAX);
    out->manifests = kn_calloc(n ? n : 1, sizeof(*out->manifests));
    for (size_t i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof(field), "manifests[%zu]", i);
        const json_t *e = json_array_get(ms, i);
        struct ex_index_entry *ent = &out->manifests[i];
        if (exi_descriptor_parse(e, "index", field, false, &ent->desc, err) < 0)
            return -1;
        out->nmanifests++;
        const json_t *p = json_object_get(e, "platform");
        if (p) {
            if (!json_is_object(p) || !json_is_string(json_object_get(p, "os")) ||
                !json_is_string(json_object_get(p, "architecture")))
                return kn_err_set(err, KN_E_PARSE,
                                  "invalid index: %s.platform: needs os and architecture strings",
                                  field);
            exi_platform_from_json(p, &ent->platform);
        }
        const json_t *an = json_object_get(e, "annotations");
        if (an && !json_is_object(an))
            return kn_err_set(err, KN_E_PARSE, "invalid index: %s.annotations: not an object",
                              field);
        const char *rn = json_string_value(json_object_get(an, EX_ANNOT_REF_NAME));
        const char *in = json_string_value(json_object_get(an, EX_ANNOT_IMAGE_NAME));
        ent->ref_name = rn ? kn_strdup(rn) : NULL;
        ent->image_name = in ? kn_strdup(in) : NULL;
    }
    out->media_type = kn_strdup(mt);
    return 0;
}

int ex_index_decode(const char *data, size_t len, const char *media_type, struct ex_index *out,
                    struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    if (media_type && ex_media_type_is_manifest(media_type))
        return kn_err_set(err, KN_E_PARSE, "invalid index: '%s' is a manifest, not an index",
                          media_type);
    json_t *j = exi_json_load(data, len, EX_MANIFEST_MAX, "index", err);
    if (!j)
        return -1;
    int rc = index_fields(j, media_type, out, err);
    json_decref(j);
    if (rc < 0)
        ex_index_release(out);
    return rc;
}

void ex_index_release(struct ex_index *ix)
{
    for (size_t i = 0; i < ix->nmanifests; i++)
        index_entry_release(&ix->manifests[i]);
    free(ix->manifests);
    free(ix->media_type);
    memset(ix, 0, sizeof(*ix));
}

static bool is_attestation(const struct ex_index_entry *e)
{
    return e->platform.os && strcmp(e->platform.os, "unknown") == 0;
}

int ex_index_select(const struct ex_index *ix, const struct ir_platform *platform,
                    struct kn_error **err)
{
    struct ir_platform def = {0};
    if (!platform) {
        ex_platform_default(&def);
        platform = &def;
    }
    int found = -1, untyped = -1;
    size_t nuntyped = 0;
    for (size_t i = 0; i < ix->nmanifests && found < 0; i++) {
        const struct ex_index_entry *e = &ix->manifests[i];
        if (is_attestation(e))
            continue;
        if (!e->platform.os) {
            untyped = (int)i;
            nuntyped++;
            continue;
        }
        if (ex_platform_match(platform, &e->platform))
            found = (int)i;
    }
    if (found < 0 && nuntyped == 1)
        found = untyped;
    if (found < 0) {
        struct kn_buf have = KN_BUF_INIT;
        for (size_t i = 0; i < ix->nmanifests; i++) {
            const struct ex_index_entry *e = &ix->manifests[i];
            if (is_attestation(e) || !e->platform.os)
                continue;
            char *p = ex_platform_format(&e->platform);
            kn_buf_addf(&have, "%s%s", have.len ? ", " : "", p);
            free(p);
        }
        char *want = ex_platform_format(platform);
        kn_err_set(err, KN_E_NOTFOUND, "no image for platform '%s' in the index (it has: %s)", want,
                   have.len ? have.data : "none");
        free(want);
        kn_buf_release(&have);
    }
    ex_platform_clear(&def);
    return found;
}
