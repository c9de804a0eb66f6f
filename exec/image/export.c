/*
 * The exporters: an image from the store to an OCI layout directory, an
 * OCI archive, a docker archive (docker load / podman load) or a local
 * root filesystem.
 *
 * Each one writes under a temporary name next to dest and renames into
 * place, so a failure leaves nothing half-written at dest. The one
 * exception is adding an image to an existing OCI layout: new blobs are
 * renamed in one by one (harmless while unreferenced, removed again on
 * failure) and index.json is replaced last, atomically. Archives are
 * streamed from the store (libarchive); docker archive layers are
 * decompressed on the fly, in two passes (the tar header needs the size
 * before the data), never held in memory or on disk.
 */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Temporary names unique across the threads of this process too. */
static atomic_uint tmp_seq;

#define OCI_LAYOUT_FILE "{\"imageLayoutVersion\":\"1.0.0\"}"

/* ---- OCI layout directory ---- */

/* Puts bytes at blobs/sha256/HEX of the layout (dfd), unless present. */
static int put_bytes(int dfd, const char *digest, const void *data, size_t len, bool *added,
                     struct kn_error **err)
{
    char name[128];
    snprintf(name, sizeof(name), "blobs/sha256/%s", kn_digest_hex(digest));
    *added = false;
    if (faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "blobs/sha256/.%s.kiln-%d-%u", kn_digest_hex(digest), (int)getpid(),
             atomic_fetch_add(&tmp_seq, 1));
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_err_sys(err, "cannot create blob %s", digest);
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            kn_err_sys(err, "cannot write blob %s", digest);
            close(fd);
            unlinkat(dfd, tmp, 0);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    if (close(fd) < 0 || renameat(dfd, tmp, dfd, name) < 0) {
        kn_err_sys(err, "cannot write blob %s", digest);
        unlinkat(dfd, tmp, 0);
        return -1;
    }
    *added = true;
    return 0;
}

/* Copies (or reflinks) a store blob to blobs/sha256/HEX. */
static int put_store_blob(struct ex_store *s, int dfd, const char *digest, bool *added,
                          struct kn_error **err)
{
    char name[128];
    snprintf(name, sizeof(name), "blobs/sha256/%s", kn_digest_hex(digest));
    *added = false;
    if (faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (!ex_store_has_blob(s, digest))
        return kn_err_set(err, KN_E_NOTFOUND, "blob %s missing from the store", digest);
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "blobs/sha256/.%s.kiln-%d-%u", kn_digest_hex(digest), (int)getpid(),
             atomic_fetch_add(&tmp_seq, 1));
    unlinkat(dfd, tmp, 0);
    /* a copy (a reflink where the file system can), never a hard link: the
     * output is the user's to change, the store's blob is every build's */
    int in = ex_store_blob_open(s, digest, err);
    if (in < 0)
        return -1;
    int out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return kn_err_sys(err, "cannot create blob %s", digest);
    }
    int rc = ex_store_copy_fd(in, out, digest, err);
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = kn_err_sys(err, "cannot write blob %s", digest);
    if (rc < 0) {
        unlinkat(dfd, tmp, 0);
        return -1;
    }
    if (renameat(dfd, tmp, dfd, name) < 0) {
        kn_err_sys(err, "cannot write blob %s", digest);
        unlinkat(dfd, tmp, 0);
        return -1;
    }
    *added = true;
    return 0;
}

static json_t *index_entry(const struct ex_image *img, const char *tag, const char *image_name)
{
    json_t *d = exi_descriptor_json(&img->manifest);
    if (tag || image_name) {
        json_t *an = json_object();
        if (image_name)
            json_object_set_new(an, EX_ANNOT_IMAGE_NAME, json_string(image_name));
        if (tag)
            json_object_set_new(an, EX_ANNOT_REF_NAME, json_string(tag));
        json_object_set_new(d, "annotations", an);
    }
    return d;
}

/* The new index.json: the old one's entries (but those with our ref name,
 * or untagged with our digest) plus ours. */
