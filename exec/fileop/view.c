/*
 * Read-only views over a COPY source or destination, without mounting.
 *
 * A view is a stack of root directory fds, lowest first: one for a host
 * directory (the build context, filtered by .dockerignore patterns), several
 * for a chain of overlay-form layer directories. A lookup walks the path one
 * component at a time through the merged stack, top layer first: a whiteout
 * (0/0 char device or ".wh.NAME") hides lower layers, a non-directory hides
 * everything below it, and a directory merges with the directories of lower
 * layers until one of them is opaque. Symlinks are resolved by the walk
 * itself, as in a chroot: ".." at the root stays at the root and absolute
 * targets restart at the view's root, so nothing outside the view is ever
 * reached. Once a path is canonical (no symlinks in the merged view), each
 * layer is read with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) so a
 * symlink in a hidden lower layer cannot redirect the access either.
 */
#include "exec/fileop/internal.h"
#include "exec/snapshot/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

int fo_openat2(int dirfd, const char *path, int flags, unsigned long long resolve)
{
    struct open_how how = {.flags = (uint64_t)flags, .resolve = resolve};
    if (!*path)
        path = ".";
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = openat(dirfd, path, flags | O_NOFOLLOW);
    return (int)fd;
}

char *fo_join(const char *a, const char *b)
{
    if (!*a)
        return kn_strdup(b);
    if (!*b)
        return kn_strdup(a);
    return kn_asprintf("%s/%s", a, b);
}

int fo_path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca == cb) {
            if (!ca)
                return 0;
            continue;
        }
        /* '/' sorts before every other byte: a directory's entries follow it */
        if (ca == '/')
            ca = 1;
        if (cb == '/')
            cb = 1;
        return ca < cb ? -1 : 1;
    }
}

/* ---- hash map ------------------------------------------------------------ */

static size_t map_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

static const char map_tomb[] = "";

static void map_grow(struct fo_map *m)
{
    size_t ncap = m->cap ? m->cap : 64;
    while ((m->n + 1) * 4 > ncap) /* live entries at most a quarter: tombstones go */
        ncap *= 2;
    const char **keys = kn_calloc(ncap, sizeof(*keys));
    size_t *vals = kn_calloc(ncap, sizeof(*vals));
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i] || m->keys[i] == map_tomb)
            continue;
        size_t j = map_hash(m->keys[i]) & (ncap - 1);
        while (keys[j])
            j = (j + 1) & (ncap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
        n++;
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = ncap;
    m->n = n;
    m->used = n;
}

static size_t map_slot(const struct fo_map *m, const char *key, bool *found)
{
    size_t j = map_hash(key) & (m->cap - 1), tomb = SIZE_MAX;
    for (;; j = (j + 1) & (m->cap - 1)) {
        if (!m->keys[j]) {
            *found = false;
            return tomb != SIZE_MAX ? tomb : j;
        }
        if (m->keys[j] == map_tomb) {
            if (tomb == SIZE_MAX)
                tomb = j;
        } else if (strcmp(m->keys[j], key) == 0) {
            *found = true;
            return j;
        }
    }
}

void fo_map_put(struct fo_map *m, const char *key, size_t val)
{
    if ((m->used + 1) * 2 > m->cap)
        map_grow(m);
    bool found;
    size_t j = map_slot(m, key, &found);
    if (!found) {
        m->n++;
        if (!m->keys[j])
            m->used++; /* a fresh slot, not a reused tombstone */
    }
    m->keys[j] = key;
    m->vals[j] = val;
}

bool fo_map_get(const struct fo_map *m, const char *key, size_t *val)
{
    if (!m->cap)
        return false;
    bool found;
    size_t j = map_slot(m, key, &found);
    if (found && val)
        *val = m->vals[j];
    return found;
}

void fo_map_del(struct fo_map *m, const char *key)
{
    if (!m->cap)
        return;
    bool found;
    size_t j = map_slot(m, key, &found);
    if (found) {
        m->keys[j] = map_tomb; /* still counted in used until the next grow */
        m->n--;
    }
}

