#!/usr/bin/env bats
# kiln build: RUN in the sandbox seen from the outside (ids, owners, mounts
# of every type, secrets, network, isolation), and a rootless build.

load helpers
load contexts/build_lib

setup() { build_setup; }
teardown() {
    if [[ -n ${ROOTLESS_DIR:-} && -d $ROOTLESS_DIR ]]; then
        _kiln_unmount_under "$ROOTLESS_DIR"
        rm -rf "$ROOTLESS_DIR"
    fi
    kiln_teardown
}

@test "sandbox: RUN is uid 0; its files are root's in the image; chown 1000 stays 1000" {
    [[ $(id -u) == 0 ]] || skip "as root only (rootless: see the rootless test)"
    cat >Dockerfile <<EOF
FROM $BASE
RUN id -u > /uid && id -g > /gid && touch /made && mkdir /d && touch /d/f \
 && touch /k && chown 1000:1000 /k && chown -R kiln:kiln /d
EOF
    build_oci
    assert_file uid 0
    assert_file gid 0
    assert_equal "$(stat_of made)" "644 0:0" "made by RUN"
    assert_equal "$(stat_of k)" "644 1000:1000" "chowned to 1000"
    assert_equal "$(stat_of d/f)" "644 1000:1000" "chowned by name"
    # the base's owners are what RUN sees
    cat >Dockerfile <<EOF
FROM $BASE
RUN stat -c '%u:%g %a' /home/kiln /tmp > /seen
EOF
    build_oci
    assert_file seen "$(printf '1000:1000 755\n0:0 1777')"
}

@test "RUN --mount: bind (context, stage, rw), cache, tmpfs, secret, ssh" {
    echo ctxfile >cf
    printf topsecret >"$TESTDIR/secret.txt"
    cat >Dockerfile <<EOF
FROM $BASE AS src
RUN mkdir /srcdir && echo fromstage > /srcdir/f
FROM $BASE
RUN --mount=type=bind,target=/ctx cat /ctx/cf > /bind-ctx
RUN --mount=type=bind,from=src,source=/srcdir,target=/s cat /s/f > /bind-stage
RUN --mount=type=bind,target=/ctx,rw echo x > /ctx/written && cat /ctx/written > /rw-seen
RUN --mount=type=bind,target=/ctx touch /ctx/nope 2> /ro-error || echo refused > /ro
RUN --mount=type=cache,target=/cache,id=c1 echo 1 >> /cache/count && wc -l < /cache/count > /cache-count
RUN --mount=type=tmpfs,target=/t touch /t/x && grep -q ' /t tmpfs ' /proc/mounts && echo tmpfs > /tmpfs
RUN --mount=type=secret,id=tok stat -c '%a %u' /run/secrets/tok > /secret-stat && cat /run/secrets/tok | wc -c > /secret-len
RUN --mount=type=secret,id=tok,target=/etc/tok,mode=0440,uid=1000 stat -c '%a %u' /etc/tok > /secret-stat2
RUN --mount=type=secret,id=tok,env=TOK test "\$TOK" = topsecret && echo env-ok > /secret-env
RUN --mount=type=ssh,required=false echo ssh-optional > /ssh
EOF
    build_oci --secret "id=tok,src=$TESTDIR/secret.txt"
    assert_file bind-ctx ctxfile
    assert_file bind-stage fromstage
    assert_file rw-seen x
    [[ ! -e written ]] || { echo "# a rw bind mount wrote to the context" >&2; false; }
    assert_file ro refused
    assert_file cache-count 1
    assert_file tmpfs tmpfs
    assert_file secret-stat "400 0"
    assert_file secret-len 9
    assert_file secret-stat2 "440 1000"
    assert_file secret-env env-ok
    assert_file ssh ssh-optional
    for p in ctx s cache t run/secrets/tok etc/tok; do assert_no_path "$p/x" && assert_no_path "$p/count"; done
    assert_no_path run/secrets/tok
    # the cache mount keeps its content across builds
    build_oci --no-cache --secret "id=tok,src=$TESTDIR/secret.txt"
    assert_file cache-count 2
}

