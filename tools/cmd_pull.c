/*
 * kiln pull REF [-o SPEC]...: fetches an image (from a registry, or from
 * an OCI layout with oci-layout://PATH[:TAG]) into the store and runs the
 * exporters named by -o (default type oci). Prints the pulled manifest
 * digest on stdout.
 */
#include "kiln.h"

#include "exec/exec.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pull_usage(FILE *f)
{
    fprintf(
        f, "usage: kiln pull [OPTIONS] REF\n"
           "  REF                          a registry reference, oci-layout://PATH[:TAG] or\n"
           "                               oci-archive://FILE[:TAG]\n"
           "  -o, --output SPEC            type=oci,dest=DIR|FILE.tar | type=docker,dest=FILE |\n"
           "                               type=local,dest=DIR (repeatable; default type oci)\n"
           "      --platform OS/ARCH[/V]   the platform to pick from an index\n" KILN_REGISTRY_USAGE
           "      --iidfile FILE           write the image ID (config digest)\n"
           "      --metadata-file FILE     write digests as JSON\n");
}

enum {
    OPT_PLATFORM = 256,
    OPT_IIDFILE,
    OPT_METADATA,
};

struct pull_args {
    const char *ref;
    const char *platform;
    struct kiln_registry_args reg;
    const char *iidfile, *metadata;
    KN_VEC(struct ex_output) outputs;
};

static int parse_args(int argc, char **argv, struct pull_args *a)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"platform", required_argument, NULL, OPT_PLATFORM},
        KILN_REGISTRY_LONGOPTS,
        {"iidfile", required_argument, NULL, OPT_IIDFILE},
        {"metadata-file", required_argument, NULL, OPT_METADATA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': {
            struct ex_output o;
            struct kn_error *e = NULL;
            if (kiln_output_parse(optarg, EX_OUTPUT_OCI, &o, &e) < 0) {
                kiln_print_error(e);
                kn_err_free(e);
                return KILN_EXIT_USAGE;
            }
            if (o.type == EX_OUTPUT_REGISTRY) {
                ex_output_release(&o);
                return kiln_usage_error(
                    "kiln pull cannot export to a registry ('%s'); use kiln push", optarg);
            }
            kn_vec_push(&a->outputs, o);
            break;
        }
        case OPT_PLATFORM:
            a->platform = optarg;
            break;
        case OPT_IIDFILE:
            a->iidfile = optarg;
            break;
        case OPT_METADATA:
            a->metadata = optarg;
            break;
        case 'h':
            pull_usage(stdout);
            return -1;
        default:
            if (kiln_opt_rest(c, argv, &a->reg) != 0)
                return KILN_EXIT_USAGE;
            break;
        }
    }
    if (argc - optind != 1) {
        pull_usage(stderr);
        return kiln_usage_error("%s", argc - optind == 0 ? "missing REF" : "too many arguments");
    }
    a->ref = argv[optind];
    return 0;
}

static void args_release(struct pull_args *a)
{
    kiln_registry_args_release(&a->reg);
    for (size_t i = 0; i < a->outputs.n; i++)
        ex_output_release(&a->outputs.v[i]);
    free(a->outputs.v);
}

/* Pulls from a registry into the store; *name gets the normalized ref. */
static int pull_registry(const struct pull_args *a, const struct ir_platform *plat,
                         struct ex_store *s, struct ex_image *img, char **name,
                         struct kn_error **err)
{
    struct ex_ref ref;
    if (ex_ref_parse(a->ref, &ref, err) < 0)
        return -1;
    struct ex_registry *r = kiln_registry_open(&a->reg, err);
    if (!r) {
        ex_ref_release(&ref);
        return -1;
    }
    struct ex_image_manifest m = {0};
    int rc = ex_registry_pull(r, &ref, plat, s, &m, err);
    if (rc == 0)
        rc = ex_image_from_registry(s, &m, img, err);
    if (rc == 0)
        rc = ex_image_check_blobs(s, img, err);
    if (rc == 0)
        *name = ex_ref_string(&ref);
    ex_image_manifest_release(&m);
    ex_registry_free(r);
    ex_ref_release(&ref);
    return rc;
}