void fo_map_release(struct fo_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* ---- construction -------------------------------------------------------- */

static struct ex_view *view_alloc(const char *name, size_t n)
{
    struct ex_view *v = kn_calloc(1, sizeof(*v));
    v->name = kn_strdup(name ? name : "build context");
    v->fds = kn_calloc(n ? n : 1, sizeof(int));
    for (size_t i = 0; i < n; i++)
        v->fds[i] = -1;
    v->n = n;
    return v;
}

static int open_root(struct ex_view *v, size_t i, const char *dir, struct kn_error **err)
{
    v->fds[i] = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (v->fds[i] < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return kn_err_set(err, KN_E_NOTFOUND, "directory not found '%s'", dir);
        return kn_err_sys(err, "cannot open directory '%s'", dir);
    }
    return 0;
}

struct ex_view *ex_view_new_dir(const char *dir, const char *name, char *const *include,
                                size_t ninclude, char *const *exclude, size_t nexclude,
                                struct kn_error **err)
{
    struct ex_view *v = view_alloc(name, 1);
    v->root = kn_strdup(dir);
    if (open_root(v, 0, dir, err) < 0) {
        ex_view_free(v);
        return NULL;
    }
    if (ninclude) {
        v->include = kn_patterns_new(include, ninclude, err);
        if (!v->include) {
            ex_view_free(v);
            return NULL;
        }
        v->include_raw = kn_calloc(ninclude, sizeof(char *));
        for (size_t i = 0; i < ninclude; i++) {
            const char *p = include[i];
            while (*p == '/')
                p++;
            v->include_raw[i] = kn_path_clean(p);
        }
        v->ninclude = ninclude;
    }
    if (nexclude) {
        v->exclude = kn_patterns_new(exclude, nexclude, err);
        if (!v->exclude) {
            ex_view_free(v);
            return NULL;
        }
    }
    return v;
}

struct ex_view *ex_view_new_chain(const char *const *layers, size_t n, const char *name,
                                  struct kn_error **err)
{
    struct ex_view *v = view_alloc(name, n);
    v->chain = true;
    v->keep_owners = true;
    v->root = kn_strdup(n ? layers[n - 1] : "(scratch)");
    for (size_t i = 0; i < n; i++) {
        if (open_root(v, i, layers[i], err) < 0) {
            ex_view_free(v);
            return NULL;
        }
    }
    return v;
}

struct ex_view *ex_view_new_snapshot(const struct ex_snapshot *s, const char *name,
                                     struct kn_error **err)
{
    size_t n = ex_snapshot_len(s);
    const char **layers = kn_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        layers[i] = ex_snapshot_layer(s, i);
    struct ex_view *v = ex_view_new_chain(layers, n, name, err);
    free(layers);
    return v;
}

void ex_view_free(struct ex_view *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++)
        if (v->fds[i] >= 0)
            close(v->fds[i]);
    free(v->fds);
    kn_patterns_free(v->include);
    kn_patterns_free(v->exclude);
    for (size_t i = 0; i < v->ninclude; i++)
        free(v->include_raw[i]);
    free(v->include_raw);
    free(v->root);
    free(v->name);
    free(v);
}

const char *ex_view_name(const struct ex_view *v)
{
    return v->name;
}

/* ---- nodes ---------------------------------------------------------------- */

void vnode_release(struct vnode *n)
{
    free(n->path);
    free(n->dirlayers);
    memset(n, 0, sizeof(*n));
}

void vnode_copy(struct vnode *dst, const struct vnode *src)
{
    *dst = *src;
    dst->path = kn_strdup(src->path);
    dst->dirlayers = kn_calloc(src->ndirlayers ? src->ndirlayers : 1, sizeof(int));
    memcpy(dst->dirlayers, src->dirlayers, src->ndirlayers * sizeof(int));
}

void view_root(const struct ex_view *v, struct vnode *out)
{
    memset(out, 0, sizeof(*out));
    out->path = kn_strdup("");
    out->dirlayers = kn_calloc(v->n ? v->n : 1, sizeof(int));
    for (size_t i = 0; i < v->n; i++)
        out->dirlayers[i] = (int)(v->n - 1 - i);
    out->ndirlayers = v->n;
    out->layer = v->n ? (int)v->n - 1 : -1;
    out->st.st_mode = S_IFDIR | 0755;
    if (v->n)
        (void)fstat(v->fds[v->n - 1], &out->st);
}

