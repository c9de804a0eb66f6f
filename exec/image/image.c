/*
 * Images in memory (manifest + config + layers), built from manifests read
 * from registries or layouts or from kiln build's config and layers; the
 * docker -> OCI conversion of a whole image; the JSON kiln inspect prints;
 * --iidfile and --metadata-file; and the small atomic file helpers the
 * exporters share.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

void ex_image_release(struct ex_image *img)
{
    exi_descriptor_release(&img->manifest);
    free(img->manifest_json);
    exi_descriptor_release(&img->config);
    free(img->config_json);
    for (size_t i = 0; i < img->nlayers; i++)
        exi_descriptor_release(&img->layers[i]);
    free(img->layers);
    free(img->diff_ids);
    ex_platform_clear(&img->platform);
    free(img->name);
    memset(img, 0, sizeof(*img));
}

int exi_image_build(const char *manifest, size_t mlen, const char *media_type, const char *config,
                    size_t clen, struct ex_image *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    struct ex_manifest m;
    if (ex_manifest_decode(manifest, mlen, media_type, &m, err) < 0)
        return -1;
    char got[KN_DIGEST_SIZE];
    kn_sha256_digest(config, clen, got);
    if (strcmp(got, m.config.digest) != 0 || clen != m.config.size) {
        kn_err_set(err, KN_E_DIGEST, "config blob does not match its descriptor %s",
                   m.config.digest);
        ex_manifest_release(&m);
        return -1;
    }
    if (ex_config_validate(config, clen, true, err) < 0) {
        ex_manifest_release(&m);
        return -1;
    }
    json_t *cj = exi_json_load(config, clen, EX_CONFIG_MAX, "image config", err);
    if (!cj) {
        ex_manifest_release(&m);
        return -1;
    }
    const json_t *ids = json_object_get(json_object_get(cj, "rootfs"), "diff_ids");
    if (json_array_size(ids) != m.nlayers) {
        kn_err_set(err, KN_E_PARSE,
                   "invalid image: the manifest has %zu layers but the config %zu diff_ids",
                   m.nlayers, json_array_size(ids));
        json_decref(cj);
        ex_manifest_release(&m);
        return -1;
    }
    out->diff_ids = kn_calloc(m.nlayers ? m.nlayers : 1, sizeof(*out->diff_ids));
    for (size_t i = 0; i < m.nlayers; i++)
        snprintf(out->diff_ids[i], KN_DIGEST_SIZE, "%s", json_string_value(json_array_get(ids, i)));
    exi_platform_from_json(cj, &out->platform);
    json_decref(cj);

    out->manifest.media_type = kn_strdup(m.media_type);
    kn_sha256_digest(manifest, mlen, out->manifest.digest);
    out->manifest.size = mlen;
    out->manifest_json = kn_strndup(manifest, mlen);
    out->manifest_len = mlen;
    out->config = m.config;
    m.config.media_type = NULL;
    out->config_json = kn_strndup(config, clen);
    out->config_len = clen;
    out->layers = m.layers;
    out->nlayers = m.nlayers;
    m.layers = NULL;
    m.nlayers = 0;
    ex_manifest_release(&m);
    return 0;
}

int ex_image_from_manifest(struct ex_store *s, const char *manifest, size_t len,
                           const char *media_type, struct ex_image *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    struct ex_manifest m;
    if (ex_manifest_decode(manifest, len, media_type, &m, err) < 0)
        return -1;
    struct kn_buf cfg = KN_BUF_INIT;
    int rc = ex_store_blob_read(s, m.config.digest, &cfg, EX_CONFIG_MAX, err);
    ex_manifest_release(&m);
    if (rc == 0)
        rc =
            exi_image_build(manifest, len, media_type, cfg.data ? cfg.data : "", cfg.len, out, err);
    kn_buf_release(&cfg);
    return rc;
}

int ex_image_from_registry(struct ex_store *s, const struct ex_image_manifest *m,
                           struct ex_image *out, struct kn_error **err)
{
    int rc;
    if (m->config_json)
        rc = exi_image_build(m->manifest, m->manifest_len, m->media_type, m->config_json,
                             strlen(m->config_json), out, err);
    else
        rc = ex_image_from_manifest(s, m->manifest, m->manifest_len, m->media_type, out, err);
    if (rc < 0)
        return -1;
    memcpy(out->index_digest, m->index_digest, sizeof(out->index_digest));
    return 0;
}

int ex_image_commit(struct ex_store *s, const char *config_json, size_t config_len,
                    const struct ex_descriptor *layers, size_t nlayers, struct ex_image *out,
                    struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    struct ex_descriptor cfg = {.media_type = EX_MT_OCI_CONFIG, .size = config_len};
    if (ex_store_blob_put(s, config_json, config_len, NULL, cfg.digest, err) < 0)
        return kn_err_wrap(err, "cannot store the image config");
    struct kn_buf m = KN_BUF_INIT;
    ex_manifest_build(&cfg, layers, nlayers, &m);
    char md[KN_DIGEST_SIZE];
    int rc = ex_store_blob_put(s, m.data, m.len, NULL, md, err);
    if (rc == 0)
        rc = exi_image_build(m.data, m.len, EX_MT_OCI_MANIFEST, config_json, config_len, out, err);
    kn_buf_release(&m);
    return rc;
}

int ex_image_to_oci(struct ex_store *s, struct ex_image *img, struct kn_error **err)
{
    if (strcmp(img->manifest.media_type, EX_MT_DOCKER_MANIFEST) != 0)
        return 0;
    struct kn_buf m = KN_BUF_INIT;
    if (ex_manifest_to_oci(img->manifest_json, img->manifest_len, &m, err) < 0)
        return -1;
    char d[KN_DIGEST_SIZE];
    if (s && ex_store_blob_put(s, m.data, m.len, NULL, d, err) < 0) {
        kn_buf_release(&m);
        return -1;
    }
    struct ex_image conv;
    int rc = exi_image_build(m.data, m.len, EX_MT_OCI_MANIFEST, img->config_json, img->config_len,
                             &conv, err);
    kn_buf_release(&m);
    if (rc < 0)
        return -1;
    memcpy(conv.index_digest, img->index_digest, sizeof(conv.index_digest));
    conv.name = img->name;
    img->name = NULL;
    ex_image_release(img);
    *img = conv;
    return 0;
}

int ex_image_check_blobs(struct ex_store *s, const struct ex_image *img, struct kn_error **err)
{
    if (!ex_store_has_blob(s, img->config.digest))
        return kn_err_set(err, KN_E_NOTFOUND, "blob %s (config) missing from the store",
                          img->config.digest);
    for (size_t i = 0; i < img->nlayers; i++)
        if (!ex_store_has_blob(s, img->layers[i].digest))
            return kn_err_set(err, KN_E_NOTFOUND, "blob %s (layer %zu) missing from the store",
                              img->layers[i].digest, i + 1);
    return 0;
}

/* ---- inspect ---- */

