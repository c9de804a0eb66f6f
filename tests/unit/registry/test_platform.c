/*
 * Platform selection from an OCI index / docker manifest list (with the
 * arm64 -> v8 and arm -> v7 defaults, aliases, attestation entries skipped,
 * the error listing what is available), manifest classification (schema 1
 * refused) and image manifest parsing with its caps.
 */
#include "exec/registry/internal.h"
#include "tap.h"

#define DG(c)                                                                                      \
    "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
        c c c c c c c c c c c c c c c c c c c c c c

static const char *index_json =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":["
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DG(
        "1") "\",\"size\":501,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
             "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" DG(
                 "2") "\",\"size\":502,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\","
                      "\"variant\":\"v6\"}},"
                      "{\"mediaType\":\"application/"
                      "vnd.oci.image.manifest.v1+json\",\"digest\":\"" DG(
                          "3") "\",\"size\":503,\"platform\":{\"os\":\"linux\",\"architecture\":"
                               "\"arm\",\"variant\":\"v7\"}},"
                               "{\"mediaType\":\"application/"
                               "vnd.oci.image.manifest.v1+json\",\"digest\":\"" DG(
                                   "4") "\",\"size\":504,\"platform\":{\"os\":\"linux\","
                                        "\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
                                        "{\"mediaType\":\"application/"
                                        "vnd.oci.image.manifest.v1+json\",\"digest\":\"" DG(
                                            "5") "\",\"size\":505,\"platform\":{\"os\":\"windows\","
                                                 "\"architecture\":\"amd64\","
                                                 "\"os.version\":\"10.0.17763.1\"}},"
                                                 "{\"mediaType\":\"application/"
                                                 "vnd.oci.image.manifest.v1+json\",\"digest\":"
                                                 "\"" DG("6") "\",\"size\":506,\"platform\":{"
                                                              "\"os\":\"unknown\",\"architecture\":"
                                                              "\"unknown\"}}"
                                                              "]}";

/* a docker list whose arm64 entry has no variant */
static const char *list_json =
    "{\"schemaVersion\":2,\"mediaType\":"
    "\"application/vnd.docker.distribution.manifest.list.v2+json\",\"manifests\":["
    "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" DG(
        "a") "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}},"
             "{\"mediaType\":\"application/"
             "vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" DG(
                 "b") "\",\"size\":2,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\"}},"
                      "{\"mediaType\":\"application/"
                      "vnd.docker.distribution.manifest.v2+json\",\"digest\":\"" DG(
                          "c") "\",\"size\":3,\"platform\":{\"os\":\"linux\",\"architecture\":"
                               "\"amd64\",\"variant\":\"v3\"}}"
                               "]}";

static void pick(const char *json, const char *os, const char *arch, const char *variant,
                 const char *want_digest, uint64_t want_size)
{
    struct ir_platform p = {(char *)os, (char *)arch, (char *)variant};
    struct ex_descriptor d = {0};
    struct kn_error *err = NULL;
    int rc = ex_platform_select(json, strlen(json), &p, "img", &d, &err);
    ok(rc == 0, "select %s/%s%s%s%s%s", os, arch, variant ? "/" : "", variant ? variant : "",
       err ? ": " : "", err ? err->msg : "");
    is_str(rc == 0 ? d.digest : NULL, want_digest, "  digest");
    is_int(d.size, rc == 0 ? want_size : 0, "  size");
    free(d.media_type);
    kn_err_free(err);
}

static void nopick(const char *json, const char *os, const char *arch, const char *variant,
                   const char *msg)
{
    struct ir_platform p = {(char *)os, (char *)arch, (char *)variant};
    struct ex_descriptor d = {0};
    struct kn_error *err = NULL;
    int rc = ex_platform_select(json, strlen(json), &p, "img", &d, &err);
    ok(rc < 0 && err && err->code == KN_E_NOTFOUND, "no %s/%s", os, arch);
    is_str(err ? err->msg : NULL, msg, "  message");
    kn_err_free(err);
}

