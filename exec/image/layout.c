/*
 * Reading OCI image layouts: listing tags, resolving oci-layout://PATH[:TAG]
 * (the default tag, digests, platform selection through an index), copying
 * an image's blobs into the store with their digests verified, the
 * frontend resolver, and unpacking an OCI archive (a tar of a layout) into
 * a temporary directory.
 */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYOUT_NEST_MAX 4 /* index -> index -> ... -> manifest */

static char *blob_path(const char *dir, const char *digest)
{
    return kn_asprintf("%s/blobs/sha256/%s", dir, kn_digest_hex(digest));
}

/* Reads a small blob of the layout, verifying its digest (and size when
 * size is not UINT64_MAX). */
static int read_blob(const char *dir, const char *digest, uint64_t size, size_t max,
                     struct kn_buf *out, struct kn_error **err)
{
    if (size != UINT64_MAX && size > max)
        return kn_err_set(err, KN_E_UNSAFE, "blob %s in OCI layout '%s' too large (%llu bytes)",
                          digest, dir, (unsigned long long)size);
    char *p = blob_path(dir, digest);
    struct kn_error *e = NULL;
    int rc = kn_buf_read_file(out, p, max, &e);
    free(p);
    if (rc < 0) {
        if (e->code == KN_E_IO && e->sys_errno == ENOENT) {
            kn_err_free(e);
            return kn_err_set(err, KN_E_NOTFOUND, "blob %s missing from OCI layout '%s'", digest,
                              dir);
        }
        kn_err_propagate(err, &e);
        return -1;
    }
    char got[KN_DIGEST_SIZE];
    kn_sha256_digest(out->data ? out->data : "", out->len, got);
    if (strcmp(got, digest) != 0)
        return kn_err_set(err, KN_E_DIGEST, "blob %s in OCI layout '%s' does not match its digest",
                          digest, dir);
    if (size != UINT64_MAX && out->len != size)
        return kn_err_set(err, KN_E_DIGEST,
                          "blob %s in OCI layout '%s' has %zu bytes, its descriptor says %llu",
                          digest, dir, out->len, (unsigned long long)size);
    return 0;
}

static int read_index(const char *dir, struct ex_index *ix, struct kn_error **err)
{
    char *p = kn_asprintf("%s/oci-layout", dir);
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *e = NULL;
    int rc = kn_buf_read_file(&b, p, 4096, &e);
    free(p);
    if (rc < 0) {
        kn_err_free(e);
        kn_buf_release(&b);
        return kn_err_set(err, KN_E_NOTFOUND, "'%s' is not an OCI layout (no oci-layout file)",
                          dir);
    }
    json_t *j = exi_json_load(b.data, b.len, 4096, "oci-layout file", err);
    kn_buf_release(&b);
    if (!j)
        return kn_err_wrap(err, "OCI layout '%s'", dir);
    const char *v = json_string_value(json_object_get(j, "imageLayoutVersion"));
    if (!v || strncmp(v, "1.", 2) != 0) {
        kn_err_set(err, KN_E_PARSE, "OCI layout '%s': unsupported imageLayoutVersion '%s'", dir,
                   v ? v : "(missing)");
        json_decref(j);
        return -1;
    }
    json_decref(j);
    p = kn_asprintf("%s/index.json", dir);
    rc = kn_buf_read_file(&b, p, EX_INDEX_JSON_MAX, err);
    free(p);
    if (rc == 0)
        rc = ex_index_decode(b.data, b.len, NULL, ix, err);
    kn_buf_release(&b);
    if (rc < 0)
        return kn_err_wrap(err, "OCI layout '%s'", dir);
    return 0;
}

int ex_oci_layout_list(const char *dir, struct ex_layout_tag **tags, size_t *ntags,
                       struct kn_error **err)
{
    struct ex_index ix;
    if (read_index(dir, &ix, err) < 0)
        return -1;
    *tags = kn_calloc(ix.nmanifests ? ix.nmanifests : 1, sizeof(**tags));
    *ntags = ix.nmanifests;
    for (size_t i = 0; i < ix.nmanifests; i++) {
        (*tags)[i].name = ix.manifests[i].ref_name ? kn_strdup(ix.manifests[i].ref_name) : NULL;
        exi_descriptor_copy(&(*tags)[i].desc, &ix.manifests[i].desc);
    }
    ex_index_release(&ix);
    return 0;
}

void ex_layout_tags_free(struct ex_layout_tag *tags, size_t ntags)
{
    for (size_t i = 0; i < ntags; i++) {
        free(tags[i].name);
        exi_descriptor_release(&tags[i].desc);
    }
    free(tags);
}

