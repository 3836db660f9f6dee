#!/bin/sh
# Installs kiosk-vm-watchdog on a museum host (run as root from a checkout where `npm ci` ran):
#
#   sudo sh scripts/install.sh [--prefix DIR] [--node PATH] [--dist DIR] [--no-build]
#   npm run install-host            (the same, through npm; add options after --)
#
# What goes where (DESTDIR, from the environment or --destdir, is put in front of every path,
# for packaging or a look at the result; then no user is created and systemd is not touched):
#   PREFIX (/opt/kiosk-vm-watchdog)   dist/, public/ (dashboard), production node_modules/,
#                                     package.json, config.yaml.example, guest-scripts/,
#                                     share/ (kiosk files)
#   /etc/systemd/system/kiosk-vm-watchdog.service
#   /etc/systemd/user/kiosk-viewer.service         (the kiosk session's viewer, a user unit,
#   /etc/systemd/user/kiosk-session.target          wanted by the target the Openbox autostart starts)
#   /etc/kiosk-vm-watchdog/config.yaml   only when there is none: an existing one is never
#                                        replaced; a newer example goes beside it as config.yaml.new
#   system user and group kiosk-vm-watchdog, member of group libvirt (listed in /etc/group:
#   on Debian polkit admits qemu:///system clients by that)
#   systemctl daemon-reload and enable (only with systemd running and no DESTDIR; start it
#   yourself after editing the config: systemctl start kiosk-vm-watchdog)
#
# Running it again changes nothing unless the checkout changed: every file is compared first.
# Remove with scripts/uninstall.sh (same --prefix / DESTDIR).
set -eu

NAME=kiosk-vm-watchdog
prefix=/opt/$NAME
destdir=${DESTDIR:-}
node=
dist=
build=yes

say () { printf '%s\n' "install: $*"; }
die () { printf '%s\n' "install: $*" >&2; exit 1; }
usage () { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die '--prefix needs a directory'; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --destdir) [ $# -ge 2 ] || die '--destdir needs a directory'; destdir=$2; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --node) [ $# -ge 2 ] || die '--node needs the path of the node binary'; node=$2; shift 2 ;;
    --node=*) node=${1#*=}; shift ;;
    --dist) [ $# -ge 2 ] || die '--dist needs a directory'; dist=$2; shift 2 ;;
    --dist=*) dist=${1#*=}; shift ;;
    --no-build) build=no; shift ;;
    -h | --help) usage 0 ;;
    *) printf '%s\n' "install: unknown option '$1'" >&2; usage 64 >&2 ;;
  esac