/* Is a visible path of a dir view kept by its include / exclude patterns? */
static bool dir_visible(const struct ex_view *v, const char *path, bool is_dir)
{
    if (v->include && !kn_patterns_match(v->include, path)) {
        if (!is_dir)
            return false;
        /* an ancestor of something included stays visible */
        bool anc = false;
        size_t len = strlen(path);
        for (size_t i = 0; i < v->ninclude && !anc; i++) {
            const char *p = v->include_raw[i];
            if (strncmp(p, path, len) == 0 && p[len] == '/')
                anc = true;
            else if (kn_glob_has_meta(p))
                anc = true; /* could match below: decided entry by entry */
        }
        if (!anc)
            return false;
    }
    if (v->exclude && kn_patterns_match(v->exclude, path))
        return is_dir && kn_patterns_has_exceptions_under(v->exclude, path);
    return true;
}

static bool is_whiteout_st(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == 0;
}

/* Is the directory (layer, path) opaque? */
static bool layer_dir_opaque(const struct ex_view *v, int layer, const char *path)
{
    int fd = fo_openat2(v->fds[layer], path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, FO_RESOLVE);
    if (fd < 0)
        return false;
    char val[4];
    bool opaque = false;
    ssize_t n = fgetxattr(fd, "trusted.overlay.opaque", val, sizeof(val));
    if (n == 1 && val[0] == 'y')
        opaque = true;
    n = fgetxattr(fd, "user.overlay.opaque", val, sizeof(val));
    if (n == 1 && val[0] == 'y')
        opaque = true;
    struct stat st;
    if (!opaque && fstatat(fd, FO_WH_OPAQUE, &st, AT_SYMLINK_NOFOLLOW) == 0)
        opaque = true;
    close(fd);
    return opaque;
}

/* Does layer hold a ".wh.NAME" marker for path? */
static bool layer_has_wh(const struct ex_view *v, int layer, const char *dir, const char *name)
{
    char *wh = kn_asprintf("%s%s" FO_WH_PREFIX "%s", dir, *dir ? "/" : "", name);
    struct stat st;
    bool r = fstatat(v->fds[layer], wh, &st, AT_SYMLINK_NOFOLLOW) == 0;
    free(wh);
    return r;
}

int view_child(const struct ex_view *v, const struct vnode *dir, const char *name,
               struct vnode *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    char *path = fo_join(dir->path, name);
    bool found = false;
    int *layers = NULL;
    size_t nl = 0;
    for (size_t i = 0; i < dir->ndirlayers; i++) {
        int l = dir->dirlayers[i];
        struct stat st;
        if (fstatat(v->fds[l], path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT && errno != ENOTDIR) {
                int rc = kn_err_sys(err, "cannot stat '%s' in %s", path, v->name);
                free(path);
                free(layers);
                return rc;
            }
            if (v->chain && layer_has_wh(v, l, dir->path, name))
                break;
            continue;
        }
        if (v->chain && (is_whiteout_st(&st) || strncmp(name, FO_WH_PREFIX, 4) == 0))
            break;
        if (!found) {
            found = true;
            out->st = st;
            out->layer = l;
            if (!S_ISDIR(st.st_mode))
                break;
            layers = kn_calloc(dir->ndirlayers, sizeof(int));
            layers[nl++] = l;
            if (!v->chain || i + 1 == dir->ndirlayers || layer_dir_opaque(v, l, path))
                break;
            continue;
        }
        /* a lower layer: merges only as a directory */
        if (!S_ISDIR(st.st_mode))
            break;
        layers[nl++] = l;
        if (i + 1 == dir->ndirlayers || layer_dir_opaque(v, l, path))
            break;
    }
    if (found && !v->chain && (v->include || v->exclude) &&
        !dir_visible(v, path, S_ISDIR(out->st.st_mode)))
        found = false;
    if (!found) {
        free(path);
        free(layers);
        memset(out, 0, sizeof(*out));
        return 0;
    }
    out->path = path;
    out->dirlayers = layers;
    out->ndirlayers = nl;
    return 1;
}

int view_child_entry(const struct ex_view *v, const struct vnode *dir, const struct ventry *e,
                     struct vnode *out, struct kn_error **err)
{
    if (v->chain)
        return view_child(v, dir, e->name, out, err);
    /* one layer, already listed and filtered: no second stat */
    memset(out, 0, sizeof(*out));
    out->st = e->st;
    out->layer = e->layer;
    out->path = fo_join(dir->path, e->name);
    if (S_ISDIR(e->st.st_mode)) {
        out->dirlayers = kn_calloc(1, sizeof(int));
        out->dirlayers[0] = e->layer;
        out->ndirlayers = 1;
    }
    return 1;
}

