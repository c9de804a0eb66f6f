/*
 * Unit tests for exec/image's documents: OCI manifests (build, parse,
 * validation errors with their exact messages), docker schema 2 -> OCI
 * conversion, indexes and platform selection, image configs (validation,
 * the builder kiln build uses, SOURCE_DATE_EPOCH), OCI layout references,
 * and the JSON kiln inspect prints.
 */
#include "tap.h"

#include "exec/image/internal.h"

#include <stdlib.h>
#include <string.h>

#define D(c)                                                                                       \
    "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
        c c c c c c c c c c c c c c c c c c c c c c

static const char *D1 = D("1"), *D2 = D("2"), *D3 = D("3");

/* The message of the error a call produced (and frees it); "(none)" if none. */
static char msgbuf[1024];
static const char *msg_of(struct kn_error **e)
{
    snprintf(msgbuf, sizeof(msgbuf), "%s", *e ? (*e)->msg : "(none)");
    kn_err_free(*e);
    *e = NULL;
    return msgbuf;
}

static void desc(struct ex_descriptor *d, const char *mt, const char *digest, uint64_t size)
{
    d->media_type = (char *)mt;
    snprintf(d->digest, sizeof(d->digest), "%s", digest);
    d->size = size;
}

static void test_manifest_build_roundtrip(void)
{
    struct ex_descriptor cfg, layers[2];
    desc(&cfg, EX_MT_OCI_CONFIG, D1, 7);
    desc(&layers[0], EX_MT_OCI_LAYER_GZIP, D2, 100);
    desc(&layers[1], EX_MT_OCI_LAYER_ZSTD, D3, 200);
    struct kn_buf b = KN_BUF_INIT;
    ex_manifest_build(&cfg, layers, 2, &b);
    char *want = kn_asprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\",\"digest\":"
        "\"%s\",\"size\":7},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":100},{"
        "\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":200}]}",
        EX_MT_OCI_MANIFEST, EX_MT_OCI_CONFIG, D1, EX_MT_OCI_LAYER_GZIP, D2, EX_MT_OCI_LAYER_ZSTD,
        D3);
    is_str(b.data, want, "manifest serialization is compact with a fixed key order");
    struct ex_manifest m;
    struct kn_error *e = NULL;
    is_int(ex_manifest_decode(b.data, b.len, NULL, &m, &e), 0, "built manifest parses");
    is_str(m.media_type, EX_MT_OCI_MANIFEST, "media type");
    is_str(m.config.digest, D1, "config digest");
    is_int(m.config.size, 7, "config size");
    is_int(m.nlayers, 2, "two layers");
    is_str(m.layers[1].media_type, EX_MT_OCI_LAYER_ZSTD, "layer media type");
    is_int(m.layers[1].size, 200, "layer size");
    ex_manifest_release(&m);
    free(want);
    kn_buf_release(&b);
}

static const char *decode_err(const char *json, const char *mt)
{
    struct ex_manifest m;
    struct kn_error *e = NULL;
    if (ex_manifest_decode(json, strlen(json), mt, &m, &e) == 0) {
        ex_manifest_release(&m);
        return "(accepted)";
    }
    return msg_of(&e);
}