static char *index_json(const char *old, size_t oldlen, const struct ex_image *img, const char *tag,
                        const char *image_name, size_t *len, struct kn_error **err)
{
    json_t *j;
    if (old) {
        /* validate first: a malformed index.json is reported, not overwritten */
        struct ex_index ix;
        if (ex_index_decode(old, oldlen, NULL, &ix, err) < 0)
            return NULL;
        ex_index_release(&ix);
        j = exi_json_load(old, oldlen, EX_INDEX_JSON_MAX, "index.json", err);
        if (!j)
            return NULL;
        json_t *ms = json_object_get(j, "manifests");
        for (size_t i = json_array_size(ms); i-- > 0;) {
            json_t *e = json_array_get(ms, i);
            const char *rn = json_string_value(
                json_object_get(json_object_get(e, "annotations"), EX_ANNOT_REF_NAME));
            const char *dg = json_string_value(json_object_get(e, "digest"));
            if ((tag && rn && strcmp(rn, tag) == 0) ||
                (!rn && !tag && dg && strcmp(dg, img->manifest.digest) == 0))
                json_array_remove(ms, i);
        }
        json_array_append_new(ms, index_entry(img, tag, image_name));
    } else {
        j = json_object();
        json_object_set_new(j, "schemaVersion", json_integer(2));
        json_object_set_new(j, "mediaType", json_string(EX_MT_OCI_INDEX));
        json_t *ms = json_array();
        json_array_append_new(ms, index_entry(img, tag, image_name));
        json_object_set_new(j, "manifests", ms);
    }
    char *s = exi_json_dump(j, len);
    json_decref(j);
    return s;
}

struct added {
    KN_VEC(char *) names;
};

static void added_undo(int dfd, struct added *a)
{
    for (size_t i = 0; i < a->names.n; i++)
        unlinkat(dfd, a->names.v[i], 0);
}

static void added_release(struct added *a)
{
    for (size_t i = 0; i < a->names.n; i++)
        free(a->names.v[i]);
    free(a->names.v);
}

static void added_push(struct added *a, const char *digest)
{
    kn_vec_push(&a->names, kn_asprintf("blobs/sha256/%s", kn_digest_hex(digest)));
}

/* Writes img's blobs into the layout at dfd, recording the new ones. */
static int write_blobs(struct ex_store *s, int dfd, const struct ex_image *img, struct added *a,
                       struct kn_error **err)
{
    if (mkdirat(dfd, "blobs", 0755) < 0 && errno != EEXIST)
        return kn_err_sys(err, "cannot create 'blobs'");
    if (mkdirat(dfd, "blobs/sha256", 0755) < 0 && errno != EEXIST)
        return kn_err_sys(err, "cannot create 'blobs/sha256'");
    bool added;
    for (size_t i = 0; i < img->nlayers; i++) {
        if (put_store_blob(s, dfd, img->layers[i].digest, &added, err) < 0)
            return -1;
        if (added)
            added_push(a, img->layers[i].digest);
    }
    if (put_bytes(dfd, img->config.digest, img->config_json, img->config_len, &added, err) < 0)
        return -1;
    if (added)
        added_push(a, img->config.digest);
    if (put_bytes(dfd, img->manifest.digest, img->manifest_json, img->manifest_len, &added, err) <
        0)
        return -1;
    if (added)
        added_push(a, img->manifest.digest);
    return 0;
}

static int write_at(int dfd, const char *name, const char *data, size_t len, struct kn_error **err)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ".%s.kiln-%d-%u", name, (int)getpid(),
             atomic_fetch_add(&tmp_seq, 1));
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_err_sys(err, "cannot create '%s'", name);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break;
        off += (size_t)w;
    }
    if (off < len || close(fd) < 0 || renameat(dfd, tmp, dfd, name) < 0) {
        kn_err_sys(err, "cannot write '%s'", name);
        unlinkat(dfd, tmp, 0);
        return -1;
    }
    return 0;
}

static bool dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            empty = false;
            break;
        }
    closedir(d);
    return empty;
}

/* dest must be absent or an empty directory (then it is removed, to be
 * replaced by the rename); *exists says whether it is a non-empty dir. */