char *view_readlink(const struct ex_view *v, int layer, const char *path, struct kn_error **err)
{
    char buf[4097];
    ssize_t n = readlinkat(v->fds[layer], path, buf, sizeof(buf));
    if (n < 0) {
        kn_err_sys(err, "cannot read symlink '%s' in %s", path, v->name);
        return NULL;
    }
    if ((size_t)n >= sizeof(buf) - 1) {
        kn_err_set(err, KN_E_UNSAFE, "symlink '%s' in %s has a target that is too long", path,
                   v->name);
        return NULL;
    }
    buf[n] = '\0';
    return kn_strdup(buf);
}

/* The walk's stack of directories (for ".."). */
struct dstack {
    struct vnode *v;
    size_t n, cap;
};

static void dstack_clear(struct dstack *s, size_t keep)
{
    while (s->n > keep)
        vnode_release(&s->v[--s->n]);
}

int view_lookup(const struct ex_view *v, const char *path, bool follow, struct vnode *out,
                struct kn_error **err)
{
    struct dstack st = {0};
    st.v = kn_grow(st.v, &st.cap, 1, sizeof(*st.v));
    view_root(v, &st.v[st.n++]);
    char *rest = kn_strdup(path);
    int links = 0, rc = 0;
    size_t pos = 0;
    memset(out, 0, sizeof(*out));
    for (;;) {
        while (rest[pos] == '/')
            pos++;
        if (!rest[pos]) {
            vnode_copy(out, &st.v[st.n - 1]);
            rc = 1;
            break;
        }
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
            if (st.n > 1)
                dstack_clear(&st, st.n - 1);
            continue;
        }
        struct vnode child;
        int f = view_child(v, &st.v[st.n - 1], comp, &child, err);
        free(comp);
        if (f <= 0) {
            rc = f;
            break;
        }
        if (S_ISLNK(child.st.st_mode) && (!last || follow)) {
            if (++links > FO_MAX_LINKS) {
                rc =
                    kn_err_set(err, KN_E_UNSAFE, "too many levels of symbolic links in '%s'", path);
                vnode_release(&child);
                break;
            }
            char *target = view_readlink(v, child.layer, child.path, err);
            vnode_release(&child);
            if (!target) {
                rc = -1;
                break;
            }
            char *nrest = kn_asprintf("%s/%s", target, rest + pos);
            if (target[0] == '/')
                dstack_clear(&st, 1);
            free(target);
            free(rest);
            rest = nrest;
            pos = 0;
            continue;
        }
        if (last) {
            *out = child;
            rc = 1;
            break;
        }
        if (!S_ISDIR(child.st.st_mode)) {
            vnode_release(&child);
            rc = 0; /* ENOTDIR: not found */
            break;
        }
        if (st.n >= FO_MAX_DEPTH) {
            vnode_release(&child);
            rc = kn_err_set(err, KN_E_UNSAFE, "path '%s' is nested too deeply", path);
            break;
        }
        st.v = kn_grow(st.v, &st.cap, st.n + 1, sizeof(*st.v));
        st.v[st.n++] = child;
    }
    dstack_clear(&st, 0);
    free(st.v);
    free(rest);
    return rc;
}

/* ---- listing ---------------------------------------------------------------- */

void ventries_free(struct ventry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}

static int cmp_ventry(const void *a, const void *b)
{
    return strcmp(((const struct ventry *)a)->name, ((const struct ventry *)b)->name);
}

