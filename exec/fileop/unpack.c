/*
 * ADD of a local archive: detection by content (as Docker does, never by
 * the file name) and extraction with the layer codec's safety rules.
 *
 * Plain, gzip and zstd tars go straight to ex_layer_unpack_fd; bzip2 and xz
 * (which exec/layer does not decode) are piped through the system's
 * `bzip2 -dc` / `xz -dc` first. A compressed file that turns out not to be
 * a tar is copied as a file by the caller (Docker's behaviour).
 */
#include "exec/fileop/internal.h"
#include "exec/layer/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum arch_kind { ARCH_NONE, ARCH_TAR, ARCH_GZIP, ARCH_ZSTD, ARCH_BZIP2, ARCH_XZ };

static bool tar_header_ok(const unsigned char *b)
{
    if (memcmp(b + 257, "ustar", 5) == 0)
        return true;
    /* a v7 header: the checksum field must match the header's bytes */
    unsigned long sum = 0, want = 0;
    for (int i = 0; i < 512; i++)
        sum += (i >= 148 && i < 156) ? ' ' : b[i];
    int i = 148;
    while (i < 156 && b[i] == ' ')
        i++;
    bool digits = false;
    for (; i < 156 && b[i] >= '0' && b[i] <= '7'; i++) {
        want = want * 8 + (unsigned long)(b[i] - '0');
        digits = true;
    }
    return digits && b[0] && want == sum;
}

static enum arch_kind detect(int fd)
{
    unsigned char b[512];
    ssize_t n = pread(fd, b, sizeof(b), 0);
    if (n < 6)
        return ARCH_NONE;
    if (b[0] == 0x1f && b[1] == 0x8b)
        return ARCH_GZIP;
    if (b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
        return ARCH_ZSTD;
    if (b[0] == 'B' && b[1] == 'Z' && b[2] == 'h')
        return ARCH_BZIP2;
    if (memcmp(b,
               "\xfd"
               "7zXZ\0",
               6) == 0)
        return ARCH_XZ;
    if (n == 512 && tar_header_ok(b))
        return ARCH_TAR;
    return ARCH_NONE;
}

bool fo_is_archive(int fd)
{
    return detect(fd) != ARCH_NONE;
}

static int extract_piped(int fd, const char *tool, const char *name, const char *dir,
                         struct kn_error **err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return kn_err_sys(err, "cannot create a pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    char *argv[] = {(char *)tool, (char *)"-dc", NULL};
    if (lseek(fd, 0, SEEK_SET) < 0) {
        posix_spawn_file_actions_destroy(&fa);
        close(p[0]);
        close(p[1]);
        return kn_err_sys(err, "cannot seek in '%s'", name);
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, tool, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        errno = rc;
        return kn_err_sys(err, "cannot run '%s' to decompress '%s'", tool, name);
    }
    rc = ex_layer_unpack_fd(p[0], name, NULL, dir, EX_UNPACK_OWNERS, NULL, err);
    /* the tar reader stops at the end-of-archive blocks: drain the rest so
     * the decompressor does not die of SIGPIPE on the padding */
    char sink[16384];
    for (;;) {
        ssize_t n = read(p[0], sink, sizeof(sink));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
    }
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = kn_err_set(err, KN_E_PARSE, "cannot decompress '%s': %s failed", name, tool);
    return rc;
}

int fo_extract_archive(int fd, const char *name, const char *dir, struct kn_error **err)
{
    enum arch_kind k = detect(fd);
    if (k == ARCH_BZIP2)
        return extract_piped(fd, "bzip2", name, dir, err);
    if (k == ARCH_XZ)
        return extract_piped(fd, "xz", name, dir, err);
    if (lseek(fd, 0, SEEK_SET) < 0)
        return kn_err_sys(err, "cannot seek in '%s'", name);
    return ex_layer_unpack_fd(fd, name, NULL, dir, EX_UNPACK_OWNERS, NULL, err);
}
