/*
 * exec/snapshot private declarations shared by chain.c, rw.c, scan.c and fsutil.c
 * (and the module's unit tests).
 */
#ifndef KILN_EXEC_SNAPSHOT_INTERNAL_H
#define KILN_EXEC_SNAPSHOT_INTERNAL_H

#include "exec/snapshot/snapshot.h"

#include <sys/stat.h>

#define EX_OPAQUE_XATTR         "user.overlay.opaque"
#define EX_TRUSTED_OPAQUE_XATTR "trusted.overlay.opaque"
#define EX_WH_PREFIX            ".wh."
#define EX_WH_OPAQUE            ".wh..wh..opq"

/* A 0/0 character device: overlay's whiteout. */
static inline bool ex_is_whiteout(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

/* openat2(dirfd, path, flags, RESOLVE_IN_ROOT | extra); -1 with errno. */
int ex_openat_in_root(int dirfd, const char *path, int flags, unsigned long long resolve);
/* Does the directory fd (or dirfd+name) carry an opaque marker (either xattr,
 * or a ".wh..wh..opq" entry)? */
bool ex_dir_is_opaque(int dirfd, const char *name);
/* Creates a whiteout named `name` in dirfd: a 0/0 char device, else ".wh.NAME". */
int ex_make_whiteout(int dirfd, const char *name, struct kn_error **err);
/* Marks dirfd/name opaque: user.overlay.opaque=y, else a ".wh..wh..opq" file. */
int ex_make_opaque(int dirfd, const char *name, struct kn_error **err);
/* Copies a regular file's bytes (copy_file_range, then read/write). */
/* Removes everything below the directory fd (not the directory itself). */
int ex_rmtree_at(int dirfd, const char *what, struct kn_error **err);

#endif
