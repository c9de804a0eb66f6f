/*
 * The semantics of a file op, computed as a plan: what the op's diff holds,
 * path by path, decided from the destination view, the source views and the
 * entries earlier actions of the same op planned. Nothing is written here;
 * the emitters (emit.c) turn the plan into a layer stream or an upper dir.
 *
 * The copy rules follow BuildKit's file op (fsutil's copy): a directory
 * source copies its contents when IR_FF_DIR_CONTENTS is set; a file goes
 * inside an existing directory or a dest ending in '/'; missing parents of
 * the destination are created 0755 with the --chown owner; an existing
 * top-level destination directory is left as it is while nested existing
 * directories take the source's metadata; a directory over a file is
 * "cannot copy to non-directory", a file over a directory is refused too.
 * The destination path is resolved through the current state (the plan over
 * the destination view), following symlinks inside the rootfs.
 */
#include "exec/fileop/plan.h"
#include "exec/store/store.h"
#include "ir/base/cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- plan entries ---------------------------------------------------------- */

static struct pentry *plan_get(struct plan *p, const char *path)
{
    size_t i;
    if (!fo_map_get(&p->map, path, &i))
        return NULL;
    return &p->e.v[i];
}

static void pentry_free(struct pentry *e)
{
    free(e->path);
    free(e->srcpath);
    free(e->data);
    free(e->link);
}

/* Adds e (taking its strings), replacing a live entry at the same path. */
static struct pentry *plan_put(struct plan *p, struct pentry *e)
{
    struct pentry *old = plan_get(p, e->path);
    if (old) {
        if (e->kind == PE_DIR && (old->kind == PE_WHITEOUT || (old->kind == PE_DIR && old->opaque)))
            e->opaque = true;
        old->dead = true;
        fo_map_del(&p->map, old->path);
    }
    kn_vec_push(&p->e, *e);
    struct pentry *n = &p->e.v[p->e.n - 1];
    fo_map_put(&p->map, n->path, p->e.n - 1);
    return n;
}

/* Kills the live entries at path and below it. */
static void plan_kill_tree(struct plan *p, const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < p->e.n; i++) {
        struct pentry *e = &p->e.v[i];
        if (e->dead)
            continue;
        if (strcmp(e->path, path) == 0 ||
            (len == 0 || (strncmp(e->path, path, len) == 0 && e->path[len] == '/'))) {
            e->dead = true;
            fo_map_del(&p->map, e->path);
        }
    }
}

void plan_release(struct plan *p)
{
    for (size_t i = 0; i < p->e.n; i++)
        pentry_free(&p->e.v[i]);
    free(p->e.v);
    fo_map_release(&p->map);
    fo_map_release(&p->link_map);
    kn_strv_release(&p->link_keys);
    for (size_t i = 0; i < p->links.n; i++)
        free(p->links.v[i].path);
    free(p->links.v);
    fo_map_release(&p->flushed);
    kn_strv_release(&p->flushed_keys);
    for (size_t i = 0; i < p->tmpviews.n; i++)
        ex_view_free(p->tmpviews.v[i]);
    free(p->tmpviews.v);
    ex_store_remove_trees(&p->tmpdirs);
    memset(p, 0, sizeof(*p));
}

/* ---- the current state: the plan over the destination view ----------------- */

enum skind { SK_NONE, SK_DIR, SK_FILE, SK_LINK };

struct sres {
    char *path;      /* canonical: the existing prefix + the missing components */
    size_t missing;  /* trailing components that do not exist */
    enum skind kind; /* of the whole path when missing == 0 */
    bool in_view;    /* the final entry exists in the destination view (visible) */
    struct stat st;  /* of the final entry (plan or view) */
};

static void sres_release(struct sres *r)
{
    free(r->path);
    memset(r, 0, sizeof(*r));
}

static enum skind kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return SK_DIR;
    if (S_ISLNK(m))
        return SK_LINK;
    return SK_FILE;
}

static enum skind kind_of_pe(const struct pentry *e)
{
    switch (e->kind) {
    case PE_DIR:
        return SK_DIR;
    case PE_LINK:
        return SK_LINK;
    case PE_WHITEOUT:
        return SK_NONE;
    default:
        return SK_FILE;
    }
}

/* Resolves path (relative to the root, '/'-separated) through the plan
 * over the destination view, symlinks resolved inside the root (the last
 * one only when follow). A non-directory in the middle is an error. */
