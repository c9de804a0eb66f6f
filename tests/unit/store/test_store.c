/*
 * Unit tests for exec/store: blobs, the streaming blob writer, digest
 * checks, concurrent writers (threads and processes), crash safety under
 * SIGKILL, stale temp cleanup, layers, the cache index and LRU prune.
 */
#include "exec/store/internal.h"
#include "tap_fmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char *root;

static int count_dir(const char *path, bool skip_dot)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            !(skip_dot && de->d_name[0] == '.'))
            n++;
    closedir(d);
    return n;
}

static char *sub(const char *rel)
{
    return kn_asprintf("%s/%s", root, rel);
}

static int count_sub(const char *rel)
{
    char *p = sub(rel);
    int n = count_dir(p, false);
    free(p);
    return n;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

static void test_blobs(struct ex_store *s)
{
    struct kn_error *err = NULL;
    char d[KN_DIGEST_SIZE], want[KN_DIGEST_SIZE];
    kn_sha256_digest("hello", 5, want);
    check(ex_store_blob_put(s, "hello", 5, NULL, d, &err) == 0, "put a small blob");
    is_str(d, want, "put returns the digest");
    check(ex_store_has_blob(s, want), "has_blob after put");
    is_int(ex_store_blob_size(s, want, &err), 5, "blob size");
    struct kn_buf b = KN_BUF_INIT;
    check(ex_store_blob_read(s, want, &b, 100, &err) == 0 && b.len == 5 &&
              memcmp(b.data, "hello", 5) == 0,
          "blob_read returns the content");
    check(ex_store_blob_read(s, want, &b, 3, &err) == -1 && err && err->code == KN_E_UNSAFE,
          "blob_read refuses more than max");
    if (err)
        is_str(err->msg, F("blob '%s' is larger than 3 bytes", want), "max message");
    kn_err_free(err);
    err = NULL;
    char *p = ex_store_blob_path(s, want);
    char *w = kn_asprintf("%s/blobs/sha256/%s", root, want + 7);
    is_str(p, w, "blob path layout");
    struct stat st;
    check(stat(p, &st) == 0 && (st.st_mode & 07777) == 0444, "stored blobs are read-only");
    free(p);
    free(w);

    /* same content again: success, still one file */
    check(ex_store_blob_put(s, "hello", 5, want, d, &err) == 0, "put the same blob again");
    is_int(count_sub("blobs/sha256"), 1, "one blob file");

    /* digest mismatch: nothing stored, no temp left */
    const char *bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    check(ex_store_blob_put(s, "world", 5, bad, d, &err) == -1 && err && err->code == KN_E_DIGEST,
          "mismatch is KN_E_DIGEST");
    char wd[KN_DIGEST_SIZE];
    kn_sha256_digest("world", 5, wd);
    if (err)
        is_str(err->msg, F("digest mismatch: expected '%s', got '%s'", bad, wd),
               "mismatch message");
    kn_err_free(err);
    err = NULL;
    check(!ex_store_has_blob(s, wd), "mismatched content not stored");
    is_int(count_sub("blobs/sha256"), 1, "still one blob file");
    is_int(count_dir(s->tmpdir, true), 0, "no temporary file left after a mismatch");

    /* not found */
    int fd = ex_store_blob_open(s, bad, &err);
    check(fd == -1 && err && err->code == KN_E_NOTFOUND, "open of a missing blob");
    if (err)
        is_str(err->msg, F("blob '%s' not found in the store", bad), "notfound message");
    kn_err_free(err);
    err = NULL;

    /* streaming writer: size, commit */
    struct ex_blob_writer *bw = ex_blob_writer_new(s, &err);
    ex_blob_writer_write(bw, "wor", 3, &err);
    ex_blob_writer_write(bw, "ld", 2, &err);
    is_int(ex_blob_writer_size(bw), 5, "writer size");
    uint64_t sz = 0;
    int rc = ex_blob_writer_commit(bw, wd, d, &sz, &err);
    check(rc == 0 && sz == 5, "streamed commit");
    if (err)
        printf("# %s\n", err->msg);
    is_str(d, wd, "streamed digest");
    bw = ex_blob_writer_new(s, &err);
    ex_blob_writer_write(bw, "x", 1, &err);
    ex_blob_writer_abort(bw);
    is_int(count_dir(s->tmpdir, true), 0, "abort leaves no temp file");
    kn_buf_release(&b);
}

#define BIG (1u << 20)
static unsigned char *big;
static char big_digest[KN_DIGEST_SIZE];

static void *writer_thread(void *arg)
{
    struct ex_store *s = arg;
    struct kn_error *err = NULL;
    char d[KN_DIGEST_SIZE];
    struct ex_blob_writer *w = ex_blob_writer_new(s, &err);
    if (!w)
        return (void *)1;
    for (size_t off = 0; off < BIG; off += 4096)
        if (ex_blob_writer_write(w, big + off, 4096, &err) < 0)
            return (void *)1;
    if (ex_blob_writer_commit(w, big_digest, d, NULL, &err) < 0) {
        kn_err_free(err);
        return (void *)1;
    }
    return NULL;
}

static bool blob_is_big(struct ex_store *s)
{
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    bool same = ex_store_blob_read(s, big_digest, &b, BIG, &err) == 0 && b.len == BIG &&
                memcmp(b.data, big, BIG) == 0;
    kn_err_free(err);
    kn_buf_release(&b);
    return same;
}

static void test_concurrent(struct ex_store *s)
{
    big = malloc(BIG);
    fill(big, BIG, 42);
    kn_sha256_digest(big, BIG, big_digest);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, writer_thread, s);
    int fails = 0;
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        fails += r != NULL;
    }
    is_int(fails, 0, "8 threads writing the same blob all succeed");
    check(blob_is_big(s), "the blob has the right content");

    /* two processes, each with its own store handle, racing on a new blob */
    fill(big, BIG, 7);
    kn_sha256_digest(big, BIG, big_digest);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            struct kn_error *err = NULL;
            struct ex_store *cs = ex_store_open(root, &err);
            if (!cs)
                _exit(2);
            int bad = 0;
            for (int k = 0; k < 10; k++)
                bad += writer_thread(cs) != NULL;
            ex_store_close(cs);
            _exit(bad ? 1 : 0);
        }
    }
    int okc = 0;
    for (int i = 0; i < 2; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        okc += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    is_int(okc, 2, "two processes writing the same blob both succeed");
    check(blob_is_big(s), "the raced blob has the right content");
    is_int(count_sub("tmp"), 1, "the children's temp dirs are gone");
}

