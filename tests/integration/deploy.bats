#!/usr/bin/env bats
# shellcheck disable=SC2154 # bats sets output, stderr and status
# deploy/: the builder image, built by kiln itself (deploy/build-image.sh:
# the host's kiln and its libraries on the fixture's busybox), checked as an
# image (entrypoint, workdir, user, every library present) and run under
# podman as a pod would run it: as uid 1000 under podman's default
# confinement (a build without RUN steps, credentials from
# /kaniko/.docker/config.json), in chroot isolation as the root of a user
# namespace (non-root on the host), and in userns isolation as uid 1000 with
# seccomp unconfined and /proc unmasked (what docs/kubernetes.md asks of a
# cluster). Then the Kubernetes and Tekton manifests: parsed with
# python3-yaml and checked for what the docs promise, and applied with
# `kubectl apply --dry-run=client --validate=false` against a stand-in for
# the API server's discovery endpoints.

load helpers

IMAGE=localhost/kiln/kiln:test

setup_file() {
    kiln_setup_file
    export IMAGEDIR=$BATS_FILE_TMPDIR/image
    mkdir -p "$IMAGEDIR"
    # built once for the file; a failure is reported by the tests that need it
    KILN_ROOT=$BATS_FILE_TMPDIR/root "$KILN_SOURCE_DIR/deploy/build-image.sh" \
        --kiln "$KILN_BIN" --base "$KILN_TEST_REGISTRY/library/busybox:latest" \
        -t "$IMAGE" -o "type=docker,dest=$IMAGEDIR/kiln.tar" -o "type=oci,dest=$IMAGEDIR/layout" \
        --progress plain >"$IMAGEDIR/build.log" 2>&1 || true
}

teardown_file() { kiln_teardown_file; }

setup() {
    kiln_setup
    export KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
    cd "$TESTDIR" || return 1
}

teardown() { kiln_teardown; }

need_image() {
    if [[ ! -f $IMAGEDIR/kiln.tar ]]; then
        printf '# deploy/build-image.sh failed:\n' >&2
        cat "$IMAGEDIR/build.log" >&2
        return 1
    fi
}

# kpodman ARGS...: podman with a private vfs storage under TESTDIR (runc:
# crun refuses cgroup v1 hybrid; no default ulimits: raising RLIMIT_NPROC
# needs CAP_SYS_RESOURCE, which the machines here lack)
kpodman() {
    env -u REGISTRY_AUTH_FILE -u DOCKER_CONFIG CONTAINERS_CONF="$TESTDIR/containers.conf" \
        podman --runtime runc --storage-driver vfs \
        --root "$TESTDIR/podman/root" --runroot "$TESTDIR/podman/run" \
        --tmpdir "$TESTDIR/podman/tmp" --cgroup-manager cgroupfs --events-backend none "$@"
}

# podman_load: the image in a private podman storage, or skip where podman
# cannot run containers here
podman_load() {
    need_image
    require_tool podman runc
    [[ $(id -u) == 0 ]] || kiln_skip "podman with a private vfs storage needs root"
    printf '[containers]\ndefault_ulimits = []\n' >"$TESTDIR/containers.conf"
    run kpodman load -i "$IMAGEDIR/kiln.tar"
    [[ $status -eq 0 ]] || kiln_skip "podman load does not work here: $output"
    run kpodman run --rm --network host "$IMAGE" version
    [[ $status -eq 0 ]] || kiln_skip "podman cannot run a container here: $output"
}

# example_context: deploy/example in TESTDIR/ctx, an output dir anyone can write
example_context() {
    cp -R "$KILN_SOURCE_DIR/deploy/example" ctx
    chmod -R a+rX ctx
    mkdir -p out
    chmod 0777 out
}

# pulled_file REF PATH: the content of PATH in the image REF of the plain registry
pulled_file() {
    local dir layer
    dir=$(mktemp -d "$TESTDIR/pulled.XXXXXX")
    skopeo copy --src-tls-verify=false "docker://$1" "dir:$dir" >/dev/null
    for layer in $(jq -r '.layers | reverse | .[].digest | sub("sha256:"; "")' "$dir/manifest.json"); do
        if tar -tzf "$dir/$layer" | grep -qx "${2#/}"; then
            tar -xzOf "$dir/$layer" "${2#/}"
            return 0
        fi
    done
    printf '# %s not in %s\n' "$2" "$1" >&2
    return 1
}