static void test_manifest_errors(void)
{
    char *cfg =
        kn_asprintf("{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":2}", EX_MT_OCI_CONFIG, D1);
    char *j;
    is_str(decode_err("{\"layers\":[]}", NULL), "invalid manifest: schemaVersion: missing",
           "missing schemaVersion");
    is_str(decode_err("{\"schemaVersion\":1}", NULL),
           "invalid manifest: schemaVersion: unsupported (want 2)", "schema 1 refused");
    is_str(decode_err("[1]", NULL), "invalid manifest: not a JSON object", "not an object");
    const char *m = decode_err("{\"schemaVersion\":", NULL);
    ok(kn_str_startswith(m, "invalid manifest: "), "malformed JSON: %s", m);
    is_str(decode_err("{\"schemaVersion\":2,\"layers\":[]}", NULL),
           "invalid manifest: config: not an object", "missing config");
    j = kn_asprintf("{\"schemaVersion\":2,\"config\":%s}", cfg);
    is_str(decode_err(j, NULL), "invalid manifest: layers: missing", "missing layers");
    free(j);
    j = kn_asprintf("{\"schemaVersion\":2,\"config\":%s,\"layers\":[%s,{\"mediaType\":\"x\","
                    "\"digest\":\"sha256:xyz\",\"size\":1}]}",
                    cfg, cfg);
    is_str(decode_err(j, NULL), "invalid manifest: layers[1].digest: bad digest 'sha256:xyz'",
           "bad layer digest");
    free(j);
    j = kn_asprintf("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
                    "\"size\":-1},\"layers\":[]}",
                    EX_MT_OCI_CONFIG, D1);
    is_str(decode_err(j, NULL), "invalid manifest: config.size: not a non-negative integer",
           "negative size");
    free(j);
    j = kn_asprintf("{\"schemaVersion\":2,\"config\":{\"digest\":\"%s\",\"size\":1},\"layers\":[]}",
                    D1);
    is_str(decode_err(j, NULL), "invalid manifest: config.mediaType: missing",
           "descriptor without media type");
    free(j);
    j = kn_asprintf("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
                    "\"size\":99999999999},\"layers\":[]}",
                    EX_MT_OCI_CONFIG, D1);
    is_str(decode_err(j, NULL), "invalid manifest: config.size: 99999999999 bytes exceeds 8388608",
           "config size cap");
    free(j);
    j = kn_asprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[]}",
                    EX_MT_DOCKER_MANIFEST, cfg);
    is_str(
        decode_err(j, NULL),
        "invalid manifest: config.mediaType: unexpected 'application/vnd.oci.image.config.v1+json'",
        "docker manifest with an OCI config type");
    is_str(
        decode_err(j, EX_MT_OCI_MANIFEST),
        "invalid manifest: mediaType 'application/vnd.docker.distribution.manifest.v2+json' does "
        "not match 'application/vnd.oci.image.manifest.v1+json'",
        "content type and mediaType disagree");
    free(j);
    is_str(
        decode_err("{}", EX_MT_OCI_INDEX),
        "invalid manifest: 'application/vnd.oci.image.index.v1+json' is an index, not a manifest",
        "an index is not a manifest");
    j = kn_asprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[]}",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws", cfg);
    is_str(decode_err(j, NULL),
           "invalid manifest: unsupported media type "
           "'application/vnd.docker.distribution.manifest.v1+prettyjws'",
           "schema 1 media type refused");
    free(j);
    /* too many layers */
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_addf(&b, "{\"schemaVersion\":2,\"config\":%s,\"layers\":[", cfg);
    for (int i = 0; i < 1001; i++)
        kn_buf_addf(&b, "%s%s", i ? "," : "", cfg);
    kn_buf_adds(&b, "]}");
    is_str(decode_err(b.data, NULL), "invalid manifest: 1001 layers exceed the limit of 1000",
           "layer count cap");
    kn_buf_release(&b);
    /* size cap before parsing */
    size_t big = EX_MANIFEST_MAX + 1;
    char *huge = kn_malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = 0;
    is_str(decode_err(huge, NULL), "manifest too large (4194305 bytes, limit 4194304)",
           "manifest size cap");
    free(huge);
    free(cfg);
}

