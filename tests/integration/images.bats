#!/usr/bin/env bats
# shellcheck disable=SC2154 # bats sets output, stderr and status
# kiln pull / push / inspect and the image exporters, checked with tools that
# are not kiln's: umoci unpacks what kiln pulled to the same tree as what
# skopeo copied, skopeo reads kiln's OCI archives, docker archives and pushed
# images with the same digests, podman loads kiln's docker archive.

load helpers

setup_file() { kiln_setup_file; }
teardown_file() { kiln_teardown_file; }

setup() {
    kiln_setup
    require_tool skopeo umoci jq
    cd "$TESTDIR" || return 1
}

teardown() { kiln_teardown; }

# listing DIR: every path under DIR with type, mode, owner, size and link target.
listing() {
    (cd "$1" && find . -printf '%p %y %m %U:%G %s %l\n' | LC_ALL=C sort)
}

# full_root: uid 0 with every uid mapped (not just root of "unshare -r"), so
# files can be given any owner.
full_root() {
    [[ $EUID -eq 0 ]] && awk '$3 > 65536 { full = 1 } END { exit !full }' /proc/self/uid_map
}

# unpack LAYOUT:TAG DIR: umoci's view of an image (rootless unless full root).
unpack() {
    local rootless=()
    full_root || rootless=(--rootless)
    umoci unpack "${rootless[@]}" --image "$1" "$2" >/dev/null
}

# no_temporaries: no exporter's temporary (.NAME.kiln-XXXXXX) is left in the test dir.
no_temporaries() {
    local left
    left=$(find . -maxdepth 1 -name '.*.kiln-*')
    assert_equal "$left" "" "temporaries left"
}

# ref_names LAYOUT: the ref names in a layout's index.json, sorted, space-separated.
ref_names() {
    jq -r '[.manifests[].annotations["org.opencontainers.image.ref.name"]] | sort | join(" ")' \
        "$1/index.json"
}

# config_digest LAYOUT TAG
config_digest() {
    local m
    m=$(jq -r --arg t "$2" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
        "$1/index.json")
    jq -r .config.digest "$1/blobs/${m/://}"
}

@test "pull: base and layered into OCI layouts that umoci unpacks like skopeo's copies" {
    local tag digest
    for tag in base layered; do
        run_kiln pull "$KILN_TEST_REGISTRY/kiln/$tag:latest" -o "type=oci,dest=kiln-$tag"
        digest=KILN_TEST_${tag^^}_DIGEST
        assert_equal "$output" "${!digest}" "digest printed for $tag"
        assert_equal "$(ref_names "kiln-$tag")" latest "ref name of $tag"
        skopeo copy -q --src-tls-verify=false "docker://$KILN_TEST_REGISTRY/kiln/$tag:latest" \
            "oci:skopeo-$tag:latest"
        unpack "kiln-$tag:latest" "u-kiln-$tag"
        unpack "skopeo-$tag:latest" "u-skopeo-$tag"
        diff -r --no-dereference "u-kiln-$tag/rootfs" "u-skopeo-$tag/rootfs"
        diff <(listing "u-kiln-$tag/rootfs") <(listing "u-skopeo-$tag/rootfs")
        umoci stat --image "kiln-$tag:latest" >/dev/null
    done
    # the whiteouts of layered were applied by umoci on both sides
    [[ ! -e u-kiln-layered/rootfs/data/b.txt ]]
    assert_equal "$(ls -A u-kiln-layered/rootfs/opq)" z "/opq after the opaque whiteout"
    assert_equal "$(cat u-kiln-layered/rootfs/etc/layered-marker)" layer3 "marker"
}

