#!/usr/bin/env bash
# Undoes what setup-host.sh did at run time: stops the virtlogd/libvirtd that the e2e scripts
# started (by recorded PID; daemons started otherwise are left alone). With --restore-config it
# also puts back /etc/libvirt/qemu.conf as it was before setup-host.sh changed it.
# Installed packages stay (removing them is apt-get's job, and CI machines are disposable).
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
"$E2E_DIR/daemons.sh" stop
if [ "${1:-}" = --restore-config ]; then
  if [ -f "$QEMU_CONF_BACKUP" ]; then
    cp -p "$QEMU_CONF_BACKUP" /etc/libvirt/qemu.conf && rm -f "$QEMU_CONF_BACKUP"
    log 'restored /etc/libvirt/qemu.conf'
  else
    log 'no saved qemu.conf: nothing to restore'
  fi
elif [ -n "${1:-}" ]; then
  die "unknown option '$1' (only --restore-config)"
fi
