#!/usr/bin/env bats
# shellcheck disable=SC2154 # bats sets output, stderr and status
# kiln executor: Kaniko's executor command line, with flag sets taken from
# Kaniko's README (the context as a directory, dir://, tar://, a .tar.gz;
# --destination, --no-push --tar-path, --oci-layout-path, the digest files,
# --reproducible, --build-arg, --target, --label, credentials from
# DOCKER_CONFIG, --registry-certificate, --skip-tls-verify), checked against
# the fixture registry with skopeo and by reading the archives; the registry
# cache shared by two builds with empty stores; and every flag kiln cannot
# honour refused with its message and exit status 2.

load helpers

setup_file() { kiln_setup_file; }
teardown_file() { kiln_teardown_file; }

setup() {
    kiln_setup
    require_tool skopeo jq
    cd "$TESTDIR" || return 1
    mkdir -p ctx
    cat >ctx/Dockerfile <<EOF
FROM $KILN_TEST_REGISTRY/kiln/base:latest AS first
ARG GREETING=hello
RUN echo "\$GREETING" > /greeting
COPY file.txt /file.txt

FROM first AS second
RUN echo second > /second
EOF
    printf 'from the context\n' >ctx/file.txt
}

teardown() { kiln_teardown; }

# skopeo_digest REF: the manifest digest of REF in the plain registry
skopeo_digest() {
    skopeo inspect --tls-verify=false "docker://$1" | jq -r .Digest
}

# archive_file TAR PATH: the content of PATH in the topmost layer of a
# docker archive that has it
archive_file() {
    local dir layer
    dir=$(mktemp -d "$TESTDIR/archive.XXXXXX")
    tar -xf "$1" -C "$dir"
    for layer in $(jq -r '.[0].Layers | reverse | .[]' "$dir/manifest.json"); do
        if tar -tf "$dir/$layer" | grep -qx "${2#/}"; then
            tar -xOf "$dir/$layer" "${2#/}"
            return 0
        fi
    done
    printf '# %s not in any layer of %s\n' "$2" "$1" >&2
    return 1
}

# archive_config TAR: the image config of a docker archive
archive_config() {
    tar -xOf "$1" "$(tar -xOf "$1" manifest.json | jq -r '.[0].Config')"
}

@test "README flags: --context=dir:// --dockerfile --destination builds and pushes" {
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo readme)
    run_kiln executor --context="dir://$TESTDIR/ctx" --dockerfile=Dockerfile \
        --destination="$repo:v1" --digest-file="$TESTDIR/digest"
    local digest
    digest=$(skopeo_digest "$repo:v1")
    assert_equal "$(cat digest)" "$digest" "digest file"
    [[ $digest == sha256:* ]]
    # what was pushed has the RUN's and the COPY's files
    skopeo copy --src-tls-verify=false "docker://$repo:v1" "docker-archive:$TESTDIR/pulled.tar" \
        >/dev/null
    assert_equal "$(archive_file pulled.tar /greeting)" "hello"
    assert_equal "$(archive_file pulled.tar /second)" "second"
    assert_equal "$(archive_file pulled.tar /file.txt)" "from the context"
}

@test "-c -f -d shorthands, a Dockerfile path outside the context, two destinations" {
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo short)
    mv ctx/Dockerfile other.Dockerfile
    run_kiln executor -c "$TESTDIR/ctx" -f "$TESTDIR/other.Dockerfile" -d "$repo:a" \
        -d "$repo:b" --image-name-with-digest-file="$TESTDIR/names" \
        --image-name-tag-with-digest-file "$TESTDIR/tagnames"
    local digest
    digest=$(skopeo_digest "$repo:a")
    assert_equal "$(skopeo_digest "$repo:b")" "$digest" "second destination"
    assert_equal "$(cat names)" "$(printf '%s@%s\n%s@%s' "$repo" "$digest" "$repo" "$digest")" \
        "image-name-with-digest-file"
    assert_equal "$(cat tagnames)" \
        "$(printf '%s:a@%s\n%s:b@%s' "$repo" "$digest" "$repo" "$digest")" \
        "image-name-tag-with-digest-file"
}

@test "a destination without a tag is :latest in the tag digest file" {
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo latest)
    run_kiln executor --context "$TESTDIR/ctx" --destination "$repo" \
        --image-name-tag-with-digest-file=tagnames
    assert_equal "$(cat tagnames)" "$repo:latest@$(skopeo_digest "$repo:latest")"
}