@test "secrets appear nowhere in the image: no layer blob, not the config" {
    value=kiln-secret-value-$RANDOM$RANDOM
    printf '%s' "$value" >"$TESTDIR/secret.txt"
    # the Dockerfile never names the value: it may only come from the secret
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=secret,id=s grep -q '^kiln-secret-value-' /run/secrets/s && echo used > /used
RUN --mount=type=secret,id=s,env=S case "\$S" in kiln-secret-value-*) echo env > /env-used;; esac
RUN --mount=type=secret,id=s,target=/root/.token,uid=0 cp /root/.token /dev/null
EOF
    build_oci --secret "id=s,src=$TESTDIR/secret.txt" --compression gzip
    assert_file used used
    manifest=$(skopeo inspect --raw "oci:$TESTDIR/oci:latest")
    for d in $(jq -r '.layers[].digest' <<<"$manifest"); do
        if gzip -dc "$TESTDIR/oci/blobs/sha256/${d#sha256:}" | grep -qaF "$value"; then
            echo "# the secret is in layer $d" >&2
            false
        fi
    done
    assert_file_not_contains "$TESTDIR/config.json" "$value"
    assert_file env-used env
    grep -rqaF "$value" "$ROOTFS" && { echo "# the secret is in the rootfs" >&2; false; }
    # nor in the store's cache index
    if grep -rqaF "$value" "$KILN_ROOT/cache" 2>/dev/null; then
        echo "# the secret is in the cache index" >&2
        false
    fi
}

@test "--network none: RUN sees only the loopback interface; the default is the host's" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN --network=none ls /sys/class/net | tr '\n' ' ' > /none
RUN ls /sys/class/net | wc -l > /host-count
EOF
    build_oci
    assert_file none "lo "
    [[ $(cat "$ROOTFS/host-count") -ge 1 ]]
    # --network none on the command line applies to every RUN
    cat >Dockerfile <<EOF
FROM $BASE
RUN ls /sys/class/net | tr '\n' ' ' > /all-none
EOF
    build_oci
    build_oci --network none
    assert_equal "$(state_of 'RUN ls /sys/class/net')" DONE "the network is part of the cache key"
    assert_file all-none "lo "
}

@test "--isolation chroot builds the same Dockerfile to the same rootfs" {
    [[ $(id -u) == 0 ]] || skip "chroot isolation needs root here"
    cat >Dockerfile <<EOF
FROM $BASE AS a
RUN echo a > /a && mkdir -p /x/y && ln -s ../a /x/y/l
FROM $BASE
COPY --from=a /a /x /copied/
RUN rm /bin/vi && echo b > /b && chmod 600 /b && chown 1000 /b
EOF
    build_oci --isolation userns --source-date-epoch 1
    find "$ROOTFS" -printf '%P %m %U:%G %l\n' | sort >"$TESTDIR/userns.list"
    build_oci --isolation chroot --source-date-epoch 1 --no-cache
    find "$ROOTFS" -printf '%P %m %U:%G %l\n' | sort >"$TESTDIR/chroot.list"
    diff "$TESTDIR/userns.list" "$TESTDIR/chroot.list" >&2
    assert_no_path bin/vi
    assert_equal "$(stat_of b)" "600 1000:0" "b"
}

@test "RUN with no environment at all (FROM scratch, busybox copied in)" {
    cat >Dockerfile <<EOF
FROM scratch
COPY --from=base /bin/busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox env > /env; /bin/busybox echo ok > /ok"]
EOF
    build_oci --build-context "$BASECTX"
    assert_file ok ok
    assert_file_contains "$ROOTFS/env" "PATH="
}

# as_kilntest CMD...: CMD as the unprivileged user kilntest. The kiln binary
# is copied into ROOTLESS_DIR first ($KILN_BIN's directory may not be
# readable by other users, e.g. a CI checkout under /root).
as_kilntest() {
    as_user kilntest "$@"
}

# as_user USER CMD...: the same as another unprivileged user.
as_user() {
    local user=$1
    shift
    if [[ ! -x $ROOTLESS_DIR/kiln ]]; then
        cp "$KILN_BIN" "$ROOTLESS_DIR/kiln"
        chmod 755 "$ROOTLESS_DIR/kiln"
    fi
    runuser -u "$user" -- env -i PATH="$PATH" HOME="$ROOTLESS_DIR" KILN_ROOT="$ROOTLESS_DIR/root" "$@"
}

