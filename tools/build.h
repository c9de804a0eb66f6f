/*
 * tools/: what kiln build is made of (the handler table, the resolver).
 */
#ifndef KILN_TOOLS_BUILD_H
#define KILN_TOOLS_BUILD_H

#include "kiln.h"

#include "exec/exec.h"
#include "exec/ops/ops.h"
#include "frontend/frontend.h"
#include "scheduler/scheduler.h"

/* Fills h with exec's op functions over ops (borrowed). */
void kiln_build_handlers(struct ex_ops *ops, struct sched_handlers *h);

/* A base-image resolver for the frontend: oci-layout://PATH[:TAG] from the
 * layout, anything else from the registry (config stored in the store).
 * Both pointers borrowed; reg may be NULL (registry refs then fail). */
struct kiln_resolver {
    struct fe_resolver fe;
    struct ex_store *store;
    struct ex_registry *registry;
    /* kiln graph: a registry base that cannot be resolved is left
     * unresolved (a warning, and the frontend's note) rather than an error */
    bool lenient;
};
void kiln_resolver_init(struct kiln_resolver *r, struct ex_store *s, struct ex_registry *reg);

#endif
