#!/usr/bin/env bash
# Builds the e2e test guest from Debian packages only, cached in .cache/guest/KEY/:
#   vmlinuz        the kernel of the package linux-image-cloud-amd64 depends on (apt-get download
#                  + dpkg-deb -x; nothing is installed)
#   initramfs.img  busybox-static, that kernel's virtio modules (in dependency order),
#                  qemu-guest-agent (from its .deb, with the host's copies of its libraries),
#                  guest-scripts/linux/heartbeat.sh and guest-init.sh as /init
# KEY hashes everything that goes in (kernel and agent package versions, busybox, the heartbeat
# script, the init, this script), so an edit of any of them rebuilds. Prints on stdout:
#   KERNEL=/abs/path/vmlinuz
#   INITRD=/abs/path/initramfs.img
#   KEY=...
# Needs: root is not required, but apt-get download needs the package lists (apt-get update)
# and setup-host.sh's packages (busybox-static, cpio, kmod).
# KVW_E2E_KERNEL_PKG overrides the kernel package (default: what linux-image-cloud-amd64 depends on).
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HEARTBEAT=$REPO_ROOT/guest-scripts/linux/heartbeat.sh
INIT=$E2E_DIR/guest-init.sh
DEBS=$CACHE_DIR/debs
# Loaded in this order, each after what `modinfo -F depends` says it needs.
WANTED_MODULES=(virtio_pci virtio_net virtio_blk virtio_console)
t_start=$(now_ms)

for tool in busybox cpio gzip modinfo dpkg-deb apt-get sha256sum ldd; do
  command -v "$tool" >/dev/null || die "$tool not found: run test/e2e/setup-host.sh first"
done
[ -f "$HEARTBEAT" ] || die "missing $HEARTBEAT"
[ -f "$INIT" ] || die "missing $INIT"
mkdir -p "$DEBS"

