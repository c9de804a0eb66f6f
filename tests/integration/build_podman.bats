#!/usr/bin/env bats
# kiln build: the images run under podman (runc, vfs, a private storage)
# and print what their Dockerfiles made them print.

load helpers
load contexts/build_lib

setup() { build_setup; }
teardown() { kiln_teardown; }

@test "podman: CMD in shell form with ENV, as Docker would run it" {
    cat >Dockerfile <<EOF
FROM $BASE
ENV GREETING=hello
CMD echo "\$GREETING from kiln"
EOF
    build_oci
    podman_run "oci:$TESTDIR/oci:latest"
    assert_equal "$output" "hello from kiln"
}

@test "podman: ENTRYPOINT + CMD, USER and WORKDIR" {
    cat >Dockerfile <<EOF
FROM $BASE
WORKDIR /srv/app
RUN echo payload > data && chown -R kiln /srv/app
USER kiln
ENTRYPOINT ["/bin/sh", "-c", "echo \$(id -u) \$(pwd) \$(cat data) \$0 \$1", "arg0"]
CMD ["from-cmd"]
EOF
    build_oci
    podman_run "oci:$TESTDIR/oci:latest"
    assert_equal "$output" "1000 /srv/app payload arg0 from-cmd"
    podman_run "oci:$TESTDIR/oci:latest" override
    assert_equal "$output" "1000 /srv/app payload arg0 override"
}

@test "podman: a multi-stage image with a copied script" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE AS build
COPY script.sh /build/run.sh
RUN sed -i 's/script/built script/' /build/run.sh
FROM $BASE
COPY --from=build /build/run.sh /usr/local/bin/run.sh
CMD ["run.sh"]
EOF
    build_oci
    podman_run "oci:$TESTDIR/oci:latest"
    assert_equal "$output" "built script"
}

@test "podman: loads the docker archive and runs it" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo from-docker-archive > /msg
CMD ["cat", "/msg"]
EOF
    kbuild -t kiln-test/arch:v1 -o "type=docker,dest=$TESTDIR/d.tar" .
    podman_run "docker-archive:$TESTDIR/d.tar"
    assert_equal "$output" "from-docker-archive"
}

@test "podman: runs the image pushed to the registry, with a base from an OCI layout" {
    repo=$KILN_TEST_REGISTRY/$(unique_repo podman)
    cat >Dockerfile <<EOF
FROM base
RUN echo pushed-and-pulled > /msg
CMD ["cat", "/msg"]
EOF
    kbuild --build-context "$BASECTX" --push -t "$repo:v1" .
    podman_run --tls-verify=false "docker://$repo:v1"
    assert_equal "$output" "pushed-and-pulled"
}

@test "podman: the example of tools/example prints its greeting" {
    ctx_from ../../../tools/example
    kbuild --build-context "$BASECTX" -t kiln/example:latest -o "type=oci,dest=$TESTDIR/oci" .
    podman_run "oci:$TESTDIR/oci:latest"
    assert_output_contains "kiln"
    unpack_oci "$TESTDIR/oci"
    assert_file app/check.txt "syntax ok"
    assert_equal "$(cfg .config.User)" '"kiln"'
}
