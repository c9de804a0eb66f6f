# shellcheck shell=bash disable=SC2154 # bats sets output, stderr and status
# Helpers for kiln's integration tests (bats). In a .bats file:
#
#     load helpers
#     setup_file()    { kiln_setup_file; }      # the fixture, once per file
#     teardown_file() { kiln_teardown_file; }
#     setup()         { kiln_setup; }           # TESTDIR, KILN_ROOT, ...
#     teardown()      { kiln_teardown; }
#
# The fixture (tests/fixture/start.sh: registries, images) comes from
# $KILN_FIXTURE_STATE/env, which the ctest harness starts once for the whole
# run. Without KILN_FIXTURE_STATE (bats run by hand), kiln_setup_file starts
# a fixture of the file's own under BATS_FILE_TMPDIR and kiln_teardown_file
# stops it; the images are built once per bats run.
#
# After kiln_setup a test has, exported:
#   KILN_TEST_*   the fixture (see tests/fixture/start.sh): registries, images
#   TESTDIR       an empty scratch directory of its own
#   KILN_ROOT     $TESTDIR/root, kiln's store
#   KILN_BIN      the kiln binary (ctest sets it; default: kiln on the PATH)
#   DOCKER_CONFIG, REGISTRY_AUTH_FILE   empty, under TESTDIR, so no one's real
#                 credentials leak into a test (see write_docker_config)
#   FAULTPROXY_LOG  where start_faultproxy's proxies log their requests
#
# Assertions print what they expected and what they got, and return 1 (which
# fails the test under bats' errexit).

bats_require_minimum_version 1.5.0

KILN_HELPERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KILN_FIXTURE_DIR=$(cd "$KILN_HELPERS_DIR/../fixture" && pwd)
KILN_PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3 || echo python3)}

# --- the fixture ----------------------------------------------------------------

_kiln_fallback_state() {
    printf '%s\n' "$BATS_FILE_TMPDIR/kiln-fixture"
}

# kiln_fixture_load: export the fixture's KILN_TEST_* variables, starting a
# fixture first if there is no KILN_FIXTURE_STATE.
kiln_fixture_load() {
    local state
    if [[ -n ${KILN_FIXTURE_STATE:-} ]]; then
        state=$KILN_FIXTURE_STATE
        if [[ ! -f $state/env ]]; then
            printf '# KILN_FIXTURE_STATE=%s has no env: start the fixture with\n' "$state" >&2
            printf '#   %s/start.sh %s\n' "$KILN_FIXTURE_DIR" "$state" >&2
            return 1
        fi
    else
        state=$(_kiln_fallback_state)
        KILN_FIXTURE_IMAGES=$BATS_RUN_TMPDIR/kiln-fixture-images \
            "$KILN_FIXTURE_DIR/start.sh" "$state" || return 1
    fi
    # shellcheck source=/dev/null
    source "$state/env"
}

kiln_setup_file() {
    kiln_fixture_load
}

kiln_teardown_file() {
    local state
    [[ -z ${KILN_FIXTURE_STATE:-} ]] || return 0
    state=$(_kiln_fallback_state)
    if [[ -d $state ]]; then
        "$KILN_FIXTURE_DIR/stop.sh" "$state"
    fi
}

# --- per test -------------------------------------------------------------------

# kiln_setup [--no-fixture]: the test's scratch directory and environment; the
# fixture too unless --no-fixture (or it is already loaded).
kiln_setup() {
    if [[ ${1:-} != --no-fixture && -z ${KILN_TEST_REGISTRY:-} ]]; then
        kiln_fixture_load
    fi
    export TESTDIR=$BATS_TEST_TMPDIR/test
    mkdir -p "$TESTDIR/docker-config"
    export KILN_ROOT=$TESTDIR/root
    export KILN_BIN=${KILN_BIN:-kiln}
    export DOCKER_CONFIG=$TESTDIR/docker-config
    export REGISTRY_AUTH_FILE=$TESTDIR/docker-config/auth.json
    export FAULTPROXY_LOG=$BATS_TEST_TMPDIR/faultproxy.log
    _KILN_PIDS=$BATS_TEST_TMPDIR/.kiln-pids
}

