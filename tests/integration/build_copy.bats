#!/usr/bin/env bats
# kiln build: COPY, ADD, WORKDIR, USER, ONBUILD and .dockerignore with
# Docker's semantics, checked on the rootfs that umoci unpacks from the OCI
# output (files, modes, owners, symlinks, deletions).

load helpers
load contexts/build_lib

setup() { build_setup; }
teardown() { kiln_teardown; }

@test "COPY: a file into a dir (trailing slash), renamed, and several sources" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY a.txt /dst/
COPY a.txt /renamed
COPY a.txt b.txt /multi/
COPY script.sh /bin/
EOF
    build_oci
    assert_file dst/a.txt a
    assert_file renamed a
    assert_file multi/a.txt a
    assert_file multi/b.txt b
    assert_equal "$(stat_of bin/script.sh)" "755 0:0" "script.sh mode"
    assert_equal "$(stat_of dst/a.txt)" "644 0:0" "a.txt mode"
}

@test "COPY: wildcards copy only the matches" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY *.txt /w/
COPY d?r/*.txt /w2/
EOF
    build_oci
    assert_equal "$(ls -A "$ROOTFS/w" | tr '\n' ' ')" "a.txt b.txt " "files of /w"
    assert_equal "$(ls -A "$ROOTFS/w2" | tr '\n' ' ')" "x.txt " "files of /w2"
}

@test "COPY: a directory copies its contents, hidden files included" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY dir /d
COPY dir/ /d2/
EOF
    build_oci
    assert_file d/x.txt x
    assert_file d/.hidden h
    assert_file d/sub/y.txt y
    assert_no_path d/dir
    assert_file d2/sub/y.txt y
}

@test "COPY --chown applies to the files and to the parent dirs it creates" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY --chown=kiln:kiln a.txt /p/q/r/
COPY --chown=1000:1000 dir /tmp/owned
COPY --chown=1000 b.txt /home/
EOF
    build_oci
    assert_equal "$(stat_of p/q/r/a.txt)" "644 1000:1000" "a.txt"
    assert_equal "$(stat_of p/q/r)" "755 1000:1000" "created parent r"
    assert_equal "$(stat_of p)" "755 1000:1000" "created parent p"
    assert_equal "$(stat_of tmp/owned/sub/y.txt)" "644 1000:1000" "y.txt"
    assert_equal "$(stat_of tmp)" "1777 0:0" "existing /tmp is untouched"
    assert_equal "$(stat_of home/b.txt)" "644 1000:1000" "uid only: gid follows"
}

@test "COPY --chmod sets the mode of files and directories" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY --chmod=0640 a.txt /m/a.txt
COPY --chmod=700 dir /m/dir
EOF
    build_oci
    assert_equal "$(stat_of m/a.txt)" "640 0:0" "a.txt"
    assert_equal "$(stat_of m/dir/x.txt)" "700 0:0" "x.txt"
}

@test "COPY --from a stage, an image and a named context" {
    ctx_from copy
    mkdir -p "$TESTDIR/other" && echo other >"$TESTDIR/other/o.txt"
    cat >Dockerfile <<EOF
FROM $BASE AS builder
RUN mkdir -p /out && echo built > /out/result && ln -s result /out/link
FROM $BASE
COPY --from=builder /out/ /from-stage/
COPY --from=$KILN_TEST_REGISTRY/kiln/layered:latest /etc/layered-marker /from-image
COPY --from=other o.txt /from-context
COPY --from=layered /data/a.txt /from-layout
EOF
    build_oci --build-context "other=$TESTDIR/other" --build-context "$LAYEREDCTX"
    assert_file from-stage/result built
    assert_equal "$(readlink "$ROOTFS/from-stage/link")" "result" "symlink"
    assert_file from-image layer3
    assert_file from-context other
    assert_file from-layout
}

@test "COPY --link makes a layer of its own; the image has every file" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo first > /first
COPY --link a.txt /linked/
RUN cat /linked/a.txt > /after
EOF
    build_oci
    assert_file linked/a.txt a
    assert_file after a
    assert_file first first
    assert_equal "$(cfg '.rootfs.diff_ids | length')" "4" "layers: base + 3"
    assert_equal "$(cfg '[.history[] | select(.empty_layer != true)] | length')" "4"
}

@test "COPY --parents keeps the source's path, --exclude leaves files out" {
    ctx_from copy
    cat >Dockerfile <<EOF
# syntax=docker/dockerfile:1.7-labs
FROM $BASE
COPY --parents dir/sub/y.txt a.txt /par/
COPY --exclude=*.md --exclude=dir . /ex/
EOF
    build_oci
    assert_file par/dir/sub/y.txt y
    assert_file par/a.txt a
    assert_file ex/a.txt a
    assert_no_path ex/c.md
    assert_no_path ex/dir
}

@test "COPY keeps a symlink inside a dir and follows a top-level one" {
    ctx_from copy
    mkdir -p lnk && ln -s ../a.txt lnk/rel
    cat >Dockerfile <<EOF
FROM $BASE
COPY lnk /lnk
COPY link-to-a /followed
EOF
    build_oci
    assert_equal "$(readlink "$ROOTFS/lnk/rel")" "../a.txt" "symlink kept"
    assert_file followed a
}

@test ".dockerignore: ignored files are not in the context, ! re-includes" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY . /all/
EOF
    build_oci
    assert_file all/a.txt a
    assert_file all/keep.log keep
    assert_no_path all/build.log
    assert_no_path all/secret
    assert_file all/dir/sub/y.txt y
}

@test "ADD: a local tar (gzip, and plain) is extracted, a non-archive is copied" {
    mkdir -p t/inner && echo in >t/inner/f && echo top >t/top
    tar -C t -czf arch.tar.gz inner top
    tar -C t -cf plain.tar inner
    echo "plain" >notar.txt
    cat >Dockerfile <<EOF
FROM $BASE
ADD arch.tar.gz /x/
ADD plain.tar /y
ADD notar.txt /z/
ADD --unpack=false arch.tar.gz /kept/
EOF
    build_oci
    assert_file x/inner/f in
    assert_file x/top top
    assert_file y/inner/f in
    assert_file z/notar.txt plain
    assert_no_path x/arch.tar.gz
    # --unpack=false copies the archive as it is
    assert_equal "$(sha256sum <"$ROOTFS/kept/arch.tar.gz")" "$(sha256sum <arch.tar.gz)" "kept archive"
    assert_no_path kept/inner
}

@test "ADD of a URL with --checksum from a local HTTP server" {
    require_tool python3
    mkdir -p "$TESTDIR/www" && printf 'served\n' >"$TESTDIR/www/file.txt"
    tar -C "$TESTDIR/www" -czf "$TESTDIR/www/a.tar.gz" file.txt
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$TESTDIR/www" "$port" \
        </dev/null >"$TESTDIR/http.log" 2>&1 3>&- &
    pid=$!
    kiln_register_pid "$pid"
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/file.txt" >/dev/null && break
        sleep 0.1
    done
    sum=$(sha256sum "$TESTDIR/www/file.txt" | cut -d' ' -f1)
    cat >Dockerfile <<EOF
FROM $BASE
ADD --checksum=sha256:$sum http://127.0.0.1:$port/file.txt /dl/
ADD http://127.0.0.1:$port/a.tar.gz /dl/
ADD --chmod=0600 http://127.0.0.1:$port/file.txt /dl/renamed
ADD --unpack=true http://127.0.0.1:$port/a.tar.gz /unpacked/
EOF
    build_oci
    assert_file dl/file.txt served
    assert_file dl/a.tar.gz
    # a download is extracted only with --unpack=true
    assert_file unpacked/file.txt served
    assert_no_path unpacked/a.tar.gz
    assert_equal "$(stat_of dl/renamed)" "600 0:0" "renamed mode"
    # a wrong checksum fails the build with the Dockerfile line
    bad=$(printf '0%.0s' $(seq 64))
    cat >Dockerfile <<EOF
FROM $BASE
ADD --checksum=sha256:$bad http://127.0.0.1:$port/file.txt /dl/
EOF
    kbuild 1 -o "type=oci,dest=$TESTDIR/bad" .
    assert_stderr_contains "Dockerfile:2"
    assert_stderr_contains "digest mismatch: expected 'sha256:$bad'"
}

@test "WORKDIR creates the directory; relative WORKDIRs stack; RUN runs there" {
    cat >Dockerfile <<EOF
FROM $BASE
WORKDIR /app
WORKDIR sub
RUN pwd > /pwd && touch here
EOF
    build_oci
    assert_file pwd /app/sub
    assert_file app/sub/here
    assert_equal "$(cfg .config.WorkingDir)" '"/app/sub"'
}

@test "USER affects RUN, by name and by uid:gid" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN mkdir /out && chmod 777 /out
USER kiln
RUN id -u > /out/name-uid && id -g > /out/name-gid && touch /out/made-by-kiln
USER 1234:5678
RUN id -u > /out/num-uid && id -g > /out/num-gid
USER root
EOF
    build_oci
    assert_file out/name-uid 1000
    assert_file out/name-gid 1000
    assert_equal "$(stat_of out/made-by-kiln)" "644 1000:1000" "file made by kiln"
    assert_file out/num-uid 1234
    assert_file out/num-gid 5678
}

@test "ONBUILD triggers of a base image run in the child build" {
    mkdir parent child
    echo from-child >child/payload
    cat >parent/Dockerfile <<EOF
FROM $BASE
ONBUILD COPY payload /onbuild/payload
ONBUILD RUN echo triggered > /onbuild/ran
EOF
    kbuild -t parent:latest -o "type=oci,dest=$TESTDIR/parent" parent
    skopeo inspect --raw --config "oci:$TESTDIR/parent:latest" >"$TESTDIR/config.json"
    assert_equal "$(cfg '.config.OnBuild | length')" "2"
    cat >child/Dockerfile <<EOF
FROM parent
RUN cat /onbuild/payload > /seen
EOF
    cd child
    build_oci --build-context "parent=oci-layout://$TESTDIR/parent:latest"
    assert_file onbuild/payload from-child
    assert_file onbuild/ran triggered
    assert_file seen from-child
    assert_equal "$(cfg '.config.OnBuild')" "null" "triggers are not inherited"
}

@test "deletions over a layered base: whiteouts in the image, umoci applies them" {
    cat >Dockerfile <<EOF
FROM layered
RUN rm /data/a.txt /data/hardlink && rm -r /opq && echo new > /data/new
EOF
    build_oci --build-context "$LAYEREDCTX"
    assert_no_path data/a.txt
    assert_no_path data/hardlink
    assert_no_path data/b.txt
    assert_no_path opq
    assert_file data/new new
    assert_file data/sub/c.txt
    assert_equal "$(stat_of data/setuid)" "4755 0:0" "setuid kept"
    assert_equal "$(stat_of data/sticky)" "1777 0:0" "sticky kept"
    assert_equal "$(readlink "$ROOTFS/data/link")" "a.txt" "symlink kept"
}

@test "RUN-made symlinks, hard links, modes and owners survive the layer" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN mkdir -p /s && echo t > /s/target && ln -s target /s/sym && ln /s/target /s/hard \
 && chmod 4750 /s/target && mkdir /s/owned && chown 1000:1000 /s/owned && touch /s/rootfile
EOF
    build_oci
    assert_equal "$(readlink "$ROOTFS/s/sym")" "target" "symlink"
    assert_equal "$(stat -c %i "$ROOTFS/s/target")" "$(stat -c %i "$ROOTFS/s/hard")" "hard link"
    assert_equal "$(stat_of s/target)" "4750 0:0" "setuid mode"
    assert_equal "$(stat_of s/owned)" "755 1000:1000" "chowned in RUN"
    assert_equal "$(stat_of s/rootfile)" "644 0:0" "made by RUN: root"
}

@test "a Dockerfile-specific NAME.dockerignore wins over the context's .dockerignore" {
    ctx_from copy
    mkdir -p sub
    cat >sub/app.Dockerfile <<EOF
FROM $BASE
COPY . /all/
EOF
    printf 'a.txt\n' >sub/app.Dockerfile.dockerignore
    build_oci -f sub/app.Dockerfile
    assert_no_path all/a.txt
    assert_file all/build.log log
    assert_file all/b.txt b
}

@test "heredocs: RUN <<EOF runs a script, COPY <<EOF writes a file; -f - reads stdin" {
    cat >Dockerfile <<'EOF'
# syntax=docker/dockerfile:1
FROM base
RUN <<SCRIPT
echo line1 > /heredoc-run
echo line2 >> /heredoc-run
SCRIPT
ARG WHO=kiln
COPY <<FILE /etc/greeting
hello $WHO
FILE
COPY <<"FILE" /etc/literal
hello $WHO
FILE
COPY --chmod=0755 <<-FILE /usr/local/bin/hi
	#!/bin/sh
	echo hi
	FILE
EOF
    build_oci -f - --build-context "$BASECTX" <Dockerfile
    assert_file heredoc-run "$(printf 'line1\nline2')"
    assert_file etc/greeting 'hello kiln'
    assert_file etc/literal 'hello $WHO'
    assert_file usr/local/bin/hi "$(printf '#!/bin/sh\necho hi')"
    assert_equal "$(stat_of usr/local/bin/hi)" "755 0:0" "mode"
}
