/*
 * The registry build cache (see rcache.h): a cache entry as an OCI manifest
 * in a repository, tagged by its cache key, with the entry's value as the
 * config blob and the layers it made as the manifest's layers. Reading back
 * treats everything that comes from the registry as untrusted: sizes are
 * checked against caps before anything is fetched, blobs are verified
 * against their digests by the registry client, and anything unexpected is
 * a miss, so a damaged cache can slow a build down but never break it.
 */
#include "rcache.h"

#include "exec/image/image.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct ex_rcache {
    struct ex_registry *reg;
    struct ex_store *store;
    char *domain, *path;
    char *repo; /* domain/path */
};

struct ex_rcache *ex_rcache_open(struct ex_registry *reg, const char *ref, struct ex_store *s,
                                 struct kn_error **err)
{
    if (!ref || !*ref) {
        kn_err_set(err, KN_E_USAGE, "the registry cache needs a repository (ref=REPO)");
        return NULL;
    }
    struct ex_ref r;
    if (ex_ref_parse(ref, &r, err) < 0) {
        kn_err_wrap(err, "invalid cache repository '%s'", ref);
        (*err)->code = KN_E_USAGE;
        return NULL;
    }
    /* ex_ref_parse fills in "latest" when no tag is given: look at the text */
    const char *last = strrchr(ref, '/');
    bool tagged = strchr(last ? last : ref, ':') != NULL;
    if (r.digest || tagged) {
        ex_ref_release(&r);
        kn_err_set(err, KN_E_USAGE,
                   "invalid cache repository '%s': give a repository without a tag or digest "
                   "(each cache entry gets its own tag)",
                   ref);
        return NULL;
    }
    struct ex_rcache *rc = kn_calloc(1, sizeof(*rc));
    rc->reg = reg;
    rc->store = s;
    rc->domain = kn_strdup(r.domain);
    rc->path = kn_strdup(r.path);
    rc->repo = kn_asprintf("%s/%s", r.domain, r.path);
    ex_ref_release(&r);
    return rc;
}

void ex_rcache_close(struct ex_rcache *rc)
{
    if (!rc)
        return;
    free(rc->domain);
    free(rc->path);
    free(rc->repo);
    free(rc);
}

const char *ex_rcache_repo(const struct ex_rcache *rc)
{
    return rc->repo;
}

char *ex_rcache_tag(const char *key)
{
    if (!key || !kn_digest_valid(key))
        return NULL;
    return kn_asprintf("sha256-%s", kn_digest_hex(key));
}

/* a reference to tag (or digest) in the cache repository; borrows rc's strings */
static struct ex_ref cache_ref(const struct ex_rcache *rc, char *tag)
{
    return (struct ex_ref){.domain = rc->domain, .path = rc->path, .tag = tag};
}

/* A fetch that failed because the registry does not have the thing is a
 * miss: *err is freed and 0 returned; any other failure stays -1. */
static int miss_or_error(int rc, struct kn_error **err, const char *key, const char *what)
{
    if (rc == 0)
        return 1;
    if (*err && (*err)->code == KN_E_NOTFOUND) {
        kn_debug("registry cache miss for %s: %s: %s", key, what, (*err)->msg);
        kn_err_free(*err);
        *err = NULL;
        return 0;
    }
    return -1;
}

/* The descriptor at j, checked; false if it is not one (or too large). */
static bool descriptor_ok(json_t *j, uint64_t max_size)
{
    const char *dg = json_string_value(json_object_get(j, "digest"));
    json_t *sz = json_object_get(j, "size");
    return json_is_object(j) && kn_digest_valid(dg) && json_is_integer(sz) &&
           json_integer_value(sz) >= 0 && (uint64_t)json_integer_value(sz) <= max_size &&
           json_is_string(json_object_get(j, "mediaType"));
}

/* Every layer the value names is either in the store or has a registry
 * origin; 1 if so, 0 if not (a miss), -1 for a value that is not an entry. */
