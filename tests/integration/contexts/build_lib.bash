# shellcheck shell=bash disable=SC2154 # bats sets output, stderr and status
# Helpers shared by tests/integration/build_*.bats (load it after helpers):
#
#     load helpers
#     load contexts/build_lib
#
# Every build goes into $TESTDIR; its result is checked with tools that are
# not kiln's: umoci (the rootfs), skopeo + jq (the config), podman (running it).

CONTEXTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

build_setup() {
    kiln_setup
    export BASE=$KILN_TEST_REGISTRY/kiln/base:latest
    export BASECTX=base=oci-layout://$KILN_TEST_OCI:base
    export LAYEREDCTX=layered=oci-layout://$KILN_TEST_OCI:layered
    mkdir -p "$TESTDIR/ctx"
    cd "$TESTDIR/ctx" || return 1
}

# ctx_from NAME: a writable copy of tests/integration/contexts/NAME as the
# current directory ($TESTDIR/ctx).
ctx_from() {
    rm -rf "$TESTDIR/ctx"
    cp -a "$CONTEXTS/$1" "$TESTDIR/ctx"
    cd "$TESTDIR/ctx" || return 1
}

# kbuild [STATUS] ARG...: kiln build --progress plain ARG... (ARGs end with
# the context).
kbuild() {
    local expected=0
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
        expected=$1
        shift
    fi
    run_kiln "$expected" build --progress plain "$@"
}

# build_oci [ARG...]: build the context . into $TESTDIR/oci (tag latest),
# then unpack it with umoci into $ROOTFS and read its config with skopeo
# into $TESTDIR/config.json.
build_oci() {
    rm -rf "$TESTDIR/oci" "$TESTDIR/bundle"
    kbuild -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/oci" "$@" .
    unpack_oci "$TESTDIR/oci"
}

# unpack_oci LAYOUT: umoci unpack LAYOUT:latest into $TESTDIR/bundle, the
# config (raw: skopeo drops what OCI lacks, such as OnBuild) into $TESTDIR/config.json.
unpack_oci() {
    rm -rf "$TESTDIR/bundle"
    umoci unpack --image "$1:latest" "$TESTDIR/bundle" >"$TESTDIR/umoci.log" 2>&1 || {
        cat "$TESTDIR/umoci.log" >&2
        return 1
    }
    export ROOTFS=$TESTDIR/bundle/rootfs
    skopeo inspect --raw --config "oci:$1:latest" >"$TESTDIR/config.json"
}

# cfg JQ: the jq query on the image config.
cfg() {
    jq -c "$1" "$TESTDIR/config.json"
}

# stat_of PATH: "MODE UID:GID" of $ROOTFS/PATH (no dereference).
stat_of() {
    stat -c '%a %u:%g' "$ROOTFS/$1"
}

assert_file() {
    if [[ ! -f $ROOTFS/$1 ]]; then
        printf '# %s is not a file in the image\n' "$1" >&2
        ls -la "$ROOTFS/$(dirname "$1")" >&2 2>/dev/null || true
        return 1
    fi
    if (($# > 1)); then
        assert_equal "$(cat "$ROOTFS/$1")" "$2" "content of $1"
    fi
}

assert_no_path() {
    if [[ -e $ROOTFS/$1 || -L $ROOTFS/$1 ]]; then
        printf '# %s exists in the image and should not\n' "$1" >&2
        return 1
    fi
}

# podman_run IMAGE [ARG...]: podman run IMAGE (an oci: reference) with a
# private storage under TESTDIR; skip when podman can't run here.
podman_run() {
    command -v podman >/dev/null || kiln_skip "podman not installed"
    command -v runc >/dev/null || kiln_skip "runc not installed"
    [[ $(id -u) == 0 ]] || kiln_skip "podman with a private vfs storage needs root"
    # the default ulimits raise RLIMIT_NPROC, which needs CAP_SYS_RESOURCE
    printf '[containers]\ndefault_ulimits = []\n' >"$TESTDIR/containers.conf"
    [[ -f $REGISTRY_AUTH_FILE ]] || printf '{"auths":{}}\n' >"$REGISTRY_AUTH_FILE"
    # podman names an oci: image after its path, which must be lowercase
    local -a args=()
    local a link=""
    for a in "$@"; do
        if [[ $a == oci:* && -z $link ]]; then
            link=$(mktemp -u /tmp/kiln-podman-oci.XXXXXXXX | tr '[:upper:]' '[:lower:]')
            ln -s "$(dirname "${a#oci:}")" "$link"
            a=oci:$link/$(basename "${a#oci:}")
        fi
        args+=("$a")
    done
    run env CONTAINERS_CONF="$TESTDIR/containers.conf" podman --runtime runc \
        --storage-driver vfs --root "$TESTDIR/podman/root" --runroot "$TESTDIR/podman/run" \
        --tmpdir "$TESTDIR/podman/tmp" --cgroup-manager cgroupfs --events-backend none \
        run --rm --net host -q "${args[@]}"
    [[ -z $link ]] || rm -f "$link"
    if [[ $status -ne 0 ]]; then
        printf '# podman run %s: exit %d\n%s\n' "$*" "$status" "$output" >&2
        return 1
    fi
}

# step_states: from $stderr of a --progress plain build, one line per step
# that is not a source: "STATE NAME" (STATE: CACHED, DONE or ERROR).
step_states() {
    awk '
        /^#[0-9]+ \[/ { id = $1; sub(/^#[0-9]+ /, ""); name[id] = $0; next }
        /^#[0-9]+ (CACHED|DONE|ERROR)/ { st[$1] = $2 }
        END { for (id in name) if (name[id] !~ /\] FROM |internal\]/) print st[id], name[id] }
    ' <<<"$stderr" | sort -k2
}

# state_of PATTERN: the state (CACHED, DONE, ERROR) of the step whose name
# holds PATTERN (a fixed string).
state_of() {
    step_states | grep -F -- "$1" | head -n 1 | cut -d' ' -f1
}
