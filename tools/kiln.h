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
int cmd_build(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_graph(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

/* tools/output.c: parses one -o/--output SPEC ("type=oci,dest=DIR", ...)
 * into out (released with ex_output_release); a SPEC without a type gets
 * default_type (an enum ex_output_type). Errors are KN_E_USAGE. */
struct ex_output;
int kiln_output_parse(const char *spec, int default_type, struct ex_output *out,
                      struct kn_error **err);

#endif
