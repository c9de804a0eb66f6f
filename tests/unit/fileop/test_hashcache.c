/*
 * The content-hash cache on disk: what one kiln process hashed, the next
 * one reuses (a no-change rebuild reads no source file), and any change to
 * a file, even one that keeps its size and mtime, misses it.
 */
#include "exec/fileop/fileop.h"
#include "tap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

static void write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data))
        abort();
    close(fd);
}

static int checksum(const char *dir, char out[KN_DIGEST_SIZE])
{
    struct kn_error *err = NULL;
    struct ex_view *v = ex_view_new_dir(dir, "build context", NULL, 0, NULL, 0, &err);
    struct ir_file_action a = {
        .kind = IR_FILE_COPY, .src_input = 1, .src = "f", .dest = "/f", .mode = -1};
    int rc = v ? ex_fileop_checksum(v, &a, out, &err) : -1;
    if (err)
        printf("# %s\n", err->msg);
    kn_err_free(err);
    ex_view_free(v);
    return rc;
}

int main(void)
{
    const char *tmp = tap_tmpdir();
    char ctx[4200], f[4300], cache[4300];
    snprintf(ctx, sizeof(ctx), "%s/ctx", tmp);
    snprintf(f, sizeof(f), "%s/f", ctx);
    snprintf(cache, sizeof(cache), "%s/hashcache", tmp);
    mkdir(ctx, 0755);
    write_file(f, "hello");
    /* entries younger than two seconds are not saved (racily clean) */
    sleep(3);

    char d1[KN_DIGEST_SIZE], d2[KN_DIGEST_SIZE], d3[KN_DIGEST_SIZE];
    struct ex_fileop_hash_stats st;
    ok(checksum(ctx, d1) == 0, "checksum of the context file");
    ex_fileop_hash_stats(&st);
    is_int(st.bytes_hashed, 5, "the file was read once");

    struct kn_error *err = NULL;
    ok(ex_fileop_hash_cache_save(cache, &err) == 0, "cache saved");
    ex_fileop_hash_cache_clear();
    ok(ex_fileop_hash_cache_load(cache, &err) == 0, "cache loaded");
    ok(checksum(ctx, d2) == 0, "checksum again");
    ex_fileop_hash_stats(&st);
    is_int(st.bytes_hashed, 0, "a new process with the saved cache reads nothing");
    is_int(st.hits, 1, "and hits the cache");
    is_str(d2, d1, "with the same checksum");

    /* same size, mtime put back: ctime still moves */
    struct stat before;
    stat(f, &before);
    write_file(f, "jelly");
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    utimensat(AT_FDCWD, f, times, 0);
    ok(checksum(ctx, d3) == 0, "checksum after an edit");
    ok(strcmp(d3, d1) != 0, "an edit that keeps size and mtime changes the checksum");

    /* a missing file is an empty cache; a foreign one is ignored */
    ex_fileop_hash_cache_clear();
    char missing[4300];
    snprintf(missing, sizeof(missing), "%s/none", tmp);
    ok(ex_fileop_hash_cache_load(missing, &err) == 0, "a missing cache file is fine");
    write_file(missing, "not a cache at all");
    ok(ex_fileop_hash_cache_load(missing, &err) == 0 && !err, "a foreign file is ignored");
    kn_err_free(err);
    return tap_done();
}
