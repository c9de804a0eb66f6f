#!/usr/bin/env bats
# shellcheck disable=SC2154 # bats sets output, stderr and status
# kiln's safety promises, attacked with the real binary (docs/security.md
# names the test behind each claim): a RUN step sees nothing of the host but
# what the sandbox gives it; tar entries, symlinks and COPY / mount sources
# that would escape their root are refused or contained; registry
# credentials and build secrets appear in no output, log, trace, store entry
# or image blob; a failure or a kill -9 leaves nothing half-written; a
# rootless build writes nothing as root.

load helpers
load contexts/build_lib

setup() {
    build_setup
    # a host file no build may read, and its distinctive content
    CANARY_VALUE=kiln-host-canary-$RANDOM$RANDOM
    CANARY=$TESTDIR/canary/host-canary
    mkdir -p "$TESTDIR/canary"
    printf '%s\n' "$CANARY_VALUE" >"$CANARY"
}

teardown() {
    if [[ -n ${SMALLFS:-} ]] && mountpoint -q "$SMALLFS"; then
        umount "$SMALLFS" || umount -l "$SMALLFS"
    fi
    if [[ -n ${ROOTLESS_DIR:-} && -d $ROOTLESS_DIR ]]; then
        _kiln_unmount_under "$ROOTLESS_DIR"
        rm -rf "$ROOTLESS_DIR"
    fi
    kiln_teardown
}

# --- helpers --------------------------------------------------------------------

# canary_intact: the host canary still holds its value, its directory only it.
canary_intact() {
    assert_equal "$(cat "$CANARY")" "$CANARY_VALUE" "host canary"
    assert_equal "$(ls -A "$TESTDIR/canary")" "host-canary" "canary directory"
}

# neighbours: what is next to the store and the output (TESTDIR), and in the
# directory that holds TESTDIR, one name a line.
neighbours() {
    ls -A "$TESTDIR"
    echo ---
    local f
    for f in "$(dirname "$TESTDIR")"/* "$(dirname "$TESTDIR")"/.[!.]*; do
        [[ -e $f && $(basename "$f") != separate-stderr-* ]] && basename "$f"
    done
    return 0
}

# hostile_image NAME < SPEC: $TESTDIR/evil-NAME, a copy of the fixture's OCI
# layout whose tag "evil" is the base image plus one layer written by
# tests/fixture/mktar.py from SPEC (added with umoci, not kiln).
hostile_image() {
    local layout=$TESTDIR/evil-$1
    copy_oci_layout "$layout"
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 "$TESTDIR/evil-$1.tar"
    umoci raw add-layer --image "$layout:base" --tag evil "$TESTDIR/evil-$1.tar" \
        >"$TESTDIR/umoci.log" 2>&1 || {
        cat "$TESTDIR/umoci.log" >&2
        return 1
    }
    rm -f "$TESTDIR/evil-$1.tar"
}

# find_value VALUE PATH...: print every file under PATH... that holds VALUE
# (a fixed string), looking inside gzip and zstd compressed files too (layer
# blobs); nothing printed means not found.
find_value() {
    local value=$1 f magic
    shift
    while IFS= read -r -d '' f; do
        [[ -r $f ]] || continue
        magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
        case $magic in
        1f8b*) gzip -dc "$f" 2>/dev/null | grep -qaF -- "$value" && printf '%s (gzip)\n' "$f" ;;
        28b52ffd) zstd -dcq "$f" 2>/dev/null | grep -qaF -- "$value" && printf '%s (zstd)\n' "$f" ;;
        *) grep -qaF -- "$value" "$f" && printf '%s\n' "$f" ;;
        esac
    done < <(find "$@" -type f -print0 2>/dev/null)
    return 0
}

# assert_nowhere VALUE WHAT PATH...: VALUE is in no file under PATH...
assert_nowhere() {
    local value=$1 what=$2 found
    shift 2
    found=$(find_value "$value" "$@")
    if [[ -n $found ]]; then
        printf '# the %s was found in:\n%s\n' "$what" "$found" >&2
        return 1
    fi
}

# as_kilntest CMD...: CMD as the unprivileged user kilntest (with a subuid
# range), kiln copied to ROOTLESS_DIR first (KILN_BIN's directory may not be
# readable by that user).
as_kilntest() {
    if [[ ! -x $ROOTLESS_DIR/kiln ]]; then
        cp "$KILN_BIN" "$ROOTLESS_DIR/kiln"
        chmod 755 "$ROOTLESS_DIR/kiln"
        chown kilntest: "$ROOTLESS_DIR/kiln"
    fi
    runuser -u kilntest -- env -i PATH="$PATH" HOME="$ROOTLESS_DIR" \
        KILN_ROOT="$ROOTLESS_DIR/root" "$@"
}

need_kilntest() {
    [[ $(id -u) == 0 ]] || skip "creates the user kilntest: run as root"
    require_tool runuser useradd
    id kilntest >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh kilntest
    if [[ -z $(awk -F: '$1 == "kilntest"' /etc/subuid) ]]; then
        local n
        n=$(awk -F: 'BEGIN { m = 100000 } { e = $2 + $3; if (e > m) m = e } END { print m }' /etc/subuid /etc/subgid)
        echo "kilntest:$n:65536" >>/etc/subuid
        echo "kilntest:$n:65536" >>/etc/subgid
    fi
    SUBUID_START=$(awk -F: '$1 == "kilntest" { print $2; exit }' /etc/subuid)
    ROOTLESS_DIR=$(mktemp -d /tmp/kiln-safety.XXXXXX)
    chmod 755 "$ROOTLESS_DIR"
}

# --- the sandbox ----------------------------------------------------------------

@test "sandbox: RUN sees no host file: /etc/shadow, /proc/1/root, /proc/*/fd, the host's /tmp, docker's socket" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN cat /etc/shadow > /r-shadow 2>&1; \
    a=\$(ls -A /proc/1/root); b=\$(ls -A /); [ "\$a" = "\$b" ] && echo "\$a" | tr '\n' ' ' > /r-p1root; \
    cat /proc/1/root$CANARY > /r-canary 2>&1; cat $CANARY >> /r-canary 2>&1; \
    for p in /proc/[0-9]*; do for f in \$p/fd/*; do readlink \$f; done; done 2>/dev/null \
        | grep -vx /r-fds | sed 's/[0-9][0-9]*/N/g' | sort -u | tr '\n' ' ' > /r-fds; \
    ls -d /proc/[0-9]* | wc -l > /r-pids; \
    ls -la /var/run/docker.sock /run/docker.sock > /r-docker 2>&1; \
    ls -A /tmp | tr '\n' ' ' > /r-tmp; \
    hostname > /r-hostname
EOF
    build_oci
    assert_file r-shadow "cat: can't open '/etc/shadow': No such file or directory"
    # pid 1 is the step's own init: its root is the step's root
    assert_file r-p1root "bin dev etc home proc r-shadow root sbin sys tmp usr "
    assert_file r-canary "$(printf "cat: can't open '/proc/1/root%s': No such file or directory\ncat: can't open '%s': No such file or directory" "$CANARY" "$CANARY")"
    # every open fd of every process of the step: /dev/null, its pipes, its own output
    assert_file r-fds "/dev/null pipe:[N] "
    [[ $(cat "$ROOTFS/r-pids") -le 4 ]] || { echo "# the step sees $(cat "$ROOTFS/r-pids") processes" >&2; false; }
    assert_file_contains "$ROOTFS/r-docker" "ls: /var/run/docker.sock: No such file or directory"
    assert_file_contains "$ROOTFS/r-docker" "ls: /run/docker.sock: No such file or directory"
    assert_file r-tmp ""
    assert_file r-hostname kiln
    assert_nowhere "$CANARY_VALUE" "host canary" "$TESTDIR/oci" "$KILN_ROOT"
    canary_intact
}

