/*
 * exec/image: helpers shared by the module's files and its unit tests
 * (JSON loading with caps, descriptors, blob I/O), not part of the public
 * header.
 */
#ifndef KILN_EXEC_IMAGE_INTERNAL_H
#define KILN_EXEC_IMAGE_INTERNAL_H

#include "exec/image/image.h"

#include <jansson.h>

/* Parses data (at most max bytes, else KN_E_UNSAFE) as a JSON object;
 * `what` names the document in messages ("manifest"). */
json_t *exi_json_load(const char *data, size_t len, size_t max, const char *what,
                      struct kn_error **err);
/* Compact serialization in the object's key order; caller frees. */
char *exi_json_dump(const json_t *j, size_t *len);
/* Parses a descriptor object; `what` and `field` name it in messages
 * ("invalid manifest: layers[2].digest: ..."). media type required unless
 * mt_optional. */
int exi_descriptor_parse(const json_t *o, const char *what, const char *field, bool mt_optional,
                         struct ex_descriptor *d, struct kn_error **err);
json_t *exi_descriptor_json(const struct ex_descriptor *d);
void exi_descriptor_copy(struct ex_descriptor *dst, const struct ex_descriptor *src);
void exi_descriptor_release(struct ex_descriptor *d);
/* Platform from a JSON object with "os", "architecture", "variant". */
void exi_platform_from_json(const json_t *o, struct ir_platform *p);
/* Builds an image from manifest bytes and config bytes already at hand. */
int exi_image_build(const char *manifest, size_t mlen, const char *media_type, const char *config,
                    size_t clen, struct ex_image *out, struct kn_error **err);

/* A new temporary name next to path: "DIR/.BASE.kiln-XXXXXX" (template for mkstemp/mkdtemp). */
char *exi_tmp_template(const char *path);

/* dest must be absent or a directory; *nonempty says whether it holds anything. */
int exi_check_dest(const char *dest, bool *nonempty, struct kn_error **err);
/* Renames tmp to dest, replacing dest when it is an empty directory. */
int exi_rename_into_place(const char *tmp, const char *dest, struct kn_error **err);

#endif
