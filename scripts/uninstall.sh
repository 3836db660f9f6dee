#!/bin/sh
# Removes what scripts/install.sh installed (run as root, with the same --prefix / DESTDIR):
#
#   sudo sh scripts/uninstall.sh [--prefix DIR] [--purge]
#
# Stops and disables the service (the VM is left running), removes the application directory
# and the unit files. Keeps /etc/kiosk-vm-watchdog (the configuration) and
# /var/lib/kiosk-vm-watchdog (state, audit trail) unless --purge, which also removes the
# system user kiosk-vm-watchdog. Running it twice is harmless.
set -eu

NAME=kiosk-vm-watchdog
prefix=/opt/$NAME
destdir=${DESTDIR:-}
purge=no

say () { printf '%s\n' "uninstall: $*"; }
die () { printf '%s\n' "uninstall: $*" >&2; exit 1; }
usage () { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die '--prefix needs a directory'; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --destdir) [ $# -ge 2 ] || die '--destdir needs a directory'; destdir=$2; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --purge) purge=yes; shift ;;
    -h | --help) usage 0 ;;
    *) printf '%s\n' "uninstall: unknown option '$1'" >&2; usage 64 >&2 ;;
  esac
done
case $prefix in /*) prefix=${prefix%/} ;; *) die "--prefix must be an absolute path, got '$prefix'" ;; esac
case $prefix in / | /usr | /usr/local | /opt | /etc | /var) die "refusing --prefix $prefix: it is not an application directory" ;; esac
case $destdir in '' | /*) destdir=${destdir%/} ;; *) die "DESTDIR must be an absolute path, got '$destdir'" ;; esac
is_root=no
[ "$(id -u)" -eq 0 ] && is_root=yes
[ -n "$destdir" ] || [ $is_root = yes ] || die 'must run as root (sudo), or with DESTDIR=/some/dir'

systemd=no
[ -z "$destdir" ] && [ -d /run/systemd/system ] && systemd=yes
unit=$destdir/etc/systemd/system/$NAME.service
if [ $systemd = yes ] && [ -f "$unit" ]; then
  systemctl disable --now --quiet "$NAME.service" 2>/dev/null || true
  say "stopped and disabled $NAME.service (the VM keeps running)"
fi

remove () {
  [ -e "$1" ] || [ -L "$1" ] || return 0
  rm -rf "$1"
  say "removed $1"
}
app=$destdir$prefix
# Only a directory that install.sh made (it has our dist/cli.js) is removed whole.
if [ -d "$app" ]; then
  if [ -f "$app/dist/cli.js" ] && grep -q "\"name\": \"$NAME\"" "$app/package.json" 2>/dev/null; then
    remove "$app"
  else
    say "warning: $app does not look like a $NAME install; left alone"
  fi
fi
remove "$app.new"
remove "$app.old"
remove "$unit"
remove "$destdir/etc/systemd/user/kiosk-viewer.service"
remove "$destdir/etc/systemd/user/kiosk-session.target"
remove "$destdir/etc/systemd/user/kiosk-session.target.wants/kiosk-viewer.service"
rmdir "$destdir/etc/systemd/user/kiosk-session.target.wants" 2>/dev/null || true
# The unit's CacheDirectory= (V8's code cache of the removed bundle): of no use to any other version.
remove "$destdir/var/cache/$NAME"
[ $systemd = yes ] && systemctl daemon-reload

if [ $purge = yes ]; then
  remove "$destdir/etc/$NAME"
  remove "$destdir/var/lib/$NAME"
  # StateDirectory= with a dynamic owner lives in /var/lib/private; not used here, but harmless.
  remove "$destdir/var/lib/private/$NAME"
  if [ -z "$destdir" ] && [ $is_root = yes ] && getent passwd "$NAME" >/dev/null 2>&1; then
    userdel "$NAME" && say "removed the system user $NAME"
    if getent group "$NAME" >/dev/null 2>&1; then groupdel "$NAME" 2>/dev/null || true; fi
  fi
else
  for kept in "$destdir/etc/$NAME" "$destdir/var/lib/$NAME"; do
    [ -e "$kept" ] && say "kept $kept (remove it with --purge)"
  done
  getent passwd "$NAME" >/dev/null 2>&1 && [ -z "$destdir" ] && say "kept the system user $NAME (removed with --purge)"
fi
exit 0