int exi_check_dest(const char *dest, bool *nonempty, struct kn_error **err)
{
    struct stat st;
    *nonempty = false;
    if (lstat(dest, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return kn_err_sys(err, "cannot stat '%s'", dest);
    }
    if (!S_ISDIR(st.st_mode))
        return kn_err_set(err, KN_E_FAILED, "'%s' exists and is not a directory", dest);
    *nonempty = !dir_is_empty(dest);
    return 0;
}

int exi_rename_into_place(const char *tmp, const char *dest, struct kn_error **err)
{
    struct stat st;
    if (lstat(dest, &st) == 0 && S_ISDIR(st.st_mode) && dir_is_empty(dest))
        rmdir(dest);
    if (rename(tmp, dest) < 0)
        return kn_err_sys(err, "cannot rename into '%s'", dest);
    return 0;
}

static int export_layout_new(struct ex_store *s, const struct ex_image *img, const char *dir,
                             const char *tag, const char *image_name, struct kn_error **err)
{
    char *tmp = exi_tmp_template(dir);
    if (!mkdtemp(tmp)) {
        kn_err_sys(err, "cannot create a directory next to '%s'", dir);
        free(tmp);
        return -1;
    }
    chmod(tmp, 0755);
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct added a = {0};
    int rc = -1;
    size_t len;
    char *idx = NULL;
    if (dfd < 0) {
        kn_err_sys(err, "cannot open '%s'", tmp);
        goto out;
    }
    if (write_blobs(s, dfd, img, &a, err) < 0)
        goto out;
    idx = index_json(NULL, 0, img, tag, image_name, &len, err);
    if (write_at(dfd, "oci-layout", OCI_LAYOUT_FILE, strlen(OCI_LAYOUT_FILE), err) < 0 ||
        write_at(dfd, "index.json", idx, len, err) < 0)
        goto out;
    rc = exi_rename_into_place(tmp, dir, err);
out:
    if (dfd >= 0)
        close(dfd);
    if (rc < 0)
        ex_store_remove_tree(tmp, NULL);
    added_release(&a);
    free(idx);
    free(tmp);
    return rc;
}

static int read_at(int dfd, const char *name, struct kn_buf *out, struct kn_error **err);

/* Adds img to the existing layout at dir, under an exclusive flock on the
 * directory so that concurrent kiln processes do not lose each other's
 * index.json entries. */
static int export_layout_add(struct ex_store *s, const struct ex_image *img, const char *dir,
                             const char *tag, const char *image_name, struct kn_error **err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kn_err_sys(err, "cannot open '%s'", dir);
    struct added a = {0};
    struct kn_buf old = KN_BUF_INIT;
    size_t len;
    int rc = -1;
    char *idx = NULL;
    if (faccessat(dfd, "oci-layout", F_OK, 0) < 0) {
        kn_err_set(err, KN_E_FAILED, "'%s' exists and is not an OCI layout", dir);
        goto out;
    }
    if (flock(dfd, LOCK_EX) < 0) {
        kn_err_sys(err, "cannot lock '%s'", dir);
        goto out;
    }
    if (read_at(dfd, "index.json", &old, err) < 0) {
        kn_err_wrap(err, "OCI layout '%s'", dir);
        goto out;
    }
    idx = index_json(old.data, old.len, img, tag, image_name, &len, err);
    if (!idx) {
        kn_err_wrap(err, "OCI layout '%s'", dir);
        goto out;
    }
    if (write_blobs(s, dfd, img, &a, err) < 0 || write_at(dfd, "index.json", idx, len, err) < 0) {
        added_undo(dfd, &a);
        goto out;
    }
    rc = 0;
out:
    close(dfd); /* releases the lock */
    added_release(&a);
    kn_buf_release(&old);
    free(idx);
    return rc;
}

/* Reads a layout file (index.json) relative to dfd; absent is empty. */
static int read_at(int dfd, const char *name, struct kn_buf *out, struct kn_error **err)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : kn_err_sys(err, "cannot open '%s'", name);
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return kn_err_sys(err, "cannot read '%s'", name);
        }
        if (n == 0)
            break;
        if (out->len + (size_t)n > EX_INDEX_JSON_MAX) {
            close(fd);
            return kn_err_set(err, KN_E_UNSAFE, "'%s' is larger than %u bytes", name,
                              EX_INDEX_JSON_MAX);
        }
        kn_buf_add(out, buf, (size_t)n);
    }
    close(fd);
    return 0;
}

int ex_export_oci_layout(struct ex_store *s, const struct ex_image *img, const char *dir,
                         const char *tag, const char *image_name, struct kn_error **err)
{
    if (!ex_media_type_is_manifest(img->manifest.media_type) ||
        strcmp(img->manifest.media_type, EX_MT_OCI_MANIFEST) != 0)
        return kn_err_set(err, KN_E_INTERNAL, "exporting a non-OCI manifest to an OCI layout");
    bool nonempty;
    if (exi_check_dest(dir, &nonempty, err) < 0)
        return -1;
    if (!nonempty)
        return export_layout_new(s, img, dir, tag, image_name, err);

    return export_layout_add(s, img, dir, tag, image_name, err);
}

