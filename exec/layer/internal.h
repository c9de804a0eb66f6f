/*
 * exec/layer internals shared by the packer, the unpacker and their tests.
 */
#ifndef KILN_EXEC_LAYER_INTERNAL_H
#define KILN_EXEC_LAYER_INTERNAL_H

#include "layer.h"

#include <locale.h>
#include <sys/sysmacros.h>

/* OCI whiteout names */
#define EX_WH_PREFIX ".wh."
#define EX_WH_OPAQUE ".wh..wh..opq"

/* Caps on what a tar header may ask for. */
#define EX_XATTR_MAX           (64u << 10) /* one xattr value (the kernel's limit) */
#define EX_PATH_MAX            4095        /* a path in a layer */
#define EX_PATH_DEPTH_MAX      512         /* components of a path in a layer */
#define EX_DEFAULT_MAX_BYTES   (64ull << 30)
#define EX_DEFAULT_MAX_ENTRIES 10000000ull

/* A C.UTF-8 LC_CTYPE locale (or 0), for uselocale() around libarchive
 * header reads and writes: tar names are converted as UTF-8 whatever the
 * process locale, without touching process-wide state. */
locale_t ex_layer_utf8_locale(void);

/* Parallel gzip (pgzip.c): the output, in order, goes to out. The bytes
 * depend on the level only, not on the number of threads. */
typedef int (*ex_pgzip_out_fn)(void *ctx, const void *data, size_t n, struct kn_error **err);
struct ex_pgzip;
struct ex_pgzip *ex_pgzip_new(int level, int threads, ex_pgzip_out_fn out, void *ctx,
                              struct kn_error **err);
int ex_pgzip_write(struct ex_pgzip *p, const void *data, size_t n, struct kn_error **err);
/* Compresses what is left and writes the trailer. */
int ex_pgzip_finish(struct ex_pgzip *p, struct kn_error **err);
void ex_pgzip_free(struct ex_pgzip *p);

/* Tests set this to exercise the fallback used where openat2 is missing. */
extern bool ex_layer_no_openat2;

#endif