@test "the builder image: kiln as entrypoint, /workspace, uid 1000, complete libraries" {
    need_image
    require_tool skopeo umoci jq
    local cfg
    cfg=$(skopeo inspect --config "oci:$IMAGEDIR/layout:test")
    assert_equal "$(jq -c .config.Entrypoint <<<"$cfg")" '["/usr/local/bin/kiln"]' Entrypoint
    assert_equal "$(jq -r .config.WorkingDir <<<"$cfg")" /workspace WorkingDir
    assert_equal "$(jq -r .config.User <<<"$cfg")" 1000:1000 User
    assert_equal "$(jq -r '.config.Env[] | select(startswith("KILN_ROOT="))' <<<"$cfg")" \
        KILN_ROOT=/var/lib/kiln
    # the unpacked image's own loader and libraries run its kiln: nothing missing
    umoci unpack --rootless --image "$IMAGEDIR/layout:test" bundle >/dev/null
    local r=bundle/rootfs
    run "$r/lib64/ld-linux-x86-64.so.2" --inhibit-cache --library-path \
        "$r/lib/x86_64-linux-gnu:$r/usr/lib/x86_64-linux-gnu" "$r/usr/local/bin/kiln" version
    [[ $status -eq 0 && $output == "kiln "* ]]
    assert_equal "$(tail -n 1 "$r/kaniko/executor")" \
        'exec /usr/local/bin/kiln executor "$@"'
    assert_equal "$(stat -c %a "$r/workspace" "$r/var/lib/kiln")" "$(printf '1777\n1777')"
    grep -q '^kiln:x:1000:1000:' "$r/etc/passwd"
    # small: kiln, its libraries and busybox (figure in the test log)
    local size
    size=$(jq '[.layers[].size] | add' "$IMAGEDIR/layout/blobs/sha256/$(jq -r \
        '.manifests[0].digest | sub("sha256:"; "")' "$IMAGEDIR/layout/index.json")")
    printf '# builder image: %d bytes compressed\n' "$size" >&3
    ((size < 40 * 1024 * 1024))
}

@test "podman: uid 1000, default confinement, credentials from /kaniko/.docker push to the TLS registry" {
    podman_load
    require_tool skopeo jq
    example_context
    # no RUN step: needs no isolation at all
    printf 'FROM %s/kiln/base:latest\nCOPY hello.sh /hello.sh\n' "$KILN_TEST_REGISTRY" >ctx/Dockerfile
    write_docker_config "$KILN_TEST_REGISTRY_TLS" "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS"
    chmod 0644 "$DOCKER_CONFIG/config.json"
    local repo
    repo=$KILN_TEST_REGISTRY_TLS/$(unique_repo podman)
    run kpodman run --rm --network host --user 1000 \
        -v "$TESTDIR/ctx:/workspace:ro" -v "$TESTDIR/out:/out" \
        -v "$DOCKER_CONFIG/config.json:/kaniko/.docker/config.json:ro" \
        -v "$KILN_TEST_TLS_CA:/certs/ca.pem:ro" \
        "$IMAGE" executor --context dir:///workspace --destination "$repo:v1" \
        --registry-certificate "$KILN_TEST_REGISTRY_TLS=/certs/ca.pem" --digest-file /out/digest
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; return 1; }
    local got
    got=$(skopeo inspect --cert-dir "$KILN_TEST_TLS_CERT_DIR" \
        --creds "$KILN_TEST_TLS_USER:$KILN_TEST_TLS_PASS" "docker://$repo:v1" | jq -r .Digest)
    assert_equal "$got" "$(cat out/digest)" "pushed digest"
    # /kaniko/executor is the same command
    run kpodman run --rm --network host --user 1000 -v "$TESTDIR/ctx:/workspace:ro" \
        --entrypoint /kaniko/executor "$IMAGE" --no-push --context dir:///workspace
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; return 1; }
}