/* ---- tar writing ---- */

struct tarw {
    struct archive *a;
    char *tmp; /* the temporary file, renamed to dest by tarw_finish */
    const char *dest;
    int fd;
};

static int tarw_open(struct tarw *t, const char *dest, struct kn_error **err)
{
    memset(t, 0, sizeof(*t));
    t->dest = dest;
    t->tmp = exi_tmp_template(dest);
    t->fd = mkostemp(t->tmp, O_CLOEXEC);
    if (t->fd < 0) {
        kn_err_sys(err, "cannot create a file next to '%s'", dest);
        free(t->tmp);
        t->tmp = NULL;
        return -1;
    }
    fchmod(t->fd, 0644);
    t->a = archive_write_new();
    archive_write_set_format_pax_restricted(t->a);
    archive_write_set_bytes_in_last_block(t->a, 1);
    if (archive_write_open_fd(t->a, t->fd) != ARCHIVE_OK) {
        kn_err_set(err, KN_E_IO, "cannot write '%s': %s", dest, archive_error_string(t->a));
        return -1;
    }
    return 0;
}

static void tarw_abort(struct tarw *t)
{
    if (t->a)
        archive_write_free(t->a);
    if (t->fd >= 0)
        close(t->fd);
    if (t->tmp) {
        unlink(t->tmp);
        free(t->tmp);
    }
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

static int tarw_finish(struct tarw *t, struct kn_error **err)
{
    int r = archive_write_close(t->a);
    if (r != ARCHIVE_OK) {
        kn_err_set(err, KN_E_IO, "cannot write '%s': %s", t->dest, archive_error_string(t->a));
        tarw_abort(t);
        return -1;
    }
    archive_write_free(t->a);
    t->a = NULL;
    if (fsync(t->fd) < 0 || close(t->fd) < 0) {
        t->fd = -1;
        kn_err_sys(err, "cannot write '%s'", t->dest);
        tarw_abort(t);
        return -1;
    }
    t->fd = -1;
    if (rename(t->tmp, t->dest) < 0) {
        kn_err_sys(err, "cannot rename into '%s'", t->dest);
        tarw_abort(t);
        return -1;
    }
    free(t->tmp);
    t->tmp = NULL;
    return 0;
}

static int tarw_header(struct tarw *t, const char *name, bool dir, uint64_t size,
                       struct kn_error **err)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(e, dir ? 0755 : 0644);
    archive_entry_set_size(e, dir ? 0 : (la_int64_t)size);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int r = archive_write_header(t->a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
        return kn_err_set(err, KN_E_IO, "cannot write '%s': %s", t->dest,
                          archive_error_string(t->a));
    return 0;
}

static int tarw_data(struct tarw *t, const void *data, size_t len, struct kn_error **err)
{
    if (len && archive_write_data(t->a, data, len) != (la_ssize_t)len)
        return kn_err_set(err, KN_E_IO, "cannot write '%s': %s", t->dest,
                          archive_error_string(t->a));
    return 0;
}

static int tarw_bytes(struct tarw *t, const char *name, const void *data, size_t len,
                      struct kn_error **err)
{
    if (tarw_header(t, name, false, len, err) < 0)
        return -1;
    return tarw_data(t, data, len, err);
}

/* A store blob as a member, streamed. */
static int tarw_blob(struct tarw *t, struct ex_store *s, const char *name,
                     const struct ex_descriptor *d, struct kn_error **err)
{
    int fd = ex_store_blob_open(s, d->digest, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return kn_err_sys(err, "cannot stat blob %s", d->digest);
    }
    if ((uint64_t)st.st_size != d->size) {
        close(fd);
        return kn_err_set(err, KN_E_DIGEST, "blob %s has %lld bytes, its descriptor says %llu",
                          d->digest, (long long)st.st_size, (unsigned long long)d->size);
    }
    int rc = tarw_header(t, name, false, (uint64_t)st.st_size, err);
    char buf[1 << 16];
    uint64_t left = (uint64_t)st.st_size;
    while (rc == 0 && left) {
        ssize_t n = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? kn_err_sys(err, "cannot read blob %s", d->digest)
                       : kn_err_set(err, KN_E_IO, "blob %s shrank while reading", d->digest);
            break;
        }
        rc = tarw_data(t, buf, (size_t)n, err);
        left -= (uint64_t)n;
    }
    close(fd);
    return rc;
}