done
case $prefix in /*) prefix=${prefix%/} ;; *) die "--prefix must be an absolute path, got '$prefix'" ;; esac
case $destdir in '' | /*) destdir=${destdir%/} ;; *) die "DESTDIR must be an absolute path, got '$destdir'" ;; esac

repo=$(cd "$(dirname "$0")/.." && pwd)
{ [ -f "$repo/package.json" ] && [ -f "$repo/systemd/$NAME.service" ]; } || die "run me from a kiosk-vm-watchdog checkout ($repo is not one)"
is_root=no
[ "$(id -u)" -eq 0 ] && is_root=yes
[ -n "$destdir" ] || [ $is_root = yes ] || die 'must run as root (sudo), or with DESTDIR=/some/dir for a staged install'

# --- the node that will run the service -------------------------------------------------------
[ -n "$node" ] || node=$(command -v node || true)
[ -n "$node" ] || die 'node not found; install Node.js 20.11 or newer (Debian 12 ships 18: use NodeSource or nodejs.org)'
node=$(cd "$(dirname "$node")" && pwd)/$(basename "$node")
[ -x "$node" ] || die "$node is not executable"
"$node" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 11) ? 0 : 1)' ||
  die "$node is Node $("$node" -p process.versions.node); kiosk-vm-watchdog needs 20.11 or newer"

# --- build ------------------------------------------------------------------------------------
[ -d "$repo/node_modules" ] || die "no node_modules in $repo: run 'npm ci' there first"
if [ -z "$dist" ]; then
  dist=$repo/dist
  if [ $build = yes ]; then
    say 'building (npm run build)'
    (cd "$repo" && npm run build --silent) || die 'the build failed; fix it or install a tested build with --no-build'
  fi
fi
[ -f "$dist/cli.js" ] || die "$dist/cli.js is missing: build first (npm run build), or name the built tree with --dist"

# --- stage the application tree ---------------------------------------------------------------
app=$destdir$prefix
# Staged beside its destination, so the finished tree is moved into place by a rename.
mkdir -p "$(dirname "$app")"
work=$(mktemp -d "$(dirname "$app")/.$NAME-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
stage=$work/app
mkdir -p "$stage/share"
cp -R "$dist" "$stage/dist"
# dist/ is the bundle (scripts/build.mjs). Its source maps stay: the code is minified, and with
# NODE_OPTIONS=--enable-source-maps a stack trace names src/ lines (src/ itself is not needed).
# dist/{src,test,bench,scripts} are what a `tsc -p .` (the type-check config) leaves behind.
rm -rf "$stage/dist/src" "$stage/dist/test" "$stage/dist/bench" "$stage/dist/scripts"
cp "$repo/package.json" "$repo/package-lock.json" "$stage/"
[ -f "$repo/README.md" ] && cp "$repo/README.md" "$stage/"
cp "$repo/config.yaml" "$stage/config.yaml.example"
[ -d "$repo/guest-scripts" ] && cp -R "$repo/guest-scripts" "$stage/guest-scripts"
# The dashboard's static files: the service serves public/ beside package.json (src/version.ts).
[ -d "$repo/public" ] && cp -R "$repo/public" "$stage/public"
cp "$repo/systemd/openbox-autostart" "$repo/systemd/kiosk-viewer.service" "$repo/systemd/kiosk-session.target" "$stage/share/"
[ -f "$repo/systemd/README.md" ] && cp "$repo/systemd/README.md" "$stage/share/README.systemd.md"
# Production dependencies only, copied from this checkout's node_modules (a museum host may have
# no internet): npm lists them from package-lock.json; tar copies exactly those directories.
(cd "$repo" && npm ls --omit=dev --parseable --all 2>/dev/null) | sed -n "s|^$repo/||p" | grep '^node_modules/' > "$work/packages" || true
grep -qx 'node_modules/fastify' "$work/packages" ||
  die "npm ls found no production packages in $repo/node_modules: run 'npm ci' there"
(cd "$repo" && tar -cf - -T "$work/packages") | (cd "$stage" && tar -xf -) ||
  die 'copying the production packages failed'
# Readable by the service user, writable by root only, whatever the checkout's umask was.
chmod -R u+rwX,go+rX,go-w "$stage"

changed=no
if [ -d "$app" ] && diff -r -q "$stage" "$app" >/dev/null 2>&1; then
  say "$app is up to date"
else
  # Swapped in whole, so a running service never sees half an upgrade on disk.
  rm -rf "$app.old"
  [ -d "$app" ] && mv "$app" "$app.old"
  mv "$stage" "$app"
  rm -rf "$app.old"
  say "installed the application to $app"
  changed=yes
fi

# --- files outside the application tree -------------------------------------------------------
# install_file SOURCE TARGET MODE: copies only when the content differs.
install_file () {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    return 1
  fi
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp.$$"
  chmod "$3" "$2.tmp.$$"
  mv "$2.tmp.$$" "$2"
  say "installed $2"
}

# The unit names the node binary and the prefix of this host.
sed -e "s|^ExecStart=/usr/bin/node /opt/$NAME/|ExecStart=$node $prefix/|" -e "s|/opt/$NAME/|$prefix/|g" \
  "$repo/systemd/$NAME.service" > "$work/$NAME.service"
grep -q "^ExecStart=$node $prefix/dist/cli.js serve" "$work/$NAME.service" ||
  die "systemd/$NAME.service: its ExecStart line is not the expected one; update this script"
units_changed=no
config_changed=no
install_file "$work/$NAME.service" "$destdir/etc/systemd/system/$NAME.service" 0644 && units_changed=yes
install_file "$repo/systemd/kiosk-viewer.service" "$destdir/etc/systemd/user/kiosk-viewer.service" 0644 && units_changed=yes
install_file "$repo/systemd/kiosk-session.target" "$destdir/etc/systemd/user/kiosk-session.target" 0644 && units_changed=yes
# What `systemctl --global enable kiosk-viewer.service` makes, made by hand so that it also
# works in a DESTDIR and without systemd running: the session target wants the viewer.
wants=$destdir/etc/systemd/user/kiosk-session.target.wants
if [ "$(readlink "$wants/kiosk-viewer.service" 2>/dev/null)" != ../kiosk-viewer.service ]; then
  mkdir -p "$wants"
  ln -sfn ../kiosk-viewer.service "$wants/kiosk-viewer.service"
  say "linked $wants/kiosk-viewer.service (kiosk-session.target wants the viewer, as systemctl --global enable would)"
  units_changed=yes
fi

# The configuration: the repository's example, pointed at the host's libvirt and at the state
# directory systemd gives the service (absolute, so `doctor` run as the service user from any
# directory reads the service's data; a relative data_dir would be relative to /etc/$NAME).
sed -e 's|^libvirt_uri: test:///default$|libvirt_uri: qemu:///system|' \
  -e "s|^data_dir: \\./data\$|data_dir: /var/lib/$NAME|" "$repo/config.yaml" > "$work/config.yaml"
grep -q '^libvirt_uri: qemu:///system$' "$work/config.yaml" ||
  say "warning: config.yaml has no 'libvirt_uri: test:///default' line to point at qemu:///system; check libvirt_uri"
grep -q "^data_dir: /var/lib/$NAME\$" "$work/config.yaml" ||
  say "warning: config.yaml has no 'data_dir: ./data' line to point at /var/lib/$NAME; check data_dir"
confdir=$destdir/etc/$NAME
config=$confdir/config.yaml
if [ ! -e "$config" ]; then
  install_file "$work/config.yaml" "$config" 0640
  config_changed=yes
  say "edit $config (vm_name, snapshot_name, ...), then: systemctl start $NAME"
elif cmp -s "$work/config.yaml" "$config"; then
  say "$config is unchanged"
else
  # Never overwrite a technician's configuration.
  if install_file "$work/config.yaml" "$config.new" 0640; then
    config_changed=yes
    say "kept your $config; the new example is beside it as config.yaml.new (compare: diff -u $config $config.new)"
  else
    say "kept your $config (config.yaml.new beside it is the current example)"
  fi
fi

# --- system user ------------------------------------------------------------------------------
if [ -n "$destdir" ]; then
  say "DESTDIR is set: not creating the system user $NAME (do it on the host: scripts/install.sh there, or useradd)"
elif [ $is_root = no ]; then
  say "not root: not creating the system user $NAME"
else
  if ! getent passwd "$NAME" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "/var/lib/$NAME" --no-create-home \
      --shell /usr/sbin/nologin --comment 'kiosk-vm-watchdog service' "$NAME"
    say "created the system user $NAME"
  fi
  if getent group libvirt >/dev/null 2>&1; then
    if ! id -nG "$NAME" | tr ' ' '\n' | grep -qx libvirt; then
      usermod -a -G libvirt "$NAME"
      say "added $NAME to the group libvirt (qemu:///system)"
    fi
  else
    say 'warning: there is no group libvirt: install libvirt (apt-get install libvirt-daemon-system) and run this again'
  fi
  for f in "$config" "$config.new"; do
    [ -f "$f" ] || continue
    chgrp "$NAME" "$f"
    chmod 0640 "$f"
  done
fi

# --- systemd ----------------------------------------------------------------------------------
if [ -n "$destdir" ]; then
  :
elif [ ! -d /run/systemd/system ]; then
  say 'systemd is not running here (not PID 1): not reloading or enabling the unit'
else
  [ $units_changed = yes ] && systemctl daemon-reload
  if ! systemctl is-enabled --quiet "$NAME.service" 2>/dev/null; then
    systemctl enable --quiet "$NAME.service"
    say "enabled $NAME.service (starts at boot)"
  fi
  if [ $changed = yes ] || [ $units_changed = yes ]; then
    systemctl is-active --quiet "$NAME.service" && say "it is running the previous version: systemctl restart $NAME (the VM keeps running)"
  fi
fi
[ $changed = yes ] || [ $units_changed = yes ] || [ $config_changed = yes ] || say 'nothing to change'
exit 0