@test "rootless: a multi-stage build with RUN and COPY, as a non-root user, to an OCI layout" {
    [[ $(id -u) == 0 ]] || skip "creates the user kilntest: run as root"
    require_tool runuser useradd
    id kilntest >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh kilntest
    ROOTLESS_DIR=$(mktemp -d /tmp/kiln-rootless.XXXXXX)
    mkdir -p "$ROOTLESS_DIR/ctx"
    echo from-context >"$ROOTLESS_DIR/ctx/f"
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE AS build
RUN echo built > /built && id -u > /uid
COPY f /f
RUN cat /f >> /built
FROM $BASE
COPY --from=build /built /uid /out/
COPY --chown=kiln:kiln f /out/f
RUN cat /out/built > /out/seen
EOF
    chown -R kilntest: "$ROOTLESS_DIR"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    assert_equal "$(stat -c %U "$ROOTLESS_DIR/root")" "kilntest" "store owner"
    unpack_oci "$ROOTLESS_DIR/oci"
    assert_file out/built "$(printf 'built\nfrom-context')"
    assert_file out/seen "$(printf 'built\nfrom-context')"
    assert_file out/uid 0
    assert_equal "$(stat_of out/f)" "644 1000:1000" "COPY --chown"
    # a rebuild is cached
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    [[ $output == *CACHED* ]]
}

