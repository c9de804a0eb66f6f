/*
 * The registry build cache against the fixture's plain registry: an entry
 * written from one store is read back into another, empty, store (value
 * bytes and layer blobs equal); the manifest is a kiln cache artifact
 * tagged by the key; absent entries, other images under the tag and entries
 * whose blobs were deleted are misses; bad repositories, bad keys and values
 * are errors with their exact messages. Skips (77) without
 * KILN_FIXTURE_STATE.
 */
#include "exec/image/image.h"
#include "exec/rcache/rcache.h"
#include "tap.h"

#include <curl/curl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <time.h>

static char tmp[4096];
static const char *REG;
static int store_n;

static struct ex_store *new_store(void)
{
    char root[4200];
    snprintf(root, sizeof(root), "%s/store%d", tmp, store_n++);
    struct kn_error *err = NULL;
    struct ex_store *s = ex_store_open(root, &err);
    if (!s) {
        printf("# cannot open a store: %s\n", err ? err->msg : "?");
        exit(1);
    }
    return s;
}

static const char *msg(const struct kn_error *e)
{
    return e ? e->msg : "(no error)";
}

/* DELETE /v2/REPO/blobs/DIGEST on the plain registry (delete is enabled) */
static long delete_blob(const char *repo_path, const char *digest)
{
    char url[1024];
    snprintf(url, sizeof(url), "http://%s/v2/%s/blobs/%s", REG, repo_path, digest);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    return code;
}

/* a value as exec/ops writes it: a base layer with a registry origin (not
 * in the store) and one built layer (in the store) */
static char *make_value(struct ex_store *s, const char *content, char digest[KN_DIGEST_SIZE])
{
    struct kn_error *err = NULL;
    if (ex_store_blob_put(s, content, strlen(content), NULL, digest, &err) < 0) {
        printf("# blob put: %s\n", msg(err));
        exit(1);
    }
    char diff[KN_DIGEST_SIZE];
    kn_sha256_digest("diff", 4, diff);
    return kn_asprintf(
        "{\"baseConfig\":\"{}\",\"layers\":["
        "{\"diffID\":\"%s\",\"digest\":\"sha256:%064d\",\"mediaType\":\"%s\","
        "\"registry\":\"%s/kiln/base:latest\",\"size\":1},"
        "{\"diffID\":\"%s\",\"digest\":\"%s\",\"mediaType\":\"%s\",\"size\":%zu}],\"version\":1}",
        diff, 7, EX_MT_OCI_LAYER_GZIP, REG, diff, digest, EX_MT_OCI_LAYER_GZIP, strlen(content));
}

static void test_tag(void)
{
    char key[KN_DIGEST_SIZE];
    kn_sha256_digest("k", 1, key);
    char *t = ex_rcache_tag(key);
    ok(t && strlen(t) == 71 && strncmp(t, "sha256-", 7) == 0 && strcmp(t + 7, key + 7) == 0,
       "the tag of a key is sha256-<hex> (%s)", t ? t : "(null)");
    free(t);
    ok(ex_rcache_tag("sha256:xyz") == NULL, "an invalid key has no tag");
    ok(ex_rcache_tag(NULL) == NULL, "no key, no tag");
}

static void test_open_errors(struct ex_registry *reg, struct ex_store *s)
{
    struct kn_error *err = NULL;
    char ref[512];
    snprintf(ref, sizeof(ref), "%s/cache/x:v1", REG);
    ok(!ex_rcache_open(reg, ref, s, &err) && err && err->code == KN_E_USAGE, "a tag is refused");
    char want[1024];
    snprintf(want, sizeof(want),
             "invalid cache repository '%s': give a repository without a tag or digest (each "
             "cache entry gets its own tag)",
             ref);
    is_str(msg(err), want, "the message says why");
    kn_err_free(err);
    err = NULL;
    ok(!ex_rcache_open(reg, "", s, &err) && err && err->code == KN_E_USAGE, "an empty ref");
    is_str(msg(err), "the registry cache needs a repository (ref=REPO)", "its message");
    kn_err_free(err);
    err = NULL;
    ok(!ex_rcache_open(reg, "Bad Name!", s, &err) && err && err->code == KN_E_USAGE,
       "a malformed ref is a usage error");
    ok(err && strstr(err->msg, "invalid cache repository 'Bad Name!'"), "naming it: %s", msg(err));
    kn_err_free(err);
}

