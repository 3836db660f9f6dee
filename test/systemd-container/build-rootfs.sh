#!/bin/sh
# Builds (once per machine) the Debian 12 root file system the real-systemd suite boots with
# systemd-nspawn, and prints its path. Cached OUTSIDE the checkout, keyed by this file's content:
#
#   sh test/systemd-container/build-rootfs.sh [CACHE_DIR]    (default /var/cache/kiosk-vm-watchdog-test)
#
# What is in it: minbase + systemd as PID 1, D-Bus, journald, polkit, libvirtd (the container's
# own: the suite never uses the host's libvirtd), QEMU for x86 without recommends (its firmware,
# SeaBIOS and iPXE, are dependencies; TCG only: a small diskless domain for the stop check),
# virsh, curl and jq (what a technician types), the user-session parts for `systemctl --user`,
# nft and iptables (the doctor reads them).
# Node is not: the host's node is bind-mounted.
# Needs root, debootstrap, and the Debian mirror apt already uses on this machine.
set -eu
cache=${1:-/var/cache/kiosk-vm-watchdog-test}
packages='systemd systemd-sysv dbus dbus-user-session libpam-systemd polkitd libvirt-daemon-system libvirt-clients libvirt0 qemu-system-x86 curl jq ca-certificates procps iproute2 less nftables iptables'
# Bump the 1 when the steps below change what the tree holds; the package list is in the key.
key=$(echo "1 $packages" | sha256sum | cut -c1-12)
root=$cache/rootfs-bookworm-$key
[ -f "$root/.complete" ] && { echo "$root"; exit 0; }
[ "$(id -u)" -eq 0 ] || { echo "build-rootfs: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-rootfs: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
# One build at a time; a second caller waits and then finds it complete.
exec 9>"$cache/.build.lock"
flock 9
[ -f "$root/.complete" ] && { echo "$root"; exit 0; }
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
work=$cache/.build-$key
rm -rf "$work"
start=$(date +%s)
echo "build-rootfs: debootstrap bookworm from $mirror into $work" >&2
debootstrap --variant=minbase bookworm "$work" "$mirror" >"$cache/.build.log" 2>&1 ||
  { tail -20 "$cache/.build.log" >&2; exit 1; }
# Packages must not start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$work/usr/sbin/policy-rc.d"; chmod +x "$work/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$work/etc/resolv.conf" 2>/dev/null || true
# shellcheck disable=SC2086 # a word list
chroot "$work" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages" >>"$cache/.build.log" 2>&1 ||
  { tail -20 "$cache/.build.log" >&2; exit 1; }
chroot "$work" apt-get clean
rm -f "$work/usr/sbin/policy-rc.d" "$work/etc/resolv.conf"
# Never libvirt's NAT network `default` (192.168.122.1), even inside the private network.
rm -f "$work/etc/libvirt/qemu/networks/autostart/default.xml"
# Nothing to log in to: no getty on the container console; machine-id made at each boot.
rm -f "$work/etc/machine-id"; : > "$work/etc/machine-id"
echo kvw-test > "$work/etc/hostname"
date -u +%FT%TZ > "$work/.complete"
rm -rf "$root"
mv "$work" "$root"
echo "build-rootfs: built $root in $(( $(date +%s) - start )) s ($(du -sm "$root" | cut -f1) MB)" >&2
echo "$root"
