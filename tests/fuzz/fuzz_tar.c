/*
 * libFuzzer target for the layer unpacker: arbitrary bytes (a tar, maybe
 * gzip- or zstd-compressed) go to ex_layer_unpack_fd into a fresh temporary
 * directory with low limits; whatever happens, nothing may appear outside
 * that directory (checked with a canary next to it) and nothing may crash.
 * Build: CC=clang cmake -B build-fuzz -DKILN_FUZZ=ON && cmake --build
 * build-fuzz --target fuzz_tar; run: build-fuzz/fuzz_tar -max_total_time=60.
 */
#include "exec/layer/layer.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base[0]) {
        snprintf(base, sizeof(base), "/tmp/kiln-fuzz-tar-%ld", (long)getpid());
        mkdir(base, 0700);
    }
    int fd = memfd_create("layer", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    lseek(fd, 0, SEEK_SET);
    char dest[300];
    snprintf(dest, sizeof(dest), "%s/root", base);
    mkdir(dest, 0755);
    struct ex_unpack_limits lim = {.max_bytes = 1 << 20, .max_entries = 256};
    struct kn_error *err = NULL;
    /* overlay form exercises the whiteout code without deleting outside */
    (void)ex_layer_unpack_fd(fd, "fuzz", NULL, dest, EX_UNPACK_OVERLAY, &lim, &err);
    kn_err_free(err);
    close(fd);
    /* the only thing allowed in base is root */
    struct kn_error *e2 = NULL;
    char stray[300];
    snprintf(stray, sizeof(stray), "%s/x", base);
    if (access(stray, F_OK) == 0)
        abort(); /* an escape: the corpus aims at ../x */
    if (ex_store_remove_tree(dest, &e2) < 0)
        abort();
    return 0;
}
