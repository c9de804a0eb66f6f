#!/bin/sh
# Golden tests of the Dockerfile frontend: for each case directory
# (tests/golden/cases/NAME/ with a Dockerfile, an optional `args` file of
# extra `kiln graph` arguments one per line, and optional context files) run
#   kiln graph --no-resolve --format json --platform linux/amd64 -f Dockerfile ARGS .
# in the case directory and compare with expected.json (stdout, exit 0) or
# expected.err (stderr followed by "exit: N"). A JSON result must also
# round-trip: `kiln graph --frontend ir -f expected.json --format json`
# prints expected.json again, byte for byte.
# KILN_GOLDEN_UPDATE=1 rewrites the expected files instead (review the diff).
#
# usage: run.sh CASE_DIR...      (KILN_BIN: the kiln binary)
set -u
: "${KILN_BIN:?KILN_BIN must point to the kiln binary}"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for dir in "$@"; do
    name=$(basename "$dir")
    set --
    if [ -f "$dir/args" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            [ -n "$line" ] && set -- "$@" "$line"
        done <"$dir/args"
    fi
    plat=--platform=linux/amd64
    for a in "$@"; do
        case $a in --platform*) plat= ;; esac
    done
    (cd "$dir" && "$KILN_BIN" graph --no-resolve --format json ${plat:+"$plat"} -f Dockerfile "$@" . \
        >"$tmp/out" 2>"$tmp/err")
    status=$?
    printf 'exit: %d\n' "$status" >>"$tmp/err"
    if [ "${KILN_GOLDEN_UPDATE:-}" = 1 ]; then
        if [ "$status" -eq 0 ]; then
            cp "$tmp/out" "$dir/expected.json" && rm -f "$dir/expected.err"
        else
            cp "$tmp/err" "$dir/expected.err" && rm -f "$dir/expected.json"
        fi
        echo "updated $name"
        continue
    fi
    if [ -f "$dir/expected.json" ]; then
        if [ "$status" -ne 0 ]; then
            echo "FAIL $name: exit status $status, want 0"; cat "$tmp/err"; fail=1; continue
        fi
        if ! diff -u "$dir/expected.json" "$tmp/out"; then
            echo "FAIL $name: graph differs from expected.json"; fail=1; continue
        fi
        (cd "$dir" && "$KILN_BIN" graph --frontend ir --format json -f expected.json . \
            >"$tmp/rt" 2>"$tmp/rterr")
        if [ $? -ne 0 ] || ! cmp -s "$dir/expected.json" "$tmp/rt"; then
            echo "FAIL $name: expected.json does not round-trip through --frontend ir"
            cat "$tmp/rterr"; diff -u "$dir/expected.json" "$tmp/rt" | head -40; fail=1; continue
        fi
    elif [ -f "$dir/expected.err" ]; then
        if ! diff -u "$dir/expected.err" "$tmp/err"; then
            echo "FAIL $name: stderr/exit status differ from expected.err"; fail=1; continue
        fi
    else
        echo "FAIL $name: no expected.json or expected.err (run with KILN_GOLDEN_UPDATE=1)"
        fail=1; continue
    fi
    echo "ok $name"
done
exit $fail
