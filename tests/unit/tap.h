/*
 * A minimal TAP producer for kiln's C unit tests: one executable per test
 * file, one ctest each; exit 0 when every check passed, 1 otherwise, 77 to
 * skip. Each test gets a fresh temporary directory (kept when it fails).
 */
#ifndef KILN_TAP_H
#define KILN_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tap_n, tap_failed;

#define ok(cond, ...)                                                                              \
    do {                                                                                           \
        int ok_pass_ = !!(cond);                                                                   \
        tap_n++;                                                                                   \
        if (ok_pass_) {                                                                            \
            printf("ok %d - ", tap_n);                                                             \
        } else {                                                                                   \
            tap_failed++;                                                                          \
            printf("not ok %d - ", tap_n);                                                         \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (!ok_pass_)                                                                             \
            printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
    } while (0)

#define is_str(got, want, ...)                                                                     \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        int same_ = (g_ == NULL && w_ == NULL) || (g_ && w_ && strcmp(g_, w_) == 0);               \
        ok(same_, __VA_ARGS__);                                                                    \
        if (!same_)                                                                                \
            printf("#   got:  '%s'\n#   want: '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)");    \
    } while (0)

#define is_int(got, want, ...)                                                                     \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        ok(g_ == w_, __VA_ARGS__);                                                                 \
        if (g_ != w_)                                                                              \
            printf("#   got:  %lld\n#   want: %lld\n", g_, w_);                                    \
    } while (0)

static inline void tap_skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    exit(77);
}

static char tap_tmpdir_buf[4096];

/* A fresh temporary directory for this test program. */
static inline const char *tap_tmpdir(void)
{
    if (!tap_tmpdir_buf[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tap_tmpdir_buf, sizeof(tap_tmpdir_buf), "%s/kiln-unit-XXXXXX",
                 base ? base : "/tmp");
        if (!mkdtemp(tap_tmpdir_buf)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return tap_tmpdir_buf;
}

/* Loads the test fixture's STATEDIR/env ("export K=V", values plain or
 * single-quoted) into the environment: the registries a live test talks
 * to. Skips the whole test when KILN_FIXTURE_STATE is unset. */
static inline void tap_fixture_env(void)
{
    const char *state = getenv("KILN_FIXTURE_STATE");
    if (!state || !*state)
        tap_skip_all("KILN_FIXTURE_STATE is not set (start tests/fixture/start.sh)");
    char path[4200];
    snprintf(path, sizeof(path), "%s/env", state);
    FILE *f = fopen(path, "r");
    if (!f)
        tap_skip_all("the fixture's env file is missing");
    char line[8192];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "export ", 7) != 0)
            continue;
        char *eq = strchr(line + 7, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        size_t n = strlen(v);
        if (n >= 2 && v[0] == '\'' && v[n - 1] == '\'') {
            v[n - 1] = '\0';
            v++;
        }
        setenv(line + 7, v, 1);
    }
    fclose(f);
}

static inline int tap_done(void)
{
    printf("1..%d\n", tap_n);
    if (tap_tmpdir_buf[0]) {
        if (tap_failed) {
            printf("# kept %s\n", tap_tmpdir_buf);
        } else {
            char cmd[4200];
            snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tap_tmpdir_buf);
            if (system(cmd) != 0)
                printf("# could not remove %s\n", tap_tmpdir_buf);
        }
    }
    return tap_failed ? 1 : 0;
}

#endif
