/*
 * exec: the effects of a build, as one public header for tools/.
 *
 * store (content-addressed blobs, unpacked layers, cache index), layer
 * (directories <-> layer blobs), registry (OCI distribution client) and
 * image (configs, manifests, indexes, OCI layouts and the exporters). The
 * sandbox and snapshot headers join here as they land.
 */
#ifndef KILN_EXEC_H
#define KILN_EXEC_H

#include "exec/store/store.h"
#include "exec/layer/layer.h"
#include "exec/registry/registry.h"
#include "exec/image/image.h"

#endif
