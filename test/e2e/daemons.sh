#!/usr/bin/env bash
# Starts and stops virtlogd + libvirtd for the e2e tests, without systemd.
#
#   daemons.sh ensure              start virtlogd/libvirtd unless qemu:///system already answers
#   daemons.sh acquire PID         ensure, and record a lease for test process PID
#   daemons.sh release PID         drop PID's lease; when no live lease is left, stop what we started
#   daemons.sh stop                stop the daemons this script started (by recorded PID), now
#   daemons.sh kill-libvirtd [SIG] send SIG (default KILL) to the libvirtd we started; refuses otherwise
#   daemons.sh start-libvirtd      start libvirtd again (after kill-libvirtd) and wait until it answers
#   daemons.sh status              print what runs and whether we started it
#
# Only daemons started here are ever stopped: their PIDs are recorded under .cache/run/
# (*.ours.pid) and checked against /proc/PID/comm before a signal is sent. libvirtd runs under
# `tini -s` so that QEMU processes it leaves behind are reaped at once (PID 1 here is slow at it).
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LEASES=$RUN_DIR/leases
mkdir -p "$LEASES"

ours_pid () { cat "$RUN_DIR/$1.ours.pid" 2>/dev/null; }

start_virtlogd () {
  if pgrep -x virtlogd >/dev/null; then return 0; fi
  rm -f "$RUN_DIR/virtlogd.pid"
  virtlogd -d -p "$RUN_DIR/virtlogd.pid" || die 'virtlogd -d failed'
  for _ in $(seq 50); do [ -s "$RUN_DIR/virtlogd.pid" ] && break; sleep 0.1; done
  [ -s "$RUN_DIR/virtlogd.pid" ] || die "virtlogd wrote no pid file $RUN_DIR/virtlogd.pid"
  cp "$RUN_DIR/virtlogd.pid" "$RUN_DIR/virtlogd.ours.pid"
  log "started virtlogd, pid $(ours_pid virtlogd)"
}

start_libvirtd () {
  local t0 pid
  t0=$(now_ms)
  rm -f "$RUN_DIR/libvirtd.pid"
  # setsid: own session, so the test process's signals/terminal never reach it. Not a process
  # group leader here (no job control), so setsid execs in place and $! is tini's PID.
  setsid tini -s -- libvirtd -p "$RUN_DIR/libvirtd.pid" >>"$RUN_DIR/libvirtd.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/tini-libvirtd.ours.pid"
  for _ in $(seq 300); do
    if [ -s "$RUN_DIR/libvirtd.pid" ] && virsh_answers; then break; fi
    sleep 0.1
  done
  virsh_answers || die "libvirtd did not answer within 30 s; see $RUN_DIR/libvirtd.log"
  pid=$(cat "$RUN_DIR/libvirtd.pid")
  echo "$pid" >"$RUN_DIR/libvirtd.ours.pid"
  log "started libvirtd under tini, pid $pid, answering after $(( $(now_ms) - t0 )) ms"
}

ensure () {
  if virsh_answers; then
    if pid_is "$(ours_pid libvirtd)" libvirtd; then log 'libvirtd (ours) answers'; else log 'libvirtd answers (not started by us: left alone)'; fi
    return 0
  fi
  start_virtlogd
  start_libvirtd
}

# Sends SIG to the recorded PID of NAME, if it is still that program; waits up to 10 s for it to go.
stop_ours () {
  local name=$1 sig=${2:-TERM} pid
  pid=$(ours_pid "$name")
  if pid_is "$pid" "$name"; then
    kill -s "$sig" "$pid" 2>/dev/null
    for _ in $(seq 100); do pid_is "$pid" "$name" || break; sleep 0.1; done
    if pid_is "$pid" "$name"; then kill -s KILL "$pid" 2>/dev/null; sleep 0.2; fi
    log "stopped $name (pid $pid, SIG$sig)"
  fi
  rm -f "$RUN_DIR/$name.ours.pid"
}

stop () {
  stop_ours libvirtd TERM
  # tini exits with its child; the pid file only matters when libvirtd died some other way.
  local tpid
  tpid=$(ours_pid tini-libvirtd)
  if pid_is "$tpid" tini; then kill -s TERM "$tpid" 2>/dev/null; fi
  rm -f "$RUN_DIR/tini-libvirtd.ours.pid"
  stop_ours virtlogd TERM
}

prune_leases () {
  local f
  for f in "$LEASES"/*; do
    [ -e "$f" ] || continue
    kill -0 "$(basename "$f")" 2>/dev/null || rm -f "$f"
  done
}

acquire () {
  local pid=${1:?acquire needs the test process PID}
  [[ $pid =~ ^[0-9]+$ ]] || die "acquire: PID must be a number, got '$pid'"
  prune_leases
  ensure || return 1
  : >"$LEASES/$pid"
}

release () {
  local pid=${1:?release needs the test process PID}
  [[ $pid =~ ^[0-9]+$ ]] || die "release: PID must be a number, got '$pid'"
  rm -f "$LEASES/$pid"
  prune_leases
  if [ -n "$(ls -A "$LEASES")" ]; then
    log "other test processes still use the daemons: $(ls "$LEASES" | tr '\n' ' ')"
    return 0
  fi
  [ "${KVW_E2E_KEEP_DAEMONS:-}" = 1 ] && { log 'KVW_E2E_KEEP_DAEMONS=1: leaving daemons running'; return 0; }
  stop
}

kill_libvirtd () {
  local sig=${1:-KILL} pid
  pid=$(ours_pid libvirtd)
  pid_is "$pid" libvirtd || die 'kill-libvirtd: no libvirtd started by this script is running; refusing to signal one we did not start'
  kill -s "$sig" "$pid" || die "kill -s $sig $pid failed"
  for _ in $(seq 100); do pid_is "$pid" libvirtd || break; sleep 0.1; done
  pid_is "$pid" libvirtd && die "libvirtd (pid $pid) still runs 10 s after SIG$sig"
  rm -f "$RUN_DIR/libvirtd.ours.pid" "$RUN_DIR/tini-libvirtd.ours.pid"
  log "libvirtd (pid $pid) ended by SIG$sig"
}

restart_libvirtd () {
  virsh_answers && die 'start-libvirtd: a libvirtd already answers'
  start_libvirtd
}

status () {
  local n
  for n in virtlogd libvirtd; do
    if pid_is "$(ours_pid $n)" $n; then echo "$n: ours, pid $(ours_pid $n)"
    elif pgrep -x $n >/dev/null; then echo "$n: running, not ours (pid $(pgrep -x $n | tr '\n' ' '))"
    else echo "$n: not running"; fi
  done
  virsh_answers && echo 'qemu:///system: answers' || echo 'qemu:///system: no answer'
  prune_leases
  echo "leases: $(ls "$LEASES" | tr '\n' ' ')"
}

require_root
cmd=${1:-}
shift || true
case $cmd in
  ensure) with_lock daemons ensure ;;
  acquire) with_lock daemons acquire "$@" ;;
  release) with_lock daemons release "$@" ;;
  stop) with_lock daemons stop ;;
  kill-libvirtd) with_lock daemons kill_libvirtd "$@" ;;
  start-libvirtd) with_lock daemons restart_libvirtd ;;
  status) status ;;
  *) die "unknown command '${cmd}'; use one of: ensure, acquire PID, release PID, stop, kill-libvirtd [SIG], start-libvirtd, status" ;;
esac