@test "sandbox: mount, umount, unshare -m, mknod, /proc/sys and /sys writes all fail; no mount reaches the host" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN mkdir /mnt; r() { "\$@" > /dev/null 2>&1 && echo "\$1 WORKED" || echo "\$1 refused"; }; \
    { r mount -t tmpfs none /mnt; r mount --bind / /mnt; r mount -t proc proc /mnt; \
      r umount /proc; r umount -l /etc/hosts; r mount -o remount,rw /sys; \
      r unshare -m true; r unshare -U true; r mknod /dev/sda0 b 8 0; r mknod /mem c 1 1; \
      r sh -c 'echo 1 > /proc/sys/vm/drop_caches'; r sh -c 'echo x > /proc/sys/kernel/core_pattern'; \
      r touch /sys/kiln; r sh -c 'echo 1 > /sys/kernel/mm/ksm/run'; \
      r chroot /proc/1/root true; } > /r 2>&1; \
    grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr '\t' ' ' > /r-caps; \
    { echo 1 > /proc/sys/vm/drop_caches; } 2> /r-procsys || true
EOF
    build_oci
    assert_file r "$(printf '%s\n' 'mount refused' 'mount refused' 'mount refused' 'umount refused' \
        'umount refused' 'mount refused' 'unshare refused' 'unshare refused' 'mknod refused' \
        'mknod refused' \
        'sh refused' 'sh refused' 'touch refused' 'sh refused' 'chroot WORKED')"
    # Docker's default capability set: no CAP_SYS_ADMIN (bit 21), CAP_SYS_MODULE, CAP_SYS_RAWIO;
    # no_new_privs; a seccomp filter (mode 2, exec/sandbox/seccomp.c)
    assert_file r-caps "$(printf '%s\n' 'CapEff: 00000000a80425fb' 'CapBnd: 00000000a80425fb' 'NoNewPrivs: 1' 'Seccomp: 2')"
    assert_file r-procsys "/bin/sh: can't create /proc/sys/vm/drop_caches: Read-only file system"
    assert_no_path mem
    # no mount of the build (overlay, binds, proc) ever reached the host's namespace
    if grep -F -e "$TESTDIR" -e "$KILN_ROOT" /proc/self/mountinfo >&2; then
        echo "# a mount of the build is in the host's mount table" >&2
        false
    fi
}

@test "sandbox: the seccomp filter refuses a new user namespace, also through the i386 entry point" {
    require_tool gcc
    # unshare(CLONE_NEWUSER) through syscall(2) and through int 0x80 (the
    # i386 entry point, syscall 310), where a filter that only knew the
    # native numbers would let it through; and clone3 (ENOSYS: libc falls
    # back to clone)
    cat >probe.c <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void)
{
    long r = syscall(SYS_unshare, CLONE_NEWUSER);
    printf("unshare: %s\n", r == 0 ? "ok" : strerror(errno));
#if defined(__x86_64__)
    long r32;
    __asm__ volatile("int $0x80" : "=a"(r32) : "a"(310L), "b"((long)CLONE_NEWUSER) : "memory");
    printf("i386 unshare: %s\n", r32 == 0 ? "ok" : strerror((int)-r32));
#else
    printf("i386 unshare: %s\n", strerror(EPERM));
#endif
    r = syscall(SYS_clone3, NULL, 0);
    printf("clone3: %s\n", r == 0 ? "ok" : strerror(errno));
    return 0;
}
EOF
    gcc -static -O2 -o probe probe.c
    cat >Dockerfile <<EOF
FROM $BASE
COPY probe /probe
RUN /probe > /r
EOF
    build_oci
    assert_file r "$(printf '%s\n' 'unshare: Operation not permitted' \
        'i386 unshare: Operation not permitted' 'clone3: Function not implemented')"
}

@test "RUN --security=insecure needs --allow security.insecure; with it: every capability, no filter" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status | tr '\t' ' ' > /r; \
    unshare -U true && echo userns >> /r
EOF
    kbuild 1 -o "type=oci,dest=$TESTDIR/refused" .
    assert_stderr_contains "Dockerfile:2:1: error: RUN --security=insecure is not allowed: build with --allow security.insecure"
    [[ ! -e $TESTDIR/refused ]]
    build_oci --allow security.insecure
    # every capability there is, in the step's user namespace
    local all
    all=$(printf '%016x' $(((1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1)))
    assert_file r "$(printf '%s\n' "CapEff: $all" 'Seccomp: 0' 'userns')"
    kbuild 2 --allow network.host .
    assert_stderr_contains "--allow network.host: kiln's RUN steps may always use the host's network"
}

@test "sandbox: kill -9 -1 in a step finds nothing to kill; /etc/hosts and /etc/hostname are read-only" {
    sleep 300 &
    hostpid=$!
    kiln_register_pid "$hostpid"
    hosts_before=$(sha256sum </etc/hosts)
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo x >> /etc/hosts 2> /dev/null || echo hosts-refused > /r; echo x >> /etc/hostname 2> /dev/null || echo hostname-refused >> /r
RUN kill -9 -1 2> /kill || echo "exit \$?" >> /kill
EOF
    build_oci
    # every process but the caller and the step's init: none (ESRCH)
    assert_file kill "$(printf "sh: can't kill pid -1: No such process\nexit 1")"
    kill -0 "$hostpid" || { echo "# the step killed a host process" >&2; false; }
    assert_equal "$(sha256sum </etc/hosts)" "$hosts_before" "host /etc/hosts"
    assert_file r "$(printf 'hosts-refused\nhostname-refused')"
}

