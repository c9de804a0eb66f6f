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
int cmd_executor(int argc, char **argv);
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

/* ---- tools/cli.c: what the subcommands' option parsing shares ---- */

/* Prints "kiln: error: MESSAGE" and returns KILN_EXIT_USAGE. */
int kiln_usage_error(const char *fmt, ...) KN_PRINTF(1, 2);

/* The registry options every command that talks to registries takes: put
 * KILN_REGISTRY_LONGOPTS in the getopt_long table and hand each option to
 * kiln_registry_arg (true when it was one of them). */
enum { KILN_OPT_INSECURE = 0x1000, KILN_OPT_REGISTRY_CA, KILN_OPT_AUTHFILE };
#define KILN_REGISTRY_LONGOPTS                                                                     \
    {"insecure-registry", required_argument, NULL, KILN_OPT_INSECURE},                             \
        {"registry-ca", required_argument, NULL, KILN_OPT_REGISTRY_CA},                            \
    {                                                                                              \
        "authfile", required_argument, NULL, KILN_OPT_AUTHFILE                                     \
    }
#define KILN_REGISTRY_USAGE                                                                        \
    "      --insecure-registry HOST allow HTTP / unverified TLS (repeatable)\n"                    \
    "      --registry-ca FILE       extra CA certificates\n"                                       \
    "      --authfile FILE          registry credentials file\n"
struct kiln_registry_args {
    struct kn_strv insecure;
    const char *ca_file;
    const char *auth_file;
};
bool kiln_registry_arg(struct kiln_registry_args *a, int c, const char *arg);
void kiln_registry_args_release(struct kiln_registry_args *a);
/* The tail of every subcommand's getopt_long loop (':' and unknown
 * options): 0 when c was a registry option (given reg), else prints the
 * usage error and returns KILN_EXIT_USAGE. */
int kiln_opt_rest(int c, char **argv, struct kiln_registry_args *reg);
struct ex_registry;
/* A registry client configured from a. */
struct ex_registry *kiln_registry_open(const struct kiln_registry_args *a, struct kn_error **err);

#endif
