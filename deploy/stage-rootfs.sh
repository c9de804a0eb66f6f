#!/bin/sh
# stage-rootfs.sh KILN OUTDIR: lays out what the builder image needs under
# OUTDIR, at the paths it has on this machine: KILN as
# /usr/local/bin/kiln, every shared library `ldd KILN` lists (symlinks
# resolved: the file is copied under the name the loader looks for), the
# dynamic loader, and the CA bundle. Used by deploy/Dockerfile's build stage
# and by deploy/build-image.sh on the host.
set -eu
kiln=$1
out=$2
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs"
cp -L "$kiln" "$out/usr/local/bin/kiln"
chmod 0755 "$out/usr/local/bin/kiln"
# "libx.so.1 => /lib/.../libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
ldd "$kiln" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    sort -u | while read -r lib; do
        mkdir -p "$out$(dirname "$lib")"
        cp -L "$lib" "$out$lib"
    done
# /lib64 and friends may be symlinks on the host (merged /usr): the copies
# above made them directories, which is what a busybox base wants
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$ca" ]; then
        cp -L "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
        break
    fi
done
