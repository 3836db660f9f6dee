#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing (idempotent).
#   install-deps.sh runtime   what the service needs (libvirt's client library)
#   install-deps.sh test      + what the test suite needs (libvirtd, QEMU, the e2e guest's parts,
#                              Prometheus for promtool and the scrape test, Chromium for the
#                              dashboard test, systemd-analyze for the unit check, debootstrap
#                              and systemd-nspawn for the real-systemd container suite)
set -euo pipefail
profile=${1:-runtime}
runtime=(libvirt0 libvirt-clients)
test=(libvirt-daemon-system qemu-system-x86 qemu-utils busybox-static tini cpio kmod
      prometheus prometheus-alertmanager chromium systemd python3 socat debootstrap systemd-container)
case "$profile" in
  runtime) wanted=("${runtime[@]}") ;;
  test) wanted=("${runtime[@]}" "${test[@]}") ;;
  *) echo "usage: $0 runtime|test" >&2; exit 64 ;;
esac
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Never let a package start services or create libvirt's default NAT network on its own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" = 1 ] && rm -f "$policy"
# libvirt's package may mark its default network for autostart (192.168.122.1 on the host): undo.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml
echo "install-deps: done"