static void test_docker_to_oci(void)
{
    char *docker = kn_asprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\",\"size\":3,"
        "\"digest\":\"%s\"},\"layers\":[{\"mediaType\":\"%s\",\"size\":10,\"digest\":\"%s\"},{"
        "\"mediaType\":\"%s\",\"size\":20,\"digest\":\"%s\",\"urls\":[\"https://x/y\"]}]}",
        EX_MT_DOCKER_MANIFEST, EX_MT_DOCKER_CONFIG, D1, EX_MT_DOCKER_LAYER_GZIP, D2,
        EX_MT_DOCKER_FOREIGN_LAYER, D3);
    struct kn_buf out = KN_BUF_INIT;
    struct kn_error *e = NULL;
    is_int(ex_manifest_to_oci(docker, strlen(docker), &out, &e), 0, "docker manifest converts");
    char *want = kn_asprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\",\"size\":3,"
        "\"digest\":\"%s\"},\"layers\":[{\"mediaType\":\"%s\",\"size\":10,\"digest\":\"%s\"},{"
        "\"mediaType\":\"%s\",\"size\":20,\"digest\":\"%s\",\"urls\":[\"https://x/y\"]}]}",
        EX_MT_OCI_MANIFEST, EX_MT_OCI_CONFIG, D1, EX_MT_OCI_LAYER_GZIP, D2,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", D3);
    is_str(out.data, want, "media types mapped, digests, sizes, urls and key order kept");
    free(want);
    kn_buf_reset(&out);
    const char *oci = "{ \"schemaVersion\": 2, \"config\": {\"mediaType\": \"x\", \"digest\": "
                      "\"" D("4") "\", \"size\": 1}, \"layers\": [] }";
    is_int(ex_manifest_to_oci(oci, strlen(oci), &out, &e), 0, "OCI manifest passes");
    is_str(out.data, oci, "an OCI manifest is copied byte for byte");
    kn_buf_release(&out);
    free(docker);
    is_str(ex_media_type_to_oci(EX_MT_DOCKER_LIST), EX_MT_OCI_INDEX, "list -> index");
    is_str(ex_media_type_to_oci(EX_MT_DOCKER_LAYER), EX_MT_OCI_LAYER, "docker tar -> oci tar");
    is_str(ex_media_type_to_oci("text/plain"), "text/plain", "others unchanged");
}

static const char *INDEX =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":["
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D(
        "1") "\",\"size\":10,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
             "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D(
                 "2") "\",\"size\":11,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\","
                      "\"variant\":\"v8\"}},"
                      "{\"mediaType\":\"application/"
                      "vnd.oci.image.manifest.v1+json\",\"digest\":\"" D(
                          "3") "\",\"size\":12,\"platform\":{\"architecture\":\"unknown\",\"os\":"
                               "\"unknown\"},"
                               "\"annotations\":{\"vnd.docker.reference.type\":\"attestation-"
                               "manifest\"}}]}";

static void test_index(void)
{
    struct ex_index ix;
    struct kn_error *e = NULL;
    is_int(ex_index_decode(INDEX, strlen(INDEX), NULL, &ix, &e), 0, "index parses");
    is_int(ix.nmanifests, 3, "three entries");
    is_str(ix.manifests[1].platform.variant, "v8", "variant read");
    struct ir_platform p;
    ex_platform_parse("linux/arm64", &p, &e);
    is_int(ex_index_select(&ix, &p, &e), 1, "linux/arm64 selects the arm64 entry");
    ex_platform_clear(&p);
    ex_platform_parse("linux/arm64/v8", &p, &e);
    is_int(ex_index_select(&ix, &p, &e), 1, "linux/arm64/v8 too");
    ex_platform_clear(&p);
    ex_platform_parse("linux/amd64", &p, &e);
    is_int(ex_index_select(&ix, &p, &e), 0, "linux/amd64 selects the first");
    ex_platform_clear(&p);
    ex_platform_parse("linux/s390x", &p, &e);
    is_int(ex_index_select(&ix, &p, &e), -1, "no s390x");
    ok(e && e->code == KN_E_NOTFOUND, "not found error");
    is_str(msg_of(&e),
           "no image for platform 'linux/s390x' in the index (it has: linux/amd64, linux/arm64/v8)",
           "the error lists the platforms, not the attestation");
    ex_platform_clear(&p);
    ex_platform_parse("unknown/unknown", &p, &e);
    is_int(ex_index_select(&ix, &p, &e), -1, "attestations are never selected");
    kn_err_free(e);
    e = NULL;
    ex_platform_clear(&p);
    ex_index_release(&ix);

    const char *layout =
        "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" EX_MT_OCI_MANIFEST
        "\",\"digest\":\"" D("5") "\",\"size\":3,\"annotations\":{\"" EX_ANNOT_REF_NAME
                                  "\":\"base\"}}]}";
    is_int(ex_index_decode(layout, strlen(layout), NULL, &ix, &e), 0,
           "index.json without mediaType parses");
    is_str(ix.media_type, EX_MT_OCI_INDEX, "defaults to the OCI index type");
    is_str(ix.manifests[0].ref_name, "base", "ref name annotation");
    is_int(ex_index_select(&ix, NULL, &e), 0, "the only untyped entry is selected");
    ex_index_release(&ix);

    const char *bad = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" D(
        "5") "\",\"size\":3,\"platform\":{\"os\":\"linux\"}}]}";
    is_int(ex_index_decode(bad, strlen(bad), NULL, &ix, &e), -1, "platform without arch");
    is_str(msg_of(&e), "invalid index: manifests[0].platform: needs os and architecture strings",
           "platform error message");
    is_int(ex_index_decode("{\"schemaVersion\":2}", 19, NULL, &ix, &e), -1, "no manifests");
    is_str(msg_of(&e), "invalid index: manifests: missing", "missing manifests message");
    is_int(ex_index_decode("{}", 2, EX_MT_DOCKER_MANIFEST, &ix, &e), -1, "manifest type");
    is_str(msg_of(&e),
           "invalid index: 'application/vnd.docker.distribution.manifest.v2+json' is a manifest, "
           "not an index",
           "a manifest is not an index");

    is_str(ex_media_type_sniff(INDEX, strlen(INDEX)), EX_MT_OCI_INDEX, "sniff index");
    is_str(ex_media_type_sniff(layout, strlen(layout)), EX_MT_OCI_INDEX, "sniff untyped index");
    ok(ex_media_type_sniff("nope", 4) == NULL, "sniff garbage");
}

