/*
 * Content checksums for COPY/ADD cache keys, and the process-wide cache of
 * per-file content hashes behind them.
 *
 * A copy action's checksum covers exactly what it copies: the sources after
 * wildcard matching, the view's .dockerignore patterns and the action's
 * --exclude patterns, walked in sorted order. Each entry contributes its
 * path (relative to the match, prefixed by the match's path), its type and
 * permission bits, its owner when the view keeps owners (another stage or
 * an image; a context's files all become 0:0), a symlink's target and a
 * regular file's content sha256. Mtimes are left out: touching a file does
 * not bust the cache, editing it does. The content hash of a file is cached
 * by (dev, ino, size, mtime ns, ctime ns), so a context is read once per
 * process however many COPYs look at it; any change to the file changes
 * ctime and misses the cache.
 */
#include "exec/fileop/plan.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct hkey {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
};

/* 72 bytes a file in a dense array, found through a table of 32-bit
 * indexes kept at most half full (4 to 8 bytes a file): 100,000 files take
 * about 8 MiB (a table of 80-byte slots took 21 MiB, and 31 while it grew) */
struct hent {
    struct hkey k;
    unsigned char digest[32];
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hent *cache_v; /* cache_n entries, cache_vcap allocated */
static size_t cache_n, cache_vcap;
static uint32_t *cache_idx; /* entry index + 1, 0 for an empty slot */
static size_t cache_cap;    /* slots in cache_idx, a power of two */
static struct ex_fileop_hash_stats cache_stats;

#define CACHE_MAX 4000000 /* entries; beyond this the cache is reset */

static size_t hkey_hash(const struct hkey *k)
{
    uint64_t h = (uint64_t)k->dev * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)k->ino + 0x7f4a7c15ull + (h << 6) + (h >> 2);
    h ^= (uint64_t)k->size * 0xbf58476d1ce4e5b9ull;
    h ^= (uint64_t)k->mtime_ns * 0x94d049bb133111ebull;
    h ^= (uint64_t)k->ctime_ns;
    return (size_t)(h ^ (h >> 31));
}