@test "sandbox: RUN --network=none cannot reach the fixture registry's port; the host network can" {
    port=${KILN_TEST_REGISTRY##*:}
    cat >Dockerfile <<EOF
FROM $BASE
RUN --network=none printf 'GET /v2/ HTTP/1.0\r\n\r\n' | nc -w 3 127.0.0.1 $port > /none 2>&1 || echo "exit \$?" >> /none
RUN printf 'GET /v2/ HTTP/1.0\r\n\r\n' | nc -w 3 127.0.0.1 $port | head -n 1 | tr -d '\r' > /host
EOF
    build_oci --network host
    assert_file none "$(printf 'nc: can'"'"'t connect to remote host (127.0.0.1): Connection refused\nexit 1')"
    assert_file host "HTTP/1.0 200 OK"
}

@test "RUN --mount=type=bind: sources that leave the context or the stage are refused or stay inside" {
    ln -s "$CANARY" hostlink
    ln -s "$(dirname "$CANARY")" hostdir
    for m in "source=../..,target=/m" "source=..,target=/m" "source=hostlink,target=/m" \
        "source=hostdir,target=/m"; do
        src=${m%%,*}
        cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=bind,$m cat /m/host-canary /m
EOF
        kbuild 1 .
        # the wording depends on which check sees it first: the cache key's
        # checksum ("COPY source '..' is outside of the build context") or
        # the mount itself ("bind mount at '/m': mount source '..' is outside its input")
        assert_stderr_contains "kiln: Dockerfile:2:1: error: "
        assert_stderr_contains " '${src#source=}' is outside"
        [[ $stderr != *"$CANARY_VALUE"* ]]
    done
    # from a stage: '/../../' is the stage's root, as in BuildKit
    cat >Dockerfile <<EOF
FROM $BASE AS st
RUN mkdir /sdir && echo st > /sdir/f && ln -s / /rootlink && ln -s /etc /etclink
FROM $BASE
RUN --mount=type=bind,from=st,source=/../../,target=/m ls -A /m | tr '\n' ' ' > /ls-st
RUN --mount=type=bind,from=st,source=/../../sdir/../../sdir,target=/m cat /m/f > /f-st
EOF
    build_oci
    assert_file ls-st "bin etc etclink home root rootlink sbin sdir tmp usr "
    assert_file f-st st
    # a symlink of the stage that points to / or /etc: refused, or followed
    # inside the stage (BuildKit's way); never the host's /etc or /tmp
    for src in /etclink /rootlink$(dirname "$CANARY"); do
        cat >Dockerfile <<EOF
FROM $BASE AS st
RUN ln -s / /rootlink && ln -s /etc /etclink
FROM $BASE
RUN --mount=type=bind,from=st,source=$src,target=/m ls -A /m | tr '\n' ' ' > /ls
EOF
        rm -rf "$TESTDIR/oci"
        run --separate-stderr "$KILN_BIN" build --progress plain -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/oci" .
        if [[ $status -eq 0 ]]; then
            unpack_oci "$TESTDIR/oci"
            assert_file ls "group passwd "
        else
            assert_stderr_contains "mount source '$src' is outside its input"
        fi
    done
    canary_intact
}

@test "RUN --mount=type=bind of the context does not show what .dockerignore excludes" {
    echo TOPSECRET >secret.env
    mkdir sub
    echo key >sub/key
    echo kept >kept
    printf 'secret.env\nsub\n' >.dockerignore
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=bind,target=/ctx ls -A /ctx | tr '\n' ' ' > /ls; cat /ctx/secret.env > /leak 2>/dev/null; true
COPY . /copied/
EOF
    build_oci
    assert_equal "$(ls -A "$ROOTFS/copied" | tr '\n' ' ')" ".dockerignore Dockerfile kept " "COPY . of the context"
    [[ ! -s $ROOTFS/leak ]] || { echo "the bind mount showed an excluded file" >&2; false; }
    assert_file ls ".dockerignore Dockerfile kept "
}

@test "RUN --mount=type=cache ids with '..' or absolute paths stay in the store; bad mount targets are refused" {
    esc=$TESTDIR/escaped-cache
    before=$(neighbours)
    cat >Dockerfile <<EOF
FROM $BASE
RUN --mount=type=cache,id=../../../../../../../../..$esc,target=/c touch /c/dotdot
RUN --mount=type=cache,id=$esc,target=/c touch /c/abs
RUN --mount=type=cache,target=/../../../../c2 touch /c2/target
EOF
    kbuild .
    [[ ! -e $esc ]] || { ls -la "$esc" >&2; false; }
    for f in dotdot abs target; do
        assert_equal "$(find "$KILN_ROOT/mounts" -name "$f" | wc -l)" 1 "cache file $f in the store"
    done
    extra=$(comm -13 <(printf '%s\n' "$before" | sort) <(neighbours | sort) | grep -vFx -e root || true)
    assert_equal "$extra" "" "new names next to the store"
    # a mount target under a file of the image
    printf 'FROM %s\nRUN --mount=type=tmpfs,target=/etc/passwd/x true\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: cannot set up the sandbox: cannot create mountpoint '/etc/passwd/x': Not a directory"
}

@test "WORKDIR, COPY and RUN through image symlinks to / and to host paths stay in the image" {
    echo data >f
    hostdir=$(dirname "$CANARY")
    before=$(neighbours)
    cat >Dockerfile <<EOF
FROM $BASE
RUN ln -s / /rootlink && ln -s $hostdir /hostlink && ln -s ../../../../../../../../.. /rel
WORKDIR /rootlink$hostdir/wd
RUN touch made-in-wd && pwd > /pwd1
WORKDIR /hostlink/wd2
RUN touch made2 && echo x > /hostlink/host-canary
COPY f /rel$hostdir/copied
COPY f /hostlink/copied2
EOF
    build_oci
    assert_file pwd1 "$hostdir/wd"
    assert_file "${hostdir#/}/wd/made-in-wd" ""
    assert_file "${hostdir#/}/wd2/made2" ""
    assert_file "${hostdir#/}/host-canary" x
    assert_file "${hostdir#/}/copied" data
    assert_file "${hostdir#/}/copied2" data
    assert_equal "$(readlink "$ROOTFS/hostlink")" "$hostdir" "symlink kept as written"
    canary_intact
    # nothing but kiln's own outputs appeared next to the store
    extra=$(comm -13 <(printf '%s\n' "$before" | sort) <(neighbours | sort) | grep -vFx -e bundle -e oci -e config.json -e umoci.log -e root || true)
    assert_equal "$extra" "" "new names next to the store"
}

# --- hostile layers, archives and COPY sources --------------------------------------

@test "hostile base layers: '..' entries, hard links out, links behind symlinks are refused; absolute names and symlinked parents stay in the root" {
    esc=$TESTDIR/escaped
    up=../../../../../../../../../../../../../../../..
    hostile_image dotdot <<EOF
file ok data=ok
file $up$esc-dotdot data=x
EOF
    hostile_image hlabs <<<"hardlink hl /etc/passwd"
    hostile_image hlrel <<<"hardlink hl $up/etc/passwd"
    hostile_image hlsym <<EOF
symlink esc /etc
hardlink hl esc/passwd
EOF
    hostile_image etcsym <<EOF
symlink etc /etc
file etc/x data=pwned
EOF
    printf 'FROM base\nRUN cat /etc/passwd > /seen\n' >Dockerfile
    before=$(neighbours)
    declare -A want=(
        [dotdot]="entry '$up$esc-dotdot' escapes the layer root"
        [hlabs]="entry 'hl' is a hard link to '/etc/passwd', which does not exist"
        [hlrel]="entry 'hl' is a hard link to '$up/etc/passwd', outside the layer"
        [hlsym]="entry 'hl' is a hard link to 'esc/passwd', behind a symlink"
        [etcsym]="entry 'etc/x' is behind a symlink or a non-directory"
    )
    for n in dotdot hlabs hlrel hlsym etcsym; do
        kbuild 1 --build-context "base=oci-layout://$TESTDIR/evil-$n:evil" .
        assert_stderr_contains "kiln: Dockerfile:2:1: error: layer 'sha256:"
        assert_stderr_contains "${want[$n]}"
        [[ -z $(ls -A "$KILN_ROOT/tmp" 2>/dev/null) ]] || { ls -laR "$KILN_ROOT/tmp" >&2; false; }
    done
    # Docker's rule: absolute names are made relative, a relative symlink
    # that climbs stops at the root
    hostile_image contained <<EOF
file $esc-abs data=abs
symlink up $up
file up$esc-rel data=rel
EOF
    before=$(neighbours)
    build_oci --build-context "base=oci-layout://$TESTDIR/evil-contained:evil"
    assert_file "${esc#/}-abs" abs
    assert_file "${esc#/}-rel" rel
    assert_file seen "$(cat "$ROOTFS/etc/passwd")"
    assert_file_contains "$ROOTFS/seen" "kiln:x:1000:1000"
    [[ ! -e $esc-abs && ! -e $esc-rel && ! -e $esc-dotdot && ! -e /etc/x ]]
    extra=$(comm -13 <(printf '%s\n' "$before" | sort) <(neighbours | sort) |
        grep -vFx -e bundle -e oci -e config.json -e umoci.log -e root -e Dockerfile || true)
    assert_equal "$extra" "" "new names next to the store"
    canary_intact
}

@test "hostile base layer: overlay xattrs (redirect, metacopy, origin) are dropped, other xattrs kept" {
    hostile_image xattr <<'EOF'
dir d xattr.user.overlay.redirect=/etc
dir e xattr.trusted.overlay.redirect=/etc xattr.user.overlay.metacopy=y
file d/f data=x xattr.user.overlay.origin=abc xattr.user.kiln=ok
EOF
    printf 'FROM base\nRUN ls -A /d /e | tr "\\n" " " > /ls\n' >Dockerfile
    build_oci --build-context "base=oci-layout://$TESTDIR/evil-xattr:evil"
    # the redirect was not followed: /d and /e are the layer's own (empty) dirs
    assert_file ls "/d: f  /e: "
    layer=$(dirname "$(find "$KILN_ROOT/layers" -path '*/d/f' | head -n 1)")
    layer=$(dirname "$layer")
    run "$KILN_PYTHON" -c '
import os, sys
for p in ("d", "e", "d/f"):
    q = os.path.join(sys.argv[1], p)
    print(p, sorted(os.listxattr(q, follow_symlinks=False)))' "$layer"
    assert_equal "$output" "$(printf '%s\n' "d []" "e []" "d/f ['user.kiln']")" "xattrs in the store"
}

@test "hostile base layer: device nodes cannot be opened by RUN, nor reached by another host user in the store" {
    # a block device of the host's root disk and /dev/kmsg, world-writable
    read -r major minor < <(stat -c '%Hr %Lr' "$(findmnt -no SOURCE / 2>/dev/null)" 2>/dev/null) || true
    [[ -n ${major:-} && $major != 0 ]] || { major=8 && minor=0; }
    hostile_image dev <<EOF
dir d mode=0755
blockdev d/disk $major $minor mode=0666
chardev d/kmsg 1 11 mode=0666
EOF
    cat >Dockerfile <<'EOF'
FROM base
RUN { head -c 1 /d/disk > /dev/null && echo disk-READ || echo disk-refused; \
      echo x > /d/kmsg && echo kmsg-WRITTEN || echo kmsg-refused; } > /r 2>/dev/null
EOF
    build_oci --build-context "base=oci-layout://$TESTDIR/evil-dev:evil"
    assert_file r "$(printf 'disk-refused\nkmsg-refused')"
    if [[ $(id -u) == 0 ]]; then
        node=$(find "$KILN_ROOT/layers" -name disk -type b | head -n 1)
        [[ -n $node ]] || { echo "# no device node in the store (kept as root, as Docker does)" >&2; false; }
        # the layer directory is private to the store's owner: nobody cannot reach it
        run runuser -u nobody -- head -c 1 "$node"
        assert_equal "$status" 1 "exit status of nobody's read"
        [[ $output == *"Permission denied"* ]] || { echo "# $output" >&2; false; }
    fi
}

@test "ADD of a local tar with hostile entries: refused or contained, never outside" {
    esc=$TESTDIR/escaped
    up=../../../../../../../../../../../../../../../..
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 dotdot.tar <<<"file $up$esc-add data=x"
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 hl.tar <<<"hardlink hl /etc/passwd"
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 dev.tar <<<"chardev mem 1 1"
    for t in dotdot hl dev; do
        printf 'FROM %s\nADD %s.tar /add/\n' "$BASE" "$t" >Dockerfile
        kbuild 1 -o "type=oci,dest=$TESTDIR/oci-$t" .
        [[ ! -e $TESTDIR/oci-$t ]] || { echo "# a failed build wrote $TESTDIR/oci-$t" >&2; false; }
    done
    printf 'FROM %s\nADD dotdot.tar /add/\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: layer 'dotdot.tar': entry '$up$esc-add' escapes the layer root"
    printf 'FROM %s\nADD hl.tar /add/\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: layer 'hl.tar': entry 'hl' is a hard link to '/etc/passwd', which does not exist"
    printf 'FROM %s\nADD dev.tar /add/\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: layer 'dev.tar': entry 'mem' is a device node, which is not allowed here"
    # absolute names and climbing symlinks land inside the destination
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 contained.tar <<EOF
file $esc-abs data=abs
symlink up $up
file up$esc-rel data=rel
EOF
    printf 'FROM %s\nADD contained.tar /add/\n' "$BASE" >Dockerfile
    build_oci
    assert_file "add${esc}-abs" abs
    assert_file "add${esc}-rel" rel
    assert_equal "$(readlink "$ROOTFS/add/up")" "$up" "climbing symlink kept as written"
    [[ ! -e $esc-add && ! -e $esc-abs && ! -e $esc-rel ]]
    canary_intact
}

@test "ADD of a valid tar whose extraction fails is an error, not a copy of the archive" {
    # an absolute symlink to a directory the destination does not have, then
    # a file through it: Docker extracts it inside the root (or fails); it
    # must never be added as the .tar file itself
    "$KILN_PYTHON" "$KILN_FIXTURE_DIR/mktar.py" --mtime 0 sym.tar <<EOF
symlink esc /nonexistent-dir
file esc/x data=x
EOF
    printf 'FROM %s\nADD sym.tar /add/\n' "$BASE" >Dockerfile
    # a valid tar that cannot be extracted fails the build (it is not
    # "not an archive", which ADD would copy as a file)
    run_kiln 1 build --progress plain -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/oci" .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: layer 'sym.tar': entry 'esc/x'"
    [[ ! -e $TESTDIR/oci ]]
}

@test "COPY: sources outside the context, symlinks to host files, '/../' in a stage never read the host" {
    echo ok >f
    cp "$CANARY" "$TESTDIR/outside"
    ln -s "$CANARY" canarylink
    ln -s "$(dirname "$CANARY")" canarydir
    ln -s ../outside uplink
    mkfifo fifo
    for src in ../outside canarylink canarydir/host-canary uplink; do
        printf 'FROM %s\nCOPY %s /x\n' "$BASE" "$src" >Dockerfile
        kbuild 1 .
        assert_stderr_contains "not found in build context"
    done
    printf 'FROM %s\nCOPY ../outside /x\n' "$BASE" >Dockerfile
    kbuild 1 .
    assert_stderr_contains "kiln: Dockerfile:2:1: error: COPY source '/outside' not found in build context"
    # the whole context: links are copied as links, never the host files' bytes
    printf 'FROM %s\nCOPY . /ctx/\n' "$BASE" >Dockerfile
    build_oci
    assert_equal "$(readlink "$ROOTFS/ctx/canarylink")" "$CANARY" "link copied"
    assert_equal "$(readlink "$ROOTFS/ctx/uplink")" "../outside" "relative link copied"
    # a fifo is copied as a fifo, never opened (no hang)
    assert_equal "$(stat -c %F "$ROOTFS/ctx/fifo")" fifo "type of the copied fifo"
    assert_nowhere "$CANARY_VALUE" "host canary" "$TESTDIR/oci" "$ROOTFS" "$KILN_ROOT"
    # from a stage: '/../../../etc/passwd' is the stage's /etc/passwd, and a
    # stage's absolute symlink resolves inside the stage
    cat >Dockerfile <<EOF
FROM $BASE AS st
RUN ln -s / /rootlink && ln -s $CANARY /hostlink
FROM $BASE
COPY --from=st /../../../etc/passwd /passwd
EOF
    build_oci
    assert_equal "$(cat "$ROOTFS/passwd")" "$(cat "$ROOTFS/etc/passwd")" "stage passwd"
    assert_file_contains "$ROOTFS/passwd" "kiln:x:1000:1000"
    for src in "/rootlink$CANARY" /hostlink; do
        sed -i '$d' Dockerfile
        echo "COPY --from=st $src /x" >>Dockerfile
        kbuild 1 .
        assert_stderr_contains "kiln: Dockerfile:4:1: error: COPY source '$src' not found in stage"
    done
    canary_intact
}

@test "an edited -o type=local rootfs does not change the store (no shared inodes)" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo a > /a
EOF
    kbuild -o "type=local,dest=$TESTDIR/rootfs1" .
    # what a user does with an exported rootfs: edit it in place
    echo 'evil:x:0:0::/:/bin/sh' >>"$TESTDIR/rootfs1/etc/passwd"
    echo b >>"$TESTDIR/rootfs1/a"
    chmod 4755 "$TESTDIR/rootfs1/bin/busybox"
    cat >Dockerfile <<EOF
FROM $BASE
RUN { tail -n 1 /etc/passwd; stat -c %a /bin/busybox; } > /seen
EOF
    build_oci
    assert_file seen "$(printf 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n755')"
}

