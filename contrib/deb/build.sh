#!/bin/sh
# Builds Debian packages from already built release binaries with dpkg-deb alone (no debhelper,
# no extra crate): btest_<version>_<arch>.deb, and with --pro btest-server-pro_<version>_<arch>.deb.
#
#   contrib/deb/build.sh [--pro] RELEASE_DIR OUT_DIR
#
# Layout follows Debian policy: binaries in /usr/bin, gzipped man pages, the systemd units in
# /lib/systemd/system (installed, not enabled: no maintainer script touches systemctl), shell
# completions in the directories bash-completion, zsh and fish read, a machine-readable
# copyright file and a changelog under /usr/share/doc/<package>/.
set -eu

pro=0
if [ "${1:-}" = --pro ]; then pro=1; shift; fi
[ $# -eq 2 ] || { echo "usage: $0 [--pro] RELEASE_DIR OUT_DIR" >&2; exit 2; }
release=$1
out=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-btest-rs maintainers <btest-rs@users.noreply.github.com>}
# Reproducible: the date of the last commit, not of the build.
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
mkdir -p "$out"
umask 022

# The lowest glibc symbol version the binary needs, so Depends is neither too loose nor too
# tight for the system it was built on.
libc_dep() {
    v=$(objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
    echo "libc6 (>= ${v:-2.17})"
}

# package NAME BINARY MANPAGE UNIT SHORT_DESCRIPTION LONG_DESCRIPTION
package() {
    name=$1 bin=$2 man=$3 unit=$4 short=$5 long=$6
    [ -x "$bin" ] || { echo "$bin missing: build it first" >&2; exit 1; }
    root=$(mktemp -d)
    chmod 0755 "$root"
    trap 'rm -rf "$root"' EXIT
    doc=$root/usr/share/doc/$name
    install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" "$doc" \
        "$root/lib/systemd/system"
    install -m 0755 "$bin" "$root/usr/bin/$name"
    # The toolchain's version strings; nothing at run time reads them.
    objcopy --remove-section=.comment "$root/usr/bin/$name" 2>/dev/null || true
    gzip -9n < "$man" > "$root/usr/share/man/man1/$name.1.gz"
    # The units name /usr/local/bin (make install); the package puts the binary in /usr/bin.
    sed 's#/usr/local/bin/#/usr/bin/#g' "$unit" > "$root/lib/systemd/system/$(basename "$unit")"
    install -m 0644 contrib/deb/copyright "$doc/copyright"
    printf '%s (%s) unstable; urgency=medium\n\n  * Package built from btest-rs %s.\n\n -- %s  %s\n' \
        "$name" "$version" "$version" "$maintainer" "$date" | gzip -9n > "$doc/changelog.gz"
    install -d "$root/usr/share/lintian/overrides"
    {
        echo "# Rust code calls no fortifiable libc string function; the check is for C."
        echo "$name: hardening-no-fortify-functions [usr/bin/$name]"
        echo "# A systemd-only server unit; sysvinit users run the binary from their own script."
        echo "$name: package-supports-alternative-init-but-no-init.d-script [lib/systemd/system/$(basename "$unit")]"
        [ "$name" = btest ] || {
            echo "# 'ment' is a fragment in the string data (strings(1) finds it alone), not a message."
            echo "$name: spelling-error-in-binary ment meant [usr/bin/$name]"
        }
    } > "$root/usr/share/lintian/overrides/$name"
    chmod 0644 "$root/usr/share/lintian/overrides/$name"
    if [ "$name" = btest ]; then
        install -d "$root/usr/share/bash-completion/completions" \
            "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
        install -m 0644 contrib/completions/btest.bash "$root/usr/share/bash-completion/completions/btest"
        install -m 0644 contrib/completions/_btest "$root/usr/share/zsh/vendor-completions/_btest"
        install -m 0644 contrib/completions/btest.fish "$root/usr/share/fish/vendor_completions.d/btest.fish"
    fi
    depends="$(libc_dep "$bin")"
    if objdump -p "$bin" 2>/dev/null | grep -q 'NEEDED.*libgcc_s'; then
        depends="$depends, libgcc-s1 (>= 4.2)"
    fi
    size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
    cat > "$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Description: $short
$long
CONTROL
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
        xargs -0 md5sum > DEBIAN/md5sums)
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    rm -f "$out/${name}"_*.deb
    deb="$out/${name}_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    rm -rf "$root"
    trap - EXIT
    echo "$deb"
}

package btest "$release/btest" docs/btest.1 contrib/systemd/btest.service \
    "MikroTik Bandwidth Test (btest) client and server" \
" btest-rs speaks the MikroTik Bandwidth Test protocol at both ends: run the
 server and point a RouterOS /tool bandwidth-test at it, or run the client
 against a router's own btest server. TCP and UDP, both directions,
 multi-connection TCP, MD5 and EC-SRP5 authentication, CPU load of both ends,
 and results as text, JSON, CSV, syslog or an SVG picture.
 .
 The systemd unit btest.service is installed but not enabled."

if [ "$pro" = 1 ]; then
    package btest-server-pro "$release/btest-server-pro" docs/btest-server-pro.1 \
        contrib/systemd/btest-server-pro.service \
        "MikroTik Bandwidth Test server with users and quotas" \
" btest-server-pro is the btest-rs server for public use: users, per-user and
 per-address byte budgets enforced while tests run, session history in
 SQLite, and an optional read-only HTTP dashboard with Prometheus metrics.
 .
 The systemd unit btest-server-pro.service is installed but not enabled."
fi
