#!/bin/sh
# Installs the packages `make deb` built, uses them, removes them, and checks nothing is left:
#
#   contrib/deb/check.sh DIR      (DIR holds btest_*.deb and maybe btest-server-pro_*.deb)
#
# lintian (when installed) must report no error or warning; dpkg -i; btest -V; man -w btest;
# a 2 s loopback test in both directions with the installed binary; the units installed but not
# enabled; dpkg -r; then every file and every directory the packages created must be gone.
# Needs root (dpkg -i). Exit 0 = all good.
set -eu

dir=${1:?usage: $0 DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "skipped: deb check needs root for dpkg -i" >&2; exit 0; }

debs=
for d in "$dir"/btest_*.deb "$dir"/btest-server-pro_*.deb; do
    [ -f "$d" ] && debs="$debs $d"
done
[ -n "$debs" ] || fail "no .deb in $dir (run make deb)"
names=
for d in $debs; do names="$names $(dpkg-deb -f "$d" Package)"; done
echo "# packages:$names"

if command -v lintian >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    lintian --fail-on error,warning $debs 2>&1 | grep -v 'root privileges' || true
    # shellcheck disable=SC2086
    lintian --fail-on error,warning $debs >/dev/null 2>&1 || fail "lintian reports errors or warnings"
    echo "# lintian: clean"
else
    echo "# lintian not installed: packages not linted"
fi

# What the packages will create: their files, and those of their directories not here yet.
tmp=$(mktemp -d)
server_pid=
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
for d in $debs; do
    dpkg-deb -c "$d" | awk '{print $NF}' | sed 's#^\./#/#; s#/$##' | grep -v '^$' |
        grep -v '^/$' >> "$tmp/paths"
done
: > "$tmp/new"
while read -r p; do
    [ -e "$p" ] || echo "$p" >> "$tmp/new"
done < "$tmp/paths"

# shellcheck disable=SC2086
dpkg -i $debs >/dev/null || fail "dpkg -i"
/usr/bin/btest -V | grep -q "btest " || fail "btest -V"
/usr/bin/btest -V
man -w btest >/dev/null 2>&1 || fail "man -w btest finds no page (man-db installed? a dpkg path-exclude on /usr/share/man?)"
echo "# man page: $(man -w btest)"
for unit in /lib/systemd/system/btest.service; do
    [ -f "$unit" ] || fail "$unit not installed"
    grep -q '^ExecStart=/usr/bin/btest ' "$unit" || fail "$unit does not run /usr/bin/btest"
done
if ls /etc/systemd/system/*.wants/btest*.service >/dev/null 2>&1; then
    fail "a btest unit was enabled on install"
fi
case " $names " in *" btest-server-pro "*)
    /usr/bin/btest-server-pro --help >/dev/null || fail "btest-server-pro --help"
    man -w btest-server-pro >/dev/null 2>&1 || fail "man -w btest-server-pro"
    echo "# btest-server-pro installed, man page $(man -w btest-server-pro)"
esac

# A 2 s loopback test, both directions, with the installed binary on an OS-chosen port.
/usr/bin/btest -s --listen 127.0.0.1 -P 0 2> "$tmp/server.log" &
server_pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "installed server did not report its port: $(cat "$tmp/server.log")"
/usr/bin/btest -c 127.0.0.1 -P "$port" -t -r -d 2 > "$tmp/client.out" || \
    fail "loopback test with the installed binary: $(cat "$tmp/client.out")"
grep -q '^\[ avg\]  TX' "$tmp/client.out" && grep -q '^\[ avg\]  RX' "$tmp/client.out" || \
    fail "no summary lines: $(cat "$tmp/client.out")"
grep '^\[ avg\]' "$tmp/client.out"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
server_pid=

# shellcheck disable=SC2086
dpkg -r $names >/dev/null || fail "dpkg -r"
for n in $names; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$n" 2>/dev/null || echo not-installed)
    [ "$status" = not-installed ] || fail "$n is '$status' after dpkg -r, not gone"
done
left=
while read -r p; do
    [ -e "$p" ] || [ -L "$p" ] && left="$left $p"
done < "$tmp/new"
[ -z "$left" ] || fail "left behind after dpkg -r:$left"
echo "# dpkg -r: nothing left behind ($(wc -l < "$tmp/new") paths checked)"