@test "--isolation chroot: a RUN that edits base files in place does not change the store for later builds" {
    [[ $(id -u) == 0 ]] || skip "chroot isolation needs root here"
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo evil-chroot >> /etc/passwd && chmod 4777 /bin/busybox && echo x > /etc/group
EOF
    kbuild --isolation chroot -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/chroot-oci" .
    # the step's own image has the edits
    unpack_oci "$TESTDIR/chroot-oci"
    assert_file_contains "$ROOTFS/etc/passwd" evil-chroot
    assert_equal "$(stat_of bin/busybox)" "4777 0:0" "busybox after chmod"
    cat >Dockerfile <<EOF
FROM $BASE
RUN { tail -n 1 /etc/passwd; stat -c %a /bin/busybox; cat /etc/group | wc -l; } > /seen
EOF
    build_oci --isolation userns
    assert_file seen "$(printf 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n755\n3')"
}

# --- credentials and secrets ----------------------------------------------------

@test "registry credentials appear in no log, progress, error, trace, store entry or image blob" {
    write_docker_config "$KILN_TEST_REGISTRY_TLS" "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS" \
        "$KILN_TEST_REGISTRY_TOKEN" "$KILN_TEST_TOKEN_USER" "$KILN_TEST_TOKEN_PASS"
    tlsrepo=$KILN_TEST_REGISTRY_TLS/$(unique_repo cred)
    tokrepo=$KILN_TEST_REGISTRY_TOKEN/$(unique_repo cred)
    cat >Dockerfile <<EOF
FROM $KILN_TEST_REGISTRY_TLS/kiln/base:latest AS a
RUN echo a > /a
FROM $KILN_TEST_REGISTRY_TOKEN/kiln/layered:latest
COPY --from=a /a /a
EOF
    export KILN_LOG=trace
    for progress in plain json; do
        run_kiln build --progress "$progress" --registry-ca "$KILN_TEST_TLS_CA" \
            --trace "$TESTDIR/trace-$progress.json" -t "$tlsrepo:$progress" -t "$tokrepo:$progress" \
            -o "type=oci,dest=$TESTDIR/oci-$progress" --push .
        printf '%s\n' "$output" >"$TESTDIR/out-$progress"
        printf '%s\n' "$stderr" >"$TESTDIR/err-$progress"
    done
    # the trace log did see the authenticated exchanges (so the test can fail)
    assert_file_contains "$TESTDIR/err-plain" "Authorization: Basic <redacted>"
    assert_file_contains "$TESTDIR/err-plain" "Authorization: Bearer <redacted>"
    assert_file_contains "$TESTDIR/err-json" '"event":"done"'
    # wrong passwords: the error names the registry, not the password
    wrong=wrong-pass-$RANDOM$RANDOM
    write_docker_config "$KILN_TEST_REGISTRY_TLS" "$KILN_TEST_TLS_USER" "$wrong" \
        "$KILN_TEST_REGISTRY_TOKEN" "$KILN_TEST_TOKEN_USER" "$wrong"
    for reg in "$KILN_TEST_REGISTRY_TLS" "$KILN_TEST_REGISTRY_TOKEN"; do
        printf 'FROM %s/kiln/base:latest\n' "$reg" >"$TESTDIR/Dockerfile.wrong"
        run_kiln 1 build --progress json --registry-ca "$KILN_TEST_TLS_CA" -f "$TESTDIR/Dockerfile.wrong" .
        assert_stderr_contains "kiln: $TESTDIR/Dockerfile.wrong:1:1: error: cannot resolve base image '$reg/kiln/base:latest': authentication to $reg failed: invalid username or password"
        printf '%s\n%s\n' "$output" "$stderr" >"$TESTDIR/err-wrong-${reg##*:}"
    done
    unset KILN_LOG
    # the images pulled back with skopeo: their configs and history too
    for progress in plain json; do
        skopeo copy -q --src-creds "$KILN_TEST_TLS_USER:$KILN_TEST_TLS_PASS" --src-cert-dir "$KILN_TEST_TLS_CERT_DIR" \
            "docker://$tlsrepo:$progress" "oci:$TESTDIR/pulled-tls:$progress"
    done
    for secret in "$KILN_TEST_TLS_PASS" "$KILN_TEST_TOKEN_PASS" "$wrong" \
        "$(printf '%s:%s' "$KILN_TEST_TLS_USER" "$KILN_TEST_TLS_PASS" | base64 -w0)" \
        "$(printf '%s:%s' "$KILN_TEST_TOKEN_USER" "$KILN_TEST_TOKEN_PASS" | base64 -w0)" \
        "$(printf '%s:%s' "$KILN_TEST_TLS_USER" "$wrong" | base64 -w0)"; do
        rm -f "$DOCKER_CONFIG/config.json"
        assert_nowhere "$secret" "credential" "$TESTDIR" "$KILN_ROOT"
    done
    # a bearer token is a JWT: base64url('{"') twice, dot-separated
    if grep -rlaE 'eyJ[A-Za-z0-9_-]{8,}\.eyJ' "$TESTDIR"/{out,err,trace}-* "$TESTDIR"/err-wrong-* "$KILN_ROOT"; then
        echo "# a bearer token was written out" >&2
        false
    fi
}

