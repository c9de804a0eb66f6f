#!/usr/bin/env bats
# kiln build: the image config and history as Docker writes them, every
# output type, reproducibility, compression, build args, targets, platforms,
# --iidfile and --metadata-file. Checked with skopeo, jq, umoci, zstd/gzip.

load helpers
load contexts/build_lib

setup() { build_setup; }
teardown() { kiln_teardown; }

@test "config: every instruction's effect, as Docker writes it" {
    cat >Dockerfile <<EOF
FROM $BASE
ENV A=1 B="two words"
LABEL l1=v1 "l 2"="v 2"
EXPOSE 8080 53/udp
USER kiln
WORKDIR /w
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD true
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
EOF
    build_oci
    assert_equal "$(cfg .config.Env)" '["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","A=1","B=two words"]'
    assert_equal "$(cfg .config.Labels)" '{"l 2":"v 2","l1":"v1"}'
    assert_equal "$(cfg '.config.ExposedPorts | keys')" '["53/udp","8080/tcp"]'
    assert_equal "$(cfg .config.User)" '"kiln"'
    assert_equal "$(cfg .config.WorkingDir)" '"/w"'
    assert_equal "$(cfg .config.Volumes)" '{"/data":{}}'
    assert_equal "$(cfg .config.StopSignal)" '"SIGTERM"'
    assert_equal "$(cfg .config.Healthcheck)" '{"Interval":5000000000,"Test":["CMD-SHELL","true"]}'
    assert_equal "$(cfg .config.Shell)" '["/bin/sh","-ec"]'
    assert_equal "$(cfg .config.Entrypoint)" '["/bin/sh","-c"]'
    assert_equal "$(cfg .config.Cmd)" '["echo hi"]'
    assert_equal "$(cfg .architecture)" '"amd64"'
    assert_equal "$(cfg .os)" '"linux"'
}

@test "history: created_by and empty_layer as BuildKit writes them; WORKDIR makes a layer" {
    cat >Dockerfile <<EOF
FROM $BASE
ENV A=1
ARG X=1
RUN echo \$X > /x
COPY Dockerfile /df
WORKDIR /w
CMD ["sh"]
EOF
    build_oci
    # the base image's history comes first, unchanged
    assert_equal "$(cfg '.history[0].created_by')" '"kiln fixture: config"'
    assert_equal "$(cfg '.history[1].created_by')" '"kiln fixture: busybox v1.35.0"'
    assert_equal "$(cfg '[.history[2:][] | [.created_by, (.empty_layer // false)]]')" \
        '[["ENV A=1",true],["ARG X=1",true],["RUN |1 X=1 /bin/sh -c echo $X > /x # buildkit",false],["COPY Dockerfile /df # buildkit",false],["WORKDIR /w",false],["CMD [\"sh\"]",true]]'
    assert_equal "$(cfg '[.history[2:][].comment] | unique')" '["buildkit.dockerfile.v0"]'
    # one diff_id per history entry that is not empty
    assert_equal "$(cfg '.rootfs.diff_ids | length')" \
        "$(cfg '[.history[] | select(.empty_layer != true)] | length')"
    assert_file x 1
}

@test "outputs: OCI layout dir and OCI archive with several tags" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo out > /out
EOF
    kbuild -t kiln-test/o:one -t kiln-test/o:two -o "type=oci,dest=$TESTDIR/dir" \
        -o "type=oci,dest=$TESTDIR/img.tar" .
    umoci ls --layout "$TESTDIR/dir" | sort >"$TESTDIR/tags"
    assert_equal "$(tr '\n' ' ' <"$TESTDIR/tags")" "one two " "tags"
    d1=$(skopeo inspect --raw "oci:$TESTDIR/dir:one" | sha256sum | cut -d' ' -f1)
    d2=$(skopeo inspect --raw "oci-archive:$TESTDIR/img.tar:one" | sha256sum | cut -d' ' -f1)
    assert_equal "$d2" "$d1" "the archive holds the same manifest"
    tar -tf "$TESTDIR/img.tar" >"$TESTDIR/list"
    assert_file_contains "$TESTDIR/list" "index.json"
    assert_file_contains "$TESTDIR/list" "oci-layout"
    umoci unpack --image "$TESTDIR/dir:two" "$TESTDIR/bundle" >/dev/null
    assert_equal "$(cat "$TESTDIR/bundle/rootfs/out")" "out"
}