int view_list(const struct ex_view *v, const struct vnode *dir, struct ventry **out, size_t *nout,
              struct kn_error **err)
{
    KN_VEC(struct ventry) ents = {0};
    struct fo_map seen = {0}; /* name -> index; SIZE_MAX = hidden by a whiteout */
    struct kn_strv hidden = {0};
    int rc = 0;
    for (size_t i = 0; i < dir->ndirlayers && rc == 0; i++) {
        int l = dir->dirlayers[i];
        int fd = fo_openat2(v->fds[l], dir->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, FO_RESOLVE);
        if (fd < 0) {
            rc = kn_err_sys(err, "cannot open directory '%s' in %s", *dir->path ? dir->path : "/",
                            v->name);
            break;
        }
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
            rc = kn_err_sys(err, "cannot read directory '%s'", dir->path);
            break;
        }
        size_t first_new = ents.n;
        struct dirent *de;
        errno = 0;
        while ((de = readdir(d))) {
            const char *name = de->d_name;
            if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                continue;
            if (fo_map_get(&seen, name, NULL))
                continue;
            if (v->chain && strncmp(name, FO_WH_PREFIX, 4) == 0) {
                if (strcmp(name, FO_WH_OPAQUE) != 0 && name[4]) {
                    kn_strv_push(&hidden, name + 4);
                }
                continue;
            }
            struct stat sb;
            if (fstatat(fd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                rc = kn_err_sys(err, "cannot stat '%s/%s' in %s", dir->path, name, v->name);
                break;
            }
            if (v->chain && is_whiteout_st(&sb)) {
                kn_strv_push(&hidden, name);
                continue;
            }
            if (ents.n >= FO_MAX_ENTRIES) {
                rc = kn_err_set(err, KN_E_UNSAFE, "directory '%s' has too many entries", dir->path);
                break;
            }
            struct ventry e = {.name = kn_strdup(name), .st = sb, .layer = l};
            kn_vec_push(&ents, e);
            errno = 0;
        }
        if (rc == 0 && errno)
            rc = kn_err_sys(err, "cannot read directory '%s'", dir->path);
        closedir(d);
        /* names of this layer (and its whiteouts) hide lower layers' */
        for (size_t k = first_new; k < ents.n; k++)
            fo_map_put(&seen, ents.v[k].name, k);
        for (size_t k = 0; k < hidden.n; k++)
            if (!fo_map_get(&seen, hidden.v[k], NULL))
                fo_map_put(&seen, hidden.v[k], SIZE_MAX);
        /* hidden strings must outlive the map: keep them until the end */
        /* lower entries merge only below directories */
        (void)0;
    }
    fo_map_release(&seen);
    kn_strv_release(&hidden);
    if (rc < 0) {
        ventries_free(ents.v, ents.n);
        return -1;
    }
    /* a directory's children that are excluded by the view's patterns */
    if (!v->chain && (v->include || v->exclude)) {
        size_t k = 0;
        for (size_t i = 0; i < ents.n; i++) {
            char *p = fo_join(dir->path, ents.v[i].name);
            bool vis = dir_visible(v, p, S_ISDIR(ents.v[i].st.st_mode));
            free(p);
            if (vis)
                ents.v[k++] = ents.v[i];
            else
                free(ents.v[i].name);
        }
        ents.n = k;
    }
    if (ents.n)
        qsort(ents.v, ents.n, sizeof(*ents.v), cmp_ventry);
    *out = ents.v;
    *nout = ents.n;
    return 0;
}

/* ---- reading ------------------------------------------------------------------ */

int view_open_at(const struct ex_view *v, int layer, const char *path, struct kn_error **err)
{
    int fd =
        fo_openat2(v->fds[layer], path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, FO_RESOLVE);
    if (fd < 0)
        return kn_err_sys(err, "cannot open '%s' in %s", path, v->name);
    return fd;
}

int view_open_node(const struct ex_view *v, const struct vnode *node, struct kn_error **err)
{
    return view_open_at(v, node->layer, node->path, err);
}

int ex_view_stat(const struct ex_view *v, const char *path, bool follow, struct stat *st,
                 struct kn_error **err)
{
    struct vnode n;
    int f = view_lookup(v, path, follow, &n, err);
    if (f < 0)
        return -1;
    if (f == 0)
        return kn_err_set(err, KN_E_NOTFOUND, "'%s' not found in %s", path, v->name);
    *st = n.st;
    vnode_release(&n);
    return 0;
}

int ex_view_open(const struct ex_view *v, const char *path, struct kn_error **err)
{
    struct vnode n;
    int f = view_lookup(v, path, true, &n, err);
    if (f < 0)
        return -1;
    if (f == 0)
        return kn_err_set(err, KN_E_NOTFOUND, "'%s' not found in %s", path, v->name);
    int fd = -1;
    if (!S_ISREG(n.st.st_mode))
        kn_err_set(err, KN_E_FAILED, "'%s' in %s is not a regular file", path, v->name);
    else
        fd = view_open_node(v, &n, err);
    vnode_release(&n);
    return fd;
}
