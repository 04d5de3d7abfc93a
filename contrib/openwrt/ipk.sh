#!/bin/sh
# Assembles OpenWrt .ipk packages from the static binaries `make static` built, without an SDK:
#
#   contrib/openwrt/ipk.sh DIST_DIR OUT_DIR
#
# One package per architecture: btest-aarch64-linux-musl -> aarch64_generic, and
# btest-x86_64-linux-musl -> x86_64. An .ipk is what opkg and OpenWrt's ipkg-build use: a
# gzipped tar of ./debian-binary, ./data.tar.gz and ./control.tar.gz. data holds /usr/bin/btest,
# the procd init script and the UCI config; control holds control, conffiles (the UCI config,
# kept on upgrade), a postinst that enables nothing, and a prerm that stops and disables the
# service so removal leaves no rc.d link behind.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 DIST_DIR OUT_DIR" >&2; exit 2; }
dist=$1
out=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
release=$(sed -n 's/^PKG_RELEASE:=//p' contrib/openwrt/Makefile)
maintainer=${IPK_MAINTAINER:-btest-rs maintainers}
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
mkdir -p "$out"
umask 022

# Reproducible tar.gz of the current directory's entries: fixed owner, order and times.
tgz() {
    tar --format=gnu --owner=0 --group=0 --numeric-owner --sort=name \
        --mtime="@$SOURCE_DATE_EPOCH" -cf - "$@" | gzip -9n
}

# ipk BINARY ARCH
ipk() {
    bin=$1 arch=$2
    [ -f "$bin" ] || { echo "$bin missing: run make static" >&2; exit 1; }
    work=$(mktemp -d)
    mkdir -p "$work/data/usr/bin" "$work/data/etc/init.d" "$work/data/etc/config" "$work/control"
    install -m 0755 "$bin" "$work/data/usr/bin/btest"
    install -m 0755 contrib/openwrt/btest.init "$work/data/etc/init.d/btest"
    # The config may hold a password: readable by root only.
    install -m 0600 contrib/openwrt/btest.config "$work/data/etc/config/btest"
    size=$(du -s -B1 "$work/data" | cut -f1)
    cat > "$work/control/control" <<CONTROL
Package: btest
Version: $version-$release
Depends: libc
Source: contrib/openwrt
SourceName: btest
License: MIT OR Apache-2.0
Section: net
Architecture: $arch
Installed-Size: $size
Maintainer: $maintainer
Description: MikroTik Bandwidth Test (btest) client and server. A server for
 RouterOS /tool bandwidth-test and a client for a router's btest server: TCP
 and UDP, both directions, multi-connection, MD5 and EC-SRP5 authentication.
 The procd service is configured in /etc/config/btest and is off by default.
CONTROL
    echo /etc/config/btest > "$work/control/conffiles"
    cat > "$work/control/postinst" <<'SCRIPT'
#!/bin/sh
# Installed, not enabled: nothing starts until the user asks for it.
[ -n "$IPKG_INSTROOT" ] && exit 0
echo "btest installed. To run the server: uci set btest.server.enabled=1; uci commit btest;"
echo "  /etc/init.d/btest enable; /etc/init.d/btest start"
exit 0
SCRIPT
    cat > "$work/control/prerm" <<'SCRIPT'
#!/bin/sh
# Stop the server and drop its rc.d link, so removing the package leaves nothing running.
[ -n "$IPKG_INSTROOT" ] && exit 0
/etc/init.d/btest stop 2>/dev/null
/etc/init.d/btest disable 2>/dev/null
exit 0
SCRIPT
    chmod 0755 "$work/control/postinst" "$work/control/prerm"
    echo "2.0" > "$work/debian-binary"
    (cd "$work/data" && tgz .) > "$work/data.tar.gz"
    (cd "$work/control" && tgz .) > "$work/control.tar.gz"
    rm -f "$out/btest_"*"_$arch.ipk"
    ipk="$out/btest_${version}-${release}_${arch}.ipk"
    (cd "$work" && tgz ./debian-binary ./data.tar.gz ./control.tar.gz) > "$ipk"
    rm -rf "$work"
    echo "$ipk"
}

ipk "$dist/btest-aarch64-linux-musl" aarch64_generic
ipk "$dist/btest-x86_64-linux-musl" x86_64