@test "podman: chroot isolation as root of a user namespace builds the example and pushes it" {
    podman_load
    require_tool skopeo jq
    example_context
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo chroot)
    # root in the container, uid 200000 on the host: what hostUsers: false gives a pod
    run kpodman run --rm --network host --user 0 --uidmap 0:200000:65536 --gidmap 0:200000:65536 \
        -v "$TESTDIR/ctx:/workspace:ro" -v "$TESTDIR/out:/out" "$IMAGE" executor \
        --context dir:///workspace --destination "$repo:v1" --isolation chroot \
        --build-arg "BASE=$KILN_TEST_REGISTRY/kiln/base:latest" --digest-file /out/digest
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; return 1; }
    assert_equal "$(pulled_file "$repo:v1" /greeting)" "hello from kiln, built without a daemon"
    assert_equal "$(skopeo inspect --tls-verify=false "docker://$repo:v1" | jq -r .Digest)" \
        "$(cat out/digest)"
}

@test "podman: userns isolation as uid 1000 where the container allows it" {
    podman_load
    require_tool skopeo jq
    example_context
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo userns)
    # what job.yaml asks of the cluster: seccomp unconfined, /proc unmasked
    run kpodman run --rm --network host --user 1000 --security-opt seccomp=unconfined \
        --security-opt unmask=ALL -v "$TESTDIR/ctx:/workspace:ro" "$IMAGE" executor \
        --context dir:///workspace --destination "$repo:v1" --isolation userns \
        --build-arg "BASE=$KILN_TEST_REGISTRY/kiln/base:latest"
    if [[ $status -ne 0 && $output == *"cannot set up the sandbox"* ]]; then
        kiln_skip "this container cannot create a user namespace sandbox: ${output##*error: }"
    fi
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; return 1; }
    assert_equal "$(pulled_file "$repo:v1" /greeting)" "hello from kiln, built without a daemon"
    # and under the default confinement, the same build fails and says why
    run kpodman run --rm --network host --user 1000 -v "$TESTDIR/ctx:/workspace:ro" "$IMAGE" \
        executor --context dir:///workspace --no-push --isolation userns \
        --build-arg "BASE=$KILN_TEST_REGISTRY/kiln/base:latest"
    [[ $status -eq 1 && $output == *"error: cannot set up the sandbox: "* ]]
}

@test "the Kubernetes and Tekton manifests parse and say what the docs promise" {
    "$KILN_PYTHON" -c 'import yaml' 2>/dev/null || kiln_skip "python3-yaml not installed"
    run "$KILN_PYTHON" "$KILN_SOURCE_DIR/deploy/check/check-manifests.py" "$KILN_SOURCE_DIR/deploy"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; return 1; }
    # the checker can fail: a Task with a renamed param and a Job run as root
    cp -R "$KILN_SOURCE_DIR/deploy" copy
    sed -i 's/- name: EXTRA_ARGS/- name: ARGS/' copy/tekton/task.yaml
    sed -i 's/runAsUser: 1000/runAsUser: 0/' copy/kubernetes/job.yaml
    run "$KILN_PYTHON" copy/check/check-manifests.py "$TESTDIR/copy"
    [[ $status -eq 1 ]]
    assert_equal "$output" "kubernetes/job.yaml: not running as non-root uid 1000
tekton/task.yaml: params ['IMAGE', 'DOCKERFILE', 'CONTEXT', 'ARGS', 'BUILDER_IMAGE']
tekton/task.yaml: EXTRA_ARGS not an array"
    printf 'a: [b\n' >copy/tekton/task.yaml
    run "$KILN_PYTHON" copy/check/check-manifests.py "$TESTDIR/copy"
    [[ $status -ne 0 && $output == *"while parsing a flow sequence"* ]]
}

@test "kubectl apply --dry-run=client --validate=false accepts every manifest" {
    require_tool kubectl
    local portfile=$TESTDIR/apiserver.port pid i
    "$KILN_PYTHON" "$KILN_SOURCE_DIR/deploy/check/fake-apiserver.py" >"$portfile" \
        2>"$TESTDIR/apiserver.log" 3>&- &
    pid=$!
    kiln_register_pid "$pid"
    for ((i = 0; i < 100; i++)); do
        [[ -s $portfile ]] && break
        sleep 0.05
    done
    local f
    for f in kubernetes/secret.example.yaml kubernetes/context.example.yaml kubernetes/job.yaml \
        kubernetes/job-chroot.yaml tekton/task.yaml; do
        run kubectl --server "http://127.0.0.1:$(cat "$portfile")" apply --dry-run=client \
            --validate=false -f "$KILN_SOURCE_DIR/deploy/$f"
        [[ $status -eq 0 && $output == *"created (dry run)" ]] ||
            { printf '# %s: %s\n' "$f" "$output" >&2; return 1; }
    done
}
