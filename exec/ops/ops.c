/*
 * exec/ops: results, cache keys and the cache index, source ops, merge, and
 * the assembly of the final image. RUN lives in run.c, COPY/ADD in file.c.
 *
 * Laziness is the point of the result object: a base image is only
 * resolved (manifest + config), a COPY layer only streamed into a blob.
 * Blobs are fetched when an exporter needs them, layers are unpacked when a
 * RUN needs a filesystem.
 */
#include "internal.h"

#include "ir/base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- results -------------------------------------------------------------- */

static struct ex_origin *origin_ref(struct ex_origin *o)
{
    if (o)
        o->refs++;
    return o;
}

static void origin_unref(struct ex_origin *o)
{
    if (o && --o->refs == 0) {
        free(o->registry_ref);
        free(o->layout_dir);
        free(o);
    }
}

struct ex_result *ex_result_new(enum ex_result_kind kind)
{
    struct ex_result *r = kn_calloc(1, sizeof(*r));
    r->refs = 1;
    r->kind = kind;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

struct ex_result *ex_result_ref(struct ex_result *r)
{
    if (r)
        r->refs++;
    return r;
}

void ex_result_unref(struct ex_result *r)
{
    if (!r || --r->refs > 0)
        return;
    for (size_t i = 0; i < r->nlayers; i++) {
        free(r->layers[i].desc.media_type);
        origin_unref(r->layers[i].origin);
    }
    free(r->layers);
    free(r->base_config);
    ex_snapshot_unref(r->snap);
    pthread_mutex_destroy(&r->mu);
    free(r->dir);
    kn_strv_release(&r->excludes);
    kn_patterns_free(r->patterns);
    free(r->filename);
    free(r);
}

static void rlayer_copy(struct ex_rlayer *dst, const struct ex_rlayer *src)
{
    *dst = *src;
    dst->desc.media_type = kn_strdup(src->desc.media_type);
    dst->origin = origin_ref(src->origin);
}

struct ex_result *ex_result_rootfs(const struct ex_result *base, const struct ex_rlayer *extra,
                                   size_t nextra)
{
    struct ex_result *r = ex_result_new(EX_RESULT_ROOTFS);
    size_t nbase = base ? base->nlayers : 0;
    r->layers = kn_calloc(nbase + nextra, sizeof(*r->layers));
    for (size_t i = 0; i < nbase; i++)
        rlayer_copy(&r->layers[r->nlayers++], &base->layers[i]);
    for (size_t i = 0; i < nextra; i++)
        rlayer_copy(&r->layers[r->nlayers++], &extra[i]);
    if (base && base->base_config)
        r->base_config = kn_strdup(base->base_config);
    ex_result_compute_id(r);
    return r;
}

/* A rootfs's identity is its chain of diff_ids (like OCI's ChainID); the
 * base config is part of it because later ops (ONBUILD aside) read it only
 * through the IR, which already carries what they use. */
void ex_result_compute_id(struct ex_result *r)
{
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "kiln.rootfs/1", 13);
    for (size_t i = 0; i < r->nlayers; i++)
        kn_sha256_update(&h, r->layers[i].diff_id, KN_DIGEST_LEN);
    kn_sha256_final(&h, r->id);
}

char *ex_result_encode(const struct ex_result *r)
{
    json_t *layers = json_array();
    for (size_t i = 0; i < r->nlayers; i++) {
        const struct ex_rlayer *l = &r->layers[i];
        json_t *o =
            json_pack("{s:s,s:s,s:I,s:s}", "mediaType", l->desc.media_type, "digest",
                      l->desc.digest, "size", (json_int_t)l->desc.size, "diffID", l->diff_id);
        if (l->origin && l->origin->registry_ref)
            json_object_set_new(o, "registry", json_string(l->origin->registry_ref));
        if (l->origin && l->origin->layout_dir)
            json_object_set_new(o, "layout", json_string(l->origin->layout_dir));
        if (l->created > 0)
            json_object_set_new(o, "created", json_integer((json_int_t)l->created));
        json_array_append_new(layers, o);
    }
    json_t *root = json_pack("{s:i,s:o}", "version", 1, "layers", layers);
    if (r->base_config)
        json_object_set_new(root, "baseConfig", json_string(r->base_config));
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (!s)
        kn_die("cannot encode a cache entry");
    char *out = kn_strdup(s);
    free(s);
    return out;
}