static int state_resolve(struct plan *p, const char *path, bool follow, struct sres *out,
                         struct kn_error **err)
{
    const struct ex_view *dv = p->req->dest;
    char *rest = kn_strdup(path);
    int links = 0;
restart:
    memset(out, 0, sizeof(*out));
    struct kn_buf cur = KN_BUF_INIT;
    kn_buf_adds(&cur, "");
    struct vnode vn; /* the view's node at cur, when visible */
    view_root(dv, &vn);
    bool vvis = true;
    size_t pos = 0;
    out->kind = SK_DIR;
    out->in_view = true;
    out->st = vn.st;
    for (;;) {
        while (rest[pos] == '/')
            pos++;
        if (!rest[pos])
            break;
        size_t end = pos;
        while (rest[end] && rest[end] != '/')
            end++;
        char *comp = kn_strndup(rest + pos, end - pos);
        bool last = true;
        for (size_t k = end; rest[k]; k++)
            if (rest[k] != '/')
                last = false;
        pos = end;
        if (strcmp(comp, ".") == 0) {
            free(comp);
            continue;
        }
        if (strcmp(comp, "..") == 0) {
            free(comp);
            if (out->missing) {
                /* a missing directory's parent: drop it textually */
                char *slash = strrchr(cur.data, '/');
                size_t keep = slash ? (size_t)(slash - cur.data) : 0;
                cur.len = keep;
                cur.data[keep] = '\0';
                out->missing--;
                continue;
            }
            char *slash = strrchr(cur.data, '/');
            char *np =
                kn_asprintf("%.*s/%s", slash ? (int)(slash - cur.data) : 0, cur.data, rest + pos);
            free(rest);
            rest = np;
            kn_buf_release(&cur);
            vnode_release(&vn);
            goto restart;
        }
        char *next = fo_join(cur.data, comp);
        kn_buf_reset(&cur);
        kn_buf_adds(&cur, next);
        if (out->missing) {
            out->missing++;
            free(next);
            free(comp);
            continue;
        }
        if (out->kind != SK_DIR) {
            free(comp);
            free(next);
            kn_buf_release(&cur);
            vnode_release(&vn);
            free(rest);
            return kn_err_set(err, KN_E_FAILED, "'/%s' is not a directory", path);
        }
        /* the view's child, if the view is still visible here */
        struct vnode child = {0};
        int vf = 0;
        if (vvis) {
            vf = view_child(dv, &vn, comp, &child, err);
            if (vf < 0) {
                free(comp);
                free(next);
                kn_buf_release(&cur);
                vnode_release(&vn);
                free(rest);
                return -1;
            }
        }
        free(comp);
        struct pentry *pe = plan_get(p, next);
        bool vvis_here = vvis;
        enum skind k;
        struct stat st = {0};
        const char *link = NULL;
        char *vlink = NULL;
        if (pe) {
            k = kind_of_pe(pe);
            st.st_mode = pe->mode;
            st.st_uid = pe->uid;
            st.st_gid = pe->gid;
            if (pe->kind == PE_LINK)
                link = pe->link;
            if (pe->kind != PE_DIR || pe->opaque)
                vvis = false; /* the view is hidden below a replaced entry */
        } else if (vf == 1) {
            k = kind_of(child.st.st_mode);
            st = child.st;
            if (k == SK_LINK && (!last || follow)) {
                vlink = view_readlink(dv, child.layer, child.path, err);
                if (!vlink) {
                    vnode_release(&child);
                    free(next);
                    kn_buf_release(&cur);
                    vnode_release(&vn);
                    free(rest);
                    return -1;
                }
                link = vlink;
            }
        } else {
            k = SK_NONE;
        }
        if (k == SK_LINK && (!last || follow)) {
            if (++links > FO_MAX_LINKS) {
                vnode_release(&child);
                free(vlink);
                free(next);
                kn_buf_release(&cur);
                vnode_release(&vn);
                free(rest);
                return kn_err_set(err, KN_E_UNSAFE, "too many levels of symbolic links in '/%s'",
                                  path);
            }
            char *slash = strrchr(next, '/');
            char *np;
            if (link[0] == '/')
                np = kn_asprintf("%s/%s", link, rest + pos);
            else
                np = kn_asprintf("%.*s/%s/%s", slash ? (int)(slash - next) : 0, next, link,
                                 rest + pos);
            vnode_release(&child);
            free(vlink);
            free(next);
            free(rest);
            rest = np;
            kn_buf_release(&cur);
            vnode_release(&vn);
            goto restart;
        }
        free(vlink);
        free(next);
        out->in_view = vvis_here && vf == 1;
        if (k == SK_NONE) {
            out->missing = 1;
            vnode_release(&child);
            continue;
        }
        out->kind = k;
        out->st = st;
        vnode_release(&vn);
        if (vvis && vf == 1 && S_ISDIR(child.st.st_mode)) {
            vn = child;
        } else {
            vnode_release(&child);
            view_root(dv, &vn); /* placeholder; not used while !vvis */
            vvis = false;
        }
    }
    if (out->missing) {
        out->kind = SK_NONE;
        out->in_view = false;
    }
    vnode_release(&vn);
    free(rest);
    out->path = kn_buf_detach(&cur);
    return 0;
}

/* ---- owners and modes -------------------------------------------------------- */

struct copyctx {
    const struct ir_file_action *a;
    const struct ex_view *src;
    bool chown;
    uid_t uid;
    gid_t gid;
    struct kn_patterns *exclude;
    const char *verb; /* "COPY" or "ADD" */
    const char *checksum;
};

static int meta_mode(const struct copyctx *c, mode_t srcmode, mode_t *out, struct kn_error **err)
{
    mode_t perm = srcmode & 07777;
    if (S_ISLNK(srcmode)) {
        *out = 0777;
        return 0;
    }
    if (c->a->mode >= 0) {
        *out = (mode_t)c->a->mode & 07777;
        return 0;
    }
    if (c->a->chmod)
        return ex_fileop_chmod_apply(c->a->chmod, perm, S_ISDIR(srcmode), out, err);
    *out = perm;
    return 0;
}

static void meta_owner(const struct copyctx *c, const struct stat *st, uid_t *uid, gid_t *gid)
{
    if (c->chown) {
        *uid = c->uid;
        *gid = c->gid;
    } else if (c->src->keep_owners) {
        *uid = st->st_uid;
        *gid = st->st_gid;
    } else {
        *uid = 0;
        *gid = 0;
    }
}