@test "secrets (file, env, env= in the mount) appear in no layer, config, history, cache entry, progress or trace" {
    value=kiln-secret-$RANDOM$RANDOM$RANDOM
    printf '%s' "$value" >"$TESTDIR/secret.txt"
    export KILN_SAFETY_SECRET=env-$value
    # the Dockerfile never names the value and no step prints it
    printf 'FROM %s\n' "$BASE" >Dockerfile
    cat >>Dockerfile <<'EOF'
ARG A=1
RUN --mount=type=secret,id=s case "$(cat /run/secrets/s)" in kiln-secret-*) echo file-ok > /file;; esac
RUN --mount=type=secret,id=e,env=SEC case "$SEC" in env-kiln-secret-*) echo env-ok > /env;; esac
RUN --mount=type=secret,id=e,target=/root/.tok,required=true cp /root/.tok /tmp/copy && rm /tmp/copy && echo tgt-ok > /tgt
EOF
    export KILN_LOG=trace
    for progress in plain json; do
        rm -rf "$TESTDIR/oci"
        run_kiln build --progress "$progress" --trace "$TESTDIR/trace-$progress.json" \
            --secret "id=s,src=$TESTDIR/secret.txt" --secret "id=e,env=KILN_SAFETY_SECRET" \
            --build-arg "A=$progress" --compression gzip --metadata-file "$TESTDIR/meta-$progress.json" \
            -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/oci" -o "type=docker,dest=$TESTDIR/docker-$progress.tar" .
        printf '%s\n' "$output" >"$TESTDIR/out-$progress"
        printf '%s\n' "$stderr" >"$TESTDIR/err-$progress"
        cp -R "$TESTDIR/oci" "$TESTDIR/oci-$progress"
    done
    unset KILN_LOG
    # what is scanned below did record the steps (so the scan can fail)
    assert_file_contains "$TESTDIR/trace-json.json" "RUN --mount=type=secret,id=e,env=SEC"
    assert_file_contains "$TESTDIR/err-json" "RUN --mount=type=secret,id=s"
    assert_file_contains "$TESTDIR/err-plain" "kiln: trace:"
    unpack_oci "$TESTDIR/oci"
    assert_file file file-ok
    assert_file env env-ok
    assert_file tgt tgt-ok
    assert_no_path run/secrets/s
    assert_no_path root/.tok
    jq -e '.history | length > 3' "$TESTDIR/config.json" >/dev/null
    mkdir "$TESTDIR/docker-x"
    tar -xf "$TESTDIR/docker-plain.tar" -C "$TESTDIR/docker-x"
    rm -f "$TESTDIR/secret.txt"
    for v in "$value" "$(printf '%s' "$value" | base64 -w0)" "$(printf '%s' "$value" | sha256sum | cut -c1-64)"; do
        assert_nowhere "$v" "secret" "$TESTDIR" "$KILN_ROOT"
    done
    # the cache key does not hold the secret: another value is a cache hit
    printf other >"$TESTDIR/secret.txt"
    export KILN_SAFETY_SECRET=env-kiln-secret-other
    kbuild --secret "id=s,src=$TESTDIR/secret.txt" \
        --secret "id=e,env=KILN_SAFETY_SECRET" --build-arg A=plain .
    assert_equal "$(step_states | grep -c '^CACHED .*RUN --mount=type=secret')" 3 "cached secret steps"
}