static void test_platform(void)
{
    struct ir_platform p;
    struct kn_error *e = NULL;
    is_int(ex_platform_parse("linux/arm/v7", &p, &e), 0, "os/arch/variant");
    is_str(p.os, "linux", "os");
    is_str(p.arch, "arm", "arch");
    is_str(p.variant, "v7", "variant");
    char *s = ex_platform_format(&p);
    is_str(s, "linux/arm/v7", "format");
    free(s);
    ex_platform_clear(&p);
    is_int(ex_platform_parse("linux", &p, &e), -1, "no arch");
    is_str(msg_of(&e), "invalid platform 'linux' (want os/arch[/variant])", "message");
    is_int(ex_platform_parse("linux/amd64/v2/x", &p, &e), -1, "four parts");
    is_str(msg_of(&e), "invalid platform 'linux/amd64/v2/x' (want os/arch[/variant])", "message");
    is_int(ex_platform_parse("linux//v7", &p, &e), -1, "empty part");
    kn_err_free(e);
    e = NULL;
    ex_platform_default(&p);
    is_str(p.os, "linux", "default os is linux");
    ok(p.arch && *p.arch, "default arch set: %s", p.arch);
    ex_platform_clear(&p);
}

static const char *validate_err(const char *json)
{
    struct kn_error *e = NULL;
    if (ex_config_validate(json, strlen(json), true, &e) == 0)
        return "(accepted)";
    return msg_of(&e);
}

