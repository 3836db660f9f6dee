#!/bin/sh
# Builds the Debian package kiosk-vm-watchdog_<version>_<arch>.deb from this checkout (after
# `npm ci`), with dpkg-deb; no root needed:
#
#   npm run package:deb [-- --out DIR] [--dist DIR | --no-build] [--version V]   (or sh scripts/package-deb.sh ...)
#
# Contents: the application in /usr/lib/kiosk-vm-watchdog (not /opt, which Debian packages must
# not use: scripts/install.sh keeps /opt for checkouts), with the build and the production
# node_modules (koffi has native code, hence the architecture), the command
# /usr/bin/kiosk-vm-watchdog, the service unit in /lib/systemd/system, the viewer's
# user units in /usr/lib/systemd/user, /etc/kiosk-vm-watchdog/config.yaml as a conffile (dpkg
# keeps a technician's edits across upgrades and asks, or keeps them, when both changed).
# postinst makes the system user (in group libvirt, listed in /etc/group: polkit on Debian 12
# admits qemu:///system clients by it) and enables the unit; it is started by hand after the
# config is edited; an upgrade restarts it when it runs. Node >= 20.11 comes from Debian 13's
# `nodejs` or NodeSource's `nodejs` on Debian 12 (Debian 12's own is 18).
set -eu
NAME=kiosk-vm-watchdog
out=
forward=
version=
# Who answers for the package (DEB_MAINTAINER overrides; lintian wants a real address).
maintainer=${DEB_MAINTAINER:-kiosk-vm-watchdog maintainers <kiosk-vm-watchdog@example.org>}
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    # Passed on to install.sh: package a given build instead of building.
    --dist) forward="$forward --dist $2"; shift 2 ;;
    --no-build) forward="$forward --no-build"; shift ;;
    # Another version than package.json's (e.g. a test's upgrade).
    --version) version=$2; shift 2 ;;
    *) echo "package-deb: unknown option '$1'" >&2; exit 64 ;;
  esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$out" ] || out=$repo
command -v dpkg-deb >/dev/null || { echo 'package-deb: dpkg-deb is missing (apt-get install dpkg)' >&2; exit 1; }
[ -n "$version" ] || version=$(node -p "require('$repo/package.json').version")
arch=$(dpkg --print-architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/$NAME-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# The tree install.sh would put on a host, staged (DESTDIR: no user, no systemctl).
# shellcheck disable=SC2086 # options without spaces
DESTDIR=$root sh "$repo/scripts/install.sh" --prefix "/usr/lib/$NAME" --node /usr/bin/node $forward >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; exit 1; }
# Units where packages put them (/etc/systemd is the administrator's).
mkdir -p "$root/lib/systemd/system" "$root/usr/lib/systemd/user"
mv "$root/etc/systemd/system/$NAME.service" "$root/lib/systemd/system/"
mv "$root/etc/systemd/user/kiosk-viewer.service" "$root/etc/systemd/user/kiosk-session.target" "$root/usr/lib/systemd/user/"
mkdir -p "$root/usr/lib/systemd/user/kiosk-session.target.wants"
mv "$root/etc/systemd/user/kiosk-session.target.wants/kiosk-viewer.service" "$root/usr/lib/systemd/user/kiosk-session.target.wants/"
rm -rf "$root/etc/systemd"
app=$root/usr/lib/$NAME
mkdir -p "$root/usr/bin"
chmod 0755 "$app/dist/cli.js"
ln -s "../lib/$NAME/dist/cli.js" "$root/usr/bin/$NAME"
# What the modules ship but never run (their tests, benchmarks, docs pages, tooling files).
nm=$app/node_modules
find "$nm" -depth -type d \( -name test -o -name tests -o -name benchmarks -o -name integration -o -name .github \) -prune -exec rm -rf {} +
find "$nm" -type f \( -name '.gitattributes' -o -name '.npmignore' -o -name '.eslintrc*' -o -name '*.map' -o -name 'index.html' -path '*/pino/*' \) -delete
rm -rf "$nm/fastify/scripts" "$nm/koffi/cnoke.cjs" "$nm/koffi/doc"
rm -rf "$nm/pino-abstract-transport/.husky"
# Executable exactly the scripts (a #! first line), nothing else (LICENSE files came with +x).
find "$app" -type f -perm /111 ! -name '*.node' -exec chmod a-x {} +
find "$app" -type f ! -name '*.node' -exec awk 'FNR == 1 && /^#!/ { print FILENAME } { nextfile }' {} + | while IFS= read -r script; do chmod a+x "$script"; done
# Only this architecture's native koffi build.
find "$nm/@koromix" -mindepth 2 -maxdepth 2 -type d ! -name "linux_x64" -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$root/usr/share/doc/$NAME"
cp "$repo/README.md" "$root/usr/share/doc/$NAME/README.md"
printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\n\nFiles: *\nCopyright: 2025-2026 the kiosk-vm-watchdog authors\nLicense: MIT\nComment: each module under /usr/lib/%s/node_modules carries its own license file\n' "$NAME" "$NAME" > "$root/usr/share/doc/$NAME/copyright"
printf '%s (%s) stable; urgency=medium\n\n  * See the project history.\n\n -- %s  %s\n' "$NAME" "$version" "$maintainer" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
  gzip -9n > "$root/usr/share/doc/$NAME/changelog.gz"

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: $NAME
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: nodejs (>= 20.11), libvirt0, libsystemd0, libc6, libstdc++6, libgcc-s1, passwd, adduser
Recommends: libvirt-daemon-system
Suggests: virt-viewer, unclutter
Section: admin
Priority: optional
Homepage: https://example.invalid/kiosk-vm-watchdog
Description: heartbeat watchdog that reverts museum kiosk VMs to a snapshot
 Watches libvirt VMs of museum exhibition kiosks through guest heartbeats and
 reverts a hung VM to its "ready" snapshot. A systemd service with a REST API.