int ex_oci_ref_split(const char *ref, char **path, char **tag, struct kn_error **err)
{
    *path = *tag = NULL;
    const char *s = ref;
    if (kn_str_startswith(s, "oci-layout://"))
        s += strlen("oci-layout://");
    else if (kn_str_startswith(s, "oci-archive://"))
        s += strlen("oci-archive://");
    const char *slash = strrchr(s, '/');
    const char *last = slash ? slash + 1 : s;
    const char *at = strchr(last, '@');
    const char *colon = strchr(last, ':');
    const char *sep = at ? at : colon;
    size_t plen = sep ? (size_t)(sep - s) : strlen(s);
    if (plen == 0)
        return kn_err_set(err, KN_E_PARSE, "invalid OCI layout reference '%s': no path", ref);
    if (at) {
        if (!kn_digest_valid(at + 1))
            return kn_err_set(err, KN_E_PARSE, "invalid OCI layout reference '%s': bad digest",
                              ref);
        *tag = kn_strdup(at);
    } else if (colon) {
        if (!colon[1])
            return kn_err_set(err, KN_E_PARSE, "invalid OCI layout reference '%s': empty tag", ref);
        *tag = kn_strdup(colon + 1);
    }
    *path = kn_strndup(s, plen);
    return 0;
}

static void tag_list(const struct ex_index *ix, struct kn_buf *b)
{
    for (size_t i = 0; i < ix->nmanifests; i++)
        if (ix->manifests[i].ref_name)
            kn_buf_addf(b, "%s%s", b->len ? ", " : "", ix->manifests[i].ref_name);
    if (!b->len)
        kn_buf_adds(b, "none");
}

/* Picks the index.json entry for tag; fills d. */
static int pick_entry(const char *dir, const char *tag, struct ex_descriptor *d, char **name,
                      struct kn_error **err)
{
    struct ex_index ix;
    if (read_index(dir, &ix, err) < 0)
        return -1;
    int found = -1;
    if (tag && tag[0] == '@') {
        for (size_t i = 0; i < ix.nmanifests && found < 0; i++)
            if (strcmp(ix.manifests[i].desc.digest, tag + 1) == 0)
                found = (int)i;
        if (found < 0) {
            /* a manifest not listed in index.json, but present as a blob */
            memset(d, 0, sizeof(*d));
            snprintf(d->digest, sizeof(d->digest), "%s", tag + 1);
            d->size = UINT64_MAX;
            ex_index_release(&ix);
            return 0;
        }
    } else {
        const char *want = tag ? tag : "latest";
        for (size_t i = 0; i < ix.nmanifests && found < 0; i++)
            if (ix.manifests[i].ref_name && strcmp(ix.manifests[i].ref_name, want) == 0)
                found = (int)i;
        if (found < 0 && !tag && ix.nmanifests == 1)
            found = 0;
        if (found < 0) {
            struct kn_buf b = KN_BUF_INIT;
            tag_list(&ix, &b);
            if (!tag && ix.nmanifests > 1)
                kn_err_set(err, KN_E_NOTFOUND,
                           "OCI layout '%s' holds %zu images and none is tagged 'latest'; name "
                           "one (tags: %s)",
                           dir, ix.nmanifests, b.data);
            else
                kn_err_set(err, KN_E_NOTFOUND, "tag '%s' not found in OCI layout '%s' (tags: %s)",
                           want, dir, b.data);
            kn_buf_release(&b);
            ex_index_release(&ix);
            return -1;
        }
    }
    exi_descriptor_copy(d, &ix.manifests[found].desc);
    if (name && ix.manifests[found].image_name)
        *name = kn_strdup(ix.manifests[found].image_name);
    ex_index_release(&ix);
    return 0;
}

/* Resolves tag to a platform manifest: its bytes, media type and digest,
 * plus the index it came from (index_digest "" if none) and the entry's
 * image name (*name, when it has one). */
