/*
 * kiln push SRC REF: pushes an image from an OCI layout
 * (oci-layout://DIR[:TAG], or a plain directory) or an OCI archive
 * (oci-archive://FILE.tar[:TAG]) to a registry. The image's blobs are first
 * loaded into the store with their digests verified, then the config and
 * layers are uploaded in parallel (the registry client skips what the
 * registry already has), then the manifest under REF's tag. Prints the
 * pushed manifest digest.
 */
#include "kiln.h"

#include "exec/exec.h"

#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PUSH_THREADS 4

static void push_usage(FILE *f)
{
    fprintf(
        f,
        "usage: kiln push [OPTIONS] SRC REF\n"
        "  SRC                          oci-layout://DIR[:TAG], oci-archive://FILE[:TAG] or DIR\n"
        "  REF                          where to push (registry reference)\n"
        "      --platform OS/ARCH[/V]   the platform to pick when SRC is an "
        "index\n" KILN_REGISTRY_USAGE
        "      --digestfile FILE        write the pushed manifest digest\n");
}

enum { OPT_PLATFORM = 256, OPT_DIGESTFILE };

struct push_args {
    const char *src, *dest;
    const char *platform;
    struct kiln_registry_args reg;
    const char *digestfile;
};

static int parse_args(int argc, char **argv, struct push_args *a)
{
    static const struct option opts[] = {
        {"platform", required_argument, NULL, OPT_PLATFORM},
        KILN_REGISTRY_LONGOPTS,
        {"digestfile", required_argument, NULL, OPT_DIGESTFILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PLATFORM:
            a->platform = optarg;
            break;
        case OPT_DIGESTFILE:
            a->digestfile = optarg;
            break;
        case 'h':
            push_usage(stdout);
            return -1;
        default:
            if (kiln_opt_rest(c, argv, &a->reg) != 0)
                return KILN_EXIT_USAGE;
            break;
        }
    }
    if (argc - optind != 2) {
        push_usage(stderr);
        return kiln_usage_error("%s",
                                argc - optind < 2 ? "missing SRC or REF" : "too many arguments");
    }
    a->src = argv[optind];
    a->dest = argv[optind + 1];
    return 0;
}

/* Loads SRC's image (and its layers) into the store. */
static int load_source(const char *src, const struct ir_platform *plat, struct ex_store *s,
                       struct ex_image *img, struct kn_error **err)
{
    char *path = NULL, *tag = NULL, *tmpdir = NULL;
    if (ex_oci_ref_split(src, &path, &tag, err) < 0)
        return -1;
    struct stat st;
    bool archive =
        kn_str_startswith(src, "oci-archive://") ||
        (!kn_str_startswith(src, "oci-layout://") && stat(path, &st) == 0 && S_ISREG(st.st_mode));
    int rc = 0;
    if (archive) {
        rc = ex_oci_archive_extract(s, path, &tmpdir, err);
    } else if (!kn_str_startswith(src, "oci-layout://") && stat(path, &st) < 0) {
        rc = kn_err_set(err, KN_E_NOTFOUND, "source '%s' not found", src);
    }
    if (rc == 0)
        rc = ex_oci_layout_load(tmpdir ? tmpdir : path, tag, plat, s, EX_LAYOUT_LAYERS, img, err);
    if (rc < 0 && tmpdir)
        kn_err_wrap(err, "OCI archive '%s'", path);
    if (tmpdir) {
        ex_store_remove_tree(tmpdir, NULL);
        free(tmpdir);
    }
    free(path);
    free(tag);
    return rc;
}

struct push_job {
    struct ex_registry *r;
    const struct ex_ref *ref;
    struct ex_store *s;
    const char **digests;
    size_t n;
    const char *mount_from; /* a repository of the same registry holding the blobs, or NULL */
    atomic_size_t next;
    atomic_bool failed;
    struct kn_error **errs; /* one per blob */
};

static void *push_worker(void *arg)
{
    struct push_job *j = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n || atomic_load(&j->failed))
            break;
        if (ex_registry_push_blob(j->r, j->ref, j->digests[i], j->s, j->mount_from, &j->errs[i]) <
            0)
            atomic_store(&j->failed, true);
    }
    return NULL;
}