int ex_image_inspect_json(const char *name, const char *digest, const char *media_type,
                          const char *manifest, size_t manifest_len, const struct ex_image *img,
                          struct kn_buf *out, struct kn_error **err)
{
    json_t *doc = exi_json_load(manifest, manifest_len, EX_MANIFEST_MAX, "manifest", err);
    if (!doc)
        return -1;
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(name));
    json_object_set_new(j, "digest", json_string(digest));
    if (media_type)
        json_object_set_new(j, "mediaType", json_string(media_type));
    json_object_set_new(j, "manifest", doc);
    if (img) {
        json_t *c =
            exi_json_load(img->config_json, img->config_len, EX_CONFIG_MAX, "image config", err);
        if (!c) {
            json_decref(j);
            return -1;
        }
        json_object_set_new(j, "config", c);
    }
    if (ex_media_type_is_index(media_type)) {
        struct ex_index ix;
        if (ex_index_decode(manifest, manifest_len, media_type, &ix, err) < 0) {
            json_decref(j);
            return -1;
        }
        json_t *ps = json_array();
        for (size_t i = 0; i < ix.nmanifests; i++) {
            if (!ix.manifests[i].platform.os)
                continue;
            char *p = ex_platform_format(&ix.manifests[i].platform);
            json_array_append_new(ps, json_string(p));
            free(p);
        }
        json_object_set_new(j, "platforms", ps);
        ex_index_release(&ix);
    }
    char *s = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    if (!s)
        kn_die("cannot serialize JSON");
    kn_buf_adds(out, s);
    kn_buf_addc(out, '\n');
    free(s);
    return 0;
}

void ex_output_release(struct ex_output *o)
{
    free(o->dest);
    kn_strv_release(&o->names);
    memset(o, 0, sizeof(*o));
}

/* ---- iidfile, metadata ---- */

int ex_write_iidfile(const char *path, const struct ex_image *img, struct kn_error **err)
{
    return ex_write_file_atomic(path, img->config.digest, strlen(img->config.digest), err);
}

int ex_write_metadata(const char *path, const struct ex_image *img, char *const *names,
                      size_t nnames, struct kn_error **err)
{
    json_t *j = json_object();
    json_object_set_new(j, "containerimage.config.digest", json_string(img->config.digest));
    json_object_set_new(j, "containerimage.digest", json_string(img->manifest.digest));
    json_object_set_new(j, "containerimage.descriptor", exi_descriptor_json(&img->manifest));
    if (nnames) {
        struct kn_buf b = KN_BUF_INIT;
        for (size_t i = 0; i < nnames; i++)
            kn_buf_addf(&b, "%s%s", i ? "," : "", names[i]);
        json_object_set_new(j, "image.name", json_string(b.data));
        kn_buf_release(&b);
    }
    char *s = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    if (!s)
        kn_die("cannot serialize JSON");
    size_t len = strlen(s);
    s = kn_realloc(s, len + 2);
    s[len++] = '\n';
    s[len] = 0;
    int rc = ex_write_file_atomic(path, s, len, err);
    free(s);
    return rc;
}

/* ---- files ---- */

char *exi_tmp_template(const char *path)
{
    char *a = kn_strdup(path), *b = kn_strdup(path);
    size_t n = strlen(a);
    while (n > 1 && a[n - 1] == '/')
        a[--n] = 0, b[n] = 0;
    char *t = kn_asprintf("%s/.%s.kiln-XXXXXX", dirname(a), basename(b));
    free(a);
    free(b);
    return t;
}

int ex_write_file_atomic(const char *path, const void *data, size_t len, struct kn_error **err)
{
    char *tmp = exi_tmp_template(path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        kn_err_sys(err, "cannot create '%s'", path);
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0644) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    free(tmp);
    return 0;
fail:
    kn_err_sys(err, "cannot write '%s'", path);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}
