/*
 * Least-recently-used prune of the store.
 *
 * Every entry (cache entry, unpacked layer, blob) carries its last use in
 * its atime, set explicitly by ex_store_touch() on every lookup (an atime
 * never changes content, and explicit utimensat works under noatime and
 * relatime alike). A cache entry refers to the blobs and layers whose
 * digests appear in its value; such an entry counts as used whenever the
 * cache entry was, so it goes only after (or with) the last entry that
 * refers to it. Entries are removed oldest first, ties broken cache entries
 * first, then layers (they can be unpacked again from their blobs), then
 * blobs, until the store holds at most `keep` bytes. keep == 0 empties it.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum entry_kind { K_CACHE, K_LAYER, K_BLOB };

struct entry {
    enum entry_kind kind;
    char hex[65];
    uint64_t size;
    int64_t used; /* ns since the epoch */
};

struct entry_vec {
    struct entry *v;
    size_t n, cap;
};

static const char *const kind_dir[] = {EX_STORE_CACHE, EX_STORE_LAYERS, EX_STORE_BLOBS};

static bool is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

static int collect(struct ex_store *s, enum entry_kind kind, struct entry_vec *out,
                   struct kn_error **err)
{
    int dfd = openat(s->rootfd, kind_dir[kind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : kn_err_sys(err, "cannot open '%s'", kind_dir[kind]);
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return kn_err_sys(err, "cannot read '%s'", kind_dir[kind]);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!is_hex64(de->d_name))
            continue;
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        struct entry e = {.kind = kind};
        memcpy(e.hex, de->d_name, 65);
        e.used = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
        rc = ex_du_at(dfd, de->d_name, &e.size, err);
        kn_vec_push(out, e);
    }
    closedir(d);
    return rc;
}

static int cmp_hex(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return strcmp(x->hex, y->hex);
}

static int cmp_lru(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->used != y->used)
        return x->used < y->used ? -1 : 1;
    return cmp_hex(a, b);
}

/* Bumps the use time of every blob or layer whose digest c's value names. */
static void propagate_refs(struct ex_store *s, const struct entry *c, struct entry *v, size_t n)
{
    char *rel = kn_asprintf(EX_STORE_CACHE "/%s", c->hex);
    struct kn_buf b = KN_BUF_INIT;
    char *path = kn_asprintf("%s/%s", s->root, rel);
    struct kn_error *e = NULL;
    if (kn_buf_read_file(&b, path, 16u << 20, &e) < 0) {
        kn_err_free(e);
    } else {
        for (const char *p = b.data; (p = strstr(p, "sha256:")); p += 7) {
            char hex[65];
            if (strlen(p + 7) < 64)
                break;
            memcpy(hex, p + 7, 64);
            hex[64] = '\0';
            if (!is_hex64(hex))
                continue;
            for (int k = K_LAYER; k <= K_BLOB; k++) {
                struct entry key = {.kind = (enum entry_kind)k};
                memcpy(key.hex, hex, 65);
                struct entry *hit = bsearch(&key, v, n, sizeof(*v), cmp_hex);
                if (hit && hit->used < c->used)
                    hit->used = c->used;
            }
        }
    }
    kn_buf_release(&b);
    free(path);
    free(rel);
}

static int prune_locked(struct ex_store *s, uint64_t keep, uint64_t *freed, struct kn_error **err)
{
    struct entry_vec v = {0};
    int rc = 0;
    for (int k = K_CACHE; k <= K_BLOB && rc == 0; k++)
        rc = collect(s, (enum entry_kind)k, &v, err);
    if (rc < 0) {
        free(v.v);
        return -1;
    }
    /* (an empty store has no array at all: qsort's pointer must not be NULL) */
    if (v.n) {
        qsort(v.v, v.n, sizeof(*v.v), cmp_hex);
        for (size_t i = 0; i < v.n && v.v[i].kind == K_CACHE; i++)
            propagate_refs(s, &v.v[i], v.v, v.n);
        qsort(v.v, v.n, sizeof(*v.v), cmp_lru);
    }
    uint64_t total = 0, gone = 0;
    for (size_t i = 0; i < v.n; i++)
        total += v.v[i].size;
    for (size_t i = 0; i < v.n && total > keep && rc == 0; i++) {
        char *rel = kn_asprintf("%s/%s", kind_dir[v.v[i].kind], v.v[i].hex);
        kn_debug("store: prune %s (%llu bytes)", rel, (unsigned long long)v.v[i].size);
        rc = ex_rm_rf_at(s->rootfd, rel, err);
        free(rel);
        if (rc == 0) {
            total -= v.v[i].size;
            gone += v.v[i].size;
        }
    }
    free(v.v);
    if (freed)
        *freed = gone;
    return rc;
}

int ex_store_usage(struct ex_store *s, uint64_t *bytes, struct kn_error **err)
{
    struct entry_vec v = {0};
    int rc = 0;
    for (int k = K_CACHE; k <= K_BLOB && rc == 0; k++)
        rc = collect(s, (enum entry_kind)k, &v, err);
    uint64_t total = 0;
    for (size_t i = 0; i < v.n; i++)
        total += v.v[i].size;
    free(v.v);
    if (rc == 0)
        *bytes = total;
    return rc;
}

int ex_store_prune(struct ex_store *s, uint64_t keep, uint64_t *freed, struct kn_error **err)
{
    pthread_mutex_lock(&s->lock_mu);
    /* Converting the shared lock: other kiln processes hold it shared for
     * as long as they run, and prune must not pull entries from under them. */
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        int rc = errno == EWOULDBLOCK
                     ? kn_err_set(err, KN_E_FAILED,
                                  "cannot prune store '%s': it is in use by another kiln process",
                                  s->root)
                     : kn_err_sys(err, "cannot lock store '%s'", s->root);
        /* a failed conversion may have dropped the shared lock */
        (void)flock(s->lockfd, LOCK_SH);
        pthread_mutex_unlock(&s->lock_mu);
        return rc;
    }
    int rc = prune_locked(s, keep, freed, err);
    (void)flock(s->lockfd, LOCK_SH);
    pthread_mutex_unlock(&s->lock_mu);
    return rc;
}
