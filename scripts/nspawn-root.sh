#!/usr/bin/env bash
# Builds, once, the minimal Debian bookworm root that the systemd-host tests boot with
# systemd-nspawn (test/support/nspawn-host.ts), and prints its path on stdout.
#
#   scripts/nspawn-root.sh [DIR]
#
# DIR defaults to $FIREDRILL_TEST_CACHE/bookworm-<hash> (FIREDRILL_TEST_CACHE defaults to
# /var/cache/firedrill-test), where <hash> covers the package list and ROOT_VERSION below: change
# either and the next run builds a new root. A root that exists is reused (about 270 MB); one that is
# missing is rebuilt (about 80 s, needs root and debootstrap, and the Debian mirror
# $FIREDRILL_DEBIAN_MIRROR, default http://deb.debian.org/debian). The build happens in DIR.tmp and
# is renamed to DIR when complete, under a lock (DIR.lock), so parallel test files build it once and
# never see half a root. Tests never write to it: each host boots an overlay over it.
set -euo pipefail

# Bump when the preparation below changes, so that cached roots are rebuilt.
ROOT_VERSION=1
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,iproute2,nftables,curl,ca-certificates,procps
MIRROR=${FIREDRILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${FIREDRILL_TEST_CACHE:-/var/cache/firedrill-test}
# Marks a complete root (written last, before the rename).
MARKER=etc/firedrill-test-root

fail() {
  echo "nspawn-root: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "building the test root needs root (debootstrap, chroot): run the tests as root"
command -v debootstrap >/dev/null 2>&1 || fail "debootstrap is not installed: run scripts/setup.sh or apt-get install debootstrap"
command -v flock >/dev/null 2>&1 || fail "flock is not installed: apt-get install util-linux"

hash=$(printf '%s\n' "$ROOT_VERSION" "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)
dir=${1:-$CACHE/$SUITE-$hash}
dir=${dir%/}
[ -n "$dir" ] || fail "the root directory cannot be /"
mkdir -p "$(dirname "$dir")"

exec 9>"$dir.lock"
flock -w 900 9 || fail "waited 15 min for the lock $dir.lock held by another build: if no build is running, delete it"

if [ -f "$dir/$MARKER" ]; then
  echo "$dir"
  exit 0
fi

tmp=$dir.tmp
log=$dir.build.log
rm -rf "$tmp"
if [ -e "$dir" ]; then
  # An incomplete root (no marker) is never one a test boots. Only ours are deleted without asking.
  [ -z "${1:-}" ] || fail "$dir exists and is not a complete test root: delete it or pick another directory"
  rm -rf "$dir"
fi
echo "nspawn-root: building the $SUITE root in $dir (once, about 80 s; log: $log)" >&2
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" >"$log" 2>&1; then
  tail -n 15 "$log" >&2
  rm -rf "$tmp"
  fail "debootstrap $SUITE from $MIRROR failed (log above, full log: $log): check that the mirror is reachable, or set FIREDRILL_DEBIAN_MIRROR"
fi

# Each boot gets its machine id from systemd-nspawn --uuid (an empty file is "not set yet", and is not
# a first boot); dbus reads the same one.
: >"$tmp/etc/machine-id"
ln -sf /etc/machine-id "$tmp/var/lib/dbus/machine-id"
# The hostname is the machine name systemd-nspawn gives (-M), not the build machine's.
rm -f "$tmp/etc/hostname"

mkdir -p "$tmp/etc/systemd/journald.conf.d"
cat >"$tmp/etc/systemd/journald.conf.d/firedrill-test.conf" <<'EOF'
# Test hosts: the journal lives in /run only, and stays small.
[Journal]
Storage=volatile
RuntimeMaxUse=16M
EOF

# Units that wait for a console or a network that a test container does not have, prompt on first
# boot, or do maintenance work during a test.
for unit in console-getty.service container-getty@.service getty@.service serial-getty@.service \
  getty-static.service systemd-firstboot.service systemd-networkd-wait-online.service \
  systemd-networkd-wait-online@.service systemd-pstore.service e2scrub_reap.service \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
  ln -sf /dev/null "$tmp/etc/systemd/system/$unit"
done
rm -f "$tmp"/etc/systemd/system/*.wants/getty@*.service

rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin "$tmp"/var/cache/apt/archives/*.deb
printf 'version=%s suite=%s packages=%s built=%s\n' "$ROOT_VERSION" "$SUITE" "$PACKAGES" "$(date -u +%FT%TZ)" >"$tmp/$MARKER"
mv "$tmp" "$dir"
rm -f "$log"
echo "$dir"