/* Creates the missing directories of path (resolved, following symlinks)
 * with mode, owner and mtime; *canon gets the canonical path. */
static int mkdir_all(struct plan *p, const char *path, mode_t mode, uid_t uid, gid_t gid,
                     char **canon, struct kn_error **err)
{
    struct sres r;
    if (state_resolve(p, path, true, &r, err) < 0)
        return -1;
    if (!r.missing && r.kind != SK_DIR) {
        int rc = kn_err_set(err, KN_E_FAILED, "cannot create directory '/%s': a file exists there",
                            r.path);
        sres_release(&r);
        return rc;
    }
    /* the created components are the last r.missing ones of r.path */
    size_t len = strlen(r.path), total = 0, idx = 0;
    if (len) {
        total = 1;
        for (size_t i = 0; i < len; i++)
            total += r.path[i] == '/';
    }
    for (size_t i = 0; i <= len && len; i++) {
        if (r.path[i] != '/' && r.path[i] != '\0')
            continue;
        if (++idx <= total - r.missing)
            continue;
        struct pentry e = {0};
        e.path = kn_strndup(r.path, i);
        e.kind = PE_DIR;
        e.mode = mode & 07777;
        e.uid = uid;
        e.gid = gid;
        e.mtime.tv_sec = p->req->mtime;
        plan_put(p, &e);
    }
    if (canon)
        *canon = kn_steal(&r.path);
    sres_release(&r);
    return 0;
}

/* ---- sources ------------------------------------------------------------------- */

void sources_free(struct srcmatch *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].written);
        free(m[i].base);
        vnode_release(&m[i].node);
    }
    free(m);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static const char *verb_of(const struct ir_file_action *a)
{
    return (a->flags & IR_FF_UNPACK) ? "ADD" : "COPY";
}

bool action_excluded(const struct kn_patterns *ex, const char *full, const char *rel)
{
    if (!ex)
        return false;
    if (*full && kn_patterns_match(ex, full))
        return true;
    return rel && *rel && kn_patterns_match(ex, rel);
}

int sources_resolve(const struct ex_view *v, const struct ir_file_action *a, struct srcmatch **out,
                    size_t *nout, struct kn_error **err)
{
    const char *src = a->src ? a->src : "";
    const char *s = src;
    while (*s == '/')
        s++;
    char *clean = kn_path_clean(*s ? s : ".");
    if (strcmp(clean, "..") == 0 || kn_str_startswith(clean, "../")) {
        free(clean);
        return kn_err_set(err, KN_E_UNSAFE, "%s source '%s' is outside of the %s", verb_of(a), src,
                          v->name);
    }
    if (strcmp(clean, ".") == 0)
        clean[0] = '\0';
    bool follow = a->flags & IR_FF_FOLLOW_SYMLINKS;
    KN_VEC(struct srcmatch) m = {0};
    if (!(a->flags & IR_FF_WILDCARD) || !kn_glob_has_meta(clean)) {
        struct srcmatch one = {0};
        int f = view_lookup(v, clean, follow, &one.node, err);
        if (f < 0) {
            free(clean);
            return -1;
        }
        if (f == 0) {
            free(clean);
            return kn_err_set(err, KN_E_NOTFOUND, "%s source '%s' not found in %s", verb_of(a), src,
                              v->name);
        }
        one.written = kn_strdup(clean);
        one.base = kn_strdup(base_name(clean));
        kn_vec_push(&m, one);
        free(clean);
        *out = m.v;
        *nout = m.n;
        return 0;
    }
    /* a glob: one component at a time, the frontier kept sorted */
    struct kn_strv front = {0}, next = {0};
    kn_strv_push(&front, "");
    char *save = NULL;
    int rc = 0;
    for (char *comp = strtok_r(clean, "/", &save); comp && rc == 0;
         comp = strtok_r(NULL, "/", &save)) {
        for (size_t i = 0; i < front.n && rc == 0; i++) {
            if (!kn_glob_has_meta(comp)) {
                char *p = fo_join(front.v[i], comp);
                struct vnode n;
                int f = view_lookup(v, p, true, &n, err);
                if (f > 0)
                    kn_strv_take(&next, p);
                else
                    free(p);
                if (f > 0)
                    vnode_release(&n);
                if (f < 0)
                    rc = -1;
                continue;
            }
            struct vnode dir;
            int f = view_lookup(v, front.v[i], true, &dir, err);
            if (f < 0) {
                rc = -1;
                break;
            }
            if (f == 0 || !S_ISDIR(dir.st.st_mode)) {
                if (f)
                    vnode_release(&dir);
                continue;
            }
            struct ventry *ents = NULL;
            size_t ne = 0;
            rc = view_list(v, &dir, &ents, &ne, err);
            vnode_release(&dir);
            for (size_t k = 0; k < ne && rc == 0; k++) {
                bool match = false;
                if (kn_glob_match(comp, ents[k].name, &match, err) < 0) {
                    rc = -1;
                    break;
                }
                if (match)
                    kn_strv_take(&next, fo_join(front.v[i], ents[k].name));
            }
            ventries_free(ents, ne);
        }
        kn_strv_release(&front);
        front = next;
        memset(&next, 0, sizeof(next));
    }
    free(clean);
    for (size_t i = 0; i < front.n && rc == 0; i++) {
        struct srcmatch one = {0};
        int f = view_lookup(v, front.v[i], follow, &one.node, err);
        if (f < 0) {
            rc = -1;
            break;
        }
        if (f == 0)
            continue;
        one.written = kn_strdup(front.v[i]);
        one.base = kn_strdup(base_name(front.v[i]));
        kn_vec_push(&m, one);
    }
    kn_strv_release(&front);
    if (rc < 0) {
        sources_free(m.v, m.n);
        return -1;
    }
    if (m.n == 0 && !(a->flags & IR_FF_ALLOW_EMPTY_WILDCARD)) {
        free(m.v);
        return kn_err_set(err, KN_E_NOTFOUND,
                          "no source files were specified: %s source '%s' matches nothing in %s",
                          verb_of(a), src, v->name);
    }
    *out = m.v;
    *nout = m.n;
    return 0;
}