@test "--no-push --tar-path: a docker archive tagged with the destination, nothing pushed" {
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo nopush)
    run_kiln executor --context "$TESTDIR/ctx" --destination "$repo:v1" --no-push \
        --tar-path "$TESTDIR/image.tar" --digest-file digest
    assert_equal "$(tar -xOf image.tar manifest.json | jq -r '.[0].RepoTags[0]')" "$repo:v1"
    # the Config entry is named by its own digest
    local cfg
    cfg=$(tar -xOf image.tar manifest.json | jq -r '.[0].Config')
    assert_equal "$(tar -xOf image.tar "$cfg" | sha256sum | cut -c1-64).json" "${cfg#blobs/sha256/}"
    assert_equal "$(archive_file image.tar /greeting)" "hello"
    [[ $(cat digest) == sha256:* ]]
    run skopeo inspect --tls-verify=false "docker://$repo:v1"
    [[ $status -ne 0 ]]
    if command -v podman >/dev/null; then
        local root=$TESTDIR/podman
        run podman --root "$root/root" --runroot "$root/run" --storage-driver vfs load -i image.tar
        [[ $status -eq 0 ]] || kiln_skip "podman load does not work here: $output"
        [[ $output == *"$repo:v1"* ]]
    fi
}

@test "--oci-layout-path writes an OCI layout with the digest of the digest file" {
    run_kiln executor --context "$TESTDIR/ctx" --no-push --oci-layout-path "$TESTDIR/layout" \
        --digest-file digest
    assert_equal "$(jq -r '.manifests[0].digest' layout/index.json)" "$(cat digest)"
    assert_equal "$(skopeo inspect "oci:$TESTDIR/layout" | jq -r .Digest)" "$(cat digest)"
}

@test "--reproducible twice with empty stores: the same digest, created at the epoch" {
    run_kiln executor --context "$TESTDIR/ctx" --no-push --reproducible --digest-file d1 \
        --tar-path one.tar
    KILN_ROOT=$TESTDIR/root2 run_kiln executor --context "$TESTDIR/ctx" --no-push \
        --reproducible --digest-file d2
    assert_equal "$(cat d2)" "$(cat d1)" "digest of the second build"
    assert_equal "$(archive_config one.tar | jq -r .created)" "1970-01-01T00:00:00Z"
}

@test "--build-arg, --target and --label" {
    run_kiln executor --context "$TESTDIR/ctx" --no-push --tar-path image.tar \
        --build-arg GREETING=bonjour --target first --label org.example.team=ci \
        --label "two=a b"
    assert_equal "$(archive_file image.tar /greeting)" "bonjour"
    run archive_file image.tar /second
    [[ $status -ne 0 ]]
    assert_equal "$(archive_config image.tar | jq -r '.config.Labels["org.example.team"]')" "ci"
    assert_equal "$(archive_config image.tar | jq -r '.config.Labels.two')" "a b"
}

@test "a tar.gz context, as a file and as tar://" {
    tar -czf ctx.tar.gz -C ctx .
    run_kiln executor --context "tar://$TESTDIR/ctx.tar.gz" --no-push --tar-path one.tar
    assert_equal "$(archive_file one.tar /file.txt)" "from the context"
    run_kiln executor --context "$TESTDIR/ctx.tar.gz" --dockerfile Dockerfile --no-push \
        --tar-path two.tar
    assert_equal "$(archive_file two.tar /file.txt)" "from the context"
    # the unpacked copy is gone afterwards
    run_kiln executor --context tar://stdin --no-push --tar-path three.tar <ctx.tar.gz
    assert_equal "$(archive_file three.tar /greeting)" "hello"
}

@test "a context tarball with an escaping entry is refused" {
    "$KILN_PYTHON" - "$TESTDIR/evil.tar.gz" <<'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name in ("Dockerfile", "../escape"):
        data = b"FROM scratch\n"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
EOF
    run_kiln 1 executor --context "tar://$TESTDIR/evil.tar.gz" --no-push
    assert_stderr_contains "kiln: error: cannot unpack the context tarball '$TESTDIR/evil.tar.gz': layer '$TESTDIR/evil.tar.gz': entry '../escape' escapes the layer root"
    [[ ! -e $TESTDIR/../escape ]]
}