static int value_layers_reachable(struct ex_rcache *rc, const char *value, size_t len,
                                  struct kn_error **err)
{
    json_error_t je;
    json_t *root = json_loadb(value, len, 0, &je);
    json_t *layers = root ? json_object_get(root, "layers") : NULL;
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_array(layers) || json_array_size(layers) > EX_LAYERS_MAX) {
        json_decref(root);
        return kn_err_set(err, KN_E_PARSE, "not a kiln cache entry");
    }
    int ok = 1;
    for (size_t i = 0; i < json_array_size(layers) && ok == 1; i++) {
        json_t *l = json_array_get(layers, i);
        const char *dg = json_string_value(json_object_get(l, "digest"));
        if (!kn_digest_valid(dg)) {
            ok = kn_err_set(err, KN_E_PARSE, "not a kiln cache entry: layer %zu has no digest", i);
            break;
        }
        if (!ex_store_has_blob(rc->store, dg) && !json_is_string(json_object_get(l, "registry")))
            ok = 0;
    }
    json_decref(root);
    return ok;
}

int ex_rcache_get(struct ex_rcache *rc, const char *key, struct kn_buf *value,
                  struct kn_error **err)
{
    char *tag = ex_rcache_tag(key);
    if (!tag)
        return kn_err_set(err, KN_E_INTERNAL, "invalid cache key '%s'", key ? key : "");
    struct ex_ref ref = cache_ref(rc, tag);
    struct kn_buf man = KN_BUF_INIT;
    char *mt = NULL;
    char digest[KN_DIGEST_SIZE];
    json_t *root = NULL;
    kn_buf_reset(value);
    int ret = miss_or_error(ex_registry_get_manifest(rc->reg, &ref, &man, &mt, digest, err), err,
                            key, "manifest");
    if (ret == 1) {
        json_error_t je;
        root = json_loadb(man.data ? man.data : "", man.len, 0, &je);
        json_t *config = json_object_get(root, "config");
        json_t *layers = json_object_get(root, "layers");
        const char *cmt = json_string_value(json_object_get(config, "mediaType"));
        if (!json_is_object(root) || !descriptor_ok(config, EX_RCACHE_VALUE_MAX) || !cmt ||
            strcmp(cmt, EX_RCACHE_MT) != 0 || !json_is_array(layers) ||
            json_array_size(layers) > EX_LAYERS_MAX) {
            /* someone else's image under our tag, or a damaged entry */
            kn_warn("ignoring registry cache entry %s:%s: not a kiln cache manifest", rc->repo,
                    tag);
            ret = 0;
        }
        for (size_t i = 0; ret == 1 && i < json_array_size(layers); i++) {
            if (!descriptor_ok(json_array_get(layers, i), UINT64_MAX >> 1)) {
                kn_warn("ignoring registry cache entry %s:%s: layer %zu is malformed", rc->repo,
                        tag, i);
                ret = 0;
            }
        }
    }
    if (ret == 1) {
        const char *cfg =
            json_string_value(json_object_get(json_object_get(root, "config"), "digest"));
        ret = miss_or_error(ex_registry_fetch_blob(rc->reg, &ref, cfg, rc->store, err), err, key,
                            "value");
        if (ret == 1 && ex_store_blob_read(rc->store, cfg, value, EX_RCACHE_VALUE_MAX, err) < 0)
            ret = -1;
    }
    json_t *layers = json_object_get(root, "layers");
    for (size_t i = 0; ret == 1 && i < json_array_size(layers); i++) {
        const char *dg = json_string_value(json_object_get(json_array_get(layers, i), "digest"));
        ret =
            miss_or_error(ex_registry_fetch_blob(rc->reg, &ref, dg, rc->store, err), err, key, dg);
    }
    if (ret == 1) {
        struct kn_error *e = NULL;
        ret = value_layers_reachable(rc, value->data, value->len, &e);
        if (ret < 0) {
            kn_warn("ignoring registry cache entry %s:%s: %s", rc->repo, tag, e->msg);
            kn_err_free(e);
            ret = 0;
        }
    }
    if (ret != 1)
        kn_buf_reset(value);
    json_decref(root);
    free(mt);
    kn_buf_release(&man);
    free(tag);
    return ret < 0 ? -1 : ret;
}

/* The repository path of origin (a normalized reference) when it is on the
 * cache's registry, else NULL. Caller frees. */
