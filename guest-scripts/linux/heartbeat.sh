#!/bin/sh
# kiosk-vm-watchdog: heartbeat for a Linux guest (POSIX sh; works with busybox).
#
# Usage:
#   heartbeat.sh [run] [--url URL] [--interval SECONDS] [--vm NAME]
#       Forever: GET URL/api/v1/heartbeat?seq=N&status=ok[&vm=NAME], then sleep SECONDS.
#       N counts from 1 in memory only, so after a snapshot revert it is back at the snapshot's
#       value. A failed request is reported once on stderr and retried at the next beat; the
#       loop never exits on its own.
#   heartbeat.sh once [--url URL] [--vm NAME]
#       One heartbeat (seq=1); exits 0 when the service answered 2xx.
#   heartbeat.sh request-revert REASON [--url URL] [--vm NAME]
#       Asks the service to revert this VM to its snapshot:
#       GET URL/api/v1/revert/request?reason=REASON[&vm=NAME]; exits 0 when it answered 2xx.
#
# Settings (arguments win over the environment):
#   KVW_URL       service base URL, default http://10.0.2.2:8000 (the host, seen from a QEMU
#                 user-mode network guest; with libvirt's NAT network use http://192.168.122.1:8000)
#   KVW_INTERVAL  seconds between beats, default 1
#   KVW_VM        this VM's libvirt name, for a service watching several VMs (optional)
#   KVW_TIMEOUT   seconds a request may take, default 3
#
# Start it at boot, e.g. from /etc/rc.local or a systemd unit:  heartbeat.sh run --vm kiosk1 &
# HTTP client: curl when present, else wget bounded by `timeout` (busybox 1.35's wget -T crashes).

url=${KVW_URL:-http://10.0.2.2:8000}
interval=${KVW_INTERVAL:-1}
vm=${KVW_VM:-}
request_timeout=${KVW_TIMEOUT:-3}

usage () {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

fail () {
  echo "heartbeat.sh: $*" >&2
  exit 2
}

# Percent-encodes $1 byte by byte (RFC 3986 unreserved characters stay as they are).
urlencode () {
  printf %s "$1" | od -An -v -tx1 | tr -s ' ' '\n' | while read -r hex; do
    [ -n "$hex" ] || continue
    case $hex in
      2d | 2e | 5f | 7e | 3[0-9] | 4[1-9a-f] | 5[0-9a] | 6[1-9a-f] | 7[0-9a])
        # shellcheck disable=SC2059 # the format is an octal escape we build on purpose
        printf "\\$(printf %03o "0x$hex")" ;;
      *) printf '%%%s' "$hex" | tr 'a-f' 'A-F' ;;
    esac
  done
}

# GETs $1; succeeds when the server answered 2xx within $request_timeout seconds.
http_get () {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null -m "$request_timeout" "$1" 2>/dev/null
  else
    timeout "$request_timeout" wget -q -O /dev/null "$1" 2>/dev/null
  fi
}

vm_param () {
  [ -n "$vm" ] && printf '&vm=%s' "$(urlencode "$vm")"
}

run_loop () {
  seq=1
  reachable=unknown
  while :; do
    if http_get "$url/api/v1/heartbeat?seq=$seq&status=ok$(vm_param)"; then
      [ "$reachable" = yes ] || echo "heartbeat.sh: service at $url answers (seq $seq)" >&2
      reachable=yes
    else
      [ "$reachable" = no ] || echo "heartbeat.sh: no answer from $url (seq $seq); retrying every ${interval}s" >&2
      reachable=no
    fi
    seq=$((seq + 1))
    sleep "$interval"
  done
}

mode=run
case ${1:-} in
  run | once | request-revert) mode=$1; shift ;;
  -h | --help | help) usage ;;
esac
reason=
if [ "$mode" = request-revert ]; then
  case ${1:-} in '' | --*) fail 'request-revert needs a REASON (e.g. request-revert app_crashed)' ;; esac
  reason=$1
  shift
fi
while [ $# -gt 0 ]; do
  case $1 in
    --url) [ $# -ge 2 ] || fail '--url needs a value'; url=$2; shift 2 ;;
    --interval) [ $# -ge 2 ] || fail '--interval needs a value'; interval=$2; shift 2 ;;
    --vm) [ $# -ge 2 ] || fail '--vm needs a value'; vm=$2; shift 2 ;;
    -h | --help) usage ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
done
case $url in
  http://?* | https://?*) url=${url%/} ;;
  *) fail "base URL must start with http:// or https://, got '$url'" ;;
esac
case $interval in
  '' | *[!0-9.]* | .* | *.*.* | *.) fail "interval must be a positive number of seconds, got '$interval'" ;;
  *[1-9]*) ;;
  *) fail "interval must be more than 0 seconds, got '$interval'" ;;
esac
case $request_timeout in
  '' | *[!0-9]* | 0) fail "KVW_TIMEOUT must be a whole number of seconds > 0, got '$request_timeout'" ;;
esac

case $mode in
  run) run_loop ;;
  once) http_get "$url/api/v1/heartbeat?seq=1&status=ok$(vm_param)" ;;
  request-revert)
    if http_get "$url/api/v1/revert/request?reason=$(urlencode "$reason")$(vm_param)"; then
      echo "heartbeat.sh: revert requested ($reason)" >&2
    else
      echo "heartbeat.sh: revert request to $url failed" >&2
      exit 1
    fi ;;
esac
