/*
 * `kiln prune [--keep-storage SIZE]`: bounds the store. With a size, least
 * recently used entries go until the store holds at most SIZE bytes; without
 * one, the whole cache, every unpacked layer and every blob go (policy in
 * docs/store.md). Refuses while another kiln process uses the store.
 */
#include "kiln.h"

#include "exec/ops/ops.h"

#include "exec/store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void prune_usage(FILE *f)
{
    fprintf(f, "usage: kiln prune [--keep-storage SIZE]\n");
}

int cmd_prune(int argc, char **argv)
{
    const char *keep_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keep-storage") == 0 && i + 1 < argc) {
            keep_arg = argv[++i];
        } else if (strncmp(argv[i], "--keep-storage=", 15) == 0) {
            keep_arg = argv[i] + 15;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            prune_usage(stdout);
            return KILN_EXIT_OK;
        } else {
            fprintf(stderr, "kiln: error: unexpected argument '%s'\n", argv[i]);
            prune_usage(stderr);
            return KILN_EXIT_USAGE;
        }
    }
    struct kn_error *err = NULL;
    uint64_t keep = 0;
    if (keep_arg && kn_parse_size(keep_arg, &keep, &err) < 0) {
        kiln_print_error(err);
        int rc = kiln_exit_status(err);
        kn_err_free(err);
        return rc;
    }
    char *root = ex_store_default_root();
    struct ex_store *s = ex_store_open(root, &err);
    free(root);
    uint64_t freed = 0, left = 0;
    if (s && ex_ops_store_prune(s, keep, &freed, &left, &err) == 0)
        printf("reclaimed %llu bytes, %llu bytes left\n", (unsigned long long)freed,
               (unsigned long long)left);
    ex_store_close(s);
    if (err) {
        kiln_print_error(err);
        int rc = kiln_exit_status(err);
        kn_err_free(err);
        return rc;
    }
    return KILN_EXIT_OK;
}