static bool hkey_eq(const struct hkey *a, const struct hkey *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

/* The slot holding k, or the empty one where it would go. */
static uint32_t *cache_slot(const struct hkey *k)
{
    for (size_t j = hkey_hash(k) & (cache_cap - 1);; j = (j + 1) & (cache_cap - 1)) {
        uint32_t x = cache_idx[j];
        if (!x || hkey_eq(&cache_v[x - 1].k, k))
            return &cache_idx[j];
    }
}

static const struct hent *cache_find(const struct hkey *k)
{
    if (!cache_cap)
        return NULL;
    uint32_t x = *cache_slot(k);
    return x ? &cache_v[x - 1] : NULL;
}

static void cache_reset(void)
{
    free(cache_v);
    free(cache_idx);
    cache_v = NULL;
    cache_idx = NULL;
    cache_n = cache_vcap = cache_cap = 0;
}

static void cache_insert(const struct hkey *k, const unsigned char digest[32])
{
    if (cache_n >= CACHE_MAX)
        cache_reset();
    if ((cache_n + 1) * 2 > cache_cap) {
        size_t ncap = cache_cap ? cache_cap * 2 : 1024;
        free(cache_idx);
        cache_idx = kn_calloc(ncap, sizeof(*cache_idx));
        cache_cap = ncap;
        for (size_t i = 0; i < cache_n; i++)
            *cache_slot(&cache_v[i].k) = (uint32_t)(i + 1);
    }
    uint32_t *s = cache_slot(k);
    if (*s) {
        memcpy(cache_v[*s - 1].digest, digest, 32);
        return;
    }
    cache_v = kn_grow(cache_v, &cache_vcap, cache_n + 1, sizeof(*cache_v));
    cache_v[cache_n].k = *k;
    memcpy(cache_v[cache_n].digest, digest, 32);
    *s = (uint32_t)++cache_n;
}

void ex_fileop_hash_stats(struct ex_fileop_hash_stats *out)
{
    pthread_mutex_lock(&cache_mu);
    *out = cache_stats;
    pthread_mutex_unlock(&cache_mu);
}

void ex_fileop_hash_cache_clear(void)
{
    pthread_mutex_lock(&cache_mu);
    cache_reset();
    memset(&cache_stats, 0, sizeof(cache_stats));
    pthread_mutex_unlock(&cache_mu);
}

/* ---- the cache on disk ----------------------------------------------------
 *
 * Between builds the cache lives in a file of fixed-size records, so a
 * no-change rebuild re-reads nothing. Entries whose mtime or ctime is within
 * a couple of seconds of the save are not written: a file changed again in
 * the same timestamp tick after it was hashed would otherwise keep a stale
 * hash (git's "racily clean" problem). */

#define HC_MAGIC "KILNHC1\n"

struct hrec {
    uint64_t dev, ino;
    int64_t size, mtime_ns, ctime_ns;
    unsigned char digest[32];
};

int ex_fileop_hash_cache_load(const char *path, struct kn_error **err)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return errno == ENOENT ? 0 : kn_err_sys(err, "cannot open '%s'", path);
    char magic[8];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, HC_MAGIC, 8) != 0) {
        fclose(f);
        kn_warn("ignoring the hash cache '%s': not a kiln hash cache", path);
        return 0;
    }
    struct hrec r;
    size_t n = 0;
    pthread_mutex_lock(&cache_mu);
    while (n < CACHE_MAX / 2 && fread(&r, sizeof(r), 1, f) == 1) {
        struct hkey k = {.dev = (dev_t)r.dev,
                         .ino = (ino_t)r.ino,
                         .size = (off_t)r.size,
                         .mtime_ns = r.mtime_ns,
                         .ctime_ns = r.ctime_ns};
        cache_insert(&k, r.digest);
        n++;
    }
    pthread_mutex_unlock(&cache_mu);
    fclose(f);
    return 0;
}

int ex_fileop_hash_cache_save(const char *path, struct kn_error **err)
{
    char *tmp = kn_asprintf("%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "wbxe");
    if (!f) {
        int rc = kn_err_sys(err, "cannot create '%s'", tmp);
        free(tmp);
        return rc;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t fresh = ((int64_t)now.tv_sec - 2) * 1000000000;
    bool ok = fwrite(HC_MAGIC, 1, 8, f) == 8;
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; ok && i < cache_n; i++) {
        const struct hent *sl = &cache_v[i];
        if (sl->k.mtime_ns >= fresh || sl->k.ctime_ns >= fresh)
            continue;
        struct hrec r;
        memset(&r, 0, sizeof(r));
        r.dev = (uint64_t)sl->k.dev;
        r.ino = (uint64_t)sl->k.ino;
        r.size = (int64_t)sl->k.size;
        r.mtime_ns = sl->k.mtime_ns;
        r.ctime_ns = sl->k.ctime_ns;
        memcpy(r.digest, sl->digest, 32);
        ok = fwrite(&r, sizeof(r), 1, f) == 1;
    }
    pthread_mutex_unlock(&cache_mu);
    if (fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) < 0) {
        int rc = kn_err_sys(err, "cannot write the hash cache '%s'", path);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return 0;
}

static struct hkey key_of(const struct stat *st)
{
    struct hkey k = {.dev = st->st_dev,
                     .ino = st->st_ino,
                     .size = st->st_size,
                     .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                     .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec};
    return k;
}

/* A hit for a file by the stat its walk already has: no open, no read.
 * count: a lookup the statistics report (the read-ahead's are not). */
static bool cache_lookup(const struct stat *st, char out[KN_DIGEST_SIZE], bool count)
{
    struct hkey k = key_of(st);
    pthread_mutex_lock(&cache_mu);
    const struct hent *s = cache_find(&k);
    if (s && out)
        kn_digest_from_raw(s->digest, out);
    if (s && count)
        cache_stats.hits++;
    pthread_mutex_unlock(&cache_mu);
    return s != NULL;
}

/* Hashes fd's content and caches it under k (a miss in the statistics). */
static int hash_and_cache(int fd, const struct hkey *k, char out[KN_DIGEST_SIZE],
                          struct kn_error **err)
{
    struct kn_sha256 h;
    kn_sha256_init(&h);
    static const size_t bufsz = 1 << 17;
    char *buf = kn_malloc(bufsz);
    uint64_t total = 0;
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, bufsz, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = kn_err_sys(err, "cannot read a source file");
            kn_sha256_release(&h);
            free(buf);
            return rc;
        }
        if (n == 0)
            break;
        kn_sha256_update(&h, buf, (size_t)n);
        off += n;
        total += (uint64_t)n;
    }
    free(buf);
    kn_sha256_final(&h, out);
    unsigned char raw[32];
    kn_digest_to_raw(out, raw);
    pthread_mutex_lock(&cache_mu);
    cache_stats.misses++;
    cache_stats.bytes_hashed += total;
    cache_insert(k, raw);
    pthread_mutex_unlock(&cache_mu);
    return 0;
}