/* ---- copying ------------------------------------------------------------------- */

static int copy_node(struct plan *p, struct copyctx *c, const struct vnode *sn, const char *target,
                     bool top, bool parent_new, const char *full, const char *rel, int depth,
                     struct kn_error **err);

#define PLAN_BATCH 2048

/* Streaming: everything planned so far sorts before what the walk has yet
 * to plan (it goes in emit order), so it is finished, handed over and
 * forgotten, but for the directories' paths. */
static int plan_flush(struct plan *p, struct kn_error **err)
{
    size_t n;
    struct pentry **v = plan_finish(p, &n, err);
    if (!v)
        return -1;
    int rc = p->flush.fn(p->flush.ctx, v, n, err);
    for (size_t i = 0; i < n; i++) {
        if (v[i]->kind != PE_DIR)
            continue;
        kn_strv_push(&p->flushed_keys, v[i]->path);
        fo_map_put(&p->flushed, p->flushed_keys.v[p->flushed_keys.n - 1], 0);
    }
    free(v);
    for (size_t i = 0; i < p->e.n; i++)
        pentry_free(&p->e.v[i]);
    p->e.n = 0;
    fo_map_release(&p->map);
    return rc;
}

static int copy_dir_children(struct plan *p, struct copyctx *c, const struct vnode *sn,
                             const char *target, bool dir_new, const char *full, const char *rel,
                             int depth, struct kn_error **err)
{
    if (depth > FO_MAX_DEPTH)
        return kn_err_set(err, KN_E_UNSAFE, "'%s' is nested too deeply", full);
    struct ventry *ents = NULL;
    size_t ne = 0;
    if (view_list(c->src, sn, &ents, &ne, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < ne && rc == 0; i++) {
        if (p->streaming && p->e.n >= PLAN_BATCH && plan_flush(p, err) < 0) {
            rc = -1;
            break;
        }
        char *cfull = fo_join(full, ents[i].name);
        char *crel = fo_join(rel, ents[i].name);
        if (!action_excluded(c->exclude, cfull, crel)) {
            struct vnode cn;
            int f = view_child_entry(c->src, sn, &ents[i], &cn, err);
            if (f < 0)
                rc = -1;
            if (f > 0) {
                char *ct = fo_join(target, ents[i].name);
                rc = copy_node(p, c, &cn, ct, false, dir_new, cfull, crel, depth + 1, err);
                free(ct);
                vnode_release(&cn);
            }
        }
        free(cfull);
        free(crel);
    }
    ventries_free(ents, ne);
    return rc;
}

static int verify_checksum(const struct copyctx *c, const struct vnode *sn, const char *full,
                           struct kn_error **err)
{
    int fd = view_open_node(c->src, sn, err);
    if (fd < 0)
        return -1;
    char got[KN_DIGEST_SIZE];
    int rc = fo_hash_file(fd, &sn->st, got, err);
    close(fd);
    if (rc == 0 && strcmp(got, c->checksum) != 0)
        rc = kn_err_set(err, KN_E_DIGEST, "checksum mismatch for '%s': expected %s, got %s", full,
                        c->checksum, got);
    return rc;
}

static int copy_node(struct plan *p, struct copyctx *c, const struct vnode *sn, const char *target,
                     bool top, bool parent_new, const char *full, const char *rel, int depth,
                     struct kn_error **err)
{
    struct sres t;
    if (parent_new) {
        /* below a directory this copy created nothing exists yet: no lookup */
        memset(&t, 0, sizeof(t));
        t.path = kn_strdup(target);
        t.missing = 1;
    } else if (state_resolve(p, target, false, &t, err) < 0) {
        return -1;
    }
    const struct stat *st = &sn->st;
    struct pentry e = {0};
    if (meta_mode(c, st->st_mode, &e.mode, err) < 0) {
        sres_release(&t);
        return -1;
    }
    meta_owner(c, st, &e.uid, &e.gid);
    e.mtime = st->st_mtim;
    if (S_ISDIR(st->st_mode)) {
        if (!t.missing && t.kind != SK_DIR) {
            int rc = kn_err_set(err, KN_E_FAILED, "cannot copy to non-directory: '/%s'", t.path);
            sres_release(&t);
            return rc;
        }
        if (t.missing || !top) {
            e.path = kn_strdup(t.path);
            e.kind = PE_DIR;
            e.src = c->src; /* for its xattrs */
            e.layer = sn->layer;
            e.srcpath = kn_strdup(sn->path);
            plan_put(p, &e);
        }
        int rc = copy_dir_children(p, c, sn, t.path, t.missing != 0, full, rel, depth, err);
        sres_release(&t);
        return rc;
    }
    if (!t.missing && t.kind == SK_DIR) {
        int rc = kn_err_set(err, KN_E_FAILED, "cannot replace directory '/%s' with file '%s'",
                            t.path, full);
        sres_release(&t);
        return rc;
    }
    e.path = kn_steal(&t.path);
    sres_release(&t);
    if (S_ISREG(st->st_mode)) {
        if (c->checksum && verify_checksum(c, sn, full, err) < 0) {
            free(e.path);
            return -1;
        }
        e.kind = PE_FILE;
        e.src = c->src;
        e.layer = sn->layer;
        e.srcpath = kn_strdup(sn->path);
        e.size = st->st_size;
        e.dev = st->st_dev;
        e.ino = st->st_ino;
        e.nlink = st->st_nlink;
    } else if (S_ISLNK(st->st_mode)) {
        e.kind = PE_LINK;
        e.link = view_readlink(c->src, sn->layer, sn->path, err);
        if (!e.link) {
            free(e.path);
            return -1;
        }
    } else if (S_ISFIFO(st->st_mode) || S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
        e.kind = PE_SPECIAL;
        e.rdev = st->st_rdev;
        e.mode |= st->st_mode & S_IFMT; /* the type rides along for the emitters */
    } else {
        kn_debug("fileop: skipping socket '%s'", full);
        free(e.path);
        return 0;
    }
    plan_put(p, &e);
    return 0;
}

/* ADD of a local archive: extract into a temporary directory, then copy
 * its contents into the destination directory. */
static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d);
    return empty;
}

