/*
 * tools/: the kiln command-line program, the composition root that knows
 * every module. Each subcommand lives in its own cmd_*.c file and is listed
 * in the table in main.c.
 */
#ifndef KILN_TOOLS_H
#define KILN_TOOLS_H

#include "ir/base/base.h"

/* exit statuses (DESIGN.md): */
enum { KILN_EXIT_OK = 0, KILN_EXIT_FAILED = 1, KILN_EXIT_USAGE = 2, KILN_EXIT_BUG = 125 };

/* Prints an error (and its chain) the way kiln reports them:
 * "kiln: FILE:LINE:COL: error: message" followed by the offending line. */
void kiln_print_error(const struct kn_error *err);
/* Maps an error to an exit status (usage -> 2, internal -> 125, else 1). */
int kiln_exit_status(const struct kn_error *err);

int cmd_version(int argc, char **argv);

#endif
