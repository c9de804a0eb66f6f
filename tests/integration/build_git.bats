#!/usr/bin/env bats
# kiln build: ADD of a git repository, served by `git daemon` on a loopback
# port of the test's own: a tag, the default branch, a commit id, a
# subdirectory, --keep-git-dir, mtimes at the commit time, caching by
# content, and a missing ref.

load helpers
load contexts/build_lib

setup() {
    build_setup
    require_tool git
    GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@example.invalid
    GIT_COMMITTER_NAME=kiln GIT_COMMITTER_EMAIL=kiln@example.invalid
    export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL
    export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    local work=$TESTDIR/work
    mkdir -p "$work/sub" "$TESTDIR/srv"
    git init -q -b main "$work"
    printf 'one\n' >"$work/a.txt"
    printf 'B\n' >"$work/sub/b.txt"
    printf '#!/bin/sh\necho hi\n' >"$work/script.sh"
    chmod 755 "$work/script.sh"
    ln -s a.txt "$work/link"
    git -C "$work" add -A
    GIT_AUTHOR_DATE=@1600000000 GIT_COMMITTER_DATE=@1600000000 git -C "$work" commit -q -m one
    git -C "$work" tag v1
    printf 'two\n' >"$work/a.txt"
    GIT_AUTHOR_DATE=@1700000000 GIT_COMMITTER_DATE=@1700000000 git -C "$work" commit -q -am two
    git clone -q --bare "$work" "$TESTDIR/srv/repo.git"
    V1=$(git -C "$work" rev-parse v1)
    MAIN=$(git -C "$work" rev-parse main)
    local port pid i
    port=$("$KILN_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    git daemon --reuseaddr --export-all --base-path="$TESTDIR/srv" --listen=127.0.0.1 \
        --port="$port" "$TESTDIR/srv" </dev/null >"$TESTDIR/gitd.log" 2>&1 3>&- &
    pid=$!
    kiln_register_pid "$pid"
    for ((i = 0; i < 100; i++)); do
        git ls-remote "git://127.0.0.1:$port/repo.git" >/dev/null 2>&1 && break
        sleep 0.05
    done
    REPO=git://127.0.0.1:$port/repo.git
    cd "$TESTDIR/ctx" || return 1
}
teardown() { kiln_teardown; }

@test "ADD of a git tag: its tree, without .git, owned by 0:0, dated at the commit" {
    cat >Dockerfile <<EOF
FROM $BASE
ADD $REPO#v1 /src
EOF
    build_oci
    assert_file src/a.txt one
    assert_file src/sub/b.txt B
    assert_equal "$(stat_of src/script.sh)" "755 0:0" "script.sh"
    assert_equal "$(stat_of src/a.txt)" "644 0:0" "a.txt"
    assert_equal "$(readlink "$ROOTFS/src/link")" "a.txt" "symlink"
    [[ ! -e $ROOTFS/src/.git ]]
    assert_equal "$(stat -c %Y "$ROOTFS/src/a.txt")" 1600000000 "a.txt mtime"
    assert_equal "$(stat -c %Y "$ROOTFS/src/sub")" 1600000000 "sub mtime"
    assert_equal "$(cfg '.history[-1].created_by')" "\"ADD $REPO#v1 /src # buildkit\""
    # the checkout was a temporary directory of the store's
    assert_equal "$(find "$KILN_ROOT/tmp" -mindepth 1 | wc -l)" 0 "entries left in the store's tmp"
}

@test "the default branch, a subdirectory, a commit id, and --keep-git-dir" {
    cat >Dockerfile <<EOF
FROM $BASE
ADD $REPO /head
ADD $REPO#v1:sub /only
ADD $REPO#$V1 /byid/
ADD --keep-git-dir=true $REPO#main /kept
EOF
    build_oci
    assert_file head/a.txt two
    assert_file only/b.txt B
    [[ ! -e $ROOTFS/only/a.txt && ! -e $ROOTFS/only/sub ]]
    assert_file byid/a.txt one
    [[ -d $ROOTFS/kept/.git ]]
    assert_equal "$(git --git-dir="$ROOTFS/kept/.git" rev-parse HEAD)" "$MAIN" "kept .git HEAD"
    assert_file kept/a.txt two
}

@test "a rebuild of the same commit is cached; a new commit runs the ADD again" {
    cat >Dockerfile <<EOF
FROM $BASE
ADD $REPO#main /src
RUN cat /src/a.txt > /copy
EOF
    kbuild .
    assert_equal "$(state_of 'RUN cat')" DONE
    kbuild .
    assert_equal "$(state_of "ADD $REPO#main /src")" CACHED
    assert_equal "$(state_of 'RUN cat')" CACHED
    local work=$TESTDIR/work
    printf 'three\n' >"$work/a.txt"
    git -C "$work" commit -q -am three
    git -C "$work" push -q "$TESTDIR/srv/repo.git" main
    build_oci
    assert_equal "$(state_of "ADD $REPO#main /src")" DONE
    assert_file copy three
}

@test "without git on PATH, ADD of a repository fails at its line and says why" {
    # every command of /usr/bin but git's
    local f
    mkdir -p "$TESTDIR/bin"
    for f in /usr/bin/*; do
        [[ ${f##*/} == git* ]] || ln -s "$f" "$TESTDIR/bin/"
    done
    printf 'FROM %s\nADD %s#v1 /src\n' "$BASE" "$REPO" >Dockerfile
    PATH=$TESTDIR/bin kbuild 1 .
    assert_stderr_contains "Dockerfile:2:1: error: ADD of a git repository needs git, which is not installed"
}

@test "a missing ref fails at its Dockerfile line with git's message" {
    cat >Dockerfile <<EOF
FROM $BASE
ADD $REPO#nope /src
EOF
    kbuild 1 .
    assert_stderr_contains "Dockerfile:2"
    assert_stderr_contains "cannot fetch 'nope' from git repository '$REPO'"
    assert_stderr_contains "couldn't find remote ref nope"
    assert_equal "$(find "$KILN_ROOT/tmp" -mindepth 1 | wc -l)" 0 "entries left in the store's tmp"
    # the store is usable afterwards: the tag builds
    printf 'FROM %s\nADD %s#v1 /src\n' "$BASE" "$REPO" >Dockerfile
    build_oci
    assert_file src/a.txt one
}