@test "outputs: docker archive that skopeo reads, with its tag" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo docker > /d
CMD ["cat", "/d"]
EOF
    kbuild -t kiln-test/docker:v1 -o "type=docker,dest=$TESTDIR/d.tar" .
    tar -xOf "$TESTDIR/d.tar" manifest.json >"$TESTDIR/manifest.json"
    assert_equal "$(jq -c '.[0].RepoTags' "$TESTDIR/manifest.json")" '["kiln-test/docker:v1"]'
    skopeo inspect --raw --config "docker-archive:$TESTDIR/d.tar" >"$TESTDIR/config.json"
    assert_equal "$(cfg .config.Cmd)" '["cat","/d"]'
    skopeo copy -q "docker-archive:$TESTDIR/d.tar" "oci:$TESTDIR/conv:latest"
    unpack_oci "$TESTDIR/conv"
    assert_file d docker
}

@test "outputs: push to the registry with --push and -t, then pull it back with skopeo" {
    repo=$KILN_TEST_REGISTRY/$(unique_repo push)
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo pushed > /p
EOF
    kbuild --source-date-epoch 1700000000 --push -t "$repo:v1" -t "$repo:v2" \
        --iidfile "$TESTDIR/iid" .
    skopeo inspect --tls-verify=false --raw --config "docker://$repo:v1" >"$TESTDIR/config.json"
    assert_equal "sha256:$(sha256sum <"$TESTDIR/config.json" | cut -d' ' -f1)" "$(cat "$TESTDIR/iid")" "config digest"
    m1=$(skopeo inspect --tls-verify=false --raw "docker://$repo:v1" | sha256sum)
    m2=$(skopeo inspect --tls-verify=false --raw "docker://$repo:v2" | sha256sum)
    assert_equal "$m2" "$m1" "both tags"
    skopeo copy -q --src-tls-verify=false "docker://$repo:v1" "oci:$TESTDIR/pulled:latest"
    unpack_oci "$TESTDIR/pulled"
    assert_file p pushed
    # -o type=registry,name=... too
    kbuild --source-date-epoch 1700000000 -o "type=registry,name=$repo:v3" .
    m3=$(skopeo inspect --tls-verify=false --raw "docker://$repo:v3" | sha256sum)
    assert_equal "$m3" "$m1" "type=registry"
}

@test "outputs: local rootfs" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN mkdir /l && echo local > /l/f && ln -s f /l/s && chown 1000:1000 /l/f
EOF
    kbuild -o "type=local,dest=$TESTDIR/rootfs" .
    assert_equal "$(cat "$TESTDIR/rootfs/l/f")" "local"
    assert_equal "$(readlink "$TESTDIR/rootfs/l/s")" "f"
    [[ -x $TESTDIR/rootfs/bin/busybox ]]
    [[ $(id -u) != 0 ]] || assert_equal "$(stat -c %u:%g "$TESTDIR/rootfs/l/f")" "1000:1000"
}

