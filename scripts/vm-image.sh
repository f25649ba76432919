#!/usr/bin/env bash
# The VM image `vm-busybox` for the VM tests (agent/vm.py), built once per content of its
# build context (this script and images/vm-busybox) and not at all when it is already there.
#
#   scripts/vm-image.sh [DIR]     build into DIR/vm-busybox (default /var/lib/dockyard/vm-images)
#
# A VM image is a directory the agent finds by name under its --vm-images directory:
#   vmlinuz      the guest kernel (Debian's linux-image-cloud-amd64; QEMU boots it with
#                -kernel/-initrd, so the disk needs no boot loader)
#   initrd.img   here the whole guest: busybox-static + the virtio/isofs/button modules + /init
#   disk.qcow2   the base disk each VM gets a copy-on-write overlay of (ext4, 64 MiB)
#   image.json   {"cmdline": ..., "min_memory_bytes": ...}
# The kernel package is downloaded with `apt-get download` once (cached under
# /var/cache/dockyard/vm) and unpacked there; nothing is installed on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-/var/lib/dockyard/vm-images}/vm-busybox
CACHE=/var/cache/dockyard/vm
CONTEXT=(scripts/vm-image.sh images/vm-busybox)
digest=$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
           -cf - "${CONTEXT[@]}" | sha256sum | cut -c1-16)
if [ "$(cat "$DEST/.context" 2>/dev/null)" = "$digest" ]; then
  echo "$DEST is built from this context ($digest): nothing to build"
  exit 0
fi
mkdir -p "$CACHE"
pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$pkg" ] || { echo "linux-image-cloud-amd64 is unknown to apt (apt-get update?)" >&2; exit 1; }
if [ ! -d "$CACHE/$pkg" ]; then
  (cd "$CACHE" && apt-get download -q "$pkg" 2>/dev/null && dpkg-deb -x "$pkg"_*.deb "$pkg.tmp" \
     && rm -f "$pkg"_*.deb && mv "$pkg.tmp" "$pkg")
fi
kdir="$CACHE/$pkg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,lib/modules,etc}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover \
         net_failover virtio_net virtio_blk cdrom isofs evdev button; do
  ko=$(find "$kdir/lib/modules" -name "$m.ko" | head -n1)
  [ -n "$ko" ] || { echo "module $m not in $pkg" >&2; exit 1; }
  cp "$ko" "$root/lib/modules/"
done
install -m 0755 images/vm-busybox/init "$root/init"
mkdir -p "$work/out" "$work/disk"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/out/initrd.img"
cp "$kdir"/boot/vmlinuz-* "$work/out/vmlinuz"
echo "vm-busybox $digest" > "$work/disk/image-marker"
truncate -s 64M "$work/disk.raw"
mkfs.ext4 -q -F -L data -d "$work/disk" "$work/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/out/disk.qcow2"
printf '{"cmdline": "console=ttyS0 panic=-1", "min_memory_bytes": %d}\n' $((128 << 20)) \
  > "$work/out/image.json"
echo "$digest" > "$work/out/.context"
rm -rf "$DEST.new" && mkdir -p "$(dirname "$DEST")" && cp -r "$work/out" "$DEST.new"
rm -rf "$DEST" && mv "$DEST.new" "$DEST"
echo "built $DEST ($digest)"