struct ex_result *ex_result_decode(struct ex_ops *ops, const char *data, struct kn_error **err)
{
    (void)ops;
    json_error_t jerr;
    json_t *root = json_loads(data, 0, &jerr);
    json_t *layers = root ? json_object_get(root, "layers") : NULL;
    if (!root || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_array(layers)) {
        json_decref(root);
        kn_err_set(err, KN_E_PARSE, "corrupt cache entry");
        return NULL;
    }
    struct ex_result *r = ex_result_new(EX_RESULT_ROOTFS);
    size_t n = json_array_size(layers);
    r->layers = kn_calloc(n ? n : 1, sizeof(*r->layers));
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(layers, i);
        const char *mt = json_string_value(json_object_get(o, "mediaType"));
        const char *dg = json_string_value(json_object_get(o, "digest"));
        const char *di = json_string_value(json_object_get(o, "diffID"));
        json_int_t size = json_integer_value(json_object_get(o, "size"));
        if (!mt || !kn_digest_valid(dg) || !kn_digest_valid(di) || size < 0) {
            json_decref(root);
            ex_result_unref(r);
            kn_err_set(err, KN_E_PARSE, "corrupt cache entry: layer %zu", i);
            return NULL;
        }
        struct ex_rlayer *l = &r->layers[r->nlayers++];
        l->desc.media_type = kn_strdup(mt);
        memcpy(l->desc.digest, dg, KN_DIGEST_SIZE);
        l->desc.size = (uint64_t)size;
        memcpy(l->diff_id, di, KN_DIGEST_SIZE);
        json_int_t created = json_integer_value(json_object_get(o, "created"));
        l->created = created > 0 ? (int64_t)created : 0;
        const char *reg = json_string_value(json_object_get(o, "registry"));
        const char *lay = json_string_value(json_object_get(o, "layout"));
        if (reg || lay) {
            l->origin = kn_calloc(1, sizeof(*l->origin));
            l->origin->refs = 1;
            l->origin->registry_ref = reg ? kn_strdup(reg) : NULL;
            l->origin->layout_dir = lay ? kn_strdup(lay) : NULL;
        }
    }
    const char *bc = json_string_value(json_object_get(root, "baseConfig"));
    r->base_config = bc ? kn_strdup(bc) : NULL;
    json_decref(root);
    ex_result_compute_id(r);
    return r;
}

/* ---- lazy blobs and unpacked layers ---------------------------------------- */

int ex_ops_ensure_blob(struct ex_ops *ops, const struct ex_rlayer *l, struct kn_error **err)
{
    struct ex_store *s = ops->o.store;
    if (ex_store_has_blob(s, l->desc.digest))
        return 0;
    if (l->origin && l->origin->registry_ref) {
        if (!ops->o.registry)
            return kn_err_set(err, KN_E_NOTFOUND, "blob %s is not in the store", l->desc.digest);
        struct ex_ref ref;
        if (ex_ref_parse(l->origin->registry_ref, &ref, err) < 0)
            return -1;
        int rc = ex_registry_fetch_blob(ops->o.registry, &ref, l->desc.digest, s, err);
        ex_ref_release(&ref);
        return rc;
    }
    if (l->origin && l->origin->layout_dir) {
        _cleanup_free_ char *path =
            kn_asprintf("%s/blobs/sha256/%s", l->origin->layout_dir, kn_digest_hex(l->desc.digest));
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return kn_err_sys(err, "blob %s missing from OCI layout '%s'", l->desc.digest,
                              l->origin->layout_dir);
        struct ex_blob_writer *w = ex_blob_writer_new(s, err);
        if (!w)
            return -1;
        char buf[1 << 16];
        for (;;) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                ex_blob_writer_abort(w);
                return kn_err_sys(err, "cannot read '%s'", path);
            }
            if (n == 0)
                break;
            if (ex_blob_writer_write(w, buf, (size_t)n, err) < 0) {
                ex_blob_writer_abort(w);
                return -1;
            }
        }
        return ex_blob_writer_commit(w, l->desc.digest, NULL, NULL, err);
    }
    return kn_err_set(err, KN_E_NOTFOUND, "blob %s is not in the store", l->desc.digest);
}

struct unpack_arg {
    const struct ex_rlayer *l;
    const char *tmp;
};

/* Unpacks a layer into tmp and moves it into the store. Rootless this runs
 * in the user namespace (ex_ops_userns_call), where the tar's owners can be
 * kept: uid 1000 of the image is the caller's subordinate START+999 on
 * disk, which is uid 1000 again inside the sandbox. Without a subordinate
 * range only the caller is mapped; the chowns fail and every file stays the
 * caller's (uid 0 inside), as before. The commit is done here too, since
 * losing the race to another build removes the tree. */
static int unpack_commit(struct ex_ops *ops, void *arg, void *out, struct kn_error **err)
{
    (void)out;
    const struct unpack_arg *a = arg;
    struct ex_store *s = ops->o.store;
    unsigned flags = EX_UNPACK_OVERLAY | EX_UNPACK_OWNERS | (ops->as_root ? EX_UNPACK_DEVICES : 0);
    int rc = ex_layer_unpack(s, a->l->desc.digest, a->l->desc.media_type, a->tmp, flags, NULL, err);
    if (rc == 0)
        rc = ex_store_layer_commit(s, a->l->diff_id, a->tmp, err);
    if (rc < 0)
        ex_store_remove_tree(a->tmp, NULL);
    return rc;
}

