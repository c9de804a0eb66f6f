/*
 * A base-image config resolver for `kiln graph` that reads OCI layout
 * directories only (refs "oci-layout://PATH:TAG", what --build-context
 * NAME=oci-layout://PATH[:TAG] becomes). Any other ref is answered with
 * *config_json = NULL, which the frontend records as "not resolved". The
 * registry-backed resolver replaces it once the registry client exists.
 */
#ifndef KILN_TOOLS_RESOLVE_OCI_H
#define KILN_TOOLS_RESOLVE_OCI_H

#include "frontend/frontend.h"

/* The resolver; its ctx is unused (NULL). Thread-safe. */
extern const struct fe_resolver kiln_oci_resolver;

/* Reads the config of the image tagged `tag` (NULL: the only one, or
 * "latest") for `platform` in the OCI layout at `dir`. Returns 0 with the
 * malloc'd config document and the manifest digest, or -1 with *err. */
int kiln_oci_layout_config(const char *dir, const char *tag, const struct ir_platform *platform,
                           char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err);

#endif