CONTROL
echo "/etc/$NAME/config.yaml" > "$root/DEBIAN/conffiles"

cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
NAME=kiosk-vm-watchdog
if [ "$1" = configure ]; then
  if ! getent passwd "$NAME" >/dev/null; then
    useradd --system --user-group --home-dir "/var/lib/$NAME" --no-create-home \
      --shell /usr/sbin/nologin --comment 'kiosk-vm-watchdog service' "$NAME"
  fi
  # Listed in /etc/group: on Debian 12 polkit admits qemu:///system clients by it.
  if getent group libvirt >/dev/null && ! id -nG "$NAME" | tr ' ' '\n' | grep -qx libvirt; then
    adduser --quiet "$NAME" libvirt
  fi
  chgrp "$NAME" "/etc/$NAME/config.yaml" && chmod 0640 "/etc/$NAME/config.yaml"
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ -z "$2" ]; then
      systemctl enable --quiet "$NAME.service"
      echo "$NAME: edit /etc/$NAME/config.yaml (vm_name, snapshot_name), then: systemctl start $NAME"
    else
      # An upgrade: the running service takes the new version (the VM keeps running).
      systemctl try-restart "$NAME.service"
    fi
  fi
fi
exit 0
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  # Stopping leaves the VM running.
  systemctl disable --now --quiet kiosk-vm-watchdog.service || true
fi
exit 0
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
NAME=kiosk-vm-watchdog
[ -d /run/systemd/system ] && systemctl daemon-reload || true
# The unit's CacheDirectory= (V8's code cache of the removed bundle): of no use to any other version.
if [ "$1" = remove ] || [ "$1" = purge ]; then rm -rf "/var/cache/$NAME"; fi
if [ "$1" = purge ]; then
  rm -rf "/var/lib/$NAME" "/var/lib/private/$NAME" "/etc/$NAME"
  if getent passwd "$NAME" >/dev/null; then userdel "$NAME" || true; fi
  if getent group "$NAME" >/dev/null; then groupdel "$NAME" 2>/dev/null || true; fi
fi
exit 0
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
deb=$out/${NAME}_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