/* Unpacks layer l into the store (by diff_id) unless it is there. */
static int ensure_layer_dir(struct ex_ops *ops, const struct ex_rlayer *l, struct kn_error **err)
{
    struct ex_store *s = ops->o.store;
    if (ex_store_has_layer(s, l->diff_id))
        return 0;
    if (ex_ops_ensure_blob(ops, l, err) < 0)
        return -1;
    char *tmp = ex_store_mkdtemp(s, "unpack", err);
    if (!tmp)
        return -1;
    struct unpack_arg a = {.l = l, .tmp = tmp};
    int rc = ex_ops_userns_call(ops, unpack_commit, &a, NULL, 0, err);
    if (rc < 0 && access(tmp, F_OK) == 0)
        ex_ops_remove_tree(ops, tmp, NULL); /* the helper died before cleaning up */
    free(tmp);
    return rc;
}

static bool layer_repeats_above(const struct ex_result *r, size_t i)
{
    for (size_t j = i + 1; j < r->nlayers; j++)
        if (strcmp(r->layers[j].diff_id, r->layers[i].diff_id) == 0)
            return true;
    return false;
}

struct ex_snapshot *ex_result_snapshot(struct ex_ops *ops, struct ex_result *r,
                                       struct kn_error **err)
{
    if (r->kind != EX_RESULT_ROOTFS) {
        kn_err_set(err, KN_E_INTERNAL, "not a root filesystem");
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    if (!r->snap) {
        char **paths = kn_calloc(r->nlayers + 1, sizeof(char *));
        size_t npaths = 0;
        int rc = 0;
        for (size_t i = 0; i < r->nlayers && rc == 0; i++) {
            /* overlayfs refuses a lower directory that appears twice (ELOOP):
             * the same layer twice in a chain (two RUNs that changed nothing,
             * a COPY repeated) keeps only its topmost occurrence, which gives
             * the same tree since that copy re-applies every path it holds */
            if (layer_repeats_above(r, i))
                continue;
            rc = ensure_layer_dir(ops, &r->layers[i], err);
            if (rc == 0)
                paths[npaths++] = ex_store_layer_path(ops->o.store, r->layers[i].diff_id);
        }
        if (rc == 0)
            r->snap = ex_snapshot_new((const char *const *)paths, npaths, err);
        for (size_t i = 0; i < npaths; i++)
            free(paths[i]);
        free(paths);
    }
    struct ex_snapshot *snap = r->snap;
    pthread_mutex_unlock(&r->mu);
    return snap;
}

/* ---- the ops object --------------------------------------------------------- */

static int spec_resolve(struct ex_ops *ops, const char *token, char key[KN_DIGEST_SIZE],
                        struct kn_error **err);

struct ex_ops *ex_ops_new(const struct ex_ops_opts *opts, struct kn_error **err)
{
    (void)err;
    struct ex_ops *ops = kn_calloc(1, sizeof(*ops));
    ops->o = *opts;
    ops->context_dir = opts->context_dir ? kn_strdup(opts->context_dir) : NULL;
    ops->o.context_dir = ops->context_dir;
    ops->contexts = kn_calloc(opts->ncontexts + 1, sizeof(*ops->contexts));
    for (size_t i = 0; i < opts->ncontexts; i++) {
        ops->contexts[i].name = kn_strdup(opts->contexts[i].name);
        ops->contexts[i].dir = kn_strdup(opts->contexts[i].dir);
    }
    ops->ncontexts = opts->ncontexts;
    ops->o.contexts = ops->contexts;
    ops->secrets = kn_calloc(opts->nsecrets + 1, sizeof(*ops->secrets));
    for (size_t i = 0; i < opts->nsecrets; i++) {
        ops->secrets[i].id = kn_strdup(opts->secrets[i].id);
        ops->secrets[i].src = opts->secrets[i].src ? kn_strdup(opts->secrets[i].src) : NULL;
        ops->secrets[i].env = opts->secrets[i].env ? kn_strdup(opts->secrets[i].env) : NULL;
    }
    ops->nsecrets = opts->nsecrets;
    ops->o.secrets = ops->secrets;
    ops->ssh = kn_calloc(opts->nssh + 1, sizeof(*ops->ssh));
    for (size_t i = 0; i < opts->nssh; i++) {
        ops->ssh[i].id = kn_strdup(opts->ssh[i].id);
        ops->ssh[i].sock = kn_strdup(opts->ssh[i].sock);
    }
    ops->nssh = opts->nssh;
    ops->o.ssh = ops->ssh;
    ops->as_root = geteuid() == 0;
    pthread_mutex_init(&ops->spec_mu, NULL);
    return ops;
}

void ex_ops_free(struct ex_ops *ops)
{
    if (!ops)
        return;
    /* keys of steps canceled between their key and their run */
    while (spec_resolve(ops, NULL, NULL, NULL) <= 0)
        ;
    pthread_mutex_destroy(&ops->spec_mu);
    ex_store_remove_trees(&ops->tmpdirs);
    free(ops->context_dir);
    for (size_t i = 0; i < ops->ncontexts; i++) {
        free((char *)ops->contexts[i].name);
        free((char *)ops->contexts[i].dir);
    }
    free(ops->contexts);
    for (size_t i = 0; i < ops->nsecrets; i++) {
        free((char *)ops->secrets[i].id);
        free((char *)ops->secrets[i].src);
        free((char *)ops->secrets[i].env);
    }
    free(ops->secrets);
    for (size_t i = 0; i < ops->nssh; i++) {
        free((char *)ops->ssh[i].id);
        free((char *)ops->ssh[i].sock);
    }
    free(ops->ssh);
    free(ops);
}

bool ex_ops_is_io(const struct ir_graph *g, uint32_t vi)
{
    enum ir_op op = g->v[vi].op;
    return op == IR_SOURCE_IMAGE || op == IR_SOURCE_HTTP || op == IR_SOURCE_GIT;
}

/* ---- sources ------------------------------------------------------------------ */

static const char *named_dir(struct ex_ops *ops, const char *name)
{
    if (strcmp(name, "context") == 0)
        return ops->context_dir;
    for (size_t i = 0; i < ops->ncontexts; i++)
        if (strcmp(ops->contexts[i].name, name) == 0)
            return ops->contexts[i].dir;
    return NULL;
}

static int run_source_local(struct ex_ops *ops, const struct ir_source_local *src,
                            struct ex_result **out, struct kn_error **err)
{
    const char *dir = named_dir(ops, src->name);
    if (!dir)
        return kn_err_set(err, KN_E_NOTFOUND, "build context '%s' was not provided", src->name);
    struct ex_result *r = ex_result_new(EX_RESULT_CONTEXT);
    r->dir = kn_strdup(dir);
    for (size_t i = 0; i < src->nexclude; i++)
        kn_strv_push(&r->excludes, src->exclude[i]);
    r->patterns = kn_patterns_new(r->excludes.v, r->excludes.n, err);
    if (!r->patterns) {
        ex_result_unref(r);
        return -1;
    }
    /* A context's identity is only its name: consumers key on the content
     * they actually read (ex_ops_file_key), never on the whole directory. */
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "kiln.context/1", 14);
    kn_sha256_update(&h, src->name, strlen(src->name) + 1);
    for (size_t i = 0; i < src->nexclude; i++)
        kn_sha256_update(&h, src->exclude[i], strlen(src->exclude[i]) + 1);
    kn_sha256_final(&h, r->id);
    *out = r;
    return 0;
}

