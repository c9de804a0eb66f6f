/*
 * The local exporter: an image's root filesystem, every layer unpacked in
 * order into a temporary directory next to dest (whiteouts applied by
 * exec/layer), then renamed into place. Also the dispatch from an output
 * spec to its exporter (here because it is the one place that needs all of
 * them, exec/layer included).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ex_export_local(struct ex_store *s, const struct ex_image *img, const char *dir,
                    struct kn_error **err)
{
    bool nonempty;
    if (exi_check_dest(dir, &nonempty, err) < 0)
        return -1;
    if (nonempty)
        return kn_err_set(err, KN_E_FAILED, "'%s' exists and is not empty", dir);
    if (ex_image_check_blobs(s, img, err) < 0)
        return -1;
    char *tmp = exi_tmp_template(dir);
    if (!mkdtemp(tmp)) {
        kn_err_sys(err, "cannot create a directory next to '%s'", dir);
        free(tmp);
        return -1;
    }
    chmod(tmp, 0755);
    unsigned flags = geteuid() == 0 ? EX_UNPACK_OWNERS | EX_UNPACK_DEVICES : 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < img->nlayers; i++) {
        rc = ex_layer_unpack(s, img->layers[i].digest, img->layers[i].media_type, tmp, flags, NULL,
                             err);
        if (rc < 0)
            kn_err_wrap(err, "layer %zu", i + 1);
    }
    if (rc == 0)
        rc = exi_rename_into_place(tmp, dir, err);
    if (rc < 0)
        ex_store_remove_tree(tmp, NULL);
    free(tmp);
    return rc;
}

/* ---- dispatch ---- */

int ex_image_export(struct ex_store *s, struct ex_image *img, const struct ex_output *o,
                    const char *default_name, struct kn_error **err)
{
    const char *first = o->names.n ? o->names.v[0] : default_name;
    switch (o->type) {
    case EX_OUTPUT_OCI: {
        if (ex_image_to_oci(s, img, err) < 0)
            return -1;
        char *tag = NULL, *full = NULL;
        if (first) {
            struct ex_ref r;
            if (ex_ref_parse(first, &r, err) < 0)
                return kn_err_wrap(err, "image name");
            tag = r.tag ? kn_strdup(r.tag) : NULL;
            full = ex_ref_string(&r);
            ex_ref_release(&r);
        }
        int rc = o->tar ? ex_export_oci_archive(s, img, o->dest, tag, full, err)
                        : ex_export_oci_layout(s, img, o->dest, tag, full, err);
        free(tag);
        free(full);
        return rc;
    }
    case EX_OUTPUT_DOCKER: {
        char *one[1] = {(char *)first};
        if (o->names.n)
            return ex_export_docker_archive(s, img, o->dest, o->names.v, o->names.n, err);
        return ex_export_docker_archive(s, img, o->dest, one, first ? 1 : 0, err);
    }
    case EX_OUTPUT_LOCAL:
        return ex_export_local(s, img, o->dest, err);
    case EX_OUTPUT_REGISTRY:
        break;
    }
    return kn_err_set(err, KN_E_INTERNAL, "exporter for output type %d not available", o->type);
}