@test "--iidfile and --metadata-file name the image that was written" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo meta > /m
EOF
    kbuild -t kiln-test/m:latest --iidfile "$TESTDIR/iid" --metadata-file "$TESTDIR/meta.json" \
        -o "type=oci,dest=$TESTDIR/oci" .
    manifest=$(skopeo inspect --raw "oci:$TESTDIR/oci:latest")
    assert_equal "$(cat "$TESTDIR/iid")" "$(jq -r .config.digest <<<"$manifest")" "iidfile"
    mdigest=sha256:$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
    assert_equal "$(jq -r '."containerimage.digest"' "$TESTDIR/meta.json")" "$mdigest" "metadata digest"
    assert_equal "$(jq -r '."containerimage.config.digest"' "$TESTDIR/meta.json")" "$(cat "$TESTDIR/iid")"
}

@test "--source-date-epoch: two builds in two stores give the same image digest" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo repro > /r && touch /r2
COPY . /ctx/
EOF
    kbuild --source-date-epoch 1700000000 --iidfile "$TESTDIR/iid1" -t r:latest \
        -o "type=oci,dest=$TESTDIR/o1" .
    sleep 1.1
    touch a.txt
    KILN_ROOT=$TESTDIR/root2 kbuild --source-date-epoch 1700000000 --iidfile "$TESTDIR/iid2" \
        -t r:latest -o "type=oci,dest=$TESTDIR/o2" .
    assert_equal "$(cat "$TESTDIR/iid2")" "$(cat "$TESTDIR/iid1")" "config digest"
    d1=$(skopeo inspect --raw "oci:$TESTDIR/o1:latest" | sha256sum)
    d2=$(skopeo inspect --raw "oci:$TESTDIR/o2:latest" | sha256sum)
    assert_equal "$d2" "$d1" "manifest digest"
    unpack_oci "$TESTDIR/o1"
    assert_equal "$(cfg .created)" '"2023-11-14T22:13:20Z"'
    assert_equal "$(cfg '.history[-1].created')" '"2023-11-14T22:13:20Z"'
    assert_equal "$(stat -c %Y "$ROOTFS/r2")" "1700000000" "clamped mtime"
    # SOURCE_DATE_EPOCH in the environment does the same
    SOURCE_DATE_EPOCH=1700000000 KILN_ROOT=$TESTDIR/root3 kbuild --iidfile "$TESTDIR/iid3" .
    assert_equal "$(cat "$TESTDIR/iid3")" "$(cat "$TESTDIR/iid1")" "config digest from env"
}

@test "--compression zstd and gzip: layer media types and blobs" {
    require_tool zstd
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo z > /z
COPY Dockerfile /df
EOF
    kbuild --compression zstd -t z:latest -o "type=oci,dest=$TESTDIR/z" .
    skopeo inspect --raw "oci:$TESTDIR/z:latest" >"$TESTDIR/m.json"
    assert_equal "$(jq -c '[.layers[1:][].mediaType] | unique' "$TESTDIR/m.json")" \
        '["application/vnd.oci.image.layer.v1.tar+zstd"]'
    for d in $(jq -r '.layers[1:][].digest' "$TESTDIR/m.json"); do
        zstd -dc "$TESTDIR/z/blobs/sha256/${d#sha256:}" | tar -t >/dev/null
    done
    kbuild --compression gzip -t g:latest -o "type=oci,dest=$TESTDIR/g" .
    skopeo inspect --raw "oci:$TESTDIR/g:latest" >"$TESTDIR/m.json"
    assert_equal "$(jq -c '[.layers[].mediaType] | unique' "$TESTDIR/m.json")" \
        '["application/vnd.oci.image.layer.v1.tar+gzip"]'
    for d in $(jq -r '.layers[].digest' "$TESTDIR/m.json"); do
        gzip -t <"$TESTDIR/g/blobs/sha256/${d#sha256:}"
    done
    unpack_oci "$TESTDIR/g"
    assert_file z z
}