static void test_config(void)
{
    is_str(validate_err("{\"os\":\"linux\"}"), "invalid image config: architecture: missing",
           "missing architecture");
    is_str(validate_err("{\"os\":\"linux\",\"architecture\":1}"),
           "invalid image config: architecture: not a string", "architecture type");
    is_str(validate_err("{\"os\":\"linux\",\"architecture\":\"amd64\"}"),
           "invalid image config: rootfs: missing", "rootfs required");
    is_str(validate_err("{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{\"type\":\"x\","
                        "\"diff_ids\":[]}}"),
           "invalid image config: rootfs.type: want \"layers\"", "rootfs type");
    is_str(validate_err("{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{\"type\":"
                        "\"layers\",\"diff_ids\":[\"sha256:00\"]}}"),
           "invalid image config: rootfs.diff_ids[0]: bad digest 'sha256:00'", "diff id");
    is_str(validate_err("{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{\"type\":"
                        "\"layers\",\"diff_ids\":[]},\"history\":[{\"empty_layer\":\"yes\"}]}"),
           "invalid image config: history[0]: malformed", "history entry");
    is_str(validate_err("{\"os\":\"linux\",\"architecture\":\"amd64\",\"rootfs\":{\"type\":"
                        "\"layers\",\"diff_ids\":[]},\"history\":[{\"created_by\":3}]}"),
           "invalid image config: history[0].created_by: not a string", "history field type");

    /* the builder: frontend config + base + two instructions */
    const char *fe = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"A=1\"]}}";
    char *base = kn_asprintf(
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
        "\"diff_ids\":[\"%s\"]},\"history\":[{\"created\":\"2024-01-01T00:00:00Z\",\"created_by\":"
        "\"base\"}]}",
        D1);
    struct kn_error *e = NULL;
    struct ex_config *c = ex_config_parse(fe, strlen(fe), &e);
    ok(c != NULL, "frontend config parses");
    is_int(ex_config_set_base(c, base, strlen(base), &e), 0, "base applied");
    is_int(ex_config_ndiff_ids(c), 1, "one diff_id from the base");
    ex_config_add_history(c, D2, "RUN make", NULL, 1704067200);
    ex_config_add_history(c, NULL, "ENV B=2", "kiln", 1704067201);
    ex_config_set_created(c, 1704067202);
    is_int(ex_config_ndiff_ids(c), 2, "two diff_ids");
    struct kn_buf b = KN_BUF_INIT;
    ex_config_serialize(c, &b);
    char *want = kn_asprintf(
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"A=1\"]},\"rootfs\":{"
        "\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]},\"history\":[{\"created\":\"2024-01-"
        "01T00:00:00Z\",\"created_by\":\"base\"},{\"created\":\"2024-01-01T00:00:00Z\","
        "\"created_by\":\"RUN make\"},{\"created\":\"2024-01-01T00:00:01Z\",\"created_by\":\"ENV "
        "B=2\",\"comment\":\"kiln\",\"empty_layer\":true}],\"created\":\"2024-01-01T00:00:02Z\"}",
        D1, D2);
    is_str(b.data, want, "serialized config");
    is_int(ex_config_validate(b.data, b.len, true, &e), 0, "the result validates");
    free(want);
    kn_buf_release(&b);
    is_int(ex_config_set_base(c, NULL, 0, &e), 0, "scratch base");
    is_int(ex_config_ndiff_ids(c), 0, "scratch has no diff_ids");
    is_int(ex_config_set_base(c, "{\"os\":\"linux\"}", 14, &e), -1, "bad base");
    is_str(msg_of(&e), "base image: invalid image config: architecture: missing", "wrapped error");
    ex_config_free(c);
    free(base);

    /* timestamps */
    unsetenv("SOURCE_DATE_EPOCH");
    is_int(ex_image_created(42), 42, "explicit epoch wins");
    setenv("SOURCE_DATE_EPOCH", "1704067200", 1);
    is_int(ex_image_created(-1), 1704067200, "SOURCE_DATE_EPOCH honored");
    setenv("SOURCE_DATE_EPOCH", "bogus", 1);
    ok(ex_image_created(-1) > 1704067200, "a bad SOURCE_DATE_EPOCH means now");
    int64_t t = 7;
    ok(!ex_image_epoch(-1, &t) && t == 7, "a bad SOURCE_DATE_EPOCH fixes no date");
    unsetenv("SOURCE_DATE_EPOCH");
    ok(!ex_image_epoch(-1, &t), "no epoch");
    ok(ex_image_epoch(0, &t) && t == 0, "epoch 0 is an epoch");
    char ts[32];
    ex_time_format(0, ts);
    is_str(ts, "1970-01-01T00:00:00Z", "epoch formats as RFC 3339");
}

