#!/usr/bin/env bash
# The VM image `vm-busybox` for the VM tests (agent/vm.py), built once per content of its
# build context (this script and images/vm-busybox) and not at all when it is already there.
#
#   scripts/vm-image.sh [DIR]     build into DIR/vm-busybox (default /var/lib/dockyard/vm-images)
#
# A VM image is a directory the agent finds by name under its --vm-images directory:
#   vmlinuz      the guest kernel (Debian's linux-image-cloud-amd64; QEMU boots it with
#                -kernel/-initrd, so the disk needs no boot loader)
#   initrd.img   here the whole guest: busybox-static + the virtio/isofs/button/console modules
#                + /init, QEMU's guest agent (qemu-ga, for `dockyard exec`) and dropbear (SSH),
#                with the shared libraries they need
#   disk.qcow2   the base disk each VM gets a copy-on-write overlay of (ext4, 64 MiB)
#   image.json   {"cmdline": ..., "min_memory_bytes": ...}
# The kernel, qemu-guest-agent and dropbear-bin (+ libtomcrypt1, libtommath1) packages are
# downloaded with `apt-get download` once (cached under /var/cache/dockyard/vm) and unpacked
# there; nothing is installed on the host. Their other libraries (glib, libc …) are the host's
# own Debian 12 ones (qemu-system-x86 pulls them in), found with ldd.
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
unpack() {  # unpack Debian package $1 (file name prefix $2) into $3 once; nothing installed
  [ -d "$3" ] && return 0
  (cd "$CACHE" && rm -f "$2"_*.deb && apt-get download -q "$1" 2>/dev/null \
     && dpkg-deb -x "$2"_*.deb "$3.tmp" && rm -f "$2"_*.deb && mv "$3.tmp" "$3")
}
fetch() {  # the directory package $1 (its candidate version) is unpacked in
  local ver
  ver=$(apt-cache policy "$1" | awk '/Candidate:/{print $2}')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "$1 is unknown to apt (apt-get update?)" >&2; exit 1; }
  unpack "$1=$ver" "$1" "$CACHE/$1_${ver//:/%3a}" >&2 || { echo "cannot download $1" >&2; exit 1; }
  echo "$CACHE/$1_${ver//:/%3a}"
}
pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$pkg" ] || { echo "linux-image-cloud-amd64 is unknown to apt (apt-get update?)" >&2; exit 1; }
unpack "$pkg" "$pkg" "$CACHE/$pkg"
kdir="$CACHE/$pkg"
qga=$(fetch qemu-guest-agent)
drop=$(fetch dropbear-bin)
libdirs="$(fetch libtomcrypt1)/usr/lib/x86_64-linux-gnu:$(fetch libtommath1)/usr/lib/x86_64-linux-gnu"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,lib/modules,etc}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover \
         net_failover virtio_net virtio_blk cdrom isofs evdev button virtio_console; do
  ko=$(find "$kdir/lib/modules" -name "$m.ko" | head -n1)
  [ -n "$ko" ] || { echo "module $m not in $pkg" >&2; exit 1; }
  cp "$ko" "$root/lib/modules/"
done
install -m 0755 images/vm-busybox/init "$root/init"
install -D -m 0755 "$qga/usr/sbin/qemu-ga" "$root/usr/sbin/qemu-ga"
install -D -m 0755 "$drop/usr/sbin/dropbear" "$root/usr/sbin/dropbear"
# their shared libraries (and the loader), resolved as on the host plus the two unpacked
# ones, all into /lib/x86_64-linux-gnu with an ld.so.cache of the guest's own
mkdir -p "$root/lib/x86_64-linux-gnu" "$root/lib64"
for bin in "$root/usr/sbin/qemu-ga" "$root/usr/sbin/dropbear"; do
  LD_LIBRARY_PATH=$libdirs ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
done | sort -u | while read -r lib; do
  case "$lib" in
    */ld-linux-x86-64.so.2) cp -L "$lib" "$root/lib64/ld-linux-x86-64.so.2" ;;
    *) cp -L "$lib" "$root/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
  esac
done
if LD_LIBRARY_PATH=$libdirs ldd "$root/usr/sbin/qemu-ga" "$root/usr/sbin/dropbear" | grep -q "not found"; then
  echo "a library of qemu-ga or dropbear is missing on this host" >&2; exit 1
fi
echo /lib/x86_64-linux-gnu > "$root/etc/ld.so.conf"
ldconfig -r "$root"
printf 'root:*:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf '/bin/sh\n' > "$root/etc/shells"
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