# Prints the newest version of package $1 known to apt, or nothing.
candidate () { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { if ($2 != "(none)") print $2 }'; }

# Downloads package $1 into $DEBS once; prints the .deb's path.
fetch_deb () {
  local pkg=$1 version deb
  version=$(candidate "$pkg")
  if [ -z "$version" ]; then
    log "apt does not know $pkg; running apt-get update"
    apt-get update -q >>"$RUN_DIR/apt.log" 2>&1 || die "apt-get update failed; see $RUN_DIR/apt.log"
    version=$(candidate "$pkg")
    [ -n "$version" ] || die "no installable version of $pkg"
  fi
  deb=$(ls "$DEBS/${pkg}_"*"_amd64.deb" 2>/dev/null | while read -r f; do
    [ "$(dpkg-deb -f "$f" Version)" = "$version" ] && echo "$f"
  done | head -n1)
  if [ -z "$deb" ]; then
    (cd "$DEBS" && apt-get download -q "$pkg=$version" >>"$RUN_DIR/apt.log" 2>&1) || die "apt-get download $pkg=$version failed; see $RUN_DIR/apt.log"
    deb=$(ls -t "$DEBS/${pkg}_"*"_amd64.deb" | head -n1)
  fi
  printf '%s\n' "$deb"
}

build () {
  local kernel_pkg kernel_deb agent_deb key out kdir order m
  kernel_pkg=${KVW_E2E_KERNEL_PKG:-}
  if [ -z "$kernel_pkg" ]; then
    [ -n "$(candidate linux-image-cloud-amd64)" ] || apt-get update -q >>"$RUN_DIR/apt.log" 2>&1
    kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
    [ -n "$kernel_pkg" ] || die 'cannot tell which kernel linux-image-cloud-amd64 depends on (apt-cache depends)'
  fi
  kernel_deb=$(fetch_deb "$kernel_pkg") || exit 1
  agent_deb=$(fetch_deb qemu-guest-agent) || exit 1

  key=$( {
    basename "$kernel_deb"; basename "$agent_deb"; busybox | head -n1
    sha256sum "$HEARTBEAT" "$INIT" "${BASH_SOURCE[0]}" | cut -d' ' -f1
  } | sha256sum | cut -c1-16)
  out=$CACHE_DIR/guest/$key
  if [ -s "$out/initramfs.img" ] && [ -s "$out/vmlinuz" ]; then
    log "guest $key is cached"
    printf 'KERNEL=%s\nINITRD=%s\nKEY=%s\n' "$out/vmlinuz" "$out/initramfs.img" "$key"
    return 0
  fi

  log "building guest $key (kernel $(basename "$kernel_deb"))"
  work=$(mktemp -d "$CACHE_DIR/build.XXXXXX") # global: the EXIT trap needs it
  trap 'rm -rf "$work"' EXIT
  dpkg-deb -x "$kernel_deb" "$work/kernel" || die "dpkg-deb -x $kernel_deb failed"
  dpkg-deb -x "$agent_deb" "$work/agent" || die "dpkg-deb -x $agent_deb failed"
  kdir=$(ls -d "$work"/kernel/lib/modules/*/ | head -n1)
  [ -n "$kdir" ] || die "no lib/modules in $kernel_deb"

  local root=$work/root
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,run,tmp,etc,lib/modules,usr/bin,usr/sbin,usr/local/bin}
  cp /bin/busybox "$root/bin/busybox"
  ldd /bin/busybox >/dev/null 2>&1 && die '/bin/busybox is not static: install busybox-static'
  cp "$INIT" "$root/init"
  cp "$HEARTBEAT" "$root/usr/local/bin/heartbeat.sh"
  chmod 755 "$root/init" "$root/usr/local/bin/heartbeat.sh"
  mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

  # Modules: depth-first on `depends=`, so each comes after what it needs.
  order=()
  add_module () {
    local name=$1 file dep
    for m in "${order[@]}"; do [ "$m" = "$name" ] && return 0; done
    file=$(find "$kdir/kernel" -name "$name.ko*" | head -n1)
    if [ -z "$file" ]; then
      grep -q "/$name.ko" "$kdir/modules.builtin" 2>/dev/null && return 0
      die "module $name is neither in $kernel_pkg nor built in"
    fi
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do add_module "$dep"; done
    case $file in
      *.xz) xz -dc "$file" >"$root/lib/modules/$name.ko" ;;
      *.zst) zstd -qdc "$file" >"$root/lib/modules/$name.ko" ;;
      *) cp "$file" "$root/lib/modules/$name.ko" ;;
    esac
    order+=("$name")
  }
  for m in "${WANTED_MODULES[@]}"; do add_module "$m"; done
  printf '%s\n' "${order[@]}" >"$root/etc/modules.order"

  # qemu-guest-agent with the host's copies of its libraries (same Debian release).
  cp "$work/agent/usr/sbin/qemu-ga" "$root/usr/sbin/qemu-ga"
  local lib
  for lib in $(ldd "$root/usr/sbin/qemu-ga" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  ldd "$root/usr/sbin/qemu-ga" | grep -q 'not found' && die "qemu-ga needs libraries the host lacks: $(ldd "$root/usr/sbin/qemu-ga" | grep 'not found')"

  mkdir -p "$out"
  cp "$(ls "$work"/kernel/boot/vmlinuz-* | head -n1)" "$out/vmlinuz.tmp"
  (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$out/initramfs.img.tmp" || die 'cpio/gzip failed'
  mv "$out/vmlinuz.tmp" "$out/vmlinuz"
  mv "$out/initramfs.img.tmp" "$out/initramfs.img"
  log "built guest $key in $(( $(now_ms) - t_start )) ms (modules: ${order[*]}; initramfs $(du -h "$out/initramfs.img" | cut -f1))"
  printf 'KERNEL=%s\nINITRD=%s\nKEY=%s\n' "$out/vmlinuz" "$out/initramfs.img" "$key"
}

with_lock guest build