/* ---- OCI archive ---- */

int ex_export_oci_archive(struct ex_store *s, const struct ex_image *img, const char *file,
                          const char *tag, const char *image_name, struct kn_error **err)
{
    if (strcmp(img->manifest.media_type, EX_MT_OCI_MANIFEST) != 0)
        return kn_err_set(err, KN_E_INTERNAL, "exporting a non-OCI manifest to an OCI archive");
    if (ex_image_check_blobs(s, img, err) < 0)
        return -1;
    struct tarw t;
    if (tarw_open(&t, file, err) < 0) {
        tarw_abort(&t);
        return -1;
    }
    size_t len;
    char *idx = index_json(NULL, 0, img, tag, image_name, &len, err);
    int rc = tarw_bytes(&t, "oci-layout", OCI_LAYOUT_FILE, strlen(OCI_LAYOUT_FILE), err);
    if (rc == 0)
        rc = tarw_bytes(&t, "index.json", idx, len, err);
    if (rc == 0)
        rc = tarw_header(&t, "blobs/", true, 0, err);
    if (rc == 0)
        rc = tarw_header(&t, "blobs/sha256/", true, 0, err);
    /* each blob once, even when two layers are the same */
    KN_VEC(const char *) seen = {0};
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        bool dup = strcmp(img->layers[i].digest, img->config.digest) == 0;
        for (size_t k = 0; k < seen.n && !dup; k++)
            dup = strcmp(seen.v[k], img->layers[i].digest) == 0;
        if (dup)
            continue;
        kn_vec_push(&seen, img->layers[i].digest);
        char name[128];
        snprintf(name, sizeof(name), "blobs/sha256/%s", kn_digest_hex(img->layers[i].digest));
        rc = tarw_blob(&t, s, name, &img->layers[i], err);
    }
    free(seen.v);
    char name[128];
    if (rc == 0) {
        snprintf(name, sizeof(name), "blobs/sha256/%s", kn_digest_hex(img->config.digest));
        rc = tarw_bytes(&t, name, img->config_json, img->config_len, err);
    }
    if (rc == 0) {
        snprintf(name, sizeof(name), "blobs/sha256/%s", kn_digest_hex(img->manifest.digest));
        rc = tarw_bytes(&t, name, img->manifest_json, img->manifest_len, err);
    }
    free(idx);
    if (rc < 0) {
        tarw_abort(&t);
        return -1;
    }
    return tarw_finish(&t, err);
}

/* ---- docker archive ---- */

/* The blob's bytes, decompressed (gzip, zstd or none), as a libarchive
 * "raw" stream. */