static int resolve_manifest(const char *dir, const char *tag, const struct ir_platform *platform,
                            struct kn_buf *manifest, char **media_type, char digest[KN_DIGEST_SIZE],
                            char index_digest[KN_DIGEST_SIZE], char **name, struct kn_error **err)
{
    struct ex_descriptor d;
    if (pick_entry(dir, tag, &d, name, err) < 0)
        return -1;
    index_digest[0] = 0;
    for (int depth = 0;; depth++) {
        kn_buf_reset(manifest);
        if (read_blob(dir, d.digest, d.size, EX_MANIFEST_MAX, manifest, err) < 0) {
            exi_descriptor_release(&d);
            return -1;
        }
        const char *mt =
            d.media_type ? d.media_type : ex_media_type_sniff(manifest->data, manifest->len);
        if (!ex_media_type_is_index(mt)) {
            *media_type = kn_strdup(mt ? mt : EX_MT_OCI_MANIFEST);
            memcpy(digest, d.digest, KN_DIGEST_SIZE);
            exi_descriptor_release(&d);
            return 0;
        }
        if (depth >= LAYOUT_NEST_MAX) {
            exi_descriptor_release(&d);
            return kn_err_set(err, KN_E_UNSAFE, "OCI layout '%s': indexes nested too deep", dir);
        }
        struct ex_index ix;
        if (ex_index_decode(manifest->data, manifest->len, mt, &ix, err) < 0) {
            kn_err_wrap(err, "OCI layout '%s': %s", dir, d.digest);
            exi_descriptor_release(&d);
            return -1;
        }
        if (!index_digest[0])
            memcpy(index_digest, d.digest, KN_DIGEST_SIZE);
        int i = ex_index_select(&ix, platform, err);
        exi_descriptor_release(&d);
        if (i < 0) {
            ex_index_release(&ix);
            return kn_err_wrap(err, "OCI layout '%s'", dir);
        }
        exi_descriptor_copy(&d, &ix.manifests[i].desc);
        ex_index_release(&ix);
    }
}

int ex_oci_layout_get_manifest(const char *dir, const char *tag, struct kn_buf *out,
                               char **media_type, char digest[KN_DIGEST_SIZE],
                               struct kn_error **err)
{
    struct ex_descriptor d;
    if (pick_entry(dir, tag, &d, NULL, err) < 0)
        return -1;
    kn_buf_reset(out);
    int rc = read_blob(dir, d.digest, d.size, EX_MANIFEST_MAX, out, err);
    if (rc == 0) {
        const char *mt = d.media_type ? d.media_type : ex_media_type_sniff(out->data, out->len);
        *media_type = kn_strdup(mt ? mt : EX_MT_OCI_MANIFEST);
        memcpy(digest, d.digest, KN_DIGEST_SIZE);
    }
    exi_descriptor_release(&d);
    return rc;
}

/* Streams a layer blob of the layout into the store, verified. */
static int import_blob(const char *dir, const struct ex_descriptor *d, struct ex_store *s,
                       struct kn_error **err)
{
    if (ex_store_has_blob(s, d->digest))
        return 0;
    char *p = blob_path(dir, d->digest);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    free(p);
    if (fd < 0) {
        if (errno == ENOENT)
            return kn_err_set(err, KN_E_NOTFOUND, "blob %s missing from OCI layout '%s'", d->digest,
                              dir);
        return kn_err_sys(err, "cannot open blob %s of OCI layout '%s'", d->digest, dir);
    }
    struct ex_blob_writer *w = ex_blob_writer_new(s, err);
    if (!w) {
        close(fd);
        return -1;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            kn_err_sys(err, "cannot read blob %s of OCI layout '%s'", d->digest, dir);
            ex_blob_writer_abort(w);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        if (ex_blob_writer_write(w, buf, (size_t)n, err) < 0) {
            ex_blob_writer_abort(w);
            close(fd);
            return -1;
        }
        if (ex_blob_writer_size(w) > d->size) {
            ex_blob_writer_abort(w);
            close(fd);
            return kn_err_set(err, KN_E_DIGEST,
                              "blob %s in OCI layout '%s' is larger than its descriptor says",
                              d->digest, dir);
        }
    }
    close(fd);
    uint64_t size = 0;
    if (ex_blob_writer_commit(w, d->digest, NULL, &size, err) < 0)
        return kn_err_wrap(err, "OCI layout '%s'", dir);
    return 0;
}

int ex_oci_layout_load(const char *dir, const char *tag, const struct ir_platform *platform,
                       struct ex_store *s, unsigned flags, struct ex_image *out,
                       struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    struct kn_buf m = KN_BUF_INIT, c = KN_BUF_INIT;
    char *mt = NULL, *name = NULL;
    char digest[KN_DIGEST_SIZE], index_digest[KN_DIGEST_SIZE];
    int rc = -1;
    struct ex_manifest man = {0};
    if (resolve_manifest(dir, tag, platform, &m, &mt, digest, index_digest, &name, err) < 0)
        goto out;
    if (ex_manifest_decode(m.data, m.len, mt, &man, err) < 0) {
        kn_err_wrap(err, "OCI layout '%s': %s", dir, digest);
        goto out;
    }
    if (read_blob(dir, man.config.digest, man.config.size, EX_CONFIG_MAX, &c, err) < 0)
        goto out;
    if (exi_image_build(m.data, m.len, mt, c.data, c.len, out, err) < 0) {
        kn_err_wrap(err, "OCI layout '%s'", dir);
        goto out;
    }
    memcpy(out->index_digest, index_digest, sizeof(out->index_digest));
    out->name = name;
    name = NULL;
    if (s) {
        char d[KN_DIGEST_SIZE];
        if (ex_store_blob_put(s, m.data, m.len, digest, d, err) < 0 ||
            ex_store_blob_put(s, c.data, c.len, man.config.digest, d, err) < 0)
            goto fail_img;
        if (flags & EX_LAYOUT_LAYERS)
            for (size_t i = 0; i < man.nlayers; i++)
                if (import_blob(dir, &man.layers[i], s, err) < 0)
                    goto fail_img;
    }
    rc = 0;
    goto out;
fail_img:
    ex_image_release(out);
out:
    ex_manifest_release(&man);
    kn_buf_release(&m);
    kn_buf_release(&c);
    free(mt);
    free(name);
    return rc;
}