# kiln_teardown: stop what the test started (kiln_register_pid,
# start_faultproxy), unmount what is mounted under TESTDIR, and remove TESTDIR
# if the test passed (a failed test's TESTDIR is kept for bats
# --no-tempdir-cleanup).
kiln_teardown() {
    [[ -n ${TESTDIR:-} ]] || return 0
    _kiln_kill_registered
    _kiln_unmount_under "$TESTDIR"
    if [[ ${BATS_TEST_COMPLETED:-} == 1 ]]; then
        _kiln_rm_rf "$TESTDIR"
    else
        printf '# TESTDIR: %s (kept with bats --no-tempdir-cleanup)\n' "$TESTDIR" >&2
    fi
}

# kiln_register_pid PID...: kill PID (TERM, then KILL) in kiln_teardown.
kiln_register_pid() {
    printf '%s\n' "$@" >>"${_KILN_PIDS:?kiln_setup was not called}"
}

# _kiln_alive PID: PID runs (a zombie, killed but not reaped, does not).
_kiln_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

_kiln_kill_registered() {
    local pid i alive
    [[ -f ${_KILN_PIDS:-} ]] || return 0
    local -a pids
    mapfile -t pids <"$_KILN_PIDS"
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 30; i++)); do
        alive=0
        for pid in "${pids[@]}"; do
            _kiln_alive "$pid" && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$_KILN_PIDS"
}