static struct archive *open_decompressed(int fd, const char *digest, struct kn_error **err)
{
    if (lseek(fd, 0, SEEK_SET) < 0) {
        kn_err_sys(err, "cannot seek in blob %s", digest);
        return NULL;
    }
    struct archive *a = archive_read_new();
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_raw(a);
    struct archive_entry *e;
    if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK ||
        archive_read_next_header(a, &e) != ARCHIVE_OK) {
        kn_err_set(err, KN_E_PARSE, "cannot decompress layer %s: %s", digest,
                   archive_error_string(a) ? archive_error_string(a) : "empty");
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* Size and digest of the decompressed blob. */
static int measure_layer(int fd, const char *digest, char *buf, uint64_t *size,
                         char got[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct archive *a = open_decompressed(fd, digest, err);
    if (!a)
        return -1;
    struct kn_sha256 h;
    kn_sha256_init(&h);
    *size = 0;
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, 1 << 16)) > 0) {
        kn_sha256_update(&h, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    kn_sha256_final(&h, got);
    if (n < 0)
        kn_err_set(err, KN_E_PARSE, "cannot decompress layer %s: %s", digest,
                   archive_error_string(a));
    archive_read_free(a);
    return n < 0 ? -1 : 0;
}

static int copy_layer(struct tarw *t, int fd, const char *digest, char *buf, uint64_t size,
                      struct kn_error **err)
{
    struct archive *a = open_decompressed(fd, digest, err);
    if (!a)
        return -1;
    uint64_t copied = 0;
    la_ssize_t n;
    int rc = 0;
    while ((n = archive_read_data(a, buf, 1 << 16)) > 0) {
        copied += (uint64_t)n;
        if (copied > size)
            break;
        if (tarw_data(t, buf, (size_t)n, err) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && (n < 0 || copied != size))
        rc = kn_err_set(err, KN_E_IO, "layer %s changed while writing '%s'", digest, t->dest);
    archive_read_free(a);
    return rc;
}

/* Writes a layer as an uncompressed member: one pass to size and verify it
 * against its diff_id, one to copy. */
static int tarw_layer(struct tarw *t, struct ex_store *s, const char *name,
                      const struct ex_descriptor *d, const char *diff_id, struct kn_error **err)
{
    int fd = ex_store_blob_open(s, d->digest, err);
    if (fd < 0)
        return -1;
    char *buf = kn_malloc(1 << 16);
    uint64_t size;
    char got[KN_DIGEST_SIZE];
    int rc = measure_layer(fd, d->digest, buf, &size, got, err);
    if (rc == 0 && strcmp(got, diff_id) != 0)
        rc = kn_err_set(err, KN_E_DIGEST,
                        "layer %s: uncompressed content %s does not match diff_id %s", d->digest,
                        got, diff_id);
    if (rc == 0)
        rc = tarw_header(t, name, false, size, err);
    if (rc == 0)
        rc = copy_layer(t, fd, d->digest, buf, size, err);
    free(buf);
    close(fd);
    return rc;
}

int ex_export_docker_archive(struct ex_store *s, const struct ex_image *img, const char *file,
                             char *const *repo_tags, size_t ntags, struct kn_error **err)
{
    if (ex_image_check_blobs(s, img, err) < 0)
        return -1;
    /* RepoTags in docker's familiar form; untaggable names are skipped */
    json_t *tags = json_array();
    json_t *repos = json_object();
    const char *top = img->nlayers ? kn_digest_hex(img->diff_ids[img->nlayers - 1]) : NULL;
    for (size_t i = 0; i < ntags; i++) {
        struct ex_ref r;
        if (ex_ref_parse(repo_tags[i], &r, err) < 0) {
            json_decref(tags);
            json_decref(repos);
            return kn_err_wrap(err, "docker archive tag");
        }
        if (r.tag) {
            char *fam = ex_ref_familiar(&r);
            char *colon = strrchr(fam, ':');
            json_array_append_new(tags, json_string(fam));
            if (colon && top) {
                *colon = 0;
                json_t *t = json_object_get(repos, fam);
                if (!t) {
                    t = json_object();
                    json_object_set_new(repos, fam, t);
                }
                json_object_set_new(t, colon + 1, json_string(top));
            }
            free(fam);
        }
        ex_ref_release(&r);
    }
    char cfgname[96];
    snprintf(cfgname, sizeof(cfgname), "%s.json", kn_digest_hex(img->config.digest));
    json_t *layers = json_array();
    for (size_t i = 0; i < img->nlayers; i++) {
        char *n = kn_asprintf("%s.tar", kn_digest_hex(img->diff_ids[i]));
        json_array_append_new(layers, json_string(n));
        free(n);
    }
    json_t *entry = json_object();
    json_object_set_new(entry, "Config", json_string(cfgname));
    json_object_set_new(entry, "RepoTags", tags);
    json_object_set_new(entry, "Layers", layers);
    json_t *manifest = json_array();
    json_array_append_new(manifest, entry);
    size_t mlen, rlen;
    char *mjson = exi_json_dump(manifest, &mlen);
    char *rjson = exi_json_dump(repos, &rlen);
    json_decref(manifest);
    json_decref(repos);

    struct tarw t;
    int rc = tarw_open(&t, file, err);
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(img->diff_ids[k], img->diff_ids[i]) == 0;
        if (dup)
            continue;
        char name[96];
        snprintf(name, sizeof(name), "%s.tar", kn_digest_hex(img->diff_ids[i]));
        rc = tarw_layer(&t, s, name, &img->layers[i], img->diff_ids[i], err);
    }
    if (rc == 0)
        rc = tarw_bytes(&t, cfgname, img->config_json, img->config_len, err);
    if (rc == 0)
        rc = tarw_bytes(&t, "manifest.json", mjson, mlen, err);
    if (rc == 0 && rlen > 2)
        rc = tarw_bytes(&t, "repositories", rjson, rlen, err);
    free(mjson);
    free(rjson);
    if (rc < 0) {
        tarw_abort(&t);
        return -1;
    }
    return tarw_finish(&t, err);
}