static char *origin_path(const struct ex_rcache *rc, const char *origin)
{
    if (!origin)
        return NULL;
    struct ex_ref r;
    struct kn_error *e = NULL;
    if (ex_ref_parse(origin, &r, &e) < 0) {
        kn_err_free(e);
        return NULL;
    }
    char *path = strcmp(r.domain, rc->domain) == 0 ? kn_strdup(r.path) : NULL;
    ex_ref_release(&r);
    return path;
}

int ex_rcache_put(struct ex_rcache *rc, const char *key, const char *value, struct kn_error **err)
{
    char *tag = ex_rcache_tag(key);
    if (!tag)
        return kn_err_set(err, KN_E_INTERNAL, "invalid cache key '%s'", key ? key : "");
    struct ex_ref ref = cache_ref(rc, tag);
    json_error_t je;
    size_t vlen = strlen(value);
    json_t *root = vlen <= EX_RCACHE_VALUE_MAX ? json_loads(value, 0, &je) : NULL;
    json_t *layers = root ? json_object_get(root, "layers") : NULL;
    int ret = 0;
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_array(layers) || json_array_size(layers) > EX_LAYERS_MAX)
        ret = kn_err_set(err, KN_E_PARSE, "cannot export cache entry %s: not a kiln cache entry",
                         key);
    json_t *mlayers = json_array();
    for (size_t i = 0; ret == 0 && i < json_array_size(layers); i++) {
        json_t *l = json_array_get(layers, i);
        const char *dg = json_string_value(json_object_get(l, "digest"));
        const char *lmt = json_string_value(json_object_get(l, "mediaType"));
        if (!kn_digest_valid(dg) || !lmt) {
            ret = kn_err_set(err, KN_E_PARSE,
                             "cannot export cache entry %s: layer %zu is malformed", key, i);
            break;
        }
        if (!ex_store_has_blob(rc->store, dg)) {
            if (json_is_string(json_object_get(l, "registry")))
                continue; /* a base image's layer: reachable from its own registry */
            ret = kn_err_set(err, KN_E_NOTFOUND,
                             "cannot export cache entry %s: layer %s is not in the store", key, dg);
            break;
        }
        int64_t size = ex_store_blob_size(rc->store, dg, err);
        if (size < 0) {
            ret = -1;
            break;
        }
        /* a base image's layer on the same registry: mount it, don't upload */
        char *mount_from = origin_path(rc, json_string_value(json_object_get(l, "registry")));
        ret = ex_registry_push_blob(rc->reg, &ref, dg, rc->store, mount_from, err);
        free(mount_from);
        json_array_append_new(mlayers, json_pack("{s:s,s:s,s:I}", "mediaType", lmt, "digest", dg,
                                                 "size", (json_int_t)size));
    }
    char cfg[KN_DIGEST_SIZE];
    if (ret == 0)
        ret = ex_store_blob_put(rc->store, value, vlen, NULL, cfg, err);
    if (ret == 0)
        ret = ex_registry_push_blob(rc->reg, &ref, cfg, rc->store, NULL, err);
    if (ret == 0) {
        json_t *m =
            json_pack("{s:i,s:s,s:s,s:{s:s,s:s,s:I},s:O,s:{s:s}}", "schemaVersion", 2, "mediaType",
                      EX_MT_OCI_MANIFEST, "artifactType", EX_RCACHE_MT, "config", "mediaType",
                      EX_RCACHE_MT, "digest", cfg, "size", (json_int_t)vlen, "layers", mlayers,
                      "annotations", EX_RCACHE_ANNOT_KEY, key);
        char *doc = m ? json_dumps(m, JSON_COMPACT) : NULL;
        json_decref(m);
        if (!doc)
            kn_die("cannot encode a cache manifest");
        char mdigest[KN_DIGEST_SIZE];
        ret = ex_registry_push_manifest(rc->reg, &ref, EX_MT_OCI_MANIFEST, doc, strlen(doc),
                                        mdigest, err);
        free(doc);
    }
    if (ret < 0 && *err && !strstr((*err)->msg, "cannot export cache entry"))
        kn_err_wrap(err, "cannot export cache entry to %s:%s", rc->repo, tag);
    json_decref(mlayers);
    json_decref(root);
    free(tag);
    return ret < 0 ? -1 : 0;
}
