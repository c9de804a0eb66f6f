/*
 * Base image configs from OCI layout directories, for `kiln graph` before
 * the registry-backed resolver exists: index.json -> (nested index ->)
 * manifest -> config, each blob read from blobs/<alg>/<hex> with a size cap
 * and its digest verified. Refs that are not "oci-layout://PATH:TAG" are
 * left unresolved (config NULL), see resolve_oci.h.
 */
#include "resolve_oci.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define OCI_MAX_JSON  (8u << 20)
#define OCI_MAX_DEPTH 4

static int read_json(const char *path, size_t max, struct kn_buf *raw, json_t **out,
                     struct kn_error **err)
{
    if (kn_buf_read_file(raw, path, max, err) < 0)
        return -1;
    json_error_t je;
    *out = json_loadb(raw->data ? raw->data : "", raw->len, 0, &je);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return kn_err_set(err, KN_E_PARSE, "invalid JSON in '%s': %s", path, je.text);
    }
    return 0;
}

/* Reads blob `digest` of the layout and checks its digest. */
static int read_blob(const char *dir, const char *digest, struct kn_buf *raw, struct kn_error **err)
{
    if (!kn_digest_valid(digest))
        return kn_err_set(err, KN_E_PARSE, "unsupported digest '%s' in OCI layout '%s'", digest,
                          dir);
    char *path = kn_asprintf("%s/blobs/sha256/%s", dir, kn_digest_hex(digest));
    int rc = kn_buf_read_file(raw, path, OCI_MAX_JSON, err);
    free(path);
    if (rc < 0)
        return -1;
    char got[KN_DIGEST_SIZE];
    kn_sha256_digest(raw->data ? raw->data : "", raw->len, got);
    if (strcmp(got, digest) != 0)
        return kn_err_set(err, KN_E_DIGEST, "blob %s in OCI layout '%s' has digest %s", digest, dir,
                          got);
    return 0;
}

static bool platform_matches(json_t *desc, const struct ir_platform *p)
{
    json_t *pl = json_object_get(desc, "platform");
    if (!json_is_object(pl) || !p)
        return true;
    const char *os = json_string_value(json_object_get(pl, "os"));
    const char *arch = json_string_value(json_object_get(pl, "architecture"));
    const char *var = json_string_value(json_object_get(pl, "variant"));
    if (os && p->os && strcmp(os, p->os) != 0)
        return false;
    if (arch && p->arch && strcmp(arch, p->arch) != 0)
        return false;
    if (var && p->variant && strcmp(var, p->variant) != 0)
        return false;
    return true;
}

static bool is_index(json_t *doc, json_t *desc)
{
    const char *mt = json_string_value(json_object_get(desc, "mediaType"));
    if (!mt)
        mt = json_string_value(json_object_get(doc, "mediaType"));
    if (mt && (strstr(mt, "image.index") || strstr(mt, "manifest.list")))
        return true;
    return json_is_array(json_object_get(doc, "manifests"));
}

/* From a manifest or index descriptor down to the config bytes. */
static int follow(const char *dir, json_t *desc, const struct ir_platform *platform, int depth,
                  char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    const char *d = json_string_value(json_object_get(desc, "digest"));
    if (!d)
        return kn_err_set(err, KN_E_PARSE, "descriptor without digest in OCI layout '%s'", dir);
    if (depth > OCI_MAX_DEPTH)
        return kn_err_set(err, KN_E_UNSAFE, "indexes nested too deep in OCI layout '%s'", dir);
    struct kn_buf raw = KN_BUF_INIT;
    if (read_blob(dir, d, &raw, err) < 0) {
        kn_buf_release(&raw);
        return -1;
    }
    json_error_t je;
    json_t *doc = json_loadb(raw.data ? raw.data : "", raw.len, 0, &je);
    kn_buf_release(&raw);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return kn_err_set(err, KN_E_PARSE, "invalid manifest %s in OCI layout '%s'", d, dir);
    }
    int rc = -1;
    if (is_index(doc, desc)) {
        json_t *ms = json_object_get(doc, "manifests");
        size_t i;
        json_t *m;
        json_t *pick = NULL;
        json_array_foreach(ms, i, m)
        {
            if (platform_matches(m, platform)) {
                pick = m;
                break;
            }
        }
        if (!pick)
            kn_err_set(err, KN_E_NOTFOUND, "no manifest for %s/%s in OCI layout '%s'",
                       platform ? platform->os : "?", platform ? platform->arch : "?", dir);
        else
            rc = follow(dir, pick, platform, depth + 1, config_json, digest, err);
    } else {
        json_t *cfg = json_object_get(doc, "config");
        const char *cd = json_string_value(json_object_get(cfg, "digest"));
        struct kn_buf c = KN_BUF_INIT;
        if (!cd) {
            kn_err_set(err, KN_E_PARSE, "manifest %s in OCI layout '%s' has no config", d, dir);
        } else if (read_blob(dir, cd, &c, err) == 0) {
            *config_json = kn_buf_detach(&c);
            snprintf(digest, KN_DIGEST_SIZE, "%s", d);
            rc = 0;
        }
        kn_buf_release(&c);
    }
    json_decref(doc);
    return rc;
}

int kiln_oci_layout_config(const char *dir, const char *tag, const struct ir_platform *platform,
                           char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    char *path = kn_asprintf("%s/index.json", dir);
    struct kn_buf raw = KN_BUF_INIT;
    json_t *index = NULL;
    int rc = read_json(path, OCI_MAX_JSON, &raw, &index, err);
    free(path);
    kn_buf_release(&raw);
    if (rc < 0)
        return -1;
    json_t *ms = json_object_get(index, "manifests");
    json_t *pick = NULL;
    size_t i, n = json_array_size(ms);
    json_t *m;
    json_array_foreach(ms, i, m)
    {
        json_t *ann = json_object_get(m, "annotations");
        const char *name =
            json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name"));
        if (tag && name && strcmp(name, tag) == 0) {
            pick = m;
            break;
        }
    }
    if (!pick && n == 1 && (!tag || strcmp(tag, "latest") == 0))
        pick = json_array_get(ms, 0);
    if (!pick) {
        kn_err_set(err, KN_E_NOTFOUND, "tag '%s' not found in OCI layout '%s'",
                   tag ? tag : "latest", dir);
        json_decref(index);
        return -1;
    }
    rc = follow(dir, pick, platform, 0, config_json, digest, err);
    json_decref(index);
    return rc;
}

static int resolve(void *ctx, const char *ref, const struct ir_platform *platform,
                   char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    (void)ctx;
    *config_json = NULL;
    digest[0] = 0;
    if (!kn_str_startswith(ref, "oci-layout://"))
        return 0; /* not ours: unresolved */
    const char *p = ref + strlen("oci-layout://");
    char *dir = kn_strdup(p);
    char *tag = NULL;
    char *at = strchr(dir, '@');
    if (at)
        *at = 0; /* NEEDSWORK: select by digest */
    char *slash = strrchr(dir, '/');
    char *colon = strrchr(slash ? slash : dir, ':');
    if (colon) {
        *colon = 0;
        tag = colon + 1;
    }
    int rc = kiln_oci_layout_config(dir, tag, platform, config_json, digest, err);
    free(dir);
    return rc;
}

const struct fe_resolver kiln_oci_resolver = {NULL, resolve};