static struct ex_result *result_from_image(const struct ex_image *img, struct ex_origin *origin)
{
    struct ex_result *r = ex_result_new(EX_RESULT_ROOTFS);
    r->layers = kn_calloc(img->nlayers + 1, sizeof(*r->layers));
    for (size_t i = 0; i < img->nlayers; i++) {
        struct ex_rlayer *l = &r->layers[r->nlayers++];
        l->desc.media_type = kn_strdup(img->layers[i].media_type);
        memcpy(l->desc.digest, img->layers[i].digest, KN_DIGEST_SIZE);
        l->desc.size = img->layers[i].size;
        memcpy(l->diff_id, img->diff_ids[i], KN_DIGEST_SIZE);
        l->origin = origin_ref(origin);
    }
    r->base_config = kn_strndup(img->config_json, img->config_len);
    ex_result_compute_id(r);
    return r;
}

static int run_source_image(struct ex_ops *ops, const struct ir_source_image *src,
                            struct ex_result **out, struct kn_error **err)
{
    struct ex_image img = {0};
    struct ir_platform pl = src->platform.os ? src->platform : ops->o.platform;
    struct ex_origin *origin = kn_calloc(1, sizeof(*origin));
    origin->refs = 1;
    int rc;
    if (kn_str_startswith(src->ref, "oci-layout://")) {
        char *path = NULL, *tag = NULL;
        rc = ex_oci_ref_split(src->ref, &path, &tag, err);
        if (rc == 0)
            rc = ex_oci_layout_load(path, tag, &pl, ops->o.store, 0, &img, err);
        origin->layout_dir = path;
        free(tag);
    } else {
        struct ex_ref ref;
        rc = ex_ref_parse(src->ref, &ref, err);
        if (rc == 0 && !ops->o.registry)
            rc = kn_err_set(err, KN_E_NET, "cannot resolve '%s': no registry access", src->ref);
        if (rc == 0) {
            struct ex_image_manifest m = {0};
            rc = ex_registry_resolve(ops->o.registry, &ref, &pl, ops->o.store, &m, err);
            if (rc == 0)
                rc = ex_image_from_registry(ops->o.store, &m, &img, err);
            ex_image_manifest_release(&m);
            if (rc == 0) {
                /* pin the repository; blobs are fetched from it by digest */
                free(ref.tag);
                ref.tag = NULL;
                free(ref.digest);
                ref.digest = kn_strdup(img.manifest.digest);
                origin->registry_ref = ex_ref_string(&ref);
            }
            ex_ref_release(&ref);
        }
    }
    if (rc < 0) {
        kn_err_wrap(err, "cannot load base image '%s'", src->ref);
        origin_unref(origin);
        ex_image_release(&img);
        return -1;
    }
    *out = result_from_image(&img, origin);
    origin_unref(origin);
    ex_image_release(&img);
    return 0;
}

