/*
 * kiln's main(): global initialization (before any thread starts), the
 * subcommand table, and error printing. Everything else is in cmd_*.c.
 */
#include "kiln.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"build", cmd_build, "build an image from a Dockerfile"},
    {"executor", cmd_executor, "build and push with Kaniko's executor flags"},
    {"version", cmd_version, "print the version"},
    {"prune", cmd_prune, "remove least-recently-used store entries"},
    {"login", cmd_login, "log in to a registry (stores credentials in config.json)"},
    {"logout", cmd_logout, "remove a registry's stored credentials"},
    {"graph", cmd_graph, "print the build graph"},
    {"pull", cmd_pull, "pull an image and export it"},
    {"push", cmd_push, "push an image from an OCI layout or archive"},
    {"inspect", cmd_inspect, "show an image's manifest and config"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: kiln COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < KN_ARRAY_SIZE(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

void kiln_print_error(const struct kn_error *err)
{
    for (const struct kn_error *e = err; e; e = e->next) {
        struct kn_buf b = KN_BUF_INIT;
        kn_buf_adds(&b, "kiln: ");
        if (e->loc.file && e->loc.line && e->loc.col)
            kn_buf_addf(&b, "%s:%d:%d: ", e->loc.file, e->loc.line, e->loc.col);
        else if (e->loc.file && e->loc.line)
            kn_buf_addf(&b, "%s:%d: ", e->loc.file, e->loc.line);
        else if (e->loc.file)
            kn_buf_addf(&b, "%s: ", e->loc.file);
        kn_buf_addf(&b, "error: %s\n", e->msg);
        if (e->detail && *e->detail) {
            const char *d = e->detail;
            while (*d) {
                const char *nl = strchr(d, '\n');
                size_t n = nl ? (size_t)(nl - d) : strlen(d);
                kn_buf_adds(&b, "  | ");
                kn_buf_add(&b, d, n);
                kn_buf_addc(&b, '\n');
                d += n + (nl ? 1 : 0);
            }
        }
        fputs(b.data, stderr);
        kn_buf_release(&b);
    }
}

int kiln_exit_status(const struct kn_error *err)
{
    if (!err)
        return KILN_EXIT_OK;
    if (err->code == KN_E_USAGE)
        return KILN_EXIT_USAGE;
    if (err->code == KN_E_INTERNAL)
        return KILN_EXIT_BUG;
    return KILN_EXIT_FAILED;
}

int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("kiln %s\n", KILN_VERSION);
    return 0;
}

int main(int argc, char **argv)
{
    const char *lvl = getenv("KILN_LOG");
    if (lvl) {
        static const char *names[] = {"error", "warn", "info", "debug", "trace"};
        for (int i = 0; i < 5; i++)
            if (strcmp(lvl, names[i]) == 0)
                kn_log_level = i;
    }
    /* before any thread exists (libcurl's rule) */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "kiln: error: cannot initialize libcurl\n");
        return KILN_EXIT_BUG;
    }
    int rc;
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        rc = argc < 2 ? KILN_EXIT_USAGE : KILN_EXIT_OK;
    } else if (strcmp(argv[1], "--version") == 0) {
        rc = cmd_version(argc - 1, argv + 1);
    } else {
        rc = -1;
        for (size_t i = 0; i < KN_ARRAY_SIZE(commands); i++) {
            if (strcmp(argv[1], commands[i].name) == 0) {
                rc = commands[i].fn(argc - 1, argv + 1);
                break;
            }
        }
        if (rc == -1) {
            fprintf(stderr, "kiln: error: unknown command '%s'\n", argv[1]);
            usage(stderr);
            rc = KILN_EXIT_USAGE;
        }
    }
    curl_global_cleanup();
    return rc;
}
