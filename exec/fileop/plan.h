/*
 * exec/fileop: the plan of a file op (private to the module): the op's diff
 * as a list of entries keyed by path, computed from the views without
 * writing anything, then emitted by one of the two back-ends.
 */
#ifndef KILN_EXEC_FILEOP_PLAN_H
#define KILN_EXEC_FILEOP_PLAN_H

#include "exec/fileop/internal.h"

#include <time.h>

enum pe_kind {
    PE_DIR,
    PE_FILE,     /* regular file: from a source view, or mkfile data */
    PE_LINK,     /* symlink */
    PE_SPECIAL,  /* fifo / device copied from a source */
    PE_WHITEOUT, /* a path of the destination removed by the op */
};

struct pentry {
    char *path; /* canonical, relative */
    enum pe_kind kind;
    mode_t mode; /* permission bits */
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
    dev_t rdev;
    /* PE_FILE from a source */
    const struct ex_view *src;
    int layer;
    char *srcpath;
    off_t size;
    dev_t dev;
    ino_t ino;
    nlink_t nlink;
    /* PE_FILE from mkfile */
    char *data;
    size_t datalen;
    bool is_data;
    char *link;    /* PE_LINK target; hard links get the first path at emit */
    bool hardlink; /* set at emit */
    bool opaque;   /* PE_DIR hiding what the destination had below it */
    bool implicit; /* PE_DIR: an unchanged parent copied from the destination */
    bool dead;
};

struct plan {
    const struct ex_fileop_req *req;
    KN_VEC(struct pentry) e;
    struct fo_map map; /* path -> index into e (live entries only) */
    KN_VEC(struct ex_view *) tmpviews;
    struct kn_strv tmpdirs;
};

/* Computes the plan of req->op. */
int plan_build(struct plan *p, const struct ex_fileop_req *req, struct kn_error **err);
/* Adds implicit parents, sorts, assigns hard links. Returns the live
 * entries in emit order (array of pointers into p->e, caller frees). */
struct pentry **plan_finish(struct plan *p, size_t *n, struct kn_error **err);
void plan_release(struct plan *p);

/* Source enumeration shared with the checksum: the matches of a copy
 * action's src in view v. */
struct srcmatch {
    char *written; /* path as the user wrote it / the glob matched it ("" = root) */
    char *base;    /* name used in the destination */
    struct vnode node;
};
int sources_resolve(const struct ex_view *v, const struct ir_file_action *a, struct srcmatch **out,
                    size_t *n, struct kn_error **err);
void sources_free(struct srcmatch *m, size_t n);
/* --exclude: is the entry at ctx-relative path `full` / source-relative
 * path `rel` excluded? */
bool action_excluded(const struct kn_patterns *ex, const char *full, const char *rel);

#endif