static void test_roundtrip(struct ex_registry *reg)
{
    struct ex_store *a = new_store(), *b = new_store(), *c = new_store();
    char repo[256];
    snprintf(repo, sizeof(repo), "%s/test/rcache-%d-%ld", REG, (int)getpid(), (long)time(NULL));
    const char *repo_path = strchr(repo, '/') + 1;
    struct kn_error *err = NULL;
    struct ex_rcache *ra = ex_rcache_open(reg, repo, a, &err);
    ok(ra != NULL, "open %s: %s", repo, msg(err));
    if (!ra)
        return;
    is_str(ex_rcache_repo(ra), repo, "the normalized repository");

    char key[KN_DIGEST_SIZE], other[KN_DIGEST_SIZE], layer[KN_DIGEST_SIZE];
    kn_sha256_digest("step one", 8, key);
    kn_sha256_digest("step two", 8, other);
    char *value = make_value(a, "the bytes of a built layer", layer);
    ok(ex_rcache_put(ra, key, value, &err) == 0, "put: %s", msg(err));

    /* the manifest is a kiln cache artifact under the key's tag */
    char *tag = ex_rcache_tag(key);
    struct ex_ref ref = {.domain = (char *)REG, .path = (char *)repo_path, .tag = tag};
    struct kn_buf man = KN_BUF_INIT;
    char mdigest[KN_DIGEST_SIZE];
    char *mt = NULL;
    ok(ex_registry_get_manifest(reg, &ref, &man, &mt, mdigest, &err) == 0, "the manifest is at %s",
       tag);
    json_t *m = json_loadb(man.data ? man.data : "", man.len, 0, NULL);
    is_str(json_string_value(json_object_get(m, "artifactType")), EX_RCACHE_MT, "artifactType");
    json_t *cfg = json_object_get(m, "config");
    is_str(json_string_value(json_object_get(cfg, "mediaType")), EX_RCACHE_MT,
           "the config media type");
    is_int(json_integer_value(json_object_get(cfg, "size")), strlen(value),
           "the config is the value");
    json_t *layers = json_object_get(m, "layers");
    is_int(json_array_size(layers), 1, "one layer: the base's stays with its registry");
    is_str(json_string_value(json_object_get(json_array_get(layers, 0), "digest")), layer,
           "the built layer");
    is_str(
        json_string_value(json_object_get(json_object_get(m, "annotations"), EX_RCACHE_ANNOT_KEY)),
        key, "the key annotation");
    json_decref(m);
    free(mt);
    kn_buf_release(&man);

    /* another machine: an empty store */
    struct ex_rcache *rb = ex_rcache_open(reg, repo, b, &err);
    struct kn_buf v = KN_BUF_INIT;
    ok(!ex_store_has_blob(b, layer), "store b starts without the layer");
    is_int(ex_rcache_get(rb, key, &v, &err), 1, "get in an empty store hits: %s", msg(err));
    is_str(v.data, value, "the value comes back byte for byte");
    ok(ex_store_has_blob(b, layer), "the layer blob is in store b now");
    struct kn_buf blob = KN_BUF_INIT;
    ok(ex_store_blob_read(b, layer, &blob, 1024, &err) == 0 && blob.len == 26 &&
           memcmp(blob.data, "the bytes of a built layer", 26) == 0,
       "with the same bytes");
    kn_buf_release(&blob);

    is_int(ex_rcache_get(rb, other, &v, &err), 0, "an absent key is a miss");
    ok(err == NULL && v.len == 0, "with no error and an empty value");

    /* an image that is not a cache entry under a key's tag: a miss */
    char imgref[512];
    snprintf(imgref, sizeof(imgref), "%s/kiln/base:latest", REG);
    struct ex_ref base;
    ex_ref_parse(imgref, &base, &err);
    struct kn_buf bm = KN_BUF_INIT;
    char *bmt = NULL;
    char bd[KN_DIGEST_SIZE];
    ex_registry_get_manifest(reg, &base, &bm, &bmt, bd, &err);
    char *otag = ex_rcache_tag(other);
    struct ex_ref oref = {.domain = (char *)REG, .path = (char *)repo_path, .tag = otag};
    struct ex_image_manifest im = {0};
    ok(ex_registry_pull(reg, &base, NULL, a, &im, &err) == 0, "pull the base into store a");
    ok(ex_registry_push_blob(reg, &oref, im.config.digest, a, NULL, &err) == 0 &&
           ex_registry_push_blob(reg, &oref, im.layers[0].digest, a, NULL, &err) == 0 &&
           ex_registry_push_manifest(reg, &oref, bmt, bm.data, bm.len, bd, &err) == 0,
       "an image pushed under the other key's tag: %s", msg(err));
    is_int(ex_rcache_get(rb, other, &v, &err), 0, "someone else's image is a miss: %s", msg(err));

    /* a base layer that is in the store and on the same registry is
     * mounted into the cache repository and listed in the entry */
    char key3[KN_DIGEST_SIZE], diff3[KN_DIGEST_SIZE];
    kn_sha256_digest("step three", 10, key3);
    kn_sha256_digest("diff3", 5, diff3);
    char *v3 = kn_asprintf("{\"layers\":[{\"diffID\":\"%s\",\"digest\":\"%s\",\"mediaType\":"
                           "\"%s\",\"registry\":\"%s\",\"size\":%llu}],\"version\":1}",
                           diff3, im.layers[0].digest, im.layers[0].media_type, imgref,
                           (unsigned long long)im.layers[0].size);
    ok(ex_rcache_put(ra, key3, v3, &err) == 0, "put an entry with a base layer: %s", msg(err));
    struct ex_store *d = new_store();
    struct ex_rcache *rd = ex_rcache_open(reg, repo, d, &err);
    is_int(ex_rcache_get(rd, key3, &v, &err), 1, "get it in another empty store: %s", msg(err));
    ok(ex_store_has_blob(d, im.layers[0].digest), "the base layer came with it");
    is_str(v.data, v3, "the value");
    ex_rcache_close(rd);
    ex_store_close(d);
    free(v3);
    ex_image_manifest_release(&im);
    ex_ref_release(&base);
    free(bmt);
    kn_buf_release(&bm);
    free(otag);

    /* blobs gone from the registry: a miss for a fresh store, not an error */
    is_int(delete_blob(repo_path, layer), 202, "delete the layer blob from the registry");
    struct ex_rcache *rcc = ex_rcache_open(reg, repo, c, &err);
    is_int(ex_rcache_get(rcc, key, &v, &err), 0, "an entry whose layer is gone is a miss: %s",
           msg(err));
    ok(err == NULL && v.len == 0 && !ex_store_has_blob(c, layer), "nothing half-fetched");

    /* writing it again repairs it */
    ok(ex_rcache_put(ra, key, value, &err) == 0, "put again: %s", msg(err));
    is_int(ex_rcache_get(rcc, key, &v, &err), 1, "hit after the repair: %s", msg(err));

    /* bad values and keys */
    ok(ex_rcache_put(ra, key, "{\"version\":2}", &err) < 0 && err && err->code == KN_E_PARSE,
       "a value that is not an entry is refused");
    char want[512];
    snprintf(want, sizeof(want), "cannot export cache entry %s: not a kiln cache entry", key);
    is_str(msg(err), want, "its message");
    kn_err_free(err);
    err = NULL;
    char missing[KN_DIGEST_SIZE];
    kn_sha256_digest("never stored", 12, missing);
    char *bad =
        kn_asprintf("{\"layers\":[{\"diffID\":\"%s\",\"digest\":\"%s\",\"mediaType\":\"%s\","
                    "\"size\":3}],\"version\":1}",
                    missing, missing, EX_MT_OCI_LAYER_GZIP);
    ok(ex_rcache_put(ra, key, bad, &err) < 0 && err && err->code == KN_E_NOTFOUND,
       "a layer neither stored nor in a registry is refused");
    snprintf(want, sizeof(want), "cannot export cache entry %s: layer %s is not in the store", key,
             missing);
    is_str(msg(err), want, "its message");
    kn_err_free(err);
    err = NULL;
    free(bad);
    ok(ex_rcache_get(ra, "sha256:nope", &v, &err) < 0 && err && err->code == KN_E_INTERNAL,
       "get with an invalid key is a bug");
    is_str(msg(err), "invalid cache key 'sha256:nope'", "its message");
    kn_err_free(err);

    kn_buf_release(&v);
    free(tag);
    free(value);
    ex_rcache_close(ra);
    ex_rcache_close(rb);
    ex_rcache_close(rcc);
    ex_store_close(a);
    ex_store_close(b);
    ex_store_close(c);
}

int main(void)
{
    tap_fixture_env();
    REG = getenv("KILN_TEST_REGISTRY");
    if (!REG || !*REG)
        tap_skip_all("the fixture has no KILN_TEST_REGISTRY");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(tmp, sizeof(tmp), "%s", tap_tmpdir());
    char home[4200];
    snprintf(home, sizeof(home), "%s/home", tmp);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    unsetenv("DOCKER_CONFIG");
    unsetenv("REGISTRY_AUTH_FILE");
    struct kn_error *err = NULL;
    struct ex_registry_opts o = {.max_parallel = 2};
    struct ex_registry *reg = ex_registry_new(&o, &err);
    if (!reg) {
        printf("# ex_registry_new: %s\n", msg(err));
        return 1;
    }
    struct ex_store *s = new_store();
    test_tag();
    test_open_errors(reg, s);
    test_roundtrip(reg);
    ex_store_close(s);
    ex_registry_free(reg);
    curl_global_cleanup();
    return tap_done();
}