static int copy_archive(struct plan *p, struct copyctx *c, const struct srcmatch *m,
                        const char *dest, struct kn_error **err)
{
    int fd = view_open_node(c->src, &m->node, err);
    if (fd < 0)
        return -1;
    const char *base = p->req->tmpdir ? p->req->tmpdir : getenv("TMPDIR");
    char *tmpl = kn_asprintf("%s/kiln-add-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        int rc = kn_err_sys(err, "cannot create a temporary directory in '%s'",
                            base && *base ? base : "/tmp");
        free(tmpl);
        close(fd);
        return rc;
    }
    kn_strv_take(&p->tmpdirs, tmpl);
    struct kn_error *xe = NULL;
    int rc = fo_extract_archive(fd, m->written, tmpl, &xe);
    close(fd);
    if (rc < 0) {
        /* Only "this is not a tar" (a compressed single file, as Docker
         * copies it) falls back to copying the file, and only before any
         * entry was extracted: an archive that fails half-way (an unsafe
         * entry, a full disk, a missing parent) fails the build. */
        if (!xe || xe->code != KN_E_PARSE || !dir_is_empty(tmpl)) {
            if (xe)
                kn_err_propagate(err, &xe);
            else
                kn_err_set(err, KN_E_IO, "cannot extract '%s'", m->written);
            return -1;
        }
        kn_debug("fileop: '%s' is not an archive (%s): copied as a file", m->written,
                 xe ? xe->msg : "?");
        kn_err_free(xe);
        return 1;
    }
    struct ex_view *tv = ex_view_new_dir(tmpl, "archive", NULL, 0, NULL, 0, err);
    if (!tv)
        return -1;
    tv->keep_owners = true;
    kn_vec_push(&p->tmpviews, tv);
    char *canon = NULL;
    uid_t uid = c->chown ? c->uid : 0;
    gid_t gid = c->chown ? c->gid : 0;
    if (mkdir_all(p, dest, 0755, uid, gid, &canon, err) < 0)
        return -1;
    struct copyctx ac = *c;
    ac.src = tv;
    ac.exclude = NULL;
    ac.checksum = NULL;
    struct vnode root;
    view_root(tv, &root);
    rc = copy_node(p, &ac, &root, canon, true, false, "", "", 0, err);
    vnode_release(&root);
    free(canon);
    return rc;
}

static char *clean_dest(const char *dest)
{
    const char *d = dest ? dest : "";
    while (*d == '/')
        d++;
    char *c = kn_path_clean(*d ? d : ".");
    if (strcmp(c, ".") == 0)
        c[0] = '\0';
    /* a dest can never climb above the root */
    while (kn_str_startswith(c, "../") || strcmp(c, "..") == 0) {
        char *n = kn_strdup(c[2] ? c + 3 : "");
        free(c);
        c = n;
    }
    return c;
}

/* --parents: the part of the source path whose directories are kept: all
 * of it, or what follows a "/./" pivot ("a/./b/c" keeps "b/"). The pivot
 * is found in the written source; the match has as many components before
 * it (globs match one component each). */
static const char *parents_part(const char *written, const char *src)
{
    const char *piv = strstr(src ? src : "", "/./");
    if (!piv)
        return written;
    const char *s = src;
    while (*s == '/')
        s++;
    size_t ncomp = 1;
    for (const char *q = s; q < piv; q++)
        if (*q == '/')
            ncomp++;
    const char *w = written;
    for (size_t i = 0; i < ncomp && w; i++) {
        w = strchr(w, '/');
        if (w)
            w++;
    }
    return w ? w : written;
}