int ex_oci_layout_resolve(const char *path, const char *tag, const struct ir_platform *platform,
                          char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct ex_image img;
    if (ex_oci_layout_load(path, tag, platform, NULL, 0, &img, err) < 0)
        return -1;
    *config_json = img.config_json;
    img.config_json = NULL;
    memcpy(digest, img.manifest.digest, KN_DIGEST_SIZE);
    ex_image_release(&img);
    return 0;
}

/* ---- OCI archives ---- */

/* The layout-relative name of an archive member, or NULL to skip it. */
static const char *archive_member(const char *name, bool *is_dir)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    *is_dir = false;
    if (strcmp(name, "oci-layout") == 0 || strcmp(name, "index.json") == 0)
        return name;
    if (strcmp(name, "blobs") == 0 || strcmp(name, "blobs/") == 0 ||
        strcmp(name, "blobs/sha256") == 0 || strcmp(name, "blobs/sha256/") == 0) {
        *is_dir = true;
        return name;
    }
    if (kn_str_startswith(name, "blobs/sha256/")) {
        char d[KN_DIGEST_SIZE];
        snprintf(d, sizeof(d), "sha256:%s", name + strlen("blobs/sha256/"));
        if (kn_digest_valid(d))
            return name;
    }
    return NULL;
}

static int extract_members(struct archive *a, int dfd, const char *file, const char *tmp,
                           struct kn_error **err)
{
    struct archive_entry *e;
    int r;
    bool saw_layout = false;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        bool is_dir;
        const char *name = archive_member(archive_entry_pathname(e), &is_dir);
        if (!name || is_dir)
            continue;
        if (archive_entry_filetype(e) != AE_IFREG)
            return kn_err_set(err, KN_E_UNSAFE, "OCI archive '%s': '%s' is not a regular file",
                              file, name);
        if (strcmp(name, "oci-layout") == 0)
            saw_layout = true;
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
            return kn_err_sys(err, "cannot create '%s/%s'", tmp, name);
        r = archive_read_data_into_fd(a, fd);
        close(fd);
        if (r != ARCHIVE_OK)
            break;
    }
    if (r != ARCHIVE_EOF)
        return kn_err_set(err, KN_E_PARSE, "cannot read OCI archive '%s': %s", file,
                          archive_error_string(a));
    if (!saw_layout)
        return kn_err_set(err, KN_E_PARSE, "'%s' is not an OCI archive (no oci-layout file)", file);
    return 0;
}

int ex_oci_archive_extract(struct ex_store *s, const char *file, char **dir, struct kn_error **err)
{
    *dir = NULL;
    char *tmp = ex_store_mkdtemp(s, "oci-archive", err);
    if (!tmp)
        return -1;
    int rc = -1;
    struct archive *a = NULL;
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || mkdirat(dfd, "blobs", 0755) < 0 || mkdirat(dfd, "blobs/sha256", 0755) < 0) {
        kn_err_sys(err, "cannot prepare '%s'", tmp);
    } else {
        a = archive_read_new();
        archive_read_support_format_tar(a);
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        struct stat st;
        if (stat(file, &st) < 0)
            kn_err_set(err, KN_E_NOTFOUND, "OCI archive '%s' not found", file);
        else if (archive_read_open_filename(a, file, 1 << 16) != ARCHIVE_OK)
            kn_err_set(err, KN_E_PARSE, "cannot read OCI archive '%s': %s", file,
                       archive_error_string(a));
        else
            rc = extract_members(a, dfd, file, tmp, err);
        archive_read_free(a);
    }
    if (dfd >= 0)
        close(dfd);
    if (rc < 0) {
        ex_store_remove_tree(tmp, NULL);
        free(tmp);
        return -1;
    }
    *dir = tmp;
    return 0;
}