static int run_source_scratch(struct ex_result **out)
{
    *out = ex_result_rootfs(NULL, NULL, 0);
    return 0;
}

/* ---- merge (COPY --link): the layers of every input, in order ---------------- */

static int run_merge(struct ex_result *const *inputs, size_t n, struct ex_result **out,
                     struct kn_error **err)
{
    struct ex_result *r = NULL;
    for (size_t i = 0; i < n; i++) {
        if (inputs[i]->kind != EX_RESULT_ROOTFS) {
            ex_result_unref(r);
            return kn_err_set(err, KN_E_INTERNAL, "merge input %zu is not a filesystem", i);
        }
        struct ex_result *next = ex_result_rootfs(r ? r : inputs[i], r ? inputs[i]->layers : NULL,
                                                  r ? inputs[i]->nlayers : 0);
        if (!r) {
            free(next->base_config);
            next->base_config = inputs[0]->base_config ? kn_strdup(inputs[0]->base_config) : NULL;
        }
        ex_result_unref(r);
        r = next;
    }
    if (!r)
        return kn_err_set(err, KN_E_INTERNAL, "merge without inputs");
    *out = r;
    return 0;
}

/* ---- cache keys and the cache index ------------------------------------------ */

static int cache_key_now(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                         struct ex_result *const *inputs, char key[KN_DIGEST_SIZE],
                         struct kn_error **err)
{
    const struct ir_vertex *v = &g->v[vi];
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "kiln.cachekey/1", 15);
    kn_sha256_update(&h, v->digest, KN_DIGEST_LEN);
    /* what the layers are made of matters: the same step with another
     * compression is another blob */
    char comp[32];
    snprintf(comp, sizeof(comp), "%d/%d", (int)ops->o.layer.compression, ops->o.layer.level);
    kn_sha256_update(&h, comp, strlen(comp) + 1);
    /* a RUN without --network runs with the command line's network: the
     * same step with --network none is another step */
    if (v->op == IR_EXEC && v->u.exec.network != IR_NET_NONE && v->u.exec.network != IR_NET_HOST) {
        char net[16];
        snprintf(net, sizeof(net), "net/%d", (int)ops->o.network);
        kn_sha256_update(&h, net, strlen(net) + 1);
    }
    for (size_t i = 0; i < v->ninputs; i++)
        kn_sha256_update(&h, inputs[i]->id, KN_DIGEST_LEN);
    if ((v->op == IR_FILE && ex_ops_file_key(ops, g, vi, inputs, &h, err) < 0) ||
        (v->op == IR_EXEC && ex_ops_mount_key(ops, g, vi, inputs, &h, err) < 0)) {
        kn_sha256_release(&h);
        return -1;
    }
    kn_sha256_final(&h, key);
    return 0;
}

/* ---- speculative cache keys ---------------------------------------------------
 *
 * A COPY from a build context must hash every file it copies before its key
 * is known. When the store has never held a result of the step (no entry
 * was ever stored for its vertex digest) and no registry cache is asked,
 * the lookup can only miss: the key is then computed on a thread of its
 * own while the step runs, and the result is stored under it once both are
 * done. On a fresh CI runner the hashing pass overlaps the layer stream
 * instead of preceding it. The scheduler sees a placeholder key, which
 * ex_ops_cache_lookup misses and ex_ops_execute resolves. */

#define SPEC_PREFIX "pending:"

struct ex_spec_key {
    struct ex_spec_key *next;
    char token[KN_DIGEST_SIZE];
    pthread_t th;
    struct ex_ops *ops;
    const struct ir_graph *g;
    uint32_t vi;
    struct ex_result **inputs; /* references held until the key is done */
    size_t ninputs;
    char key[KN_DIGEST_SIZE];
    int rc;
    struct kn_error *err;
};

static bool is_spec(const char *key)
{
    return key && strncmp(key, SPEC_PREFIX, strlen(SPEC_PREFIX)) == 0;
}

/* The index entry saying that a result of the vertex was stored once. */
static void seen_key(const struct ir_vertex *v, char out[KN_DIGEST_SIZE])
{
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "kiln.vertexseen/1", 17);
    kn_sha256_update(&h, v->digest, KN_DIGEST_LEN);
    kn_sha256_final(&h, out);
}

