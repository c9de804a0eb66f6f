/*
 * Blobs: content-addressed files under ROOT/blobs/sha256. Every blob is
 * written by a blob writer: bytes go to a temporary file in this process's
 * temp dir while being hashed; commit compares the digest, fsyncs the file,
 * and renames it into place with RENAME_NOREPLACE (a concurrent writer of
 * the same digest wrote the same bytes, so losing the race is success).
 * Stored blobs are read-only (0444) and never modified.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ex_blob_writer {
    struct ex_store *s;
    char *tmp;
    int fd;
    struct kn_sha256 h;
    uint64_t size;
};

static char *blob_rel(const char *digest)
{
    return kn_asprintf(EX_STORE_BLOBS "/%s", kn_digest_hex(digest));
}

char *ex_store_blob_path(const struct ex_store *s, const char *digest)
{
    const char *hex = kn_digest_valid(digest) ? kn_digest_hex(digest) : "invalid";
    return kn_asprintf("%s/" EX_STORE_BLOBS "/%s", s->root, hex);
}

bool ex_store_has_blob(struct ex_store *s, const char *digest)
{
    if (!kn_digest_valid(digest))
        return false;
    char *rel = blob_rel(digest);
    struct stat st;
    bool has = fstatat(s->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    if (has)
        ex_store_touch(s, rel);
    free(rel);
    return has;
}

int ex_store_blob_open(struct ex_store *s, const char *digest, struct kn_error **err)
{
    if (!kn_digest_valid(digest))
        return kn_err_set(err, KN_E_PARSE, "invalid digest '%s'", digest);
    char *rel = blob_rel(digest);
    int fd = openat(s->rootfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            kn_err_set(err, KN_E_NOTFOUND, "blob '%s' not found in the store", digest);
        else
            kn_err_sys(err, "cannot open blob '%s'", digest);
    } else {
        ex_store_touch(s, rel);
    }
    free(rel);
    return fd;
}

int64_t ex_store_blob_size(struct ex_store *s, const char *digest, struct kn_error **err)
{
    if (!kn_digest_valid(digest))
        return kn_err_set(err, KN_E_PARSE, "invalid digest '%s'", digest);
    char *rel = blob_rel(digest);
    struct stat st;
    int rc = fstatat(s->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW);
    free(rel);
    if (rc < 0) {
        if (errno == ENOENT)
            return kn_err_set(err, KN_E_NOTFOUND, "blob '%s' not found in the store", digest);
        return kn_err_sys(err, "cannot stat blob '%s'", digest);
    }
    return (int64_t)st.st_size;
}

int ex_store_blob_read(struct ex_store *s, const char *digest, struct kn_buf *out, size_t max,
                       struct kn_error **err)
{
    int fd = ex_store_blob_open(s, digest, err);
    if (fd < 0)
        return -1;
    kn_buf_reset(out);
    struct kn_sha256 h;
    kn_sha256_init(&h);
    char buf[16384];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = kn_err_sys(err, "cannot read blob '%s'", digest);
            break;
        }
        if (n == 0)
            break;
        if (out->len + (size_t)n > max) {
            rc = kn_err_set(err, KN_E_UNSAFE, "blob '%s' is larger than %zu bytes", digest, max);
            break;
        }
        kn_sha256_update(&h, buf, (size_t)n);
        kn_buf_add(out, buf, (size_t)n);
    }
    close(fd);
    if (rc < 0) {
        kn_sha256_release(&h);
        return -1;
    }
    if (!out->data)
        kn_buf_adds(out, "");
    char got[KN_DIGEST_SIZE];
    kn_sha256_final(&h, got);
    if (strcmp(got, digest) != 0)
        return kn_err_set(err, KN_E_DIGEST, "blob '%s' is corrupt: its content has digest '%s'",
                          digest, got);
    return 0;
}

int ex_store_blob_put(struct ex_store *s, const void *data, size_t len, const char *expected,
                      char out[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct ex_blob_writer *w = ex_blob_writer_new(s, err);
    if (!w)
        return -1;
    if (ex_blob_writer_write(w, data, len, err) < 0) {
        ex_blob_writer_abort(w);
        return -1;
    }
    return ex_blob_writer_commit(w, expected, out, NULL, err);
}

struct ex_blob_writer *ex_blob_writer_new(struct ex_store *s, struct kn_error **err)
{
    char *t = kn_asprintf("%s/blob-XXXXXX", s->tmpdir);
    int fd = mkostemp(t, O_CLOEXEC);
    if (fd < 0) {
        kn_err_sys(err, "cannot create temporary file '%s'", t);
        free(t);
        return NULL;
    }
    struct ex_blob_writer *w = kn_calloc(1, sizeof(*w));
    w->s = s;
    w->tmp = t;
    w->fd = fd;
    kn_sha256_init(&w->h);
    return w;
}

int ex_blob_writer_write(struct ex_blob_writer *w, const void *data, size_t n,
                         struct kn_error **err)
{
    kn_sha256_update(&w->h, data, n);
    const char *p = data;
    while (n > 0) {
        ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return kn_err_sys(err, "cannot write temporary blob '%s'", w->tmp);
        p += r;
        n -= (size_t)r;
        w->size += (uint64_t)r;
    }
    return 0;
}

uint64_t ex_blob_writer_size(const struct ex_blob_writer *w)
{
    return w->size;
}

void ex_blob_writer_abort(struct ex_blob_writer *w)
{
    if (!w)
        return;
    if (w->h.ctx)
        kn_sha256_release(&w->h);
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp);
    free(w->tmp);
    free(w);
}

int ex_blob_writer_commit(struct ex_blob_writer *w, const char *expected, char out[KN_DIGEST_SIZE],
                          uint64_t *size, struct kn_error **err)
{
    char got[KN_DIGEST_SIZE];
    kn_sha256_final(&w->h, got);
    if (expected && strcmp(got, expected) != 0) {
        kn_err_set(err, KN_E_DIGEST, "digest mismatch: expected '%s', got '%s'", expected, got);
        ex_blob_writer_abort(w);
        return -1;
    }
    /* the data must be durable before the name says the blob exists */
    if (fchmod(w->fd, 0444) < 0 || fsync(w->fd) < 0) {
        kn_err_sys(err, "cannot write temporary blob '%s'", w->tmp);
        ex_blob_writer_abort(w);
        return -1;
    }
    close(w->fd);
    w->fd = -1;
    struct ex_store *s = w->s;
    char *rel = blob_rel(got);
    int rc = 0;
    if (renameat2(AT_FDCWD, w->tmp, s->rootfd, rel, RENAME_NOREPLACE) < 0) {
        if (errno == EEXIST) {
            ex_store_touch(s, rel); /* a concurrent writer stored the same bytes */
        } else if (errno == EINVAL && renameat(AT_FDCWD, w->tmp, s->rootfd, rel) == 0) {
            /* no RENAME_NOREPLACE on this filesystem: same bytes, replace */
        } else {
            rc = kn_err_sys(err, "cannot store blob '%s'", got);
        }
    } else {
        int dfd = openat(s->rootfd, EX_STORE_BLOBS, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        w->tmp[0] = '\0';
    }
    free(rel);
    if (rc == 0) {
        if (out)
            memcpy(out, got, KN_DIGEST_SIZE);
        if (size)
            *size = w->size;
    }
    if (w->tmp[0])
        unlink(w->tmp);
    free(w->tmp);
    free(w);
    return rc;
}