@test "rootless: owners in the image are the ones inside the build (base layers and RUN)" {
    [[ $(id -u) == 0 ]] || skip "creates the user kilntest: run as root"
    require_tool runuser useradd
    id kilntest >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh kilntest
    [[ -n $(awk -F: '$1 == "kilntest"' /etc/subuid) ]] || skip "kilntest has no /etc/subuid range"
    sub=$(awk -F: '$1 == "kilntest" { print $2 }' /etc/subuid)
    ROOTLESS_DIR=$(mktemp -d /tmp/kiln-rootless.XXXXXX)
    mkdir -p "$ROOTLESS_DIR/ctx"
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE
RUN stat -c '%u:%g' /home/kiln > /seen-base-owner && touch /made-by-run
RUN mkdir /owned && echo p > /owned/f && chmod 640 /owned/f && chown -R 1000:1000 /owned
USER kiln
RUN touch ~/x && id -u > ~/uid && stat -c '%u:%g' ~ > ~/home-owner
EOF
    chown -R kilntest: "$ROOTLESS_DIR"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    unpack_oci "$ROOTLESS_DIR/oci"
    # the base layers keep their bytes, so their owners are right in the image
    assert_equal "$(stat_of home/kiln)" "755 1000:1000" "base layer owner"
    # RUN's layers are packed in a user namespace with the sandbox's id map
    assert_equal "$(stat_of made-by-run)" "644 0:0" "made by RUN"
    assert_equal "$(stat_of owned)" "755 1000:1000" "chowned by RUN"
    assert_equal "$(stat_of owned/f)" "640 1000:1000" "file of uid 1000"
    assert_file owned/f p
    # base layers are unpacked in that namespace too: RUN sees their owners
    assert_file seen-base-owner "1000:1000"
    # so USER kiln may write to its home
    assert_file home/kiln/uid 1000
    assert_file home/kiln/home-owner "1000:1000"
    assert_equal "$(stat_of home/kiln/x)" "644 1000:1000" "made by USER kiln"
    # on the host, the store holds the subordinate ids: 1000 is START+999
    # (the caller is 0, START is 1)
    owners=$(stat -c '%u:%g' "$ROOTLESS_DIR"/root/layers/sha256/*/home/kiln | sort -u)
    [[ $owners == *"$((sub + 999)):"* ]] || {
        printf '# /home/kiln in the store: %s\n' "$owners" >&2
        false
    }
}

@test "rootless: a stage with a dir private to uid 1000: COPY --from, mounts, -o type=local, a second build" {
    [[ $(id -u) == 0 ]] || skip "creates the user kilntest: run as root"
    require_tool runuser useradd
    id kilntest >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh kilntest
    [[ -n $(awk -F: '$1 == "kilntest"' /etc/subuid) ]] || skip "kilntest has no /etc/subuid range"
    ROOTLESS_DIR=$(mktemp -d /tmp/kiln-rootless.XXXXXX)
    mkdir -p "$ROOTLESS_DIR/ctx"
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE AS priv
RUN mkdir /priv && echo secret > /priv/f && chmod 600 /priv/f && chmod 700 /priv && chown -R 1000:1000 /priv
FROM $BASE
COPY --from=priv /priv /copied
RUN --mount=type=bind,from=priv,source=/priv,target=/m stat -c '%a %u:%g' /m /m/f > /bind-seen && cat /m/f >> /bind-seen
RUN --mount=type=cache,from=priv,source=/priv,target=/c,id=c1,uid=1000,mode=0700 stat -c '%a %u:%g' /c /c/f > /cache-seen && cat /c/f >> /cache-seen
EOF
    chown -R kilntest: "$ROOTLESS_DIR"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    unpack_oci "$ROOTLESS_DIR/oci"
    # COPY --from reads the private dir (in the user namespace); its
    # content goes into a new directory, the files keep the stage's owner
    # as they do as root (rootless the store held START+999, not 1000)
    assert_equal "$(stat_of copied)" "755 0:0" "copied dir"
    assert_equal "$(stat_of copied/f)" "600 1000:1000" "copied file"
    assert_file copied/f secret
    # a bind mount of the stage shows its owners
    assert_file bind-seen "$(printf '700 1000:1000\n600 1000:1000\nsecret')"
    # a cache mount seeded from the stage: the owner and mode asked for,
    # the stage's owners inside
    assert_file cache-seen "$(printf '700 1000:0\n600 1000:1000\nsecret')"

    # -o type=local: the caller's files, with the image's modes
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain --target priv \
        -o "type=local,dest=$ROOTLESS_DIR/local" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    assert_equal "$(stat -c '%a %U' "$ROOTLESS_DIR/local/priv" "$ROOTLESS_DIR/local/priv/f")" \
        "$(printf '700 kilntest\n600 kilntest')" "local export of the private dir"
    assert_equal "$(stat -c '%a %U' "$ROOTLESS_DIR/local/home/kiln")" "755 kilntest" "local home"
    run as_kilntest cat "$ROOTLESS_DIR/local/priv/f"
    assert_equal "$output" "secret" "local file read by the user"
    # again into the same directory: what is there is replaced
    as_kilntest sh -c 'cd "$1" && echo stale > priv/f && mkdir priv/extra &&
        rm -r home/kiln && echo file > home/kiln' sh "$ROOTLESS_DIR/local"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain --target priv \
        -o "type=local,dest=$ROOTLESS_DIR/local" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    assert_equal "$(cat "$ROOTLESS_DIR/local/priv/f")" "secret" "replaced file"
    assert_equal "$(stat -c '%a %U %F' "$ROOTLESS_DIR/local/home/kiln")" "755 kilntest directory" \
        "file replaced by a directory"
    # the export replaces DEST as a whole (built next to it, then renamed in)
    [[ ! -e $ROOTLESS_DIR/local/priv/extra ]]
    run as_kilntest rm -rf "$ROOTLESS_DIR/local"
    [[ $status -eq 0 && ! -e $ROOTLESS_DIR/local ]] || { printf '%s\n' "$output" >&2; false; }

    # a second build: the stage is cached, its layers are reused from the
    # store by a new RUN that reads the private dir as uid 1000
    cat >>"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM priv
USER kiln
RUN cat /priv/f > /tmp/again && stat -c '%u:%g' /priv /home/kiln >> /tmp/again
EOF
    chown -R kilntest: "$ROOTLESS_DIR/ctx"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci2" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    [[ $output == *CACHED* ]]
    unpack_oci "$ROOTLESS_DIR/oci2"
    assert_file tmp/again "$(printf 'secret\n1000:1000\n1000:1000')"
    # kiln prune empties a store holding private dirs of subordinate ids
    run as_kilntest "$ROOTLESS_DIR/kiln" prune
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    run as_kilntest sh -c 'find "$KILN_ROOT/layers" -mindepth 2 | wc -l'
    assert_equal "$output" 0 "entries left in the store's layers"
}

@test "rootless: a RUN that makes a directory private to another user" {
    [[ $(id -u) == 0 ]] || skip "creates the user kilntest: run as root"
    require_tool runuser useradd
    id kilntest >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh kilntest
    [[ -n $(awk -F: '$1 == "kilntest"' /etc/subuid) ]] || skip "kilntest has no /etc/subuid range"
    ROOTLESS_DIR=$(mktemp -d /tmp/kiln-rootless.XXXXXX)
    mkdir -p "$ROOTLESS_DIR/ctx"
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE
RUN mkdir /priv && echo p > /priv/f && chmod 600 /priv/f && chmod 700 /priv && chown -R 1000:1000 /priv
EOF
    chown -R kilntest: "$ROOTLESS_DIR"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    unpack_oci "$ROOTLESS_DIR/oci"
    assert_equal "$(stat_of priv)" "700 1000:1000" "private dir"
    assert_equal "$(stat_of priv/f)" "600 1000:1000" "private file"
    # a step that fails after making such a dir: its writable layer is
    # removed in the namespace, with no warning, and nothing is left
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE
RUN mkdir /p && touch /p/x && chmod 700 /p && chown -R 1000:1000 /p && false
EOF
    chown kilntest: "$ROOTLESS_DIR/ctx/Dockerfile"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain "$ROOTLESS_DIR/ctx"
    [[ $status -ne 0 ]]
    [[ $output == *"did not complete successfully: exit code: 1"* ]]
    [[ $output != *warning* ]] || { printf '%s\n' "$output" >&2; false; }
    assert_equal "$(find "$ROOTLESS_DIR/root/tmp" -mindepth 1 | wc -l)" "0" "left in the store's tmp"
}

@test "rootless without a subordinate id range: every file is the caller's, uid 0 inside" {
    [[ $(id -u) == 0 ]] || skip "creates the user kilnnosub: run as root"
    require_tool runuser useradd
    id kilnnosub >/dev/null 2>&1 ||
        useradd -M -d /nonexistent -s /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 kilnnosub
    [[ -z $(awk -F: '$1 == "kilnnosub"' /etc/subuid /etc/subgid) ]] || skip "kilnnosub has a subordinate range"
    ROOTLESS_DIR=$(mktemp -d /tmp/kiln-rootless.XXXXXX)
    mkdir -p "$ROOTLESS_DIR/ctx"
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE
RUN stat -c '%u:%g' /home/kiln > /seen-base-owner && touch /home/kiln/x
EOF
    chown -R kilnnosub: "$ROOTLESS_DIR"
    run as_user kilnnosub "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    unpack_oci "$ROOTLESS_DIR/oci"
    # only the caller is mapped: the base's owners are squashed to it
    assert_file seen-base-owner "0:0"
    assert_equal "$(stat_of home/kiln/x)" "644 0:0" "made by RUN"
    # and the directory the step wrote in is copied up with the owner it
    # saw: the RUN's layer makes it root's (the limit of a single id)
    assert_equal "$(stat_of home/kiln)" "755 0:0" "dir written by RUN"
    owners=$(stat -c '%U' "$ROOTLESS_DIR"/root/layers/sha256/*/home/kiln | sort -u)
    assert_equal "$owners" "kilnnosub" "owner in the store"
    run as_user kilnnosub "$ROOTLESS_DIR/kiln" build --progress plain \
        -o "type=local,dest=$ROOTLESS_DIR/local" "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    assert_equal "$(stat -c '%a %U' "$ROOTLESS_DIR/local/home/kiln/x")" "644 kilnnosub" "local export"
}