static void mark_seen(struct ex_ops *ops, const struct ir_vertex *v)
{
    char k[KN_DIGEST_SIZE];
    seen_key(v, k);
    struct kn_error *e = NULL;
    if (ex_store_cache_put(ops->o.store, k, "1", &e) < 0) {
        kn_warn("cannot index a cache entry: %s", e->msg);
        kn_err_free(e);
    }
}

static bool may_speculate(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                          struct ex_result *const *inputs)
{
    const struct ir_vertex *v = &g->v[vi];
    if (v->op != IR_FILE || ops->o.ncache_from)
        return false;
    bool hashes = false;
    for (size_t i = 0; i < v->u.file.nactions && !hashes; i++) {
        const struct ir_file_action *a = &v->u.file.actions[i];
        hashes = a->kind == IR_FILE_COPY && inputs[a->src_input]->kind != EX_RESULT_ROOTFS;
    }
    if (!hashes)
        return false;
    char k[KN_DIGEST_SIZE];
    seen_key(v, k);
    struct kn_buf val = KN_BUF_INIT;
    struct kn_error *e = NULL;
    int rc = ex_store_cache_get(ops->o.store, k, &val, &e);
    kn_buf_release(&val);
    kn_err_free(e);
    return rc == 0;
}

static void spec_free(struct ex_spec_key *s)
{
    for (size_t i = 0; i < s->ninputs; i++)
        ex_result_unref(s->inputs[i]);
    free(s->inputs);
    kn_err_free(s->err);
    free(s);
}

static void *spec_main(void *arg)
{
    struct ex_spec_key *s = arg;
    s->rc = cache_key_now(s->ops, s->g, s->vi, s->inputs, s->key, &s->err);
    return NULL;
}

const char *ex_ops_ssh_agent(const struct ex_ops *ops, const char *id)
{
    for (size_t i = 0; i < ops->o.nssh; i++)
        if (strcmp(ops->o.ssh[i].id, id) == 0)
            return ops->o.ssh[i].sock;
    return NULL;
}

int ex_ops_cache_key(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi,
                     struct ex_result *const *inputs, char key[KN_DIGEST_SIZE],
                     struct kn_error **err)
{
    /* an entitlement is checked whether the step runs or is cached */
    if (g->v[vi].op == IR_EXEC && g->v[vi].u.exec.security == IR_SEC_INSECURE &&
        !ops->o.allow_insecure)
        return kn_err_set(err, KN_E_FAILED,
                          "RUN --security=insecure is not allowed: build with --allow "
                          "security.insecure");
    if (!may_speculate(ops, g, vi, inputs))
        return cache_key_now(ops, g, vi, inputs, key, err);
    struct ex_spec_key *s = kn_calloc(1, sizeof(*s));
    s->ops = ops;
    s->g = g;
    s->vi = vi;
    s->ninputs = g->v[vi].ninputs;
    s->inputs = kn_calloc(s->ninputs + 1, sizeof(*s->inputs));
    for (size_t i = 0; i < s->ninputs; i++)
        s->inputs[i] = ex_result_ref(inputs[i]);
    pthread_mutex_lock(&ops->spec_mu);
    snprintf(s->token, sizeof(s->token), SPEC_PREFIX "%llu", (unsigned long long)++ops->spec_seq);
    if (pthread_create(&s->th, NULL, spec_main, s) != 0) {
        pthread_mutex_unlock(&ops->spec_mu);
        spec_free(s);
        return cache_key_now(ops, g, vi, inputs, key, err);
    }
    s->next = ops->spec;
    ops->spec = s;
    pthread_mutex_unlock(&ops->spec_mu);
    memcpy(key, s->token, strlen(s->token) + 1);
    return 0;
}

/* Waits for the key behind a placeholder and forgets it. NULL token: all. */
static int spec_resolve(struct ex_ops *ops, const char *token, char key[KN_DIGEST_SIZE],
                        struct kn_error **err)
{
    pthread_mutex_lock(&ops->spec_mu);
    struct ex_spec_key **pp = &ops->spec;
    while (*pp && token && strcmp((*pp)->token, token) != 0)
        pp = &(*pp)->next;
    struct ex_spec_key *s = *pp;
    if (s)
        *pp = s->next;
    pthread_mutex_unlock(&ops->spec_mu);
    if (!s)
        return token ? kn_err_set(err, KN_E_INTERNAL, "unknown pending cache key '%s'", token) : 1;
    pthread_join(s->th, NULL);
    int rc = s->rc;
    if (rc == 0 && key)
        memcpy(key, s->key, KN_DIGEST_SIZE);
    else if (rc < 0 && err)
        kn_err_propagate(err, &s->err);
    spec_free(s);
    return rc;
}

/* A cache entry's result, or NULL when it is unusable: corrupt, or its
 * blobs are gone (pruned). Either way a miss, never a failed build. */
