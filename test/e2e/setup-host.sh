#!/usr/bin/env bash
# Prepares a Debian 12 host (as root) to run the real-VM e2e tests. Idempotent: a second run
# changes nothing and takes about a second.
#
#   1. apt-get installs what is missing of: libvirt-daemon-system libvirt-clients qemu-system-x86
#      qemu-utils busybox-static tini cpio kmod (no recommends; services are not started by the
#      package scripts).
#   2. /etc/libvirt/qemu.conf: user = "root", group = "root" (the original is saved once to
#      /etc/libvirt/qemu.conf.kvw-e2e-orig; `teardown-host.sh --restore-config` puts it back).
#   3. Removes the autostart link of libvirt's `default` NAT network (never started here).
#   4. Starts virtlogd and libvirtd (under tini) unless qemu:///system already answers, recording
#      their PIDs so that only those are ever stopped (daemons.sh).
#
# Steps 1-3 change the host. They run only on a machine that says it is a test machine:
# CI=true or KVW_E2E_ALLOW_HOST_CHANGES=1. Otherwise the script prints what it would change and
# exits 2.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
command -v apt-get >/dev/null || die 'apt-get not found: the e2e setup supports Debian 12 only'

PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils busybox-static tini cpio kmod)
QEMU_CONF=/etc/libvirt/qemu.conf
DEFAULT_NET_LINK=/etc/libvirt/qemu/networks/autostart/default.xml
t_start=$(now_ms)

missing_packages () {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || printf '%s\n' "$p"
  done
}

qemu_conf_is_root () {
  [ -f "$QEMU_CONF" ] &&
    grep -Eq '^[[:space:]]*user[[:space:]]*=[[:space:]]*"root"' "$QEMU_CONF" &&
    grep -Eq '^[[:space:]]*group[[:space:]]*=[[:space:]]*"root"' "$QEMU_CONF"
}

install_packages () {
  local pkgs=("$@") added_policy=0
  # Keep package scripts from starting libvirtd/virtlogd themselves (they would run without
  # tini, before qemu.conf is set, and would not be ours to stop).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold)
  if ! "${apt[@]}" "${pkgs[@]}" >>"$RUN_DIR/apt.log" 2>&1; then
    log 'apt-get install failed; running apt-get update and trying again'
    apt-get update -q >>"$RUN_DIR/apt.log" 2>&1 || { [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get update failed; see $RUN_DIR/apt.log"; }
    "${apt[@]}" "${pkgs[@]}" >>"$RUN_DIR/apt.log" 2>&1 || { [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${pkgs[*]} failed; see $RUN_DIR/apt.log"; }
  fi
  [ $added_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

set_qemu_conf_root () {
  [ -e "$QEMU_CONF_BACKUP" ] || cp -p "$QEMU_CONF" "$QEMU_CONF_BACKUP"
  sed -i -E '/^[[:space:]]*(user|group)[[:space:]]*=/d' "$QEMU_CONF"
  printf '\n# kiosk-vm-watchdog e2e (test/e2e/setup-host.sh): QEMU as root, see test/e2e/README.md\nuser = "root"\ngroup = "root"\n' >>"$QEMU_CONF"
}

mapfile -t missing < <(missing_packages)
needs_conf=0
# A fresh install ships qemu.conf without user = "root".
{ [ ${#missing[@]} -gt 0 ] || ! qemu_conf_is_root; } && needs_conf=1
needs_net=0
[ -L "$DEFAULT_NET_LINK" ] || [ -e "$DEFAULT_NET_LINK" ] && needs_net=1

if [ ${#missing[@]} -gt 0 ] || [ $needs_conf = 1 ] || [ $needs_net = 1 ]; then
  if ! host_changes_allowed; then
    log 'this host is not prepared for the e2e tests, and it is not marked as a test machine.'
    [ ${#missing[@]} -gt 0 ] && log "would apt-get install: ${missing[*]}"
    [ $needs_conf = 1 ] && log "would set user = \"root\" and group = \"root\" in $QEMU_CONF"
    [ $needs_net = 1 ] && log "would remove $DEFAULT_NET_LINK (autostart of libvirt's default NAT network)"
    log 'to allow these changes: CI=true or KVW_E2E_ALLOW_HOST_CHANGES=1 (only on a disposable test machine)'
    exit 2
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    t0=$(now_ms)
    log "apt-get install ${missing[*]}"
    install_packages "${missing[@]}"
    log "packages installed in $(( $(now_ms) - t0 )) ms"
  fi
  if ! qemu_conf_is_root; then
    set_qemu_conf_root
    log "set user/group = \"root\" in $QEMU_CONF (original saved as $QEMU_CONF_BACKUP)"
    if pgrep -x libvirtd >/dev/null && ! pid_is "$(cat "$RUN_DIR/libvirtd.ours.pid" 2>/dev/null)" libvirtd; then
      log 'WARNING: a libvirtd we did not start is running; it only reads qemu.conf when it starts'
    elif pid_is "$(cat "$RUN_DIR/libvirtd.ours.pid" 2>/dev/null)" libvirtd; then
      "$E2E_DIR/daemons.sh" stop # ours: restart it below with the new setting
    fi
  fi
  if [ -L "$DEFAULT_NET_LINK" ] || [ -e "$DEFAULT_NET_LINK" ]; then
    rm -f "$DEFAULT_NET_LINK"
    log "removed $DEFAULT_NET_LINK (libvirt's default NAT network must not start here)"
  fi
fi

for tool in virsh virtlogd libvirtd qemu-system-x86_64 qemu-img tini busybox cpio modinfo; do
  command -v "$tool" >/dev/null || die "$tool not found after setup"
done

"$E2E_DIR/daemons.sh" ensure || die 'could not start libvirtd'
log "host ready in $(( $(now_ms) - t_start )) ms"
