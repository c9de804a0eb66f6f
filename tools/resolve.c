/*
 * The frontend's base-image resolver for kiln build: reads an image's config
 * from an OCI layout (oci-layout://PATH[:TAG]) or from its registry, so the
 * frontend can expand variables and apply ONBUILD triggers.
 */
#include "build.h"

#include <stdlib.h>
#include <string.h>

static int resolve_strict(struct kiln_resolver *r, const char *ref,
                          const struct ir_platform *platform, char **config_json,
                          char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    if (kn_str_startswith(ref, "oci-layout://")) {
        char *path = NULL, *tag = NULL;
        if (ex_oci_ref_split(ref, &path, &tag, err) < 0)
            return -1;
        int rc = ex_oci_layout_resolve(path, tag, platform, config_json, digest, err);
        free(path);
        free(tag);
        return rc;
    }
    if (!r->registry)
        return kn_err_set(err, KN_E_NET, "cannot resolve '%s': no registry access", ref);
    struct ex_ref pr;
    if (ex_ref_parse(ref, &pr, err) < 0)
        return -1;
    struct ex_image_manifest m = {0};
    int rc = ex_registry_resolve(r->registry, &pr, platform, r->store, &m, err);
    if (rc == 0) {
        *config_json = m.config_json;
        m.config_json = NULL;
        memcpy(digest, m.digest, KN_DIGEST_SIZE);
    }
    ex_image_manifest_release(&m);
    ex_ref_release(&pr);
    return rc;
}

static int resolve(void *ctx, const char *ref, const struct ir_platform *platform,
                   char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    struct kiln_resolver *r = ctx;
    /* an OCI layout the user named must resolve; a registry may be out of
     * reach of a machine that only wants to look at the graph */
    if (!r->lenient || kn_str_startswith(ref, "oci-layout://"))
        return resolve_strict(r, ref, platform, config_json, digest, err);
    struct kn_error *e = NULL;
    if (resolve_strict(r, ref, platform, config_json, digest, &e) == 0)
        return 0;
    kn_warn("%s", e->msg);
    kn_err_free(e);
    *config_json = NULL;
    return 0;
}

void kiln_resolver_init(struct kiln_resolver *r, struct ex_store *s, struct ex_registry *reg)
{
    r->fe.ctx = r;
    r->fe.resolve = resolve;
    r->store = s;
    r->registry = reg;
    r->lenient = false;
}