static void test_kill(struct ex_store *s)
{
    int p[2];
    if (pipe(p) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        struct kn_error *err = NULL;
        struct ex_store *cs = ex_store_open(root, &err);
        struct ex_blob_writer *w = cs ? ex_blob_writer_new(cs, &err) : NULL;
        if (!w)
            _exit(2);
        for (int i = 0;; i++) {
            ex_blob_writer_write(w, "slowly", 6, &err);
            if (i == 10 && write(p[1], "x", 1) != 1)
                _exit(3);
            usleep(1000);
        }
    }
    close(p[1]);
    char c;
    check(read(p[0], &c, 1) == 1, "child is writing");
    close(p[0]);
    is_int(count_sub("tmp"), 2, "the child has its own temp dir");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int before = count_sub("blobs/sha256");
    is_int(count_sub("tmp"), 2, "its temp dir outlives it");
    struct kn_error *err = NULL;
    struct ex_store *s2 = ex_store_open(root, &err);
    check(s2 != NULL, "reopen after SIGKILL");
    is_int(count_sub("blobs/sha256"), before, "no partial blob entry");
    is_int(count_sub("tmp"), 2, "the dead child's temp dir was cleaned (ours and s2's remain)");
    struct stat st;
    check(stat(s->tmpdir, &st) == 0, "a live store's temp dir is not removed");
    ex_store_close(s2);
    is_int(count_sub("tmp"), 1, "close removes the temp dir");

    /* an unlocked (dead owner) dir older than the grace period goes too */
    char *old = sub("tmp/p1-stale");
    mkdir(old, 0700);
    char *f = kn_asprintf("%s/file", old);
    close(open(f, O_CREAT | O_WRONLY, 0600));
    struct timespec ts[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    utimensat(AT_FDCWD, old, ts, 0);
    s2 = ex_store_open(root, &err);
    check(stat(old, &st) < 0 && errno == ENOENT, "old lockless temp dir removed on open");
    ex_store_close(s2);
    free(old);
    free(f);
}

static void test_layers_cache(struct ex_store *s)
{
    struct kn_error *err = NULL;
    char id[KN_DIGEST_SIZE];
    kn_sha256_digest("layer", 5, id);
    check(!ex_store_has_layer(s, id), "no layer yet");
    char *t = ex_store_mkdtemp(s, "unpack-", &err);
    check(t && kn_str_startswith(t, s->tmpdir), "mkdtemp under the process temp dir");
    char *f = kn_asprintf("%s/a", t);
    FILE *fp = fopen(f, "w");
    fputs("first", fp);
    fclose(fp);
    check(ex_store_layer_commit(s, id, t, &err) == 0, "layer commit");
    check(ex_store_has_layer(s, id), "has_layer");
    char *lp = ex_store_layer_path(s, id);
    char *a = kn_asprintf("%s/a", lp);
    struct kn_buf b = KN_BUF_INIT;
    check(kn_buf_read_file(&b, a, 100, &err) == 0 && strcmp(b.data, "first") == 0, "layer content");
    /* a second commit of the same diff_id loses the race quietly */
    char *t2 = ex_store_mkdtemp(s, "unpack-", &err);
    char *f2 = kn_asprintf("%s/a", t2);
    fp = fopen(f2, "w");
    fputs("second", fp);
    fclose(fp);
    check(ex_store_layer_commit(s, id, t2, &err) == 0, "second commit succeeds");
    struct stat st;
    check(stat(t2, &st) < 0, "the loser's temp dir is removed");
    kn_buf_reset(&b);
    check(kn_buf_read_file(&b, a, 100, &err) == 0 && strcmp(b.data, "first") == 0,
          "existing layer kept");

    char key[KN_DIGEST_SIZE];
    kn_sha256_digest("key", 3, key);
    is_int(ex_store_cache_get(s, key, &b, &err), 0, "cache miss");
    check(ex_store_cache_put(s, key, "{\"v\":1}", &err) == 0, "cache put");
    is_int(ex_store_cache_get(s, key, &b, &err), 1, "cache hit");
    is_str(b.data, "{\"v\":1}", "cache value");
    check(ex_store_cache_put(s, key, "{\"v\":2}", &err) == 0, "cache replace");
    ex_store_cache_get(s, key, &b, &err);
    is_str(b.data, "{\"v\":2}", "replaced value");
    check(ex_store_cache_get(s, "nope", &b, &err) == -1, "bad key refused");
    kn_err_free(err);
    kn_buf_release(&b);
    free(t);
    free(f);
    free(t2);
    free(f2);
    free(lp);
    free(a);
}

static void put_sized(struct ex_store *s, unsigned seed, char out[KN_DIGEST_SIZE])
{
    unsigned char buf[65536];
    fill(buf, sizeof(buf), seed);
    struct kn_error *err = NULL;
    if (ex_store_blob_put(s, buf, sizeof(buf), NULL, out, &err) < 0)
        kn_err_free(err);
    usleep(20000); /* distinct access times */
}

static void test_prune(struct ex_store *s)
{
    struct kn_error *err = NULL;
    uint64_t freed = 0, use = 0;
    check(ex_store_prune(s, 0, &freed, &err) == 0, "prune everything");
    check(ex_store_usage(s, &use, &err) == 0 && use == 0, "usage 0 after full prune");
    is_int(count_sub("cache"), 0, "cache emptied");
    is_int(count_sub("layers/sha256"), 0, "layers removed");

    char a[KN_DIGEST_SIZE], b[KN_DIGEST_SIZE], c[KN_DIGEST_SIZE];
    put_sized(s, 1, a);
    put_sized(s, 2, b);
    put_sized(s, 3, c);
    check(ex_store_has_blob(s, a), "use A (now the most recent)");
    usleep(20000);
    ex_store_usage(s, &use, &err);
    is_int(use, 3 * 65536, "usage counts the blobs");
    check(ex_store_prune(s, 2 * 65536, &freed, &err) == 0, "prune to two blobs");
    is_int(freed, 65536, "freed one blob");
    check(!ex_store_has_blob(s, b), "B (least recently used) is gone");
    check(ex_store_has_blob(s, c) && ex_store_has_blob(s, a), "A and C kept");
    usleep(20000);
    /* a cache entry naming C keeps C alive though A was used after C */
    ex_store_has_blob(s, a);
    usleep(20000);
    char key[KN_DIGEST_SIZE];
    kn_sha256_digest("k", 1, key);
    char *val = kn_asprintf("{\"layer\":\"%s\"}", c);
    ex_store_cache_put(s, key, val, &err);
    free(val);
    ex_store_usage(s, &use, &err);
    check(ex_store_prune(s, use - 1, &freed, &err) == 0, "prune one entry");
    check(!ex_store_has_blob(s, a), "A went: C is younger through its cache entry");
    check(ex_store_has_blob(s, c), "C kept");
    struct kn_buf v = KN_BUF_INIT;
    is_int(ex_store_cache_get(s, key, &v, &err), 1, "cache entry kept");
    kn_buf_release(&v);

    /* another process holding the store: prune refuses */
    int p[2];
    if (pipe(p) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        struct ex_store *cs = ex_store_open(root, &err);
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        pause();
        ex_store_close(cs);
        _exit(0);
    }
    close(p[1]);
    char ch;
    if (read(p[0], &ch, 1) != 1)
        return;
    close(p[0]);
    check(ex_store_prune(s, 0, &freed, &err) == -1, "prune refused while another process uses it");
    if (err)
        is_str(err->msg, F("cannot prune store '%s': it is in use by another kiln process", root),
               "in-use message");
    kn_err_free(err);
    err = NULL;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    check(ex_store_prune(s, 0, &freed, &err) == 0, "prune after the other process died");
    check(!ex_store_has_blob(s, c), "everything gone");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* children fork: no duplicated output */
    root = kn_asprintf("%s/store", tap_tmpdir());
    setenv("KILN_ROOT", root, 1);
    char *dr = ex_store_default_root();
    is_str(dr, root, "KILN_ROOT is the default root");
    free(dr);
    struct kn_error *err = NULL;
    struct ex_store *s = ex_store_open(root, &err);
    check(s != NULL, "open a new store");
    if (!s)
        return tap_done();
    is_int(count_sub("blobs/sha256"), 0, "blobs dir created");
    is_int(count_sub("tmp"), 1, "own temp dir");
    test_blobs(s);
    test_concurrent(s);
    test_kill(s);
    test_layers_cache(s);
    test_prune(s);
    ex_store_close(s);
    F_release();
    free(root);
    free(big);
    return tap_done();
}