static struct ex_result *decode_entry(struct ex_ops *ops, const char *key, const char *val)
{
    struct kn_error *derr = NULL;
    struct ex_result *r = ex_result_decode(ops, val, &derr);
    if (!r) {
        kn_warn("ignoring cache entry %s: %s", key, derr->msg);
        kn_err_free(derr);
        return NULL;
    }
    for (size_t i = 0; i < r->nlayers; i++) {
        if (!r->layers[i].origin && !ex_store_has_blob(ops->o.store, r->layers[i].desc.digest)) {
            ex_result_unref(r);
            return NULL;
        }
    }
    return r;
}

/* Writes an entry to the registry cache; a registry that cannot take it
 * costs the next build time, not this build its result: warn. */
static void export_entry(struct ex_ops *ops, const char *key, const char *val)
{
    if (!ops->o.cache_to)
        return;
    struct kn_error *e = NULL;
    if (ex_rcache_put(ops->o.cache_to, key, val, &e) < 0) {
        kn_warn("cannot export cache entry %s to %s: %s", key, ex_rcache_repo(ops->o.cache_to),
                e->msg);
        kn_err_free(e);
    }
}

int ex_ops_cache_lookup(struct ex_ops *ops, const struct ir_graph *g, uint32_t vi, const char *key,
                        struct ex_result **out, struct kn_error **err)
{
    enum ir_op op = g->v[vi].op;
    /* sources are cheap to "run" and must see the registry's current state;
     * a placeholder key is a step never cached */
    if ((op != IR_EXEC && op != IR_FILE && op != IR_MERGE) || is_spec(key))
        return 0;
    struct kn_buf val = KN_BUF_INIT;
    struct ex_result *r = NULL;
    int rc = ex_store_cache_get(ops->o.store, key, &val, err);
    if (rc < 0) {
        kn_buf_release(&val);
        return -1;
    }
    if (rc == 1)
        r = decode_entry(ops, key, val.data);
    /* then the registry caches, in order: a hit there fetches the blobs */
    for (size_t i = 0; !r && i < ops->o.ncache_from; i++) {
        struct kn_error *e = NULL;
        int got = ex_rcache_get(ops->o.cache_from[i], key, &val, &e);
        if (got < 0) {
            kn_warn("cache lookup in %s failed: %s", ex_rcache_repo(ops->o.cache_from[i]), e->msg);
            kn_err_free(e);
            continue;
        }
        if (got == 1 && (r = decode_entry(ops, key, val.data)) != NULL &&
            ex_store_cache_put(ops->o.store, key, val.data, err) < 0) {
            ex_result_unref(r);
            kn_buf_release(&val);
            return -1;
        }
        if (r)
            mark_seen(ops, &g->v[vi]);
    }
    if (r)
        export_entry(ops, key, val.data);
    kn_buf_release(&val);
    if (!r)
        return 0;
    *out = r;
    return 1;
}

int ex_ops_cache_store(struct ex_ops *ops, const char *key, const struct ex_result *r,
                       struct kn_error **err)
{
    if (r->kind != EX_RESULT_ROOTFS)
        return 0;
    _cleanup_free_ char *val = ex_result_encode(r);
    if (ex_store_cache_put(ops->o.store, key, val, err) < 0)
        return -1;
    export_entry(ops, key, val);
    return 0;
}

int ex_ops_execute(struct ex_ops *ops, const struct ex_job *job, const struct ir_graph *g,
                   uint32_t vi, struct ex_result *const *inputs, const char *key,
                   struct ex_result **out, struct kn_error **err)
{
    const struct ir_vertex *v = &g->v[vi];
    int rc;
    switch (v->op) {
    case IR_SOURCE_IMAGE:
        return run_source_image(ops, &v->u.image, out, err);
    case IR_SOURCE_LOCAL:
        return run_source_local(ops, &v->u.local, out, err);
    case IR_SOURCE_SCRATCH:
        return run_source_scratch(out);
    case IR_SOURCE_HTTP:
        return ex_ops_run_http(ops, &v->u.http, out, err);
    case IR_SOURCE_GIT:
        return ex_ops_run_git(ops, &v->u.git, out, err);
    case IR_EXEC:
        rc = ex_ops_run_exec(ops, job, g, vi, inputs, out, err);
        break;
    case IR_FILE:
        rc = ex_ops_run_file(ops, job, g, vi, inputs, out, err);
        break;
    case IR_MERGE:
        rc = run_merge(inputs, v->ninputs, out, err);
        break;
    default:
        return kn_err_set(err, KN_E_INTERNAL, "unknown op %d", (int)v->op);
    }
    char real[KN_DIGEST_SIZE];
    if (is_spec(key)) {
        /* the step's own failure is the one to report */
        struct kn_error *ke = NULL;
        int krc = spec_resolve(ops, key, real, &ke);
        if (rc == 0 && krc < 0) {
            kn_err_propagate(err, &ke);
            ex_result_unref(*out);
            *out = NULL;
            return -1;
        }
        kn_err_free(ke);
        key = real;
    }
    if (rc == 0 && key && ex_ops_cache_store(ops, key, *out, err) < 0) {
        ex_result_unref(*out);
        *out = NULL;
        return -1;
    }
    if (rc == 0 && key && (*out)->kind == EX_RESULT_ROOTFS)
        mark_seen(ops, v);
    return rc;
}