static int plan_copy(struct plan *p, const struct ir_file_action *a, struct kn_error **err)
{
    const struct ex_fileop_req *req = p->req;
    if (a->src_input < 0 || (size_t)a->src_input >= req->ninputs || !req->inputs[a->src_input])
        return kn_err_set(err, KN_E_INTERNAL, "copy action refers to input %d, which has no view",
                          a->src_input);
    struct copyctx c = {.a = a, .src = req->inputs[a->src_input], .verb = verb_of(a)};
    if (req->checksums && req->checksums[a->src_input])
        c.checksum = req->checksums[a->src_input];
    if (a->chown) {
        if (ex_fileop_resolve_chown(req->dest, a->chown, &c.uid, &c.gid, err) < 0)
            return -1;
        c.chown = true;
    }
    if (a->nexclude) {
        c.exclude = kn_patterns_new(a->exclude, a->nexclude, err);
        if (!c.exclude)
            return -1;
    }
    struct srcmatch *m = NULL;
    size_t nm = 0;
    int rc = sources_resolve(c.src, a, &m, &nm, err);
    if (rc < 0) {
        kn_patterns_free(c.exclude);
        return -1;
    }
    /* --exclude applies to wildcard matches too */
    size_t k = 0;
    for (size_t i = 0; i < nm; i++) {
        if ((a->flags & IR_FF_WILDCARD) && action_excluded(c.exclude, m[i].written, m[i].base)) {
            free(m[i].written);
            free(m[i].base);
            vnode_release(&m[i].node);
            continue;
        }
        m[k++] = m[i];
    }
    nm = k;
    char *dest = clean_dest(a->dest);
    uid_t puid = c.chown ? c.uid : 0;
    gid_t pgid = c.chown ? c.gid : 0;
    bool dest_dir = a->flags & IR_FF_DEST_IS_DIR;
    if (nm > 1 && !dest_dir) {
        struct sres r;
        rc = state_resolve(p, dest, true, &r, err);
        if (rc == 0 && (r.missing || r.kind != SK_DIR))
            rc = kn_err_set(err, KN_E_FAILED,
                            "when using %s with more than one source file, the destination "
                            "'/%s' must be a directory and end with a /",
                            c.verb, dest);
        if (rc == 0)
            dest_dir = true;
        sres_release(&r);
    }
    /* the destination's parents (or the destination itself for a dir dest) */
    if (rc == 0 && nm > 0) {
        char *canon = NULL;
        if (dest_dir) {
            rc = mkdir_all(p, dest, 0755, puid, pgid, &canon, err);
        } else {
            char *slash = strrchr(dest, '/');
            char *parent = slash ? kn_strndup(dest, (size_t)(slash - dest)) : kn_strdup("");
            struct sres r;
            rc = state_resolve(p, parent, true, &r, err);
            if (rc == 0 && r.missing && !(a->flags & IR_FF_CREATE_PARENTS))
                rc = kn_err_set(err, KN_E_NOTFOUND,
                                "cannot copy to '/%s': parent directory '/%s' does not exist", dest,
                                parent);
            else if (rc == 0 && !r.missing && r.kind != SK_DIR)
                rc = kn_err_set(err, KN_E_FAILED, "cannot copy to '/%s': '/%s' is not a directory",
                                dest, parent);
            sres_release(&r);
            if (rc == 0)
                rc = mkdir_all(p, parent, 0755, puid, pgid, &canon, err);
            if (rc == 0) {
                char *full = fo_join(canon, slash ? slash + 1 : dest);
                free(canon);
                canon = full;
            }
            free(parent);
        }
        if (rc == 0) {
            free(dest);
            dest = canon;
        } else {
            free(canon);
        }
    }
    /* one source, the op's only action: its walk is in emit order */
    p->streaming = p->flush.fn && req->op->nactions == 1 && nm == 1;
    for (size_t i = 0; i < nm && rc == 0; i++) {
        const struct srcmatch *s = &m[i];
        char *d = kn_strdup(dest);
        bool into = dest_dir;
        if (a->flags & IR_FF_PARENTS) {
            const char *part = parents_part(s->written, a->src);
            const char *slash = strrchr(part, '/');
            if (slash) {
                /* keep the source's parent directories, with their metadata */
                char *pp = kn_strndup(part, (size_t)(slash - part));
                size_t off = (size_t)(part - s->written);
                char *save = NULL, *acc = kn_strdup("");
                for (char *comp = strtok_r(pp, "/", &save); comp && rc == 0;
                     comp = strtok_r(NULL, "/", &save)) {
                    char *nacc = fo_join(acc, comp);
                    free(acc);
                    acc = nacc;
                    char *srcp = kn_asprintf("%.*s%s", (int)off, s->written, acc);
                    struct vnode pn;
                    int f = view_lookup(c.src, srcp, true, &pn, err);
                    free(srcp);
                    if (f <= 0) {
                        rc = -1;
                        break;
                    }
                    char *td = fo_join(d, comp);
                    struct sres r;
                    rc = state_resolve(p, td, true, &r, err);
                    if (rc == 0 && r.missing) {
                        struct pentry e = {0};
                        e.path = kn_strdup(r.path);
                        e.kind = PE_DIR;
                        e.src = c.src;
                        e.layer = pn.layer;
                        e.srcpath = kn_strdup(pn.path);
                        rc = meta_mode(&c, pn.st.st_mode, &e.mode, err);
                        meta_owner(&c, &pn.st, &e.uid, &e.gid);
                        e.mtime = pn.st.st_mtim;
                        if (rc == 0)
                            plan_put(p, &e);
                        else
                            free(e.path);
                    } else if (rc == 0 && r.kind != SK_DIR) {
                        rc = kn_err_set(err, KN_E_FAILED, "cannot copy to non-directory: '/%s'",
                                        r.path);
                    }
                    free(d);
                    d = rc == 0 ? kn_strdup(r.path) : kn_strdup("");
                    sres_release(&r);
                    free(td);
                    vnode_release(&pn);
                }
                free(acc);
                free(pp);
                into = true;
            }
        }
        if (rc < 0) {
            free(d);
            break;
        }
        if ((a->flags & IR_FF_UNPACK) && S_ISREG(s->node.st.st_mode)) {
            int fd = view_open_node(c.src, &s->node, err);
            if (fd < 0) {
                rc = -1;
                free(d);
                break;
            }
            bool arch = fo_is_archive(fd);
            close(fd);
            if (arch) {
                rc = copy_archive(p, &c, s, d, err);
                if (rc <= 0) {
                    free(d);
                    continue;
                }
                rc = 0;
            }
        }
        struct sres r;
        rc = state_resolve(p, d, true, &r, err);
        if (rc < 0) {
            free(d);
            break;
        }
        bool src_dir = S_ISDIR(s->node.st.st_mode);
        bool exists = !r.missing;
        bool is_dir = exists && r.kind == SK_DIR;
        char *target = kn_strdup(r.path);
        if ((!(a->flags & IR_FF_DIR_CONTENTS) && src_dir && exists) ||
            (!src_dir && (is_dir || into))) {
            char *t = fo_join(target, s->base);
            free(target);
            target = t;
        }
        if ((a->flags & IR_FF_DIR_CONTENTS) && src_dir && !exists)
            rc = mkdir_all(p, target, 0755, puid, pgid, NULL, err);
        if (rc == 0)
            rc = copy_node(p, &c, &s->node, target, true, false, s->written, "", 0, err);
        free(target);
        sres_release(&r);
        free(d);
    }
    p->streaming = false;
    free(dest);
    sources_free(m, nm);
    kn_patterns_free(c.exclude);
    return rc;
}

