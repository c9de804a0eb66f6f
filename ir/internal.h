/*
 * ir internals shared by graph.c, json.c, canon.c, dot.c and the unit tests.
 */
#ifndef KILN_IR_INTERNAL_H
#define KILN_IR_INTERNAL_H

#include "ir.h"

#include <stdlib.h>

/* The format tag inside every canonical vertex encoding. */
#define IR_CANON_FORMAT "kiln.vertex/1"

/* Names of enum values in the JSON form and the canonical encoding. */
enum {
    IR_NET_NAMES = 3,
    IR_SEC_NAMES = 2,
    IR_MOUNT_NAMES = 5,
    IR_SHARING_NAMES = 3,
    IR_KIND_NAMES = 5,
    IR_FLAG_NAMES = 9,
};
extern const char *const ir_net_names[];
extern const char *const ir_sec_names[];
extern const char *const ir_mount_names[];
extern const char *const ir_sharing_names[];
extern const char *const ir_kind_names[];
extern const char *const ir_flag_names[];

/* RFC 4648 standard base64, padded; caller frees. */
char *ir_base64_encode(const unsigned char *p, size_t n);

/* The canonical encoding built with jansson (JSON_COMPACT | JSON_SORT_KEYS)
 * from the same params objects the JSON form uses: the reference that
 * canon.c's direct writer must equal byte for byte (checked by the tests). */
char *ir_vertex_canonical_json(const struct ir_graph *g, const struct ir_vertex *v);

/* Appends the canonical encoding of v to b; -1 when a string is not UTF-8. */
int ir_vertex_canonical_buf(const struct ir_graph *g, const struct ir_vertex *v, struct kn_buf *b);

#endif