int fo_hash_file(int fd, const struct stat *st, char out[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct stat cur;
    if (fstat(fd, &cur) < 0)
        return kn_err_sys(err, "cannot stat a source file");
    (void)st;
    if (cache_lookup(&cur, out, true))
        return 0;
    struct hkey k = key_of(&cur);
    return hash_and_cache(fd, &k, out, err);
}

/* ---- the checksum of an action ---------------------------------------------- */

/* The read-ahead: while the walk goes through the sources in order, a
 * second thread walks them from the end, hashing files into the cache, and
 * stops where the two meet (its first file that is cached or being hashed
 * by the walk); the walk then finds the rest cached. No file is read twice:
 * each thread marks the file it is hashing, and the walk waits for one the
 * read-ahead is hashing rather than hashing it too. A warm cache stops the
 * read-ahead at its first file. */
struct ck_share {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct hkey fwd, back; /* the files being hashed, by the walk and the read-ahead */
    bool fwd_busy, back_busy;
    _Atomic bool stop;
};

struct ck {
    const struct ex_view *v;
    struct kn_sha256 h;
    struct kn_patterns *exclude;
    struct ck_share *share; /* NULL: no read-ahead */
};

/* The walk's hash of a regular file: cached, being hashed by the
 * read-ahead (wait for it), or hashed here. */
static int ck_hash(struct ck *c, const struct vnode *n, char d[KN_DIGEST_SIZE],
                   struct kn_error **err)
{
    struct ck_share *sh = c->share;
    struct hkey k = key_of(&n->st);
    if (sh) {
        pthread_mutex_lock(&sh->mu);
        while (sh->back_busy && hkey_eq(&sh->back, &k))
            pthread_cond_wait(&sh->cond, &sh->mu);
        sh->fwd = k;
        sh->fwd_busy = true;
        pthread_mutex_unlock(&sh->mu);
    }
    int rc = 0;
    if (!cache_lookup(&n->st, d, true)) {
        int fd = view_open_node(c->v, n, err);
        rc = fd < 0 ? -1 : fo_hash_file(fd, &n->st, d, err);
        if (fd >= 0)
            close(fd);
    }
    if (sh) {
        pthread_mutex_lock(&sh->mu);
        sh->fwd_busy = false;
        pthread_mutex_unlock(&sh->mu);
    }
    return rc;
}

static int ck_entry(struct ck *c, const char *path, const struct vnode *n, struct kn_error **err)
{
    const struct stat *st = &n->st;
    char rec[256];
    int len = snprintf(rec, sizeof(rec), "%o %o", (unsigned)(st->st_mode & S_IFMT) >> 12,
                       (unsigned)(st->st_mode & 07777));
    kn_sha256_update(&c->h, path, strlen(path) + 1);
    kn_sha256_update(&c->h, rec, (size_t)len + 1);
    if (c->v->keep_owners) {
        len = snprintf(rec, sizeof(rec), "%ju:%ju", (uintmax_t)st->st_uid, (uintmax_t)st->st_gid);
        kn_sha256_update(&c->h, rec, (size_t)len + 1);
    }
    if (S_ISLNK(st->st_mode)) {
        char *t = view_readlink(c->v, n->layer, n->path, err);
        if (!t)
            return -1;
        kn_sha256_update(&c->h, t, strlen(t) + 1);
        free(t);
    } else if (S_ISREG(st->st_mode)) {
        char d[KN_DIGEST_SIZE];
        if (ck_hash(c, n, d, err) < 0)
            return -1;
        kn_sha256_update(&c->h, d, KN_DIGEST_LEN + 1);
    } else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
        len = snprintf(rec, sizeof(rec), "%ju", (uintmax_t)st->st_rdev);
        kn_sha256_update(&c->h, rec, (size_t)len + 1);
    }
    kn_sha256_update(&c->h, "\n", 1);
    return 0;
}