/* ---- the other actions ------------------------------------------------------------ */

/* Resolves the parent of an action's path (creating it with
 * CREATE_PARENTS) and returns the canonical path of the entry itself. */
static int action_target(struct plan *p, const struct ir_file_action *a, const char *what,
                         uid_t uid, gid_t gid, char **out, struct kn_error **err)
{
    char *path = clean_dest(a->dest);
    if (!*path) {
        int rc = kn_err_set(err, KN_E_FAILED, "cannot %s '/': it is the root directory", what);
        free(path);
        return rc;
    }
    char *slash = strrchr(path, '/');
    char *parent = slash ? kn_strndup(path, (size_t)(slash - path)) : kn_strdup("");
    struct sres r;
    int rc = state_resolve(p, parent, true, &r, err);
    if (rc == 0 && r.missing && !(a->flags & IR_FF_CREATE_PARENTS))
        rc = kn_err_set(err, KN_E_NOTFOUND, "cannot %s '/%s': parent directory does not exist",
                        what, path);
    else if (rc == 0 && !r.missing && r.kind != SK_DIR)
        rc = kn_err_set(err, KN_E_FAILED, "cannot %s '/%s': '/%s' is not a directory", what, path,
                        parent);
    sres_release(&r);
    char *canon = NULL;
    if (rc == 0)
        rc = mkdir_all(p, parent, a->kind == IR_FILE_MKDIR && a->mode >= 0 ? (mode_t)a->mode : 0755,
                       uid, gid, &canon, err);
    if (rc == 0)
        *out = fo_join(canon, slash ? slash + 1 : path);
    free(canon);
    free(parent);
    free(path);
    return rc;
}

static int plan_other(struct plan *p, const struct ir_file_action *a, struct kn_error **err)
{
    uid_t uid = 0;
    gid_t gid = 0;
    if (a->chown && a->kind != IR_FILE_RM &&
        ex_fileop_resolve_chown(p->req->dest, a->chown, &uid, &gid, err) < 0)
        return -1;
    const char *what = a->kind == IR_FILE_MKDIR    ? "create directory"
                       : a->kind == IR_FILE_MKFILE ? "create file"
                       : a->kind == IR_FILE_RM     ? "remove"
                                                   : "create symlink";
    char *target = NULL;
    struct ir_file_action ra = *a;
    if (a->kind == IR_FILE_RM)
        ra.flags &= ~(unsigned)IR_FF_CREATE_PARENTS;
    if (action_target(p, &ra, what, uid, gid, &target, err) < 0) {
        if (a->kind == IR_FILE_RM && (a->flags & IR_FF_ALLOW_NOT_FOUND) && err && *err &&
            (*err)->code == KN_E_NOTFOUND) {
            kn_err_free(*err);
            *err = NULL;
            return 0;
        }
        return -1;
    }
    struct sres t;
    if (state_resolve(p, target, false, &t, err) < 0) {
        free(target);
        return -1;
    }
    int rc = 0;
    struct pentry e = {0};
    e.uid = uid;
    e.gid = gid;
    e.mtime.tv_sec = p->req->mtime;
    switch (a->kind) {
    case IR_FILE_MKDIR:
        if (!t.missing && t.kind == SK_DIR)
            break; /* WORKDIR on an existing directory: left as it is */
        if (!t.missing) {
            rc = kn_err_set(err, KN_E_FAILED, "cannot create directory '/%s': a file exists there",
                            t.path);
            break;
        }
        e.path = kn_strdup(t.path);
        e.kind = PE_DIR;
        e.mode = a->mode >= 0 ? (mode_t)a->mode & 07777 : 0755;
        plan_put(p, &e);
        break;
    case IR_FILE_MKFILE:
        if (!t.missing && t.kind == SK_DIR) {
            rc = kn_err_set(err, KN_E_FAILED, "cannot create file '/%s': a directory exists there",
                            t.path);
            break;
        }
        e.path = kn_strdup(t.path);
        e.kind = PE_FILE;
        e.mode = a->mode >= 0 ? (mode_t)a->mode & 07777 : 0644;
        e.is_data = true;
        e.datalen = a->datalen;
        e.data = kn_malloc(a->datalen + 1);
        if (a->datalen)
            memcpy(e.data, a->data, a->datalen);
        e.size = (off_t)a->datalen;
        plan_put(p, &e);
        break;
    case IR_FILE_SYMLINK:
        if (!t.missing) {
            rc = kn_err_set(err, KN_E_FAILED, "cannot create symlink '/%s': a file exists there",
                            t.path);
            break;
        }
        if (!a->target || !*a->target) {
            rc = kn_err_set(err, KN_E_FAILED, "cannot create symlink '/%s': empty target", t.path);
            break;
        }
        e.path = kn_strdup(t.path);
        e.kind = PE_LINK;
        e.mode = 0777;
        e.link = kn_strdup(a->target);
        plan_put(p, &e);
        break;
    case IR_FILE_RM:
        if (t.missing) {
            if (!(a->flags & IR_FF_ALLOW_NOT_FOUND))
                rc = kn_err_set(err, KN_E_NOTFOUND, "cannot remove '/%s': not found", t.path);
            break;
        }
        plan_kill_tree(p, t.path);
        if (t.in_view) {
            e.path = kn_strdup(t.path);
            e.kind = PE_WHITEOUT;
            e.uid = 0;
            e.gid = 0;
            plan_put(p, &e);
        }
        break;
    default:
        rc = kn_err_set(err, KN_E_INTERNAL, "unknown file action %d", (int)a->kind);
    }
    sres_release(&t);
    free(target);
    return rc;
}