@test "credentials from DOCKER_CONFIG and --registry-certificate push to the TLS registry" {
    write_docker_config "$KILN_TEST_REGISTRY_TLS" "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS"
    local repo
    repo=$KILN_TEST_REGISTRY_TLS/$(unique_repo tls)
    run_kiln executor --context "$TESTDIR/ctx" --destination "$repo:v1" \
        --registry-certificate "$KILN_TEST_REGISTRY_TLS=$KILN_TEST_TLS_CA" --digest-file digest
    local got
    got=$(skopeo inspect --cert-dir "$KILN_TEST_TLS_CERT_DIR" \
        --creds "$KILN_TEST_TLS_USER:$KILN_TEST_TLS_PASS" "docker://$repo:v1" | jq -r .Digest)
    assert_equal "$got" "$(cat digest)"
    # --skip-tls-verify: the same push without the CA
    run_kiln executor --context "$TESTDIR/ctx" --destination "$repo:v2" --skip-tls-verify
    # and without either, TLS verification fails
    run_kiln 1 executor --context "$TESTDIR/ctx" --destination "$repo:v3"
    assert_stderr_contains "cannot push '$repo:v3'"
}

@test "flags with nothing to do are accepted with one warning naming them" {
    run_kiln executor --context "$TESTDIR/ctx" --no-push --snapshot-mode=redo --use-new-run \
        --cache-copy-layers --cache-run-layers=false --skip-unused-stages \
        --cleanup --log-timestamp --push-retry 3
    local warnings
    warnings=$(grep -c 'warning: accepted for Kaniko compatibility' <<<"$stderr")
    assert_equal "$warnings" 1 "warning lines"
    local f
    for f in snapshot-mode use-new-run cache-copy-layers cache-run-layers \
        skip-unused-stages cleanup log-timestamp push-retry; do
        assert_stderr_contains "--$f ("
    done
}

@test "--log-format json gives one JSON event a line; --verbosity debug shows the build argv" {
    run_kiln executor --context "$TESTDIR/ctx" --no-push --log-format=json --verbosity=debug
    assert_stderr_contains "kiln: debug: executor: kiln build --file $TESTDIR/ctx/Dockerfile"
    grep '^{' <<<"$stderr" | jq -e 'select(.event == "done") | .name' >/dev/null
}