@test "pull: blobs are the registry's, byte for byte, and copies of the store's (never hard links)" {
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/layered" -o dest=out
    local f hex
    for f in out/blobs/sha256/*; do
        hex=$(sha256sum "$f" | cut -d' ' -f1)
        assert_equal "$hex" "$(basename "$f")" "content of $f"
        [[ -f $KILN_ROOT/blobs/sha256/$hex ]]
    done
    # 3 layers + config + manifest
    assert_equal "$(find out/blobs/sha256 -type f | wc -l)" 5 "blob count"
    local layer
    layer=$(jq -r '.layers[0].digest' "out/blobs/sha256/${KILN_TEST_LAYERED_DIGEST#sha256:}")
    # the layout is the user's to change; the store's blob is every build's
    [[ $(stat -c %i "out/blobs/${layer/://}") != $(stat -c %i "$KILN_ROOT/blobs/${layer/://}") ]]
    echo garbage >>"out/blobs/${layer/://}"
    assert_equal "$(sha256sum "$KILN_ROOT/blobs/${layer/://}" | cut -d' ' -f1)" "${layer#sha256:}" \
        "the store's blob after the layout's copy was changed"
}

@test "pull: adding an image to an existing layout keeps the others" {
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/base" -o type=oci,dest=both,name=kiln/base:b
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/layered" -o type=oci,dest=both,name=kiln/layered:l
    assert_equal "$(ref_names both)" "b l" "ref names"
    run skopeo inspect oci:both:b
    [[ $status -eq 0 ]]
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_BASE_DIGEST" "digest of b"
    run skopeo inspect oci:both:l
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_LAYERED_DIGEST" "digest of l"
    # the same tag again replaces its entry
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/base" -o type=oci,dest=both,name=kiln/base:l
    assert_equal "$(ref_names both)" "b l" "ref names after re-tagging"
    run skopeo inspect oci:both:l
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_BASE_DIGEST" "l now names base"
}

@test "pull: OCI archive readable by skopeo" {
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/layered" -o type=oci,dest=img.tar
    [[ -f img.tar ]]
    run skopeo inspect oci-archive:img.tar:latest
    [[ $status -eq 0 ]]
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_LAYERED_DIGEST" "digest"
    assert_equal "$(jq -r '.Layers | length' <<<"$output")" 3 "layers"
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/base" -o type=oci,dest=notar,tar=true
    run skopeo inspect oci-archive:notar
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_BASE_DIGEST" "tar=true"
}

@test "pull: docker archive that skopeo reads and podman loads" {
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/layered" -o type=docker,dest=d.tar,name=kiln/layered:t \
        --iidfile iid
    run skopeo inspect docker-archive:d.tar
    [[ $status -eq 0 ]]
    assert_equal "$(jq -r '.Layers | length' <<<"$output")" 3 "layers"
    tar -xOf d.tar manifest.json >m.json
    assert_equal "$(jq -r '.[0].RepoTags[0]' m.json)" kiln/layered:t "RepoTags"
    assert_equal "$(jq -r '.[0].Config' m.json)" "$(cut -d: -f2 iid).json" "Config"
    # each layer is the uncompressed tar whose digest is its diff_id
    local f
    for f in $(jq -r '.[0].Layers[]' m.json); do
        assert_equal "$(tar -xOf d.tar "$f" | sha256sum | cut -d' ' -f1).tar" "$f" "layer $f"
    done
    command -v podman >/dev/null || kiln_skip "podman not installed"
    full_root || kiln_skip "podman load with a private storage needs root with every uid mapped"
    local p=(podman --root "$TESTDIR/podman/root" --runroot "$TESTDIR/podman/run"
        --storage-driver vfs --runtime runc)
    run timeout 120 "${p[@]}" load -i d.tar
    [[ $status -eq 0 ]] || {
        echo "# $output" >&2
        return 1
    }
    run "${p[@]}" image inspect --format '{{.Id}}' localhost/kiln/layered:t
    assert_equal "sha256:$output" "$(cat iid)" "podman's image ID is kiln's iidfile"
    "${p[@]}" rmi -a >/dev/null 2>&1 || true
}

@test "pull: type=local gives the flattened root filesystem" {
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/layered" -o type=local,dest=rootfs
    [[ -x rootfs/bin/busybox ]]
    [[ ! -e rootfs/data/b.txt ]]
    [[ -f rootfs/data/a.txt ]]
    assert_equal "$(ls -A rootfs/opq)" z "/opq holds only z"
    assert_equal "$(cat rootfs/etc/layered-marker)" layer3 "marker"
    # the same tree as umoci's unpack of the fixture's layout
    unpack "$KILN_TEST_OCI:layered" umoci
    if full_root; then
        diff <(listing rootfs) <(listing umoci/rootfs)
    else
        diff <(listing rootfs | cut -d' ' -f1-3,5-) <(listing umoci/rootfs | cut -d' ' -f1-3,5-)
    fi
    diff -r --no-dereference rootfs umoci/rootfs
    no_temporaries
}

@test "pull: oci-layout:// copies offline, keeping the tag" {
    run_kiln pull "oci-layout://$KILN_TEST_OCI:layered" -o dest=copy
    assert_equal "$output" "$KILN_TEST_LAYERED_DIGEST" "digest"
    assert_equal "$(ref_names copy)" layered "ref name"
    run skopeo inspect oci:copy:layered
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_LAYERED_DIGEST" "skopeo reads it"
}

@test "pull: from the TLS registry with --registry-ca and --authfile" {
    local auth
    auth=$(printf '%s:%s' "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS" | base64 -w0)
    jq -n --arg h "$KILN_TEST_REGISTRY_TLS" --arg a "$auth" '{auths: {($h): {auth: $a}}}' >auth.json
    run_kiln pull "$KILN_TEST_REGISTRY_TLS/kiln/base" --registry-ca "$KILN_TEST_TLS_CA" \
        --authfile auth.json -o dest=tls
    assert_equal "$output" "$KILN_TEST_BASE_DIGEST" "digest over TLS"
    run_kiln 1 pull "$KILN_TEST_REGISTRY_TLS/kiln/base" --authfile auth.json -o dest=noca
    assert_stderr_contains "certificate"
    [[ ! -e noca ]]
    run_kiln 1 pull "$KILN_TEST_REGISTRY_TLS/kiln/base" --registry-ca "$KILN_TEST_TLS_CA" \
        -o dest=nocreds
    assert_stderr_contains "authentication required"
    [[ ! -e nocreds ]]
}

@test "pull: a docker schema 2 image is converted for an OCI layout, as skopeo does" {
    local repo docker_digest
    repo=$(unique_repo docker)
    skopeo copy -q --format v2s2 --dest-tls-verify=false "oci:$KILN_TEST_OCI:layered" \
        "docker://$KILN_TEST_REGISTRY/$repo:d"
    docker_digest=$(skopeo inspect --tls-verify=false "docker://$KILN_TEST_REGISTRY/$repo:d" |
        jq -r .Digest)
    run_kiln pull "$KILN_TEST_REGISTRY/$repo:d" -o dest=conv --iidfile iid --metadata-file meta.json
    assert_equal "$output" "$docker_digest" "the pulled (docker) manifest digest is printed"
    local m
    m=$(jq -r '.manifests[0].digest' conv/index.json)
    [[ $m != "$docker_digest" ]]
    assert_equal "$(jq -r .mediaType "conv/blobs/${m/://}")" \
        application/vnd.oci.image.manifest.v1+json "manifest media type"
    assert_equal "$(jq -r .config.mediaType "conv/blobs/${m/://}")" \
        application/vnd.oci.image.config.v1+json "config media type"
    assert_equal "$(jq -r '[.layers[].mediaType] | unique | join(",")' "conv/blobs/${m/://}")" \
        application/vnd.oci.image.layer.v1.tar+gzip "layer media types"
    assert_equal "$(jq -r '."containerimage.digest"' meta.json)" "$m" "metadata: the OCI manifest"
    assert_equal "$(config_digest conv d)" "$(cat iid)" "the config (image ID) is unchanged"
    umoci stat --image conv:d >/dev/null
    # skopeo's own conversion maps the same media types and keeps the layers
    # (it also re-encodes the config, which kiln keeps byte for byte)
    skopeo copy -q --src-tls-verify=false "docker://$KILN_TEST_REGISTRY/$repo:d" oci:sk:latest
    local sm
    sm=$(jq -r '.manifests[0].digest' sk/index.json)
    diff <(jq -S 'del(.annotations, .config.digest, .config.size)' "conv/blobs/${m/://}") \
        <(jq -S 'del(.annotations, .config.digest, .config.size)' "sk/blobs/${sm/://}")
}

@test "pull: --metadata-file and --iidfile" {
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/base" -o dest=m --metadata-file meta.json --iidfile iid
    local cfg
    cfg=$(config_digest m latest)
    assert_equal "$(cat iid)" "$cfg" "iidfile holds the config digest"
    assert_equal "$(jq -r '."containerimage.digest"' meta.json)" "$KILN_TEST_BASE_DIGEST" "digest"
    assert_equal "$(jq -r '."containerimage.config.digest"' meta.json)" "$cfg" "config digest"
    assert_equal "$(jq -r '."containerimage.descriptor".mediaType' meta.json)" \
        application/vnd.oci.image.manifest.v1+json "descriptor media type"
    assert_equal "$(jq -r '."containerimage.descriptor".size' meta.json)" \
        "$(stat -c %s "m/blobs/${KILN_TEST_BASE_DIGEST/://}")" "descriptor size"
}

@test "push: an OCI layout, an OCI archive and a directory; skopeo reads the same digests" {
    local repo
    repo=$(unique_repo push)
    run_kiln push "oci-layout://$KILN_TEST_OCI:layered" "$KILN_TEST_REGISTRY/$repo:v1" \
        --digestfile dg
    assert_equal "$output" "$KILN_TEST_LAYERED_DIGEST" "printed digest"
    assert_equal "$(cat dg)" "$KILN_TEST_LAYERED_DIGEST" "digest file"
    run skopeo inspect --tls-verify=false "docker://$KILN_TEST_REGISTRY/$repo:v1"
    [[ $status -eq 0 ]]
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_LAYERED_DIGEST" "skopeo's digest"
    # an archive, then a plain directory (the blobs are already there: skipped)
    run_kiln pull "oci-layout://$KILN_TEST_OCI:base" -o type=oci,dest=b.tar
    run_kiln push "oci-archive://b.tar:base" "$KILN_TEST_REGISTRY/$repo:v2"
    assert_equal "$output" "$KILN_TEST_BASE_DIGEST" "from an archive"
    copy_oci_layout layout
    run_kiln push "layout:base" "$KILN_TEST_REGISTRY/$repo:v3"
    run skopeo inspect --tls-verify=false "docker://$KILN_TEST_REGISTRY/$repo:v3"
    assert_equal "$(jq -r .Digest <<<"$output")" "$KILN_TEST_BASE_DIGEST" "from a directory"
    # and back: kiln pulls what it pushed
    run_kiln pull "$KILN_TEST_REGISTRY/$repo:v1" -o dest=back
    assert_equal "$output" "$KILN_TEST_LAYERED_DIGEST" "round trip"
}

@test "push: blobs are mounted from the repository the image was pulled from" {
    local repo
    repo=$(unique_repo mount)
    run_kiln pull "$KILN_TEST_REGISTRY/kiln/layered" -o dest=pulled
    run_kiln push pulled "$KILN_TEST_REGISTRY/$repo:m"
    assert_equal "$output" "$KILN_TEST_LAYERED_DIGEST" "pushed digest"
    [[ -r $KILN_TEST_STATE/plain.log ]] || kiln_skip "the registry's log is not readable"
    # 3 layers + config, each mounted from kiln/layered, none uploaded
    assert_equal "$(grep -c "POST /v2/$repo/blobs/uploads/?mount=sha256:[0-9a-f]*&from=kiln/layered HTTP/1.1\" 201" \
        "$KILN_TEST_STATE/plain.log")" 4 "mounts"
    assert_equal "$(grep -c "PUT /v2/$repo/blobs/uploads/" "$KILN_TEST_STATE/plain.log")" 0 "uploads"
}

@test "push: a layout with a corrupt blob is refused before anything is pushed" {
    local repo layer
    repo=$(unique_repo corrupt)
    copy_oci_layout layout
    layer=$(jq -r '.layers[-1].digest' "layout/blobs/${KILN_TEST_LAYERED_DIGEST/://}")
    printf 'garbage' >"layout/blobs/${layer/://}"
    run_kiln 1 push "oci-layout://layout:layered" "$KILN_TEST_REGISTRY/$repo:x"
    assert_stderr_contains "$layer"
    run skopeo inspect --tls-verify=false "docker://$KILN_TEST_REGISTRY/$repo:x"
    [[ $status -ne 0 ]]
}

@test "inspect: a registry reference and an OCI layout" {
    run_kiln inspect "$KILN_TEST_REGISTRY/kiln/layered"
    assert_equal "$(jq -r .digest <<<"$output")" "$KILN_TEST_LAYERED_DIGEST" "digest"
    assert_equal "$(jq -r .name <<<"$output")" "$KILN_TEST_REGISTRY/kiln/layered:latest" "name"
    assert_equal "$(jq -r .mediaType <<<"$output")" application/vnd.oci.image.manifest.v1+json \
        "media type"
    assert_equal "$(jq -r '.manifest.layers | length' <<<"$output")" 3 "manifest"
    assert_equal "$(jq -r '.config.rootfs.diff_ids | length' <<<"$output")" 3 "config"
    # (not through run: it would drop a trailing newline)
    "$KILN_BIN" inspect --raw "oci-layout://$KILN_TEST_OCI:base" >raw
    assert_equal "sha256:$(sha256sum <raw | cut -d' ' -f1)" "$KILN_TEST_BASE_DIGEST" \
        "raw manifest bytes"
    "$KILN_BIN" inspect --raw "$KILN_TEST_REGISTRY/kiln/layered" >raw
    assert_equal "sha256:$(sha256sum <raw | cut -d' ' -f1)" "$KILN_TEST_LAYERED_DIGEST" \
        "raw manifest bytes from the registry"
    run_kiln inspect --config "$KILN_TEST_REGISTRY/kiln/base"
    assert_equal "$(jq -r .os <<<"$output")" linux "config os"
    assert_equal "$(jq -r '.config.Cmd[0]' <<<"$output")" /bin/sh "config Cmd"
}

@test "inspect and pull: an index in a layout, with platform selection" {
    copy_oci_layout layout
    local idx digest size_b size_l
    size_b=$(stat -c %s "layout/blobs/${KILN_TEST_BASE_DIGEST/://}")
    size_l=$(stat -c %s "layout/blobs/${KILN_TEST_LAYERED_DIGEST/://}")
    idx=$(jq -cn --arg b "$KILN_TEST_BASE_DIGEST" --arg l "$KILN_TEST_LAYERED_DIGEST" \
        --argjson sb "$size_b" --argjson sl "$size_l" '{schemaVersion: 2,
          mediaType: "application/vnd.oci.image.index.v1+json",
          manifests: [
            {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $b, size: $sb,
             platform: {os: "linux", architecture: "amd64"}},
            {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $l, size: $sl,
             platform: {os: "linux", architecture: "arm64", variant: "v8"}}]}')
    printf '%s' "$idx" >index.blob
    digest=sha256:$(sha256sum <index.blob | cut -d' ' -f1)
    cp index.blob "layout/blobs/${digest/://}"
    jq --arg d "$digest" --argjson s "$(stat -c %s index.blob)" \
        '.manifests += [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d,
          size: $s, annotations: {"org.opencontainers.image.ref.name": "multi"}}]' \
        layout/index.json >index.new
    mv index.new layout/index.json
    run_kiln inspect --platform linux/amd64 oci-layout://layout:multi
    assert_equal "$(jq -r .digest <<<"$output")" "$digest" "the index digest"
    assert_equal "$(jq -r .mediaType <<<"$output")" application/vnd.oci.image.index.v1+json \
        "media type"
    assert_equal "$(jq -c .platforms <<<"$output")" '["linux/amd64","linux/arm64/v8"]' "platforms"
    assert_equal "$(jq -r '.config.rootfs.diff_ids | length' <<<"$output")" 1 "amd64 is base"
    run_kiln pull --platform linux/arm64 oci-layout://layout:multi -o dest=arm
    assert_equal "$output" "$KILN_TEST_LAYERED_DIGEST" "arm64 is layered"
    run_kiln 1 pull --platform linux/s390x oci-layout://layout:multi -o dest=none
    assert_stderr_contains "no image for platform 'linux/s390x' in the index (it has: linux/amd64, linux/arm64/v8)"
    [[ ! -e none ]]
}

@test "errors: unknown tag, missing blob, bad reference, unreachable registry" {
    run_kiln 1 pull "oci-layout://$KILN_TEST_OCI:nope" -o dest=e1
    assert_equal "$stderr" \
        "kiln: error: tag 'nope' not found in OCI layout '$KILN_TEST_OCI' (tags: base, layered)" \
        "unknown tag"
    [[ ! -e e1 ]]
    copy_oci_layout layout
    local cfg
    cfg=$(config_digest layout base)
    rm "layout/blobs/${cfg/://}"
    run_kiln 1 pull "oci-layout://layout:base" -o dest=e2
    assert_equal "$stderr" "kiln: error: blob $cfg missing from OCI layout 'layout'" "missing blob"
    [[ ! -e e2 ]]
    run_kiln 1 pull 'no such/ref!' -o dest=e3
    assert_stderr_contains "invalid reference 'no such/ref!'"
    [[ ! -e e3 ]]
    local port
    port=$("$KILN_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    run_kiln 1 pull "127.0.0.1:$port/kiln/base" -o dest=e4
    assert_stderr_contains "127.0.0.1:$port"
    [[ ! -e e4 ]]
    run_kiln 1 pull "$KILN_TEST_REGISTRY/kiln/base" --platform linux/s390x -o dest=e5
    assert_stderr_contains "is for platform 'linux/amd64', not 'linux/s390x'"
    [[ ! -e e5 ]]
    run_kiln 1 inspect "oci-layout://$KILN_TEST_OCI"
    assert_stderr_contains "holds 2 images and none is tagged 'latest'; name one (tags: base, layered)"
    no_temporaries
}

@test "errors: usage errors exit 2" {
    run_kiln 2 pull
    assert_stderr_contains "kiln: error: missing REF"
    run_kiln 2 pull x -o type=tarball,dest=y
    assert_stderr_contains \
        "invalid output 'type=tarball,dest=y': unknown type 'tarball' (want oci, docker, local or registry)"
    run_kiln 2 pull x -o type=registry
    assert_stderr_contains "kiln pull cannot export to a registry"
    run_kiln 2 pull x --platform linux
    assert_stderr_contains "invalid platform 'linux' (want os/arch[/variant])"
    run_kiln 2 push onlyone
    assert_stderr_contains "missing SRC or REF"
    run_kiln 2 inspect --raw --config x
    assert_stderr_contains "--raw and --config exclude each other"
}

@test "errors: a docker archive that cannot be written leaves nothing behind" {
    mkdir ro
    chmod 0555 ro
    if [[ $EUID -eq 0 ]]; then
        # root writes anywhere: make the destination's directory vanish instead
        run_kiln 1 pull "$KILN_TEST_REGISTRY/kiln/base" -o type=docker,dest=missing/dir/d.tar
        assert_stderr_contains "missing/dir/d.tar"
    else
        run_kiln 1 pull "$KILN_TEST_REGISTRY/kiln/base" -o type=docker,dest=ro/d.tar
        assert_stderr_contains "ro/d.tar"
    fi
    [[ -z $(ls -A ro) ]]
    [[ ! -e missing ]]
}
