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

/* Where a streaming plan hands its entries over, in emit order, batch
 * after batch (the entries are the plan's: fn must not keep them). */
struct plan_flush {
    int (*fn)(void *ctx, struct pentry **v, size_t n, struct kn_error **err);
    void *ctx;
};

/* The first path (in emit order) of a source inode with several links. */
struct plink {
    char *path;
    mode_t mode;
    uid_t uid;
    gid_t gid;
};

struct plan {
    const struct ex_fileop_req *req;
    KN_VEC(struct pentry) e;
    struct fo_map map; /* path -> index into e (live entries only) */
    KN_VEC(struct ex_view *) tmpviews;
    struct kn_strv tmpdirs;
    /* hard links: "src:layer:dev:ino" (owned in link_keys) -> index into links */
    struct fo_map link_map;
    struct kn_strv link_keys;
    KN_VEC(struct plink) links;
    /* streaming: a copy of one source, the op's only action, walks in emit
     * order; it hands what it planned to flush every PLAN_BATCH entries
     * and keeps only the paths of the directories it handed over (for the
     * implicit parents), so its memory does not grow with the files */
    struct plan_flush flush;
    bool streaming;
    struct fo_map flushed; /* keys owned in flushed_keys */
    struct kn_strv flushed_keys;
};

/* Computes the plan of req->op. With flush (may be NULL), a copy that can
 * stream hands its entries to it as it goes; plan_finish returns the rest. */
int plan_build(struct plan *p, const struct ex_fileop_req *req, const struct plan_flush *flush,
               struct kn_error **err);
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
