#!/bin/sh
# Unpacks each .ipk `make ipk` built and checks its layout and control fields:
#
#   contrib/openwrt/ipk-check.sh DIR
#
# Outer archive: exactly debian-binary (2.0), data.tar.gz, control.tar.gz. Control: Package,
# Version (Cargo.toml's, as contrib/openwrt/Makefile states it), Architecture, Maintainer,
# Description, Depends; conffiles naming /etc/config/btest; a postinst that enables nothing.
# Data: /usr/bin/btest (static, for the right CPU, runs -V), the procd init script and the UCI
# config, owned by root. Exit 0 = all good.
set -eu

dir=${1:?usage: $0 DIR}
top=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n 1)
mk_version=$(sed -n 's/^PKG_VERSION:=//p' "$top/contrib/openwrt/Makefile")
release=$(sed -n 's/^PKG_RELEASE:=//p' "$top/contrib/openwrt/Makefile")
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$mk_version" = "$version" ] || \
    fail "contrib/openwrt/Makefile PKG_VERSION $mk_version, Cargo.toml $version"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# field NAME FILE: the value of a control field.
field() { sed -n "s/^$1: //p" "$2" | head -n 1; }

# ELF e_machine as a decimal number (62 x86-64, 183 aarch64).
machine() { od -An -t u2 -j 18 -N 2 "$1" | tr -d ' '; }

check() {
    arch=$1 want_machine=$2
    ipk=$(ls "$dir"/btest_*_"$arch".ipk 2>/dev/null | head -n 1)
    [ -n "$ipk" ] || fail "no btest_*_$arch.ipk in $dir"
    w=$tmp/$arch
    mkdir -p "$w/outer" "$w/control" "$w/data"
    members=$(tar -tzf "$ipk" | sort | tr '\n' ' ')
    [ "$members" = "./control.tar.gz ./data.tar.gz ./debian-binary " ] || \
        fail "$ipk holds: $members"
    tar -xzf "$ipk" -C "$w/outer"
    [ "$(cat "$w/outer/debian-binary")" = 2.0 ] || fail "$ipk: debian-binary is not 2.0"
    tar -xzf "$w/outer/control.tar.gz" -C "$w/control"
    tar -xzf "$w/outer/data.tar.gz" -C "$w/data"

    c=$w/control/control
    [ "$(field Package "$c")" = btest ] || fail "$ipk: Package"
    [ "$(field Version "$c")" = "$version-$release" ] || fail "$ipk: Version $(field Version "$c")"
    [ "$(field Architecture "$c")" = "$arch" ] || fail "$ipk: Architecture"
    for f in Maintainer Description Depends; do
        grep -q "^$f: ." "$c" || fail "$ipk: no $f"
    done
    [ "$(cat "$w/control/conffiles")" = /etc/config/btest ] || fail "$ipk: conffiles"
    p=$w/control/postinst
    [ -x "$p" ] && sh -n "$p" || fail "$ipk: postinst missing, not executable or not sh"
    # Only comments and echo lines may mention enabling; no command may do it.
    if grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*echo ' "$p" | grep -q -e enable -e default_postinst; then
        fail "$ipk: postinst enables something"
    fi
    [ ! -f "$w/control/prerm" ] || sh -n "$w/control/prerm" || fail "$ipk: prerm"

    files=$(tar -tvzf "$w/outer/data.tar.gz" | awk '$1 !~ /^d/ {print $1, $2, $NF}' | sort | tr '\n' ';')
    want="-rw------- 0/0 ./etc/config/btest;-rwxr-xr-x 0/0 ./etc/init.d/btest;-rwxr-xr-x 0/0 ./usr/bin/btest;"
    [ "$files" = "$want" ] || fail "$ipk data: $files (want $want)"
    sh -n "$w/data/etc/init.d/btest" || fail "$ipk: init script"
    cmp -s "$w/data/etc/config/btest" "$top/contrib/openwrt/btest.config" || fail "$ipk: UCI config"
    b=$w/data/usr/bin/btest
    [ "$(machine "$b")" = "$want_machine" ] || fail "$ipk: binary is for ELF machine $(machine "$b")"
    if command -v file >/dev/null 2>&1; then
        file -b "$b" | grep -qE 'statically linked|static-pie linked' || fail "$ipk: binary not static"
    fi
    run=
    if [ "$arch" = x86_64 ] && [ "$(uname -m)" = x86_64 ]; then run=$b
    elif [ "$arch" = aarch64_generic ] && command -v qemu-aarch64 >/dev/null 2>&1; then run="qemu-aarch64 $b"
    fi
    if [ -n "$run" ]; then
        $run -V | grep -q "btest $version" || fail "$ipk: btest -V"
        echo "# $ipk: ok ($($run -V))"
    else
        echo "# $ipk: ok (binary not run: no way to execute $arch here)"
    fi
}

check aarch64_generic 183
check x86_64 62
