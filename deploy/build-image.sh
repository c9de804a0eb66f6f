#!/bin/sh
# build-image.sh [--kiln KILN] [--base REF] [KILN BUILD OPTIONS...]
#
# Builds the kiln builder image (deploy/Dockerfile) with kiln itself, on a
# machine without internet: instead of compiling in a `FROM debian:12`
# stage, it stages KILN (default: `kiln` on the PATH) and the shared
# libraries it links under DIR/out (deploy/stage-rootfs.sh) and hands DIR
# to the Dockerfile as `--build-context build=DIR`, which replaces the
# `build` stage. REF is the busybox image the final stage starts from
# (BASE_IMAGE; default busybox:1.36, e.g. a local registry's copy or
# oci-layout://DIR:TAG). Every other option goes to `kiln build`, e.g.
#   deploy/build-image.sh --base 127.0.0.1:5000/library/busybox:latest \
#       -t 127.0.0.1:5000/kiln/kiln:dev --push -o type=docker,dest=kiln.tar
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
kiln=$(command -v kiln || true)
base=busybox:1.36
while [ $# -gt 0 ]; do
    case $1 in
        --kiln) kiln=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        *) break ;;
    esac
done
if [ -z "$kiln" ] || [ ! -x "$kiln" ]; then
    echo "build-image.sh: no kiln binary (give --kiln PATH)" >&2
    exit 2
fi
stage=$(mktemp -d "${TMPDIR:-/tmp}/kiln-image-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# the layout of the build stage: what it made is under /out
"$here/stage-rootfs.sh" "$kiln" "$stage/out"
base_args="--build-arg BASE_IMAGE=$base"
case $base in
    oci-layout://*)
        # a layout is a named context, not a reference FROM can name
        base_args="--build-arg BASE_IMAGE=kiln-base --build-context kiln-base=$base" ;;
esac
# shellcheck disable=SC2086 # base_args is split on purpose
"$kiln" build -f "$here/Dockerfile" --build-context "build=$stage" $base_args "$@" "$src"
