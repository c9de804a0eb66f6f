/*
 * Sandbox tests as an unprivileged user: rootless is the point. Run as
 * root, this test makes sure the user "kilntest" exists with a
 * /etc/subuid and /etc/subgid range, copies itself somewhere that user can
 * read, and re-executes itself as that user (KILN_TEST_AS_USER=1), then
 * as "kilntest2", which has no range (a single-uid map). Run as
 * a non-root user, it runs the cases directly.
 */
#include "sandbox_cases.h"

#include <sys/wait.h>

#define TEST_USER  "kilntest"
#define TEST_USER2 "kilntest2" /* no /etc/subuid range */

static int sh(const char *cmd)
{
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (geteuid() != 0)
        return run_cases();
    if (getenv("KILN_TEST_AS_USER")) {
        printf("Bail out! still root after dropping privileges\n");
        return 1;
    }
    if (sh("id -u " TEST_USER " >/dev/null 2>&1") != 0 &&
        sh("useradd -m " TEST_USER " >/dev/null 2>&1") != 0)
        tap_skip_all("cannot create the user " TEST_USER);
    if (sh("grep -q '^" TEST_USER ":' /etc/subuid 2>/dev/null") != 0 &&
        sh("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " TEST_USER) != 0)
        tap_skip_all("cannot give " TEST_USER " a subordinate id range");
    /* a copy of this binary the user can reach, wherever the build dir is */
    char dir[] = "/tmp/kiln-unit-bin-XXXXXX";
    if (!mkdtemp(dir))
        tap_skip_all("cannot create a temporary directory");
    chmod(dir, 0755);
    char exe[256];
    snprintf(exe, sizeof(exe), "%s/test", dir);
    copy_file("/proc/self/exe", exe, 0755);
    (void)argv;
    /* once with a subordinate id range, once without (a single-uid map) */
    if (sh("id -u " TEST_USER2 " >/dev/null 2>&1") != 0)
        sh("useradd -m -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 " TEST_USER2 " >/dev/null 2>&1");
    if (sh("grep -q '^" TEST_USER2 ":' /etc/subuid /etc/subgid 2>/dev/null") == 0)
        sh("usermod --del-subuids 1-4294967294 --del-subgids 1-4294967294 " TEST_USER2);
    const char *users[] = {TEST_USER, TEST_USER2};
    int rc = 0;
    for (size_t i = 0; i < KN_ARRAY_SIZE(users) && rc == 0; i++) {
        printf("# as %s\n", users[i]);
        fflush(stdout);
        char uarg[64], garg[64];
        snprintf(uarg, sizeof(uarg), "--reuid=%s", users[i]);
        snprintf(garg, sizeof(garg), "--regid=%s", users[i]);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("KILN_TEST_AS_USER", "1", 1);
            setenv("TMPDIR", "/tmp", 1);
            execl("/usr/bin/setpriv", "setpriv", uarg, garg, "--init-groups", "--", exe,
                  (char *)NULL);
            perror("setpriv");
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
        if (rc == 77 && i > 0)
            rc = 0;
    }
    unlink(exe);
    rmdir(dir);
    return rc;
}