# _kiln_unmount_under DIR: unmount every mount point at or under DIR, deepest
# first (a mount point's path is longer than its parent's).
_kiln_unmount_under() {
    local dir mnt round
    dir=$(realpath -m "$1")
    for ((round = 0; round < 5; round++)); do
        local -a mounts=()
        while IFS= read -r mnt; do
            mounts+=("$mnt")
        done < <(
            while read -r _ _ _ _ mnt _; do
                mnt=$(printf '%b' "${mnt//\\/\\0}") # octal escapes: \040 is a space
                if [[ $mnt == "$dir" || $mnt == "$dir"/* ]]; then
                    printf '%d %s\n' "${#mnt}" "$mnt"
                fi
            done </proc/self/mountinfo | sort -rn | cut -d' ' -f2-
        )
        ((${#mounts[@]})) || return 0
        for mnt in "${mounts[@]}"; do
            umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null ||
                printf '# could not unmount %s\n' "$mnt" >&2
        done
    done
}

_kiln_rm_rf() {
    chmod -R u+rwX "$1" 2>/dev/null || true
    rm -rf "$1" 2>/dev/null ||
        printf '# could not remove all of %s (files of another uid?)\n' "$1" >&2
}

# --- running kiln ----------------------------------------------------------------

# run_kiln [EXPECTED_STATUS] ARG...: run "$KILN_BIN ARG..." under bats' run
# (stdout in $output and $lines, stderr in $stderr and $stderr_lines, the exit
# status in $status) with a timeout (KILN_TIMEOUT, default 300 s); fail,
# showing both streams, if the status is not EXPECTED_STATUS (default 0).
run_kiln() {
    local expected=0
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
        expected=$1
        shift
    fi
    run --separate-stderr timeout -k 10 "${KILN_TIMEOUT:-300}" "$KILN_BIN" "$@"
    if [[ $status -ne $expected ]]; then
        {
            printf '# %s %s\n' "$KILN_BIN" "$*"
            printf '# exit status %d, expected %d' "$status" "$expected"
            [[ $status -eq 124 ]] && printf ' (timed out after %s s)' "${KILN_TIMEOUT:-300}"
            printf '\n# --- stdout ---\n%s\n# --- stderr ---\n%s\n' "$output" "$stderr"
        } >&2
        return 1
    fi
}

# --- skipping ------------------------------------------------------------------

# kiln_skip MESSAGE: skip the test, or, when CI=true (nothing may skip in CI),
# fail it.
kiln_skip() {
    if [[ ${CI:-} == true ]]; then
        printf '# %s (CI=true: failing instead of skipping)\n' "$*" >&2
        return 1
    fi
    skip "$*"
}

# require_tool NAME...: skip (fail in CI) unless every NAME is on the PATH.
require_tool() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || kiln_skip "$tool not installed"
    done
}

# --- assertions ------------------------------------------------------------------

# assert_equal ACTUAL EXPECTED [WHAT]
assert_equal() {
    if [[ $1 != "$2" ]]; then
        printf '# %s differs\n# expected: %s\n# actual:   %s\n' "${3:-value}" "$2" "$1" >&2
        return 1
    fi
}

# assert_file_contains FILE STRING: FILE holds STRING (a fixed string).
assert_file_contains() {
    if [[ ! -f $1 ]]; then
        printf '# %s: no such file\n' "$1" >&2
        return 1
    fi
    if ! grep -qF -- "$2" "$1"; then
        printf '# %s does not contain: %s\n# --- %s ---\n' "$1" "$2" "$1" >&2
        head -c 4096 "$1" >&2
        return 1
    fi
}

# assert_file_not_contains FILE STRING
assert_file_not_contains() {
    if grep -qF -- "$2" "$1"; then
        printf '# %s contains (and should not): %s\n' "$1" "$2" >&2
        grep -nF -- "$2" "$1" | head -n 5 >&2
        return 1
    fi
}

# assert_output_contains STRING: $output (stdout of run / run_kiln) holds STRING.
assert_output_contains() {
    if [[ $output != *"$1"* ]]; then
        printf '# output does not contain: %s\n# --- output ---\n%s\n' "$1" "$output" >&2
        return 1
    fi
}

# assert_stderr_contains STRING: $stderr (of run_kiln) holds STRING.
assert_stderr_contains() {
    if [[ ${stderr:-} != *"$1"* ]]; then
        printf '# stderr does not contain: %s\n# --- stderr ---\n%s\n' "$1" "${stderr:-}" >&2
        return 1
    fi
}

# --- registries --------------------------------------------------------------------

# start_faultproxy MODE [COUNT [FAULTPROXY OPTION...]]: start
# tests/fixture/faultproxy.py in front of the plain registry, print its port
# (port=$(start_faultproxy 500-once)). It is stopped in kiln_teardown; its
# requests are logged to $FAULTPROXY_LOG ("METHOD PATH STATUS RANGE"). COUNT 0
# means every matching request; options such as --match all, --delay 2 or
# --upstream HOST:PORT (another HTTP registry) follow COUNT. Modes: see
# tests/fixture/faultproxy.py.
start_faultproxy() {
    local mode=$1 count=${2:-1} portfile pid i
    shift
    (($# == 0)) || shift
    portfile=$(mktemp "$BATS_TEST_TMPDIR/.faultproxy.XXXXXX")
    rm -f "$portfile"
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/faultproxy.py" --upstream "$KILN_TEST_REGISTRY" \
        --port-file "$portfile" --mode "$mode" --count "$count" --log "$FAULTPROXY_LOG" "$@" \
        </dev/null >>"$BATS_TEST_TMPDIR/faultproxy.stderr" 2>&1 3>&- &
    pid=$!
    kiln_register_pid "$pid"
    for ((i = 0; i < 100; i++)); do
        if [[ -s $portfile ]]; then
            cat "$portfile"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    printf '# faultproxy did not start:\n' >&2
    cat "$BATS_TEST_TMPDIR/faultproxy.stderr" >&2
    return 1
}

# write_docker_config HOST USER PASSWORD [HOST USER PASSWORD...]: credentials
# in $DOCKER_CONFIG/config.json, the way "docker login" stores them.
write_docker_config() {
    local json='{}'
    while (($# >= 3)); do
        json=$(jq --arg host "$1" --arg auth "$(printf '%s:%s' "$2" "$3" | base64 -w0)" \
            '.auths[$host] = {auth: $auth}' <<<"$json")
        shift 3
    done
    printf '%s\n' "$json" >"$DOCKER_CONFIG/config.json"
}

# unique_repo NAME: a repository name no other test uses (the registries are
# shared by the whole run), e.g. test/NAME-1234-5678.
unique_repo() {
    printf 'test/%s-%s-%s\n' "$1" "$$" "$RANDOM$RANDOM"
}

# copy_oci_layout DEST: a writable copy of the fixture's OCI layout (the
# fixture's own may belong to another user).
copy_oci_layout() {
    cp -R "$KILN_TEST_OCI" "$1"
    chmod -R u+w "$1"
}