/* ---- the final image ----------------------------------------------------------- */

/* The diff_id of a tar holding nothing (two zero blocks): what a step that
 * changed no file produces. */
#define EMPTY_TAR_DIFF_ID "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

int ex_ops_image(struct ex_ops *ops, struct ex_result *root, const struct ir_output *out,
                 int64_t source_date_epoch, struct ex_image *img, struct kn_error **err)
{
    if (root->kind != EX_RESULT_ROOTFS)
        return kn_err_set(err, KN_E_INTERNAL, "output is not a filesystem");
    struct ex_config *cfg = ex_config_parse(out->config, strlen(out->config), err);
    if (!cfg)
        return kn_err_wrap(err, "invalid image config of output '%s'", out->name);
    const char *base = root->base_config;
    if (ex_config_set_base(cfg, base, base ? strlen(base) : 0, err) < 0) {
        ex_config_free(cfg);
        return -1;
    }
    size_t nbase = ex_config_ndiff_ids(cfg);
    size_t nnew = 0;
    for (size_t i = 0; i < out->nhistory; i++)
        nnew += !out->history[i].empty_layer;
    if (nbase > root->nlayers || root->nlayers - nbase != nnew) {
        ex_config_free(cfg);
        return kn_err_set(err, KN_E_INTERNAL,
                          "output '%s' has %zu layers but its base has %zu and its history %zu",
                          out->name, root->nlayers, nbase, nnew);
    }
    /* The dates: SOURCE_DATE_EPOCH's when given. Otherwise each new layer's
     * history entry carries the time its step ran, which the cache keeps, so
     * that a fully cached rebuild yields the image the first build did (as
     * BuildKit's does); an entry without a layer takes the date of the layer
     * before it (before any, that of the first), and the image that of its
     * newest layer. An image that adds no layer, or one of unknown date, is
     * dated now. */
    int64_t epoch = 0;
    bool fixed = ex_image_epoch(source_date_epoch, &epoch);
    int64_t first = 0;
    bool dated = !fixed && nnew > 0;
    for (size_t i = 0, li = nbase; i < out->nhistory; i++) {
        if (out->history[i].empty_layer)
            continue;
        const struct ex_rlayer *l = &root->layers[li++];
        if (!first)
            first = l->created;
        dated = dated && l->created > 0;
    }
    int64_t created = fixed ? epoch : dated ? 0 : (int64_t)time(NULL);
    int64_t prev = first;
    /* the layers of the image: the base's, then the build's except those
     * that changed nothing (a RUN that wrote no file), whose history entry
     * becomes an empty_layer one, as BuildKit does */
    struct ex_descriptor *layers = kn_calloc(root->nlayers + 1, sizeof(*layers));
    const struct ex_rlayer **kept = kn_calloc(root->nlayers + 1, sizeof(*kept));
    size_t nkept = 0;
    for (size_t i = 0; i < nbase; i++)
        kept[nkept++] = &root->layers[i];
    size_t li = nbase;
    for (size_t i = 0; i < out->nhistory; i++) {
        const struct ir_history *hi = &out->history[i];
        const struct ex_rlayer *l = hi->empty_layer ? NULL : &root->layers[li++];
        if (l)
            prev = l->created;
        int64_t when = dated ? prev : created;
        if (dated && created < when)
            created = when;
        if (l && strcmp(l->diff_id, EMPTY_TAR_DIFF_ID) == 0)
            l = NULL;
        if (l)
            kept[nkept++] = l;
        ex_config_add_history(cfg, l ? l->diff_id : NULL, hi->created_by, hi->comment, when);
    }
    ex_config_set_created(cfg, created);
    struct kn_buf cj = KN_BUF_INIT;
    ex_config_serialize(cfg, &cj);
    ex_config_free(cfg);

    int rc = 0;
    for (size_t i = 0; i < nkept && rc == 0; i++) {
        rc = ex_ops_ensure_blob(ops, kept[i], err);
        layers[i] = kept[i]->desc;
        /* a docker base's layers keep their bytes; OCI media types name them */
        layers[i].media_type = (char *)ex_media_type_to_oci(kept[i]->desc.media_type);
    }
    if (rc == 0)
        rc = ex_image_commit(ops->o.store, cj.data, cj.len, layers, nkept, img, err);
    free(layers);
    free(kept);
    kn_buf_release(&cj);
    return rc;
}