@test "RUN --mount=type=ssh reaches only the agents --ssh forwards; --secret env=VAR" {
    require_tool ssh-agent
    sock=$TESTDIR/agent.sock
    ssh-agent -a "$sock" -s >"$TESTDIR/agent.env"
    agent_pid=$(sed -n 's/^SSH_AGENT_PID=\([0-9]*\);.*/\1/p' "$TESTDIR/agent.env")
    kiln_register_pid "$agent_pid"
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=ssh test -S "\$SSH_AUTH_SOCK" && echo "\$SSH_AUTH_SOCK" > /ssh-sock
RUN --mount=type=ssh,id=deploy,target=/agent test -S /agent && echo deploy > /deploy
RUN --mount=type=secret,id=fromenv cat /run/secrets/fromenv > /dev/null && wc -c < /run/secrets/fromenv > /env-secret-len
EOF
    MY_SECRET=abcdef SSH_AUTH_SOCK=$sock build_oci --ssh default --ssh "deploy=$sock" \
        --secret id=fromenv,env=MY_SECRET
    assert_file ssh-sock /run/buildkit/ssh_agent.0
    assert_file deploy deploy
    assert_file env-secret-len 6
    # an agent the build was not given stays out of reach, SSH_AUTH_SOCK or
    # not: an optional ssh mount (the default) is left out, a required one is
    # an error with the line
    printf 'FROM %s\nRUN --mount=type=ssh test ! -e /run/buildkit/ssh_agent.0\n' "$BASE" >Dockerfile
    SSH_AUTH_SOCK=$sock kbuild .
    printf 'FROM %s\nRUN --mount=type=ssh,required=true true\n' "$BASE" >Dockerfile
    SSH_AUTH_SOCK=$sock kbuild 1 .
    assert_stderr_contains "Dockerfile:2"
    assert_stderr_contains "ssh agent 'default' requested but not forwarded: build with --ssh default"
    # what --ssh refuses
    kbuild 2 --ssh "deploy=$TESTDIR/agent.env" .
    assert_stderr_contains "--ssh deploy: '$TESTDIR/agent.env' is not an agent's socket"
    SSH_AUTH_SOCK='' kbuild 2 --ssh default .
    assert_stderr_contains "--ssh default: SSH_AUTH_SOCK is not set"
}
