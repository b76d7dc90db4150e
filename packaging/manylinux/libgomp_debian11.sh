#!/bin/sh
# The libgomp that `auditwheel repair` bundles into a release wheel built outside the manylinux image
# (docs/wheels.md).  The build host's own libgomp may need a newer glibc than the wheel's tag
# (Debian 12's needs GLIBC_2.34); Debian 11's libgomp1 (GCC 10.2.1) needs only GLIBC_2.17 and
# provides every version node the module uses (GOMP_1.0 ... GOMP_4.5, OMP_1.0).
# Usage: sh packaging/manylinux/libgomp_debian11.sh DIR   -> DIR/libgomp.so.1
#        LD_LIBRARY_PATH=DIR auditwheel repair --plat manylinux_2_28_x86_64 ...
set -eu
dir=${1:?usage: libgomp_debian11.sh DIR}
deb=libgomp1_10.2.1-6_amd64.deb
sha=4530c95aefa48e33fd8cf4acbe5c4b559dbe7bdf4c56469986c83a203982cef1
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -sSfL -o "$tmp/$deb" "http://deb.debian.org/debian/pool/main/g/gcc-10/$deb"
echo "$sha  $tmp/$deb" | sha256sum -c - >/dev/null
dpkg-deb -x "$tmp/$deb" "$tmp/x"   # (no dpkg: ar x the .deb, then tar xf data.tar.xz)
cp "$tmp/x/usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0" "$dir/libgomp.so.1"
echo "$dir/libgomp.so.1"
