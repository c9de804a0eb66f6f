/*
 * `kiln login` and `kiln logout`: store and remove registry credentials in
 * docker's config.json (or --authfile), as docker login / logout do. login
 * checks the credentials against the registry first and writes nothing when
 * they are refused. The password comes from -p (discouraged: it shows in
 * the process list), --password-stdin, or a prompt on the terminal; it is
 * never printed.
 */
#include "kiln.h"

#include "exec/registry/registry.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define SECRET_MAX 65536

static void login_usage(FILE *f)
{
    fprintf(f, "usage: kiln login [-u USER] [-p PASS | --password-stdin] [--authfile FILE]\n"
               "                  [--insecure-registry HOST] [--registry-ca FILE] HOST\n"
               "       kiln logout [--authfile FILE] HOST\n");
}

/* one line from f without its newline; NULL at EOF */
static char *read_line(FILE *f)
{
    struct kn_buf b = KN_BUF_INIT;
    int c;
    bool any = false;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        any = true;
        if (b.len < SECRET_MAX)
            kn_buf_addc(&b, (char)c);
    }
    if (!any && c == EOF) {
        kn_buf_release(&b);
        return NULL;
    }
    while (b.len && b.data[b.len - 1] == '\r')
        b.data[--b.len] = '\0';
    return kn_buf_detach(&b);
}

/* the whole of stdin, trailing newlines removed (docker --password-stdin) */
static char *read_stdin_secret(void)
{
    struct kn_buf b = KN_BUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0 && b.len < SECRET_MAX)
        kn_buf_add(&b, buf, n);
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    return kn_buf_detach(&b);
}

static char *prompt(const char *what, bool hide)
{
    fprintf(stderr, "%s: ", what);
    fflush(stderr);
    struct termios old, raw;
    bool restore = false;
    if (hide && tcgetattr(0, &old) == 0) {
        raw = old;
        raw.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(0, TCSAFLUSH, &raw) == 0;
    }
    char *s = read_line(stdin);
    if (restore) {
        tcsetattr(0, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    return s;
}

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

enum { OPT_PASSWORD_STDIN = 256 };

int cmd_login(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"username", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'p'},
        {"password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN},
        KILN_REGISTRY_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *user = NULL, *password = NULL;
    bool from_stdin = false;
    struct kiln_registry_args reg = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "u:p:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u':
            free(user);
            user = kn_strdup(optarg);
            break;
        case 'p':
            wipe_free(password);
            password = kn_strdup(optarg);
            break;
        case OPT_PASSWORD_STDIN:
            from_stdin = true;
            break;
        case 'h':
            login_usage(stdout);
            free(user);
            wipe_free(password);
            kiln_registry_args_release(&reg);
            return KILN_EXIT_OK;
        default:
            if (kiln_registry_arg(&reg, c, optarg))
                break;
            login_usage(stderr);
            free(user);
            wipe_free(password);
            kiln_registry_args_release(&reg);
            return KILN_EXIT_USAGE;
        }
    }
    int rc = KILN_EXIT_OK;
    struct kn_error *err = NULL;
    if (optind + 1 != argc) {
        kn_err_set(&err, KN_E_USAGE, "login needs exactly one registry host");
    } else if (password && from_stdin) {
        kn_err_set(&err, KN_E_USAGE, "--password and --password-stdin are mutually exclusive");
    } else if (from_stdin && !user) {
        kn_err_set(&err, KN_E_USAGE, "--password-stdin needs --username");
    }
    if (!err && password)
        fprintf(stderr, "kiln: warning: a password on the command line is visible to other "
                        "users; use --password-stdin\n");
    if (!err && from_stdin)
        password = read_stdin_secret();
    if (!err && !user) {
        if (!isatty(0))
            kn_err_set(&err, KN_E_USAGE, "no username given (use -u) and no terminal to ask on");
        else
            user = prompt("Username", false);
    }
    if (!err && !password) {
        if (!isatty(0))
            kn_err_set(&err, KN_E_USAGE,
                       "no password given (use --password-stdin) and no "
                       "terminal to ask on");
        else
            password = prompt("Password", true);
    }
    if (!err) {
        struct ex_registry *r = kiln_registry_open(&reg, &err);
        if (r && ex_registry_login(r, argv[optind], user, password, &err) == 0)
            printf("Login Succeeded\n");
        ex_registry_free(r);
    }
    if (err) {
        kiln_print_error(err);
        rc = kiln_exit_status(err);
        if (err->code == KN_E_USAGE)
            login_usage(stderr);
        kn_err_free(err);
    }
    free(user);
    wipe_free(password);
    kiln_registry_args_release(&reg);
    return rc;
}

int cmd_logout(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"authfile", required_argument, NULL, KILN_OPT_AUTHFILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ex_registry_opts opts = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case KILN_OPT_AUTHFILE:
            opts.auth_file = optarg;
            break;
        case 'h':
            login_usage(stdout);
            return KILN_EXIT_OK;
        default:
            login_usage(stderr);
            return KILN_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "kiln: error: logout needs exactly one registry host\n");
        login_usage(stderr);
        return KILN_EXIT_USAGE;
    }
    struct kn_error *err = NULL;
    if (ex_registry_logout(&opts, argv[optind], &err) == 0) {
        printf("Removing login credentials for %s\n", argv[optind]);
        return KILN_EXIT_OK;
    }
    int rc = KILN_EXIT_OK;
    if (err->code == KN_E_NOTFOUND) {
        /* as docker: logging out twice is not a failure */
        fprintf(stderr, "kiln: %s\n", err->msg);
    } else {
        kiln_print_error(err);
        rc = kiln_exit_status(err);
    }
    kn_err_free(err);
    return rc;
}