/* oci-layout://PATH[:TAG] or oci-archive://FILE[:TAG] into the store. */
static int load_layout(const char *ref, const struct ir_platform *plat, struct ex_store *s,
                       struct ex_image *img, char **path, char **tag, struct kn_error **err)
{
    if (ex_oci_ref_split(ref, path, tag, err) < 0)
        return -1;
    if (kn_str_startswith(ref, "oci-layout://"))
        return ex_oci_layout_load(*path, *tag, plat, s, EX_LAYOUT_LAYERS, img, err);
    char *dir = NULL;
    if (ex_oci_archive_extract(s, *path, &dir, err) < 0)
        return -1;
    int rc = ex_oci_layout_load(dir, *tag, plat, s, EX_LAYOUT_LAYERS, img, err);
    if (rc < 0)
        kn_err_wrap(err, "OCI archive '%s'", *path);
    ex_store_remove_tree(dir, NULL);
    free(dir);
    return rc;
}

static int export_all(const struct pull_args *a, struct ex_store *s, struct ex_image *img,
                      const char *name, const char *layout_tag, struct kn_error **err)
{
    for (size_t i = 0; i < a->outputs.n; i++) {
        const struct ex_output *o = &a->outputs.v[i];
        int rc;
        if (!name && o->type == EX_OUTPUT_OCI && !o->names.n) {
            /* from a layout, without a name: keep the source's tag */
            const char *tag = layout_tag && layout_tag[0] != '@' ? layout_tag : "latest";
            rc = ex_image_to_oci(s, img, err);
            if (rc == 0)
                rc = o->tar ? ex_export_oci_archive(s, img, o->dest, tag, NULL, err)
                            : ex_export_oci_layout(s, img, o->dest, tag, NULL, err);
        } else {
            rc = ex_image_export(s, img, o, name, err);
        }
        if (rc < 0)
            return kn_err_wrap(err, "cannot export to '%s'", o->dest);
    }
    return 0;
}

int cmd_pull(int argc, char **argv)
{
    struct pull_args a = {0};
    int st = parse_args(argc, argv, &a);
    if (st != 0) {
        args_release(&a);
        return st < 0 ? KILN_EXIT_OK : st;
    }
    struct kn_error *err = NULL;
    struct ir_platform plat = {0}, *platp = NULL;
    struct ex_store *s = NULL;
    struct ex_image img = {0};
    char *name = NULL, *path = NULL, *tag = NULL, *root = NULL;
    char pulled[KN_DIGEST_SIZE] = "";
    if (a.platform) {
        if (ex_platform_parse(a.platform, &plat, &err) < 0) {
            err->code = KN_E_USAGE;
            goto out;
        }
        platp = &plat;
    }
    root = ex_store_default_root();
    s = ex_store_open(root, &err);
    if (!s)
        goto out;
    if (kn_str_startswith(a.ref, "oci-layout://") || kn_str_startswith(a.ref, "oci-archive://")) {
        if (load_layout(a.ref, platp, s, &img, &path, &tag, &err) < 0)
            goto out;
    } else if (pull_registry(&a, platp, s, &img, &name, &err) < 0) {
        goto out;
    }
    /* an index was matched on its own platform fields; a lone manifest by its config */
    if (platp && !img.index_digest[0] && !ex_platform_match(platp, &img.platform)) {
        char *have = ex_platform_format(&img.platform);
        kn_err_set(&err, KN_E_NOTFOUND, "image '%s' is for platform '%s', not '%s'", a.ref, have,
                   a.platform);
        free(have);
        goto out;
    }
    memcpy(pulled, img.manifest.digest, sizeof(pulled));
    if (export_all(&a, s, &img, name, tag, &err) < 0)
        goto out;
    if (a.iidfile && ex_write_iidfile(a.iidfile, &img, &err) < 0)
        goto out;
    if (a.metadata && ex_write_metadata(a.metadata, &img, NULL, 0, &err) < 0)
        goto out;
    printf("%s\n", pulled);
out:
    st = KILN_EXIT_OK;
    if (err) {
        kiln_print_error(err);
        st = kiln_exit_status(err);
        kn_err_free(err);
    }
    ex_image_release(&img);
    if (s)
        ex_store_close(s);
    ex_platform_clear(&plat);
    free(root);
    free(name);
    free(path);
    free(tag);
    args_release(&a);
    return st;
}
