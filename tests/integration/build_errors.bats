#!/usr/bin/env bats
# kiln build: what a failed build says (the Dockerfile line, the cause, exit
# 1) and that the store stays usable afterwards, also after kill -9.

load helpers
load contexts/build_lib

setup() { build_setup; }
teardown() { kiln_teardown; }

# store_still_works: a build with the same store succeeds.
store_still_works() {
    mkdir -p "$TESTDIR/ok"
    cat >"$TESTDIR/ok/Dockerfile" <<EOF
FROM $BASE
RUN echo fine > /fine
COPY Dockerfile /df
EOF
    kbuild -t ok:latest -o "type=oci,dest=$TESTDIR/ok-oci" "$TESTDIR/ok"
    unpack_oci "$TESTDIR/ok-oci"
    assert_file fine fine
}

@test "a failing RUN: the Dockerfile line, the exit code, exit 1; the steps before are cached" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo before > /before

RUN echo to-stderr >&2; exit 3
RUN echo never
EOF
    kbuild 1 -o "type=oci,dest=$TESTDIR/o" .
    assert_stderr_contains "kiln: Dockerfile:4:1: error: process \"/bin/sh -c echo to-stderr >&2; exit 3\" did not complete successfully: exit code: 3"
    assert_stderr_contains "to-stderr"
    [[ $stderr != *"RUN echo never"* ]] || { echo "# the step after the failure ran" >&2; false; }
    [[ ! -e $TESTDIR/o/index.json ]]
    kbuild 1 -o "type=oci,dest=$TESTDIR/o" .
    assert_equal "$(state_of 'RUN echo before')" CACHED
    store_still_works
}

@test "a COPY of a missing file names the file and the line" {
    ctx_from copy
    cat >Dockerfile <<EOF
FROM $BASE
COPY a.txt /a
COPY missing.txt /x
EOF
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:3:1: error: COPY source '/missing.txt' not found in build context"
    # an ignored file is missing too
    printf 'FROM %s\nCOPY build.log /x\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "Dockerfile:2:1: error: COPY source '/build.log' not found in build context"
    store_still_works
}

@test "a bad --mount is refused with its line" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=bogus,target=/x true
EOF
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:5: error: unsupported mount type 'bogus' (want bind, cache, tmpfs, secret or ssh)"
    printf 'FROM %s\nRUN --mount=type=bind,source=../../etc,target=/x true\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "Dockerfile:2"
    assert_stderr_contains "outside"
    store_still_works
}

@test "a missing secret: required is an error, optional is absent" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=secret,id=nope,required=true cat /run/secrets/nope
EOF
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: secret 'nope' not found (pass --secret id=nope,...)"
    printf 'FROM %s\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope\n' "$BASE" >Dockerfile
    kbuild .
    # a --secret whose file does not exist is a usage error
    kbuild 2 --secret id=x,src="$TESTDIR/no-such-file" .
    assert_stderr_contains "cannot read '$TESTDIR/no-such-file'"
}

@test "an unreachable registry (a closed loopback port): the FROM line, exit 1" {
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >Dockerfile <<EOF
FROM 127.0.0.1:$port/kiln/base:latest
RUN true
EOF
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:1:1: error: cannot resolve base image '127.0.0.1:$port/kiln/base:latest'"
    assert_stderr_contains "Couldn't connect to server"
    # pushing there fails the same way, after a successful build
    printf 'FROM %s\nRUN true\n' "$BASE" >Dockerfile
    kbuild 1 --push -t "127.0.0.1:$port/x/y:1" .
    assert_stderr_contains "cannot push '127.0.0.1:$port/x/y:1'"
    store_still_works
}

@test "kill -9 in the middle of a RUN: the next build with the same store succeeds, prune works" {
    marker=kill-marker-$$-$RANDOM
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo first > /first
RUN sleep 30 && echo $marker
EOF
    "$KILN_BIN" build --progress plain -o "type=oci,dest=$TESTDIR/killed" . \
        </dev/null >"$TESTDIR/killed.out" 2>"$TESTDIR/killed.err" 3>&- &
    pid=$!
    kiln_register_pid "$pid"
    for _ in $(seq 300); do
        grep -q 'RUN sleep 30' "$TESTDIR/killed.err" && break
        sleep 0.1
    done
    grep -q 'RUN sleep 30' "$TESTDIR/killed.err" || { cat "$TESTDIR/killed.err" >&2; false; }
    sleep 0.5
    kill -9 "$pid"
    wait "$pid" || true
    # the sandboxed step does not outlive kiln
    for _ in $(seq 50); do
        pgrep -f "$marker" >/dev/null || break
        sleep 0.1
    done
    left=$(pgrep -f "$marker" || true)
    if [[ -n $left ]]; then
        echo "# the sandboxed step outlived kiln: $left" >&2
        kill -9 $left || true
        false
    fi
    sed -i "s/sleep 30 && echo $marker/echo done > \\/done/" Dockerfile
    kbuild -t k:latest -o "type=oci,dest=$TESTDIR/after" .
    assert_equal "$(state_of 'RUN echo first')" CACHED
    unpack_oci "$TESTDIR/after"
    assert_file done done
    run_kiln prune --keep-storage 0
    store_still_works
}

@test "prune of an empty store succeeds (twice in a row)" {
    printf 'FROM %s\nRUN echo x > /x\n' "$BASE" >Dockerfile
    kbuild .
    run_kiln prune --keep-storage 0
    # the second prune finds an empty store (UBSan once caught qsort(NULL, 0) here)
    run_kiln prune --keep-storage 0
    store_still_works
}

@test "build checks: warnings at their lines in a build, --check runs only them, error=true fails" {
    # a build shows the warnings and succeeds
    printf 'FROM %s AS Build\nENV GREETING=$UNDEFINED_NAME\nCMD echo hi\n' "$BASE" >Dockerfile
    kbuild .
    assert_stderr_contains "kiln: warning: Dockerfile:1: StageNameCasing: Stage name 'Build' should be lowercase"
    assert_stderr_contains "kiln: warning: Dockerfile:2: UndefinedVar: Usage of undefined variable '\$UNDEFINED_NAME'"
    assert_stderr_contains "kiln: warning: Dockerfile:3: JSONArgsRecommended: JSON arguments recommended for CMD"
    # --check: the same warnings, no step run, exit 1
    kbuild 1 --check .
    assert_stderr_contains "Dockerfile:2: UndefinedVar"
    assert_stderr_contains "kiln: error: 3 build check violations"
    if grep -q '^#[0-9]' <<<"$stderr"; then
        echo "# --check ran build steps" >&2
        false
    fi
    # nothing to say: exit 0
    printf 'FROM %s\nCMD ["echo", "hi"]\n' "$BASE" >Dockerfile
    kbuild --check .
    assert_stderr_contains "kiln: check complete, no warnings found"
    # error=true fails the build at its first violation, before any step runs
    printf '# check=error=true\nFROM %s\nMAINTAINER me\nRUN touch /ran\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:3:1: error: lint violation found for rules: MaintainerDeprecated"
    if grep -q '^#[0-9]' <<<"$stderr"; then
        echo "# a step ran despite error=true" >&2
        false
    fi
    # the build argument overrides the directive
    kbuild --build-arg BUILDKIT_DOCKERFILE_CHECK=skip=MaintainerDeprecated .
}