@test "--build-arg, --target and the predefined platform args" {
    cat >Dockerfile <<EOF
ARG BASEIMG=$BASE
FROM \$BASEIMG AS first
ARG GREETING=default
RUN echo "\$GREETING" > /greeting
FROM first AS second
ARG TARGETPLATFORM
ARG TARGETARCH
RUN echo "\$TARGETPLATFORM \$TARGETARCH" > /platform && echo second > /second
FROM first AS third
RUN echo third > /third
EOF
    build_oci --build-arg GREETING=hello --target second
    assert_file greeting hello
    assert_file platform "linux/amd64 amd64"
    assert_file second second
    assert_no_path third
    # KEY without a value: from the environment, else the default
    GREETING=from-env build_oci --build-arg GREETING --target first
    assert_file greeting from-env
    assert_no_path second
    build_oci --build-arg GREETING --target first
    assert_file greeting default
    assert_no_path second
}

@test "--platform: the host's platform builds, another architecture is refused" {
    [[ $(uname -m) == x86_64 ]] || skip "the fixture image is linux/amd64"
    cat >Dockerfile <<EOF
FROM $BASE
RUN uname -m > /arch
EOF
    build_oci --platform linux/amd64
    assert_file arch x86_64
    kbuild 1 --platform linux/arm64 -o "type=oci,dest=$TESTDIR/arm" .
    assert_stderr_contains "cannot run build steps for platform 'linux/arm64' on a linux/amd64 host"
    # a build without RUN may target another platform
    cat >Dockerfile <<EOF
FROM scratch
COPY Dockerfile /
EOF
    kbuild --platform linux/arm64 -t a:latest -o "type=oci,dest=$TESTDIR/arm" .
    skopeo inspect --raw --config "oci:$TESTDIR/arm:latest" >"$TESTDIR/config.json"
    assert_equal "$(cfg .architecture)" '"arm64"'
    # cross-compiling: a stage FROM --platform=$BUILDPLATFORM runs on the host
    # for an arm64 image
    cat >Dockerfile <<EOF
FROM --platform=\$BUILDPLATFORM $BASE AS build
ARG TARGETARCH BUILDARCH
RUN echo "for \$TARGETARCH on \$BUILDARCH by \$(uname -m)" > /out
FROM scratch
COPY --from=build /out /out
EOF
    rm -rf "$TESTDIR/arm"
    kbuild --platform linux/arm64 -t a:latest -o "type=oci,dest=$TESTDIR/arm" .
    unpack_oci "$TESTDIR/arm"
    assert_equal "$(cfg .architecture)" '"arm64"'
    assert_file out "for arm64 on amd64 by x86_64"
}

@test "--build-context: a directory and an image replace a stage or image name" {
    mkdir -p "$TESTDIR/extra" && echo extra >"$TESTDIR/extra/e"
    cat >Dockerfile <<EOF
FROM base
COPY --from=extra e /e
RUN cat /etc/passwd | grep -c kiln > /kiln-users
EOF
    build_oci --build-context "$BASECTX" --build-context "extra=$TESTDIR/extra"
    assert_file e extra
    assert_file kiln-users 1
    build_oci --build-context "base=docker-image://$BASE" --build-context "extra=$TESTDIR/extra"
    assert_file e extra
}

@test "RUN steps that change nothing: no layer, an empty_layer history entry, and the next RUN works" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN true
RUN test -d /tmp
COPY Dockerfile /df
RUN rm /df
COPY Dockerfile /df
RUN cat /df > /copied
EOF
    build_oci
    assert_equal "$(cfg '[.history[2:][] | [.created_by[0:18], (.empty_layer // false)]]')" \
        '[["RUN /bin/sh -c tru",true],["RUN /bin/sh -c tes",true],["COPY Dockerfile /d",false],["RUN /bin/sh -c rm ",false],["COPY Dockerfile /d",false],["RUN /bin/sh -c cat",false]]'
    assert_equal "$(cfg '.rootfs.diff_ids | length')" "5" "base + 4 layers"
    # the same COPY layer twice in the chain still stacks (overlayfs refuses
    # a lower dir given twice)
    assert_file copied "$(cat Dockerfile)"
}