@test "bad and unsupported flags are usage errors that say so" {
    local -a cases=(
        "--nope|kiln: error: unknown flag '--nope'"
        "-x|kiln: error: unknown flag '-x'"
        "stray|kiln: error: unexpected argument 'stray': kiln executor takes only flags (the context is --context)"
        "--context=$TESTDIR/ctx|kiln: error: no --destination given: name one, or build without pushing with --no-push"
        "--no-push --context=git://github.com/x/y.git|kiln: error: context 'git://github.com/x/y.git': git:// contexts are not supported by kiln executor (fetch it into a directory first and pass --context dir://DIR)"
        "--no-push --context=s3://bucket/ctx.tar.gz|kiln: error: context 's3://bucket/ctx.tar.gz': s3:// contexts are not supported by kiln executor (fetch it into a directory first and pass --context dir://DIR)"
        "--no-push --context=$TESTDIR/missing|kiln: error: context '$TESTDIR/missing' does not exist"
        "--no-push --context=$TESTDIR/ctx --dockerfile=nope|kiln: error: Dockerfile 'nope' not found: give a path that exists, or one inside the build context, with --dockerfile"
        "--no-push --registry-mirror=mirror.gcr.io|kiln: error: --registry-mirror is not supported: kiln pulls from the registry an image names (point FROM at the mirror, or use --build-arg for it)"
        "--no-push --registry-map=index.docker.io=mirror|kiln: error: --registry-map is not supported: kiln pulls from the registry an image names (point FROM at the other registry)"
        "--no-push --no-push=maybe|kiln: error: invalid value 'maybe' for --no-push: expected true or false"
        "--no-push --context=$TESTDIR/ctx --verbosity=loud|kiln: error: unknown --verbosity 'loud' (panic, fatal, error, warn, info, debug or trace)"
        "--no-push --context=$TESTDIR/ctx --log-format=xml|kiln: error: unknown --log-format 'xml' (text, color or json)"
        "--no-push --cache --context=$TESTDIR/ctx|kiln: error: --cache needs --cache-repo (or a --destination to derive REPO/cache from)"
        "--destination=r/x --cache --cache-ttl=24h|kiln: error: --cache-ttl is not supported: kiln's cache keys are content-based and its registry cache entries do not expire (delete old tags from the cache repository instead)"
        "--no-push --single-snapshot|kiln: error: --single-snapshot is not supported: kiln makes one layer per step and cannot squash them into one"
        "--no-push --ignore-path=/var/cache|kiln: error: --ignore-path is not supported: kiln keeps everything a step writes in its layer (remove the files in the step, or use a cache or tmpfs mount)"
        "--no-push --context=$TESTDIR/ctx --registry-certificate=a=/x --registry-certificate=b=/y|kiln: error: --registry-certificate: kiln takes one CA bundle for every registry, got '/x' for a and '/y' for b (concatenate them into one file)"
        "--no-push --context=$TESTDIR/ctx --registry-certificate=nofile|kiln: error: invalid --registry-certificate 'nofile': expected HOST=FILE"
        "--no-push --context=$TESTDIR/ctx --compression=lz4|kiln: error: unknown compression 'lz4' (gzip, zstd or none)"
        "--no-push --dockerfile|kiln: error: flag --dockerfile needs a value"
    )
    local c args want
    for c in "${cases[@]}"; do
        args=${c%%|*}
        want=${c#*|}
        # shellcheck disable=SC2086 # the flags are split on purpose
        run_kiln 2 executor $args
        assert_equal "$stderr" "$want" "stderr of executor $args"
    done
}

@test "--insecure-pull names the registries of the FROM lines; a variable FROM is refused" {
    run_kiln executor --context "$TESTDIR/ctx" --no-push --insecure-pull --verbosity debug
    assert_stderr_contains "--insecure-registry $KILN_TEST_REGISTRY"
    # shellcheck disable=SC2016 # a Dockerfile variable, not a shell one
    printf 'ARG BASE\nFROM $BASE\n' >ctx/Dockerfile
    run_kiln 2 executor --context "$TESTDIR/ctx" --no-push --insecure-pull
    assert_equal "$stderr" "kiln: error: --insecure-pull: cannot tell the registry of 'FROM \$BASE' before the build: name it with --insecure-registry or --skip-tls-verify-registry"
}


@test "two builds with empty stores share one registry cache: the second runs no RUN step" {
    local cache repo
    cache=$KILN_TEST_REGISTRY/$(unique_repo cache)
    repo=$KILN_TEST_REGISTRY/$(unique_repo cached)
    cat >ctx/Dockerfile <<EOF
FROM $KILN_TEST_REGISTRY/kiln/base:latest
RUN date +%s%N > /stamp && sleep 1
RUN echo two > /two
EOF
    KILN_ROOT=$TESTDIR/store1 run_kiln executor --context "$TESTDIR/ctx" --destination "$repo:1" \
        --cache=true --cache-repo "$cache" --log-format json --tar-path one.tar
    local started
    started=$(grep '^{' <<<"$stderr" | jq -r 'select(.event == "start") | .name' | grep -c RUN)
    assert_equal "$started" 2 "RUN steps run by the first build"
    sleep 1.1 # the second build dates the image from the cache, not from the clock
    KILN_ROOT=$TESTDIR/store2 run_kiln executor --context "$TESTDIR/ctx" --destination "$repo:2" \
        --cache --cache-repo "$cache" --log-format json --tar-path two.tar
    started=$(grep '^{' <<<"$stderr" | jq -r 'select(.event == "start") | .name' | grep -c RUN ||
        true)
    assert_equal "$started" 0 "RUN steps run by the second build"
    assert_equal "$(archive_file two.tar /stamp)" "$(archive_file one.tar /stamp)" "/stamp"
    assert_equal "$(skopeo_digest "$repo:2")" "$(skopeo_digest "$repo:1")" "image digest"
}

@test "--cache without --cache-repo uses DESTINATION_REPO/cache" {
    local repo
    repo=$KILN_TEST_REGISTRY/$(unique_repo defcache)
    run_kiln executor --context "$TESTDIR/ctx" --destination "$repo:1" --cache
    run skopeo list-tags --tls-verify=false "docker://$repo/cache"
    [[ $status -eq 0 && $output == *sha256-* ]]
}