static int ck_walk(struct ck *c, const char *path, const char *rel, const struct vnode *n,
                   int depth, struct kn_error **err)
{
    if (ck_entry(c, path, n, err) < 0)
        return -1;
    if (!S_ISDIR(n->st.st_mode))
        return 0;
    if (depth > FO_MAX_DEPTH)
        return kn_err_set(err, KN_E_UNSAFE, "'%s' is nested too deeply", path);
    struct ventry *ents = NULL;
    size_t ne = 0;
    if (view_list(c->v, n, &ents, &ne, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < ne && rc == 0; i++) {
        char *cp = fo_join(path, ents[i].name);
        char *cr = fo_join(rel, ents[i].name);
        if (!action_excluded(c->exclude, cp, cr)) {
            struct vnode cn;
            int f = view_child_entry(c->v, n, &ents[i], &cn, err);
            if (f < 0)
                rc = -1;
            if (f > 0) {
                rc = ck_walk(c, cp, cr, &cn, depth + 1, err);
                vnode_release(&cn);
            }
        }
        free(cp);
        free(cr);
    }
    ventries_free(ents, ne);
    return rc;
}

struct ahead {
    struct ck_share share;
    const struct ex_view *v;
    const struct ir_file_action *a;
    struct kn_patterns *exclude;
    const struct srcmatch *m;
    size_t nm;
};

/* The read-ahead's walk, last entry first. 1: stop (met the walk, told to
 * stop, or an error, which the walk will meet and report). */
static int ahead_walk(struct ahead *ra, const char *path, const char *rel, const struct vnode *n,
                      int depth)
{
    struct ck_share *sh = &ra->share;
    if (atomic_load(&sh->stop))
        return 1;
    if (S_ISREG(n->st.st_mode)) {
        struct hkey k = key_of(&n->st);
        pthread_mutex_lock(&sh->mu);
        bool met = (sh->fwd_busy && hkey_eq(&sh->fwd, &k)) || cache_lookup(&n->st, NULL, false);
        if (!met) {
            sh->back = k;
            sh->back_busy = true;
        }
        pthread_mutex_unlock(&sh->mu);
        if (met)
            return 1;
        struct kn_error *e = NULL;
        char d[KN_DIGEST_SIZE];
        int fd = view_open_node(ra->v, n, &e);
        int rc = fd < 0 ? -1 : hash_and_cache(fd, &k, d, &e);
        if (fd >= 0)
            close(fd);
        kn_err_free(e);
        pthread_mutex_lock(&sh->mu);
        sh->back_busy = false;
        pthread_cond_broadcast(&sh->cond);
        pthread_mutex_unlock(&sh->mu);
        return rc < 0;
    }
    if (!S_ISDIR(n->st.st_mode))
        return 0;
    if (depth > FO_MAX_DEPTH)
        return 1;
    struct ventry *ents = NULL;
    size_t ne = 0;
    struct kn_error *e = NULL;
    if (view_list(ra->v, n, &ents, &ne, &e) < 0) {
        kn_err_free(e);
        return 1;
    }
    int stop = 0;
    for (size_t i = ne; i-- > 0 && !stop;) {
        char *cp = fo_join(path, ents[i].name);
        char *cr = fo_join(rel, ents[i].name);
        if (!action_excluded(ra->exclude, cp, cr)) {
            struct vnode cn;
            int f = view_child_entry(ra->v, n, &ents[i], &cn, &e);
            if (f < 0) {
                kn_err_free(e);
                e = NULL;
                stop = 1;
            } else if (f > 0) {
                stop = ahead_walk(ra, cp, cr, &cn, depth + 1);
                vnode_release(&cn);
            }
        }
        free(cp);
        free(cr);
    }
    ventries_free(ents, ne);
    return stop;
}

static void *ahead_main(void *arg)
{
    struct ahead *ra = arg;
    for (size_t i = ra->nm; i-- > 0;) {
        const struct srcmatch *m = &ra->m[i];
        if ((ra->a->flags & IR_FF_WILDCARD) && action_excluded(ra->exclude, m->written, m->base))
            continue;
        if (ahead_walk(ra, m->written, "", &m->node, 0))
            break;
    }
    return NULL;
}

int ex_fileop_checksum(const struct ex_view *v, const struct ir_file_action *a,
                       char out[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct ck c = {.v = v};
    if (a->kind != IR_FILE_COPY) {
        kn_sha256_digest("", 0, out);
        return 0;
    }
    if (a->nexclude) {
        c.exclude = kn_patterns_new(a->exclude, a->nexclude, err);
        if (!c.exclude)
            return -1;
    }
    struct srcmatch *m = NULL;
    size_t nm = 0;
    if (sources_resolve(v, a, &m, &nm, err) < 0) {
        kn_patterns_free(c.exclude);
        return -1;
    }
    /* the read-ahead, where there is a second CPU and more than a file */
    struct ahead *ra = NULL;
    pthread_t th;
    static long ncpu;
    if (!ncpu)
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 1 && (nm > 1 || (nm == 1 && S_ISDIR(m[0].node.st.st_mode)))) {
        ra = kn_calloc(1, sizeof(*ra));
        pthread_mutex_init(&ra->share.mu, NULL);
        pthread_cond_init(&ra->share.cond, NULL);
        ra->v = v;
        ra->a = a;
        ra->exclude = c.exclude;
        ra->m = m;
        ra->nm = nm;
        if (pthread_create(&th, NULL, ahead_main, ra) == 0) {
            c.share = &ra->share;
        } else {
            pthread_mutex_destroy(&ra->share.mu);
            pthread_cond_destroy(&ra->share.cond);
            free(ra);
            ra = NULL;
        }
    }
    kn_sha256_init(&c.h);
    int rc = 0;
    for (size_t i = 0; i < nm && rc == 0; i++) {
        if ((a->flags & IR_FF_WILDCARD) && action_excluded(c.exclude, m[i].written, m[i].base))
            continue;
        /* a match is named by its path in the source: renaming it changes the key */
        char *top = kn_strdup(m[i].written);
        rc = ck_walk(&c, top, "", &m[i].node, 0, err);
        free(top);
    }
    if (ra) {
        atomic_store(&ra->share.stop, true);
        pthread_join(th, NULL);
        pthread_mutex_destroy(&ra->share.mu);
        pthread_cond_destroy(&ra->share.cond);
        free(ra);
    }
    if (rc == 0)
        kn_sha256_final(&c.h, out);
    else
        kn_sha256_release(&c.h);
    sources_free(m, nm);
    kn_patterns_free(c.exclude);
    return rc;
}
