/*
 * Sandbox tests as whoever runs ctest (root in CI: the full uid range is
 * mapped). The same cases run unprivileged in test_sandbox_user.c.
 * KILN_BENCH=1 adds the RUN-step timing benchmark (see docs/sandbox.md).
 */
#include "sandbox_cases.h"
#include "sandbox_bench.h"

int main(void)
{
    if (getenv("KILN_BENCH"))
        return run_bench();
    return run_cases();
}