static void kind(const char *ct, const char *json, int want_rc, const char *want_mt,
                 bool want_index, const char *msg)
{
    char *mt = NULL;
    bool idx = false;
    struct kn_error *err = NULL;
    int rc = ex_manifest_kind(ct, json, strlen(json), "img", &mt, &idx, &err);
    is_int(rc, want_rc, "kind of %.60s", json);
    if (want_rc == 0) {
        is_str(mt, want_mt, "  media type");
        ok(idx == want_index, "  index: %d", want_index);
    } else {
        is_str(err ? err->msg : NULL, msg, "  message");
    }
    free(mt);
    kn_err_free(err);
}

int main(void)
{
    pick(index_json, "linux", "amd64", NULL, DG("1"), 501);
    pick(index_json, "linux", "x86_64", NULL, DG("1"), 501);
    pick(index_json, "linux", "arm64", NULL, DG("4"), 504);
    pick(index_json, "linux", "aarch64", NULL, DG("4"), 504);
    pick(index_json, "linux", "arm64", "v8", DG("4"), 504);
    pick(index_json, "linux", "arm", NULL, DG("3"), 503);
    pick(index_json, "linux", "arm", "v7", DG("3"), 503);
    pick(index_json, "linux", "arm", "v6", DG("2"), 502);
    pick(index_json, "windows", "amd64", NULL, DG("5"), 505);
    pick(list_json, "linux", "arm64", "v8", DG("a"), 1);
    pick(list_json, "linux", "arm64", NULL, DG("a"), 1);
    pick(list_json, "linux", "arm", "v7", DG("b"), 2);
    pick(list_json, "linux", "amd64", NULL, DG("c"), 3);
    pick(list_json, "linux", "amd64", "v3", DG("c"), 3);
    nopick(index_json, "linux", "s390x", NULL,
           "no image for platform linux/s390x in img (available: linux/amd64, linux/arm/v6, "
           "linux/arm/v7, linux/arm64/v8, windows/amd64)");
    nopick(index_json, "linux", "arm", "v5",
           "no image for platform linux/arm/v5 in img (available: linux/amd64, linux/arm/v6, "
           "linux/arm/v7, linux/arm64/v8, windows/amd64)");
    nopick(list_json, "linux", "amd64", "v2",
           "no image for platform linux/amd64/v2 in img (available: linux/arm64, linux/arm, "
           "linux/amd64/v3)");
    nopick("{\"manifests\":[]}", "linux", "amd64", NULL,
           "no image for platform linux/amd64 in img (available: none)");
    {
        struct ex_descriptor d = {0};
        struct kn_error *err = NULL;
        int rc = ex_platform_select("{}", 2, NULL, "img", &d, &err);
        ok(rc < 0, "an index without manifests is refused");
        is_str(err ? err->msg : NULL, "malformed index of img: no \"manifests\" array",
               "  message");
        kn_err_free(err);
    }
    /* NULL = the host's platform: the index has amd64 and arm64 */
    {
        struct ex_descriptor d = {0};
        struct kn_error *err = NULL;
        int rc = ex_platform_select(index_json, strlen(index_json), NULL, "img", &d, &err);
        ok(rc == 0, "the host's platform is found");
        free(d.media_type);
        kn_err_free(err);
    }

    /* classification */
    kind(NULL, "{\"schemaVersion\":2,\"mediaType\":\"" EX_MT_OCI_INDEX "\",\"manifests\":[]}", 0,
         EX_MT_OCI_INDEX, true, NULL);
    kind(EX_MT_DOCKER_LIST, "{\"schemaVersion\":2,\"manifests\":[]}", 0, EX_MT_DOCKER_LIST, true,
         NULL);
    kind(EX_MT_DOCKER_MANIFEST "; charset=utf-8", "{\"schemaVersion\":2,\"config\":{}}", 0,
         EX_MT_DOCKER_MANIFEST, false, NULL);
    kind("application/json", "{\"schemaVersion\":2,\"config\":{},\"layers\":[]}", 0,
         EX_MT_OCI_MANIFEST, false, NULL);
    kind(NULL, "{\"schemaVersion\":2,\"manifests\":[]}", 0, EX_MT_OCI_INDEX, true, NULL);
    kind(EX_MT_DOCKER_V1_SIGNED, "{\"schemaVersion\":1,\"fsLayers\":[]}", -1, NULL, false,
         "img has a docker schema 1 manifest, which is not supported (push it again with a "
         "current client)");
    kind(NULL, "{\"schemaVersion\":1,\"name\":\"x\"}", -1, NULL, false,
         "img has a docker schema 1 manifest, which is not supported (push it again with a "
         "current client)");
    kind("text/html", "{\"schemaVersion\":2,\"mediaType\":\"application/x-weird\"}", -1, NULL,
         false, "unsupported manifest media type 'application/x-weird' for img");
    kind(NULL, "[1,2]", -1, NULL, false, "malformed manifest of img: not a JSON object");

    /* manifest parsing */
    const char *man = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"c\",\"digest\":\"" DG(
        "1") "\",\"size\":10},\"layers\":[{\"mediaType\":\"l1\",\"digest\":\"" DG("2") "\","
                                                                                       "\"size\":"
                                                                                       "20},{"
                                                                                       "\"mediaType"
                                                                                       "\":\"l2\","
                                                                                       "\"digest\":"
                                                                                       "\"" DG(
                                                                                           "3") "\""
                                                                                                ","
                                                                                                "\""
                                                                                                "si"
                                                                                                "ze"
                                                                                                "\""
                                                                                                ":3"
                                                                                                "0}"
                                                                                                "]"
                                                                                                "}";
    struct ex_image_manifest m = {0};
    struct kn_error *err = NULL;
    int rc = ex_manifest_parse(man, strlen(man), "img", &m, &err);
    ok(rc == 0, "parse an image manifest");
    is_str(m.config.digest, DG("1"), "  config digest");
    is_int(m.config.size, 10, "  config size");
    is_int(m.nlayers, 2, "  two layers");
    is_str(m.nlayers == 2 ? m.layers[1].media_type : NULL, "l2", "  second layer media type");
    is_int(m.nlayers == 2 ? m.layers[1].size : 0, 30, "  second layer size");
    ex_image_manifest_release(&m);
    const char *big = "{\"config\":{\"digest\":\"" DG("1") "\",\"size\":9000000},\"layers\":[]}";
    rc = ex_manifest_parse(big, strlen(big), "img", &m, &err);
    ok(rc < 0 && err && err->code == KN_E_UNSAFE, "an oversized config is refused");
    is_str(err ? err->msg : NULL, "config of img is too big (9000000 bytes, limit 8388608)",
           "  message");
    kn_err_free(err);
    err = NULL;
    ex_image_manifest_release(&m);
    const char *baddg = "{\"config\":{\"digest\":\"md5:abc\",\"size\":1},\"layers\":[]}";
    rc = ex_manifest_parse(baddg, strlen(baddg), "img", &m, &err);
    is_str(err ? err->msg : NULL, "malformed manifest of img: unsupported digest 'md5:abc'",
           "a bad config digest is refused");
    kn_err_free(err);
    err = NULL;
    ex_image_manifest_release(&m);
    const char *nosize = "{\"config\":{\"digest\":\"" DG("1") "\"},\"layers\":[]}";
    rc = ex_manifest_parse(nosize, strlen(nosize), "img", &m, &err);
    is_str(err ? err->msg : NULL,
           "malformed manifest of img: config descriptor needs \"digest\" and \"size\"",
           "a descriptor without a size is refused");
    kn_err_free(err);
    ex_image_manifest_release(&m);

    /* normalization and loopback */
    char *a, *v;
    ex_platform_normalize("aarch64", NULL, &a, &v);
    ok(strcmp(a, "arm64") == 0 && strcmp(v, "v8") == 0, "aarch64 -> arm64/v8");
    free(a);
    free(v);
    ex_platform_normalize("armhf", NULL, &a, &v);
    ok(strcmp(a, "arm") == 0 && strcmp(v, "v7") == 0, "armhf -> arm/v7");
    free(a);
    free(v);
    ok(ex_host_is_loopback("localhost:5000"), "localhost:5000 is loopback");
    ok(ex_host_is_loopback("127.1.2.3:80"), "127.1.2.3 is loopback");
    ok(ex_host_is_loopback("[::1]:5000"), "[::1] is loopback");
    ok(!ex_host_is_loopback("128.0.0.1"), "128.0.0.1 is not");
    ok(!ex_host_is_loopback("127.example.com"), "127.example.com is not");
    is_str(ex_domain_api_host("docker.io"), "registry-1.docker.io", "docker.io's API host");
    return tap_done();
}
