#!/bin/busybox sh
# shellcheck shell=dash
# /init of the e2e test guest (built into the initramfs by build-guest.sh; busybox only).
# Kernel command line:
#   kvw_url=http://10.0.2.2:PORT   base URL of the service (heartbeats, revert requests)
#   kvw_ctl=http://10.0.2.2:PORT   optional: the test's control server, polled once a second
#   kvw_vm=NAME                    optional: sent as &vm=NAME with each heartbeat
#   kvw_interval=SECONDS           optional: heartbeat interval (default 1)
# Control commands (one per GET {kvw_ctl}/control; an empty answer means "nothing"):
#   hang            stop the heartbeat loop (SIGSTOP): the kiosk app hangs
#   resume          continue the heartbeat loop and the screen ticker
#   revert:REASON   run `heartbeat.sh request-revert REASON`
#   freeze-screen   stop the screen ticker on tty1 (the VNC picture stops changing)
#   panic           kernel panic (sysrq c): the guest is dead, QEMU keeps running
#   poweroff        power off at once: QEMU exits, the domain shuts off
# Each command run is acknowledged with GET {kvw_ctl}/ack?cmd=COMMAND; the boot with
# GET {kvw_ctl}/boot?id=BOOT_ID. Everything the guest says goes to the serial console.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say () { echo "kvw-guest: $*"; }

for m in $(cat /etc/modules.order); do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done

KVW_URL='' KVW_CTL='' KVW_VM='' KVW_INTERVAL=1
for word in $(cat /proc/cmdline); do
  case $word in
    kvw_url=*) KVW_URL=${word#kvw_url=} ;;
    kvw_ctl=*) KVW_CTL=${word#kvw_ctl=} ;;
    kvw_vm=*) KVW_VM=${word#kvw_vm=} ;;
    kvw_interval=*) KVW_INTERVAL=${word#kvw_interval=} ;;
  esac
done
export KVW_URL KVW_VM KVW_INTERVAL

ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
BOOT_ID=$(cat /proc/sys/kernel/random/boot_id)
say "network up; boot id $BOOT_ID; url=$KVW_URL ctl=$KVW_CTL vm=$KVW_VM"

# The guest agent answers guest-ping etc. on the org.qemu.guest_agent.0 virtio-serial port.
if [ -x /usr/sbin/qemu-ga ]; then
  for port in /sys/class/virtio-ports/*; do
    [ "$(cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
    mkdir -p /var/run /usr/local/var/run
    /usr/sbin/qemu-ga -m virtio-serial -p "/dev/${port##*/}" -t /run -f /run/qemu-ga.pid &
    say "qemu-ga started on /dev/${port##*/}"
  done
fi

# The screen ticker: something on tty1 (the VNC picture) that changes every second.
(
  tick=0
  while :; do
    tick=$((tick + 1))
    printf '\033[?25l\033[H\033[2J\n  kiosk-vm-watchdog e2e guest %s\n\n  screen tick %d\n' "$KVW_VM" "$tick" >/dev/tty1
    sleep 1
  done
) &
SCREEN_PID=$!

if [ -n "$KVW_URL" ]; then
  /usr/local/bin/heartbeat.sh run &
  HEARTBEAT_PID=$!
  say "heartbeat started (pid $HEARTBEAT_PID)"
else
  HEARTBEAT_PID=
  say 'no kvw_url on the kernel command line: no heartbeat'
fi

ctl_get () { timeout 3 wget -q -O - "$KVW_CTL$1" 2>/dev/null; }

if [ -z "$KVW_CTL" ]; then
  while :; do sleep 3600; done
fi
until ctl_get "/boot?id=$BOOT_ID" >/dev/null; do sleep 1; done
while :; do
  cmd=$(ctl_get /control)
  case $cmd in
    '') ;;
    hang) [ -n "$HEARTBEAT_PID" ] && kill -STOP "$HEARTBEAT_PID" ;;
    resume) [ -n "$HEARTBEAT_PID" ] && kill -CONT "$HEARTBEAT_PID"; kill -CONT "$SCREEN_PID" ;;
    freeze-screen) kill -STOP "$SCREEN_PID" ;;
    revert:*) /usr/local/bin/heartbeat.sh request-revert "${cmd#revert:}" & ;;
    panic) ctl_get "/ack?cmd=$cmd" >/dev/null; echo c >/proc/sysrq-trigger ;;
    poweroff) ctl_get "/ack?cmd=$cmd" >/dev/null; poweroff -f ;;
    *) say "unknown control command '$cmd'"; cmd= ;;
  esac
  if [ -n "$cmd" ]; then
    say "control: $cmd"
    ctl_get "/ack?cmd=$cmd" >/dev/null
  fi
  sleep 1
done