static void test_image_build(void)
{
    const char *cfg = "{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\","
                      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D("7") "\"]}}";
    char cd[KN_DIGEST_SIZE];
    kn_sha256_digest(cfg, strlen(cfg), cd);
    struct ex_descriptor c, l[2];
    desc(&c, EX_MT_OCI_CONFIG, cd, strlen(cfg));
    desc(&l[0], EX_MT_OCI_LAYER_GZIP, D2, 5);
    desc(&l[1], EX_MT_OCI_LAYER_GZIP, D3, 6);
    struct kn_buf m = KN_BUF_INIT;
    ex_manifest_build(&c, l, 1, &m);
    struct ex_image img;
    struct kn_error *e = NULL;
    is_int(exi_image_build(m.data, m.len, NULL, cfg, strlen(cfg), &img, &e), 0, "image builds");
    char md[KN_DIGEST_SIZE];
    kn_sha256_digest(m.data, m.len, md);
    is_str(img.manifest.digest, md, "manifest digest is the sha256 of its bytes");
    is_int(img.manifest.size, m.len, "manifest size");
    is_str(img.diff_ids[0], D("7"), "diff_id from the config");
    is_str(img.platform.arch, "arm64", "platform from the config");
    is_str(img.platform.variant, "v8", "variant from the config");

    struct kn_buf out = KN_BUF_INIT;
    is_int(ex_image_inspect_json("x", md, EX_MT_OCI_MANIFEST, m.data, m.len, &img, &out, &e), 0,
           "inspect json");
    ok(strstr(out.data, "\"name\": \"x\"") && strstr(out.data, "\"config\": {") &&
           strstr(out.data, "\"manifest\": {") && !strstr(out.data, "platforms"),
       "inspect has name, manifest, config and no platforms");
    kn_buf_reset(&out);
    is_int(ex_image_inspect_json("y", D1, EX_MT_OCI_INDEX, INDEX, strlen(INDEX), NULL, &out, &e), 0,
           "inspect json of an index");
    ok(strstr(out.data, "\"platforms\": [\n    \"linux/amd64\",\n    \"linux/arm64/v8\",\n    "
                        "\"unknown/unknown\"\n  ]") != NULL,
       "platforms listed");
    kn_buf_release(&out);
    ex_image_release(&img);

    kn_buf_reset(&m);
    ex_manifest_build(&c, l, 2, &m);
    is_int(exi_image_build(m.data, m.len, NULL, cfg, strlen(cfg), &img, &e), -1,
           "layer count must match");
    is_str(msg_of(&e), "invalid image: the manifest has 2 layers but the config 1 diff_ids",
           "count mismatch message");
    is_int(exi_image_build(m.data, m.len, NULL, "{}", 2, &img, &e), -1, "config digest checked");
    const char *msg = msg_of(&e);
    ok(kn_str_startswith(msg, "config blob does not match its descriptor sha256:"),
       "digest mismatch message: %s", msg);
    kn_buf_release(&m);
}

static void test_ref_split(void)
{
    char *p, *t;
    struct kn_error *e = NULL;
    is_int(ex_oci_ref_split("oci-layout:///a/b:base", &p, &t, &e), 0, "path and tag");
    is_str(p, "/a/b", "path");
    is_str(t, "base", "tag");
    free(p);
    free(t);
    is_int(ex_oci_ref_split("oci-layout://./x:1/y", &p, &t, &e), 0, "colon before a slash");
    is_str(p, "./x:1/y", "colon in a directory is part of the path");
    ok(t == NULL, "no tag");
    free(p);
    is_int(ex_oci_ref_split("dir@" D("9"), &p, &t, &e), 0, "digest");
    is_str(p, "dir", "path before @");
    is_str(t, "@" D("9"), "tag holds @digest");
    free(p);
    free(t);
    is_int(ex_oci_ref_split("oci-layout://dir:", &p, &t, &e), -1, "empty tag");
    is_str(msg_of(&e), "invalid OCI layout reference 'oci-layout://dir:': empty tag", "message");
    is_int(ex_oci_ref_split("oci-layout://", &p, &t, &e), -1, "empty path");
    is_str(msg_of(&e), "invalid OCI layout reference 'oci-layout://': no path", "message");
    is_int(ex_oci_ref_split("d@sha256:12", &p, &t, &e), -1, "bad digest");
    is_str(msg_of(&e), "invalid OCI layout reference 'd@sha256:12': bad digest", "message");
}

int main(void)
{
    test_manifest_build_roundtrip();
    test_manifest_errors();
    test_docker_to_oci();
    test_index();
    test_platform();
    test_config();
    test_image_build();
    test_ref_split();
    return tap_done();
}
