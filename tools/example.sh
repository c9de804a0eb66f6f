#!/usr/bin/env bash
# Builds the example multi-stage image of tools/example offline, from the
# test fixture's busybox image (an OCI layout made with umoci and skopeo),
# into BUILD_DIR/example (an OCI layout) and BUILD_DIR/example-rootfs.
#   tools/example.sh [BUILD_DIR]     (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
kiln="$build/kiln"
"$here/../tests/fixture/build-images.sh" "$build/fixture-images" >/dev/null
rm -rf "$build/example" "$build/example-rootfs"
"$kiln" build --progress plain \
  --build-context "base=oci-layout://$build/fixture-images/oci:base" \
  -t kiln/example:latest \
  -o "type=oci,dest=$build/example" \
  -o "type=local,dest=$build/example-rootfs" \
  "$here/example"
echo
echo "image:  $build/example (OCI layout, tag latest)"
echo "rootfs: $build/example-rootfs"
printf 'greeting: '; cat "$build/example-rootfs/app/greeting.txt"
printf 'check:    '; cat "$build/example-rootfs/app/check.txt"