int plan_build(struct plan *p, const struct ex_fileop_req *req, const struct plan_flush *flush,
               struct kn_error **err)
{
    memset(p, 0, sizeof(*p));
    p->req = req;
    if (flush)
        p->flush = *flush;
    if (!req->dest)
        return kn_err_set(err, KN_E_INTERNAL, "file op without a destination view");
    for (size_t i = 0; i < req->op->nactions; i++) {
        const struct ir_file_action *a = &req->op->actions[i];
        int rc = a->kind == IR_FILE_COPY ? plan_copy(p, a, err) : plan_other(p, a, err);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- finishing: parents, order, hard links ------------------------------------------ */

static int cmp_pentry(const void *a, const void *b)
{
    const struct pentry *x = *(struct pentry *const *)a, *y = *(struct pentry *const *)b;
    return fo_path_cmp(x->path, y->path);
}

struct pentry **plan_finish(struct plan *p, size_t *nout, struct kn_error **err)
{
    /* every entry's parents are entries too: unchanged ones copied from the
     * destination (as overlayfs copies a parent up) */
    size_t n0 = p->e.n;
    for (size_t i = 0; i < n0; i++) {
        if (p->e.v[i].dead)
            continue;
        char *path = kn_strdup(p->e.v[i].path);
        for (char *s = strrchr(path, '/'); s; s = strrchr(path, '/')) {
            *s = '\0';
            size_t dummy;
            if (plan_get(p, path) || fo_map_get(&p->flushed, path, &dummy))
                break;
            struct vnode vn;
            int f = view_lookup(p->req->dest, path, false, &vn, err);
            if (f < 0) {
                free(path);
                return NULL;
            }
            struct pentry e = {0};
            e.path = kn_strdup(path);
            e.kind = PE_DIR;
            e.implicit = true;
            if (f > 0 && S_ISDIR(vn.st.st_mode)) {
                e.mode = vn.st.st_mode & 07777;
                e.uid = vn.st.st_uid;
                e.gid = vn.st.st_gid;
                e.mtime = vn.st.st_mtim;
            } else {
                e.mode = 0755;
                e.mtime.tv_sec = p->req->mtime;
            }
            if (f > 0)
                vnode_release(&vn);
            plan_put(p, &e);
        }
        free(path);
    }
    struct pentry **v = kn_calloc(p->e.n + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < p->e.n; i++)
        if (!p->e.v[i].dead)
            v[n++] = &p->e.v[i];
    qsort(v, n, sizeof(*v), cmp_pentry);
    /* hard links: the first path (in emit order) of a source inode, kept
     * from batch to batch */
    for (size_t i = 0; i < n; i++) {
        struct pentry *e = v[i];
        if (e->kind != PE_FILE || e->is_data || e->nlink < 2)
            continue;
        char *key = kn_asprintf("%p:%d:%ju:%ju", (const void *)e->src, e->layer, (uintmax_t)e->dev,
                                (uintmax_t)e->ino);
        size_t first;
        if (fo_map_get(&p->link_map, key, &first)) {
            const struct plink *f = &p->links.v[first];
            if (f->mode == e->mode && f->uid == e->uid && f->gid == e->gid) {
                e->hardlink = true;
                free(e->link);
                e->link = kn_strdup(f->path);
            }
            free(key);
        } else {
            kn_strv_take(&p->link_keys, key);
            struct plink l = {kn_strdup(e->path), e->mode, e->uid, e->gid};
            kn_vec_push(&p->links, l);
            fo_map_put(&p->link_map, p->link_keys.v[p->link_keys.n - 1], p->links.n - 1);
        }
    }
    *nout = n;
    return v;
}
