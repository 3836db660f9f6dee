# shellcheck shell=bash disable=SC2034 # variables are for the scripts that source this
# Shared by the e2e shell scripts (sourced, not run). POSIX-ish bash helpers.
# KVW_E2E_CACHE overrides where builds, pid files and logs live (default: test/e2e/.cache).

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
CACHE_DIR=${KVW_E2E_CACHE:-$E2E_DIR/.cache}
RUN_DIR=$CACHE_DIR/run
VIRSH_URI=qemu:///system
# Beside the file, not in the cache: deleting .cache must not lose the original.
QEMU_CONF_BACKUP=/etc/libvirt/qemu.conf.kvw-e2e-orig

mkdir -p "$CACHE_DIR" "$RUN_DIR"

log () { printf '[e2e %s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die () { log "ERROR: $*"; exit 1; }

require_root () {
  [ "$(id -u)" = 0 ] || die "must run as root (libvirtd, QEMU and apt-get need it); uid is $(id -u)"
}

# Host changes (packages, /etc/libvirt) only on a machine that says it is a test machine.
host_changes_allowed () {
  [ "${CI:-}" = true ] || [ "${KVW_E2E_ALLOW_HOST_CHANGES:-}" = 1 ]
}

# Serialises scripts that touch shared state (daemons, cache) across parallel test processes.
with_lock () {
  local name=$1; shift
  exec {lock_fd}>"$RUN_DIR/$name.lock"
  flock "$lock_fd"
  "$@"
  local rc=$?
  flock -u "$lock_fd"
  exec {lock_fd}>&-
  return $rc
}

virsh_answers () {
  timeout 10 virsh -c "$VIRSH_URI" version >/dev/null 2>&1
}

# True when PID is alive and its command name is NAME (guards against a reused PID).
pid_is () {
  local pid=$1 name=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

now_ms () { date +%s%3N; }
