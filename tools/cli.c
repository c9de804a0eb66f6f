/*
 * What every kiln subcommand's option parsing shares: usage errors and the
 * registry options (--insecure-registry, --registry-ca, --authfile) with the
 * registry client they configure.
 */
#include "kiln.h"

#include "exec/registry/registry.h"

#include <getopt.h>
#include <stdarg.h>

int kiln_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct kn_error *e = kn_err_newv(KN_E_USAGE, fmt, ap);
    va_end(ap);
    kiln_print_error(e);
    kn_err_free(e);
    return KILN_EXIT_USAGE;
}

bool kiln_registry_arg(struct kiln_registry_args *a, int c, const char *arg)
{
    switch (c) {
    case KILN_OPT_INSECURE:
        kn_strv_push(&a->insecure, arg);
        return true;
    case KILN_OPT_REGISTRY_CA:
        a->ca_file = arg;
        return true;
    case KILN_OPT_AUTHFILE:
        a->auth_file = arg;
        return true;
    default:
        return false;
    }
}

int kiln_opt_rest(int c, char **argv, struct kiln_registry_args *reg)
{
    if (c == ':')
        return kiln_usage_error("option '%s' needs a value", argv[optind - 1]);
    if (reg && kiln_registry_arg(reg, c, optarg))
        return 0;
    return kiln_usage_error("unknown option '%s'", argv[optind - 1]);
}

void kiln_registry_args_release(struct kiln_registry_args *a)
{
    kn_strv_release(&a->insecure);
}

struct ex_registry *kiln_registry_open(const struct kiln_registry_args *a, struct kn_error **err)
{
    struct ex_registry_opts ro = {
        .insecure = a->insecure.v,
        .ninsecure = a->insecure.n,
        .ca_file = a->ca_file,
        .auth_file = a->auth_file,
        .user_agent = "kiln/" KILN_VERSION,
    };
    return ex_registry_new(&ro, err);
}
