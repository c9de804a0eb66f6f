/*
 * kiln inspect REF: prints what a registry reference or an
 * oci-layout://PATH[:TAG] holds, as JSON: {"name", "digest", "mediaType",
 * "manifest", "config", "platforms" (for an index)}. --raw prints the
 * manifest (or index) bytes exactly as stored, --config the selected
 * platform's config bytes.
 */
#include "kiln.h"

#include "exec/exec.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void inspect_usage(FILE *f)
{
    fprintf(
        f,
        "usage: kiln inspect [OPTIONS] REF\n"
        "  REF                          a registry reference, or oci-layout://PATH[:TAG]\n"
        "      --raw                    print the raw manifest or index\n"
        "      --config                 print the image config\n"
        "      --platform OS/ARCH[/V]   the platform to pick from an index\n" KILN_REGISTRY_USAGE);
}

enum { OPT_PLATFORM = 256, OPT_RAW, OPT_CONFIG };

struct inspect_args {
    const char *ref;
    const char *platform;
    struct kiln_registry_args reg;
    bool raw, config;
};

static int parse_args(int argc, char **argv, struct inspect_args *a)
{
    static const struct option opts[] = {
        {"platform", required_argument, NULL, OPT_PLATFORM},
        KILN_REGISTRY_LONGOPTS,
        {"raw", no_argument, NULL, OPT_RAW},
        {"config", no_argument, NULL, OPT_CONFIG},
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
        case OPT_RAW:
            a->raw = true;
            break;
        case OPT_CONFIG:
            a->config = true;
            break;
        case 'h':
            inspect_usage(stdout);
            return -1;
        default:
            if (kiln_opt_rest(c, argv, &a->reg) != 0)
                return KILN_EXIT_USAGE;
            break;
        }
    }
    if (argc - optind != 1) {
        inspect_usage(stderr);
        return kiln_usage_error("%s", argc - optind == 0 ? "missing REF" : "too many arguments");
    }
    if (a->raw && a->config)
        return kiln_usage_error("%s", "--raw and --config exclude each other");
    a->ref = argv[optind];
    return 0;
}

/* What inspect shows: the document at the reference and the platform image. */
struct target {
    char *name;
    struct kn_buf doc;
    char *media_type;
    char digest[KN_DIGEST_SIZE];
    struct ex_image img;
    bool have_img;
};

static int from_layout(const struct inspect_args *a, const struct ir_platform *plat,
                       struct target *t, struct kn_error **err)
{
    char *path, *tag;
    if (ex_oci_ref_split(a->ref, &path, &tag, err) < 0)
        return -1;
    t->name =
        kn_asprintf("oci-layout://%s%s%s", path, tag && tag[0] != '@' ? ":" : "", tag ? tag : "");
    int rc = ex_oci_layout_get_manifest(path, tag, &t->doc, &t->media_type, t->digest, err);
    if (rc == 0 && !a->raw) {
        rc = ex_oci_layout_load(path, tag, plat, NULL, 0, &t->img, err);
        t->have_img = rc == 0;
    }
    free(path);
    free(tag);
    return rc;
}

static int from_registry(const struct inspect_args *a, const struct ir_platform *plat,
                         struct target *t, struct kn_error **err)
{
    struct ex_ref ref;
    if (ex_ref_parse(a->ref, &ref, err) < 0)
        return -1;
    struct ex_registry *r = kiln_registry_open(&a->reg, err);
    struct ex_store *s = NULL;
    char *root = NULL;
    int rc = r ? 0 : -1;
    t->name = ex_ref_string(&ref);
    if (rc == 0)
        rc = ex_registry_get_manifest(r, &ref, &t->doc, &t->media_type, t->digest, err);
    if (rc == 0 && !a->raw) {
        root = ex_store_default_root();
        s = ex_store_open(root, err);
        rc = s ? 0 : -1;
    }
    if (rc == 0 && !a->raw) {
        struct ex_image_manifest m = {0};
        rc = ex_registry_resolve(r, &ref, plat, s, &m, err);
        if (rc == 0)
            rc = ex_image_from_registry(s, &m, &t->img, err);
        t->have_img = rc == 0;
        ex_image_manifest_release(&m);
    }
    if (s)
        ex_store_close(s);
    free(root);
    if (r)
        ex_registry_free(r);
    ex_ref_release(&ref);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    struct inspect_args a = {0};
    int st = parse_args(argc, argv, &a);
    if (st != 0) {
        kiln_registry_args_release(&a.reg);
        return st < 0 ? KILN_EXIT_OK : st;
    }
    struct kn_error *err = NULL;
    struct ir_platform plat = {0};
    struct target t = {0};
    struct kn_buf out = KN_BUF_INIT;
    int rc = 0;
    if (a.platform && ex_platform_parse(a.platform, &plat, &err) < 0) {
        err->code = KN_E_USAGE;
        rc = -1;
    }
    const struct ir_platform *platp = a.platform ? &plat : NULL;
    if (rc == 0)
        rc = kn_str_startswith(a.ref, "oci-layout://") ? from_layout(&a, platp, &t, &err)
                                                       : from_registry(&a, platp, &t, &err);
    if (rc == 0) {
        if (a.raw)
            fwrite(t.doc.data, 1, t.doc.len, stdout);
        else if (a.config)
            fwrite(t.img.config_json, 1, t.img.config_len, stdout);
        else if (ex_image_inspect_json(t.name, t.digest, t.media_type, t.doc.data, t.doc.len,
                                       t.have_img ? &t.img : NULL, &out, &err) == 0)
            fwrite(out.data, 1, out.len, stdout);
    }
    st = KILN_EXIT_OK;
    if (err) {
        kiln_print_error(err);
        st = kiln_exit_status(err);
        kn_err_free(err);
    }
    kn_buf_release(&out);
    kn_buf_release(&t.doc);
    free(t.media_type);
    free(t.name);
    ex_image_release(&t.img);
    ex_platform_clear(&plat);
    kiln_registry_args_release(&a.reg);
    return st;
}