# --- failures leave nothing behind ------------------------------------------------

# store_clean: no temporary file in the store, and every blob's name is its digest.
store_clean() {
    local b
    [[ -z $(ls -A "$KILN_ROOT/tmp" 2>/dev/null) ]] || {
        echo "# left in the store's tmp:" >&2
        find "$KILN_ROOT/tmp" >&2
        return 1
    }
    for b in "$KILN_ROOT"/blobs/sha256/* "$@"; do
        [[ -f $b ]] || continue
        assert_equal "$(sha256sum <"$b" | cut -c1-64)" "$(basename "$b")" "digest of $b"
    done
}

@test "a failing RUN leaves no output and no temporary in the store" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN echo a > /a
RUN head -c 5000000 /dev/urandom > /b && exit 7
EOF
    for o in "type=oci,dest=$TESTDIR/out-oci" "type=oci,dest=$TESTDIR/out.tar" \
        "type=docker,dest=$TESTDIR/out-docker.tar" "type=local,dest=$TESTDIR/out-local"; do
        kbuild 1 -t kiln-test/img:latest -o "$o" .
        assert_stderr_contains 'kiln: Dockerfile:3:1: error: process "/bin/sh -c head -c 5000000 /dev/urandom > /b && exit 7" did not complete successfully: exit code: 7'
    done
    assert_equal "$(find "$TESTDIR" -maxdepth 1 -name 'out*' | wc -l)" 0 "outputs written"
    store_clean
}

@test "an export that runs out of space leaves nothing partial (oci dir, oci tar, docker tar)" {
    [[ $(id -u) == 0 ]] || skip "mounts a small tmpfs: run as root"
    SMALLFS=$TESTDIR/small
    mkdir "$SMALLFS"
    mount -t tmpfs -o size=2m tmpfs "$SMALLFS"
    cat >Dockerfile <<EOF
FROM $BASE
RUN head -c 5000000 /dev/urandom > /b
EOF
    kbuild 1 -t kiln-test/img:latest -o "type=oci,dest=$SMALLFS/oci" .
    assert_stderr_contains "No space left on device"
    kbuild 1 -t kiln-test/img:latest -o "type=oci,dest=$SMALLFS/oci.tar" .
    assert_stderr_contains "kiln: error: cannot write '$SMALLFS/oci.tar'"
    kbuild 1 -t kiln-test/img:latest -o "type=docker,dest=$SMALLFS/d.tar" .
    assert_stderr_contains "kiln: error: cannot write '$SMALLFS/d.tar'"
    assert_equal "$(ls -A "$SMALLFS")" "" "left in the destination's filesystem"
    store_clean
    # a destination under a file
    touch "$TESTDIR/afile"
    kbuild 1 -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/afile/oci" .
    assert_stderr_contains "kiln: error: cannot stat '$TESTDIR/afile/oci': Not a directory"
}

@test "an export of type=local that runs out of space leaves nothing partial" {
    [[ $(id -u) == 0 ]] || skip "mounts a small tmpfs: run as root"
    SMALLFS=$TESTDIR/small
    mkdir "$SMALLFS"
    mount -t tmpfs -o size=2m tmpfs "$SMALLFS"
    cat >Dockerfile <<EOF
FROM $BASE
RUN head -c 5000000 /dev/urandom > /b
EOF
    kbuild 1 -t kiln-test/img:latest -o "type=local,dest=$SMALLFS/rootfs" .
    assert_stderr_contains "kiln: error: cannot export the root filesystem to '$SMALLFS/rootfs': cannot flatten into '$SMALLFS/rootfs.kiln-"
    assert_stderr_contains "No space left on device"
    store_clean
    assert_equal "$(ls -A "$SMALLFS")" "" "what the failed export left in its file system"
}

@test "kill -9 while a 300 MB layer is packed: nothing partial in the output, the next build succeeds" {
    cat >Dockerfile <<EOF
FROM $BASE
RUN head -c 300000000 /dev/urandom > /big && echo WRITTEN-BIG-\$((6*7))
EOF
    log=$TESTDIR/kill.log
    "$KILN_BIN" build --progress plain -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/oci" . >"$log" 2>&1 &
    pid=$!
    kiln_register_pid "$pid"
    for ((i = 0; i < 1200; i++)); do
        grep -qE '^#[0-9]+ [0-9.]+ WRITTEN-BIG-42' "$log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    grep -qE '^#[0-9]+ [0-9.]+ WRITTEN-BIG-42' "$log" || { cat "$log" >&2; false; }
    # the step is done: kiln is now diffing, packing and compressing
    for ((i = 0; i < 200; i++)); do
        [[ -n $(find "$KILN_ROOT/tmp" -maxdepth 2 -name 'blob-*' -size +1M 2>/dev/null) ]] && break
        sleep 0.05
    done
    [[ -n $(find "$KILN_ROOT/tmp" -maxdepth 2 -name 'blob-*' -size +1M) ]] || { echo "# no layer blob being written" >&2; cat "$log" >&2; false; }
    kill -9 "$pid"
    wait "$pid" || true
    # nothing in the output; no process of the step is left
    [[ ! -e $TESTDIR/oci ]] || { find "$TESTDIR/oci" >&2; false; }
    for p in /proc/[0-9]*; do
        if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q 'WRITTEN-BIG-\$'; then
            echo "# left running: $p" >&2
            false
        fi
    done
    # a stray temporary directory of the dead kiln, which the next open removes
    [[ -n $(ls -A "$KILN_ROOT/tmp") ]]
    for b in "$KILN_ROOT"/blobs/sha256/*; do
        assert_equal "$(sha256sum <"$b" | cut -c1-64)" "$(basename "$b")" "digest of $b"
    done
    kbuild -t kiln-test/img:latest -o "type=oci,dest=$TESTDIR/oci" .
    store_clean "$TESTDIR"/oci/blobs/sha256/*
    assert_equal "$(ls -A "$TESTDIR/oci" | tr '\n' ' ')" "blobs index.json oci-layout " "output layout"
    unpack_oci "$TESTDIR/oci"
    assert_equal "$(stat -c %s "$ROOTFS/big")" 300000000 "size of /big"
}

# --- rootless ---------------------------------------------------------------------

@test "rootless: RUN's root is the user on the host, uid 1000 a subuid; nothing root-owned is written" {
    need_kilntest
    mkdir -p "$ROOTLESS_DIR/ctx"
    echo rootfile >"$ROOTLESS_DIR/ctx/rootowned"
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE
RUN --mount=type=cache,target=/c,id=rl touch /c/by-root && mkdir -p /c/d && touch /c/d/f && chown 1000:1000 /c/d/f
RUN --mount=type=bind,target=/ctx,rw { echo changed > /ctx/rootowned; echo new > /ctx/newfile; } 2>/dev/null; true
RUN touch /made && mkdir /u1000 && chown 1000:1000 /u1000 && echo RL-RUNNING && sleep 2
EOF
    chown -R kilntest: "$ROOTLESS_DIR"
    chown root:root "$ROOTLESS_DIR/ctx/rootowned"
    runuser -u kilntest -- touch "$ROOTLESS_DIR/stamp"
    as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain -t r:latest \
        -o "type=oci,dest=$ROOTLESS_DIR/oci" "$ROOTLESS_DIR/ctx" >"$TESTDIR/rootless.log" 2>&1 &
    pid=$!
    kiln_register_pid "$pid"
    for ((i = 0; i < 600; i++)); do
        grep -qE '^#[0-9]+ [0-9.]+ RL-RUNNING' "$TESTDIR/rootless.log" && break
        sleep 0.05
    done
    # while the step runs: its writable layer, seen from the host
    upper=$(find "$ROOTLESS_DIR/root/tmp" -type d -name upper | head -n 1)
    [[ -n $upper ]] || { cat "$TESTDIR/rootless.log" >&2; false; }
    assert_equal "$(stat -c %U "$upper/made")" kilntest "owner of a file made by root in RUN"
    assert_equal "$(stat -c %u:%g "$upper/u1000")" "$((SUBUID_START + 999)):$((SUBUID_START + 999))" "uid 1000 of RUN"
    wait "$pid" || { cat "$TESTDIR/rootless.log" >&2; false; }
    cache=$(dirname "$(find "$ROOTLESS_DIR/root" -name by-root | head -n 1)")
    assert_equal "$(stat -c %U "$cache/by-root")" kilntest "cache mount file owner"
    assert_equal "$(stat -c %u "$cache/d/f")" "$((SUBUID_START + 999))" "cache mount uid 1000"
    # the root-owned context file is untouched; the rw bind wrote nothing back
    assert_equal "$(cat "$ROOTLESS_DIR/ctx/rootowned")" rootfile "root's file"
    assert_equal "$(ls -A "$ROOTLESS_DIR/ctx" | tr '\n' ' ')" "Dockerfile rootowned " "context"
    # root owns only what root made before the build
    assert_equal "$(find "$ROOTLESS_DIR" -user root | sort | tr '\n' ' ')" "$ROOTLESS_DIR/ctx/rootowned " "root-owned files"
    # every file is the user's or in its subuid range
    bad=$(find "$ROOTLESS_DIR" -newer "$ROOTLESS_DIR/stamp" ! -user kilntest \
        -printf '%u %p\n' | awk -v lo="$SUBUID_START" '$1 !~ /^[0-9]+$/ || $1 < lo || $1 >= lo + 65536' | head)
    assert_equal "$bad" "" "files of other owners"
    unpack_oci "$ROOTLESS_DIR/oci"
    assert_equal "$(stat_of made)" "644 0:0" "made by RUN, in the image"
    assert_equal "$(stat_of u1000)" "755 1000:1000" "chowned by RUN, in the image"
}

@test "rootless: a hostile base layer cannot escape, and a RUN cannot write a root-owned host file" {
    need_kilntest
    esc=$ROOTLESS_DIR/escaped
    up=../../../../../../../../../../../../../../../..
    hostile_image dotdot <<<"file $up$esc data=x"
    cp -R "$TESTDIR/evil-dotdot" "$ROOTLESS_DIR/evil"
    mkdir -p "$ROOTLESS_DIR/ctx"
    printf 'root-only\n' >"$ROOTLESS_DIR/ctx/root-file"
    printf 'FROM base\nRUN true\n' >"$ROOTLESS_DIR/ctx/Dockerfile"
    chown -R kilntest: "$ROOTLESS_DIR"
    chown root:root "$ROOTLESS_DIR/ctx/root-file"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain \
        --build-context "base=oci-layout://$ROOTLESS_DIR/evil:evil" "$ROOTLESS_DIR/ctx"
    assert_equal "$status" 1 "exit status"
    [[ $output == *"escapes the layer root"* ]] || { printf '%s\n' "$output" >&2; false; }
    [[ ! -e $esc ]]
    # a RUN that tries every way to reach a root-owned file of the host
    cat >"$ROOTLESS_DIR/ctx/Dockerfile" <<EOF
FROM $BASE
RUN --mount=type=bind,target=/ctx,rw echo x > /proc/1/root$ROOTLESS_DIR/ctx/root-file 2>/dev/null; \
    echo x > $ROOTLESS_DIR/ctx/root-file 2>/dev/null; echo x > /ctx/root-file 2>/dev/null; \
    chmod 666 /ctx/root-file 2>/dev/null; chown 0 /ctx/Dockerfile 2>/dev/null; echo tried
EOF
    chown kilntest: "$ROOTLESS_DIR/ctx/Dockerfile"
    run as_kilntest "$ROOTLESS_DIR/kiln" build --progress plain "$ROOTLESS_DIR/ctx"
    [[ $status -eq 0 ]] || { printf '%s\n' "$output" >&2; false; }
    [[ $output == *"tried"* ]] || { printf '%s\n' "$output" >&2; false; }
    assert_equal "$(cat "$ROOTLESS_DIR/ctx/root-file")" root-only "root's file"
    assert_equal "$(stat -c '%U %a' "$ROOTLESS_DIR/ctx/root-file")" "root 644" "owner and mode of root's file"
    assert_equal "$(stat -c %U "$ROOTLESS_DIR/ctx/Dockerfile")" kilntest "owner of the Dockerfile"
}