/* The repository to mount blobs from: the image's source when it lives on
 * the same registry as ref, in another repository (the layout entry's
 * io.containerd.image.name, which kiln pull writes). */
static char *mount_source(const struct ex_image *img, const struct ex_ref *ref)
{
    if (!img->name)
        return NULL;
    struct ex_ref src;
    struct kn_error *e = NULL;
    if (ex_ref_parse(img->name, &src, &e) < 0) {
        kn_err_free(e);
        return NULL;
    }
    char *from = NULL;
    if (strcmp(src.domain, ref->domain) == 0 && strcmp(src.path, ref->path) != 0)
        from = kn_strdup(src.path);
    ex_ref_release(&src);
    return from;
}

static int push_blobs(struct ex_registry *r, const struct ex_ref *ref, struct ex_store *s,
                      const struct ex_image *img, struct kn_error **err)
{
    size_t n = img->nlayers + 1;
    char *from = mount_source(img, ref);
    struct push_job j = {.r = r, .ref = ref, .s = s, .n = n, .mount_from = from};
    j.digests = kn_calloc(n, sizeof(*j.digests));
    j.errs = kn_calloc(n, sizeof(*j.errs));
    for (size_t i = 0; i < img->nlayers; i++)
        j.digests[i] = img->layers[i].digest;
    j.digests[img->nlayers] = img->config.digest;
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, false);
    size_t nt = n < PUSH_THREADS ? n : PUSH_THREADS;
    pthread_t th[PUSH_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, push_worker, &j) == 0)
            started++;
    push_worker(&j);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (j.errs[i] && rc == 0) {
            kn_err_propagate(err, &j.errs[i]);
            rc = -1;
        }
        kn_err_free(j.errs[i]);
    }
    free(j.errs);
    free(j.digests);
    free(from);
    return rc;
}

static int do_push(const struct push_args *a, const struct ir_platform *plat, struct ex_store *s,
                   char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct ex_ref ref;
    if (ex_ref_parse(a->dest, &ref, err) < 0)
        return -1;
    struct ex_image img = {0};
    struct ex_registry *r = NULL;
    int rc = load_source(a->src, plat, s, &img, err);
    if (rc == 0) {
        r = kiln_registry_open(&a->reg, err);
        rc = r ? 0 : -1;
    }
    if (rc == 0)
        rc = push_blobs(r, &ref, s, &img, err);
    if (rc == 0)
        rc = ex_registry_push_manifest(r, &ref, img.manifest.media_type, img.manifest_json,
                                       img.manifest_len, digest, err);
    if (rc == 0 && strcmp(digest, img.manifest.digest) != 0)
        rc = kn_err_set(err, KN_E_DIGEST, "the registry stored the manifest as %s, expected %s",
                        digest, img.manifest.digest);
    if (r)
        ex_registry_free(r);
    ex_image_release(&img);
    ex_ref_release(&ref);
    return rc;
}

int cmd_push(int argc, char **argv)
{
    struct push_args a = {0};
    int st = parse_args(argc, argv, &a);
    if (st != 0) {
        kiln_registry_args_release(&a.reg);
        return st < 0 ? KILN_EXIT_OK : st;
    }
    struct kn_error *err = NULL;
    struct ir_platform plat = {0};
    struct ex_store *s = NULL;
    char *root = NULL;
    char digest[KN_DIGEST_SIZE] = "";
    if (a.platform && ex_platform_parse(a.platform, &plat, &err) < 0) {
        err->code = KN_E_USAGE;
    } else {
        root = ex_store_default_root();
        s = ex_store_open(root, &err);
    }
    if (s && do_push(&a, a.platform ? &plat : NULL, s, digest, &err) == 0) {
        if (!a.digestfile || ex_write_file_atomic(a.digestfile, digest, strlen(digest), &err) == 0)
            printf("%s\n", digest);
    }
    st = KILN_EXIT_OK;
    if (err) {
        kiln_print_error(err);
        st = kiln_exit_status(err);
        kn_err_free(err);
    }
    if (s)
        ex_store_close(s);
    ex_platform_clear(&plat);
    free(root);
    kiln_registry_args_release(&a.reg);
    return st;
}
