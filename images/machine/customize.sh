#!/bin/sh
# Edits to the debootstrap tree ROOT after the rootfs/ files were copied in (run on the build
# host, not in a chroot). Every step is idempotent.
set -eu
ROOT=${1:?usage: customize.sh ROOT}

# openssh-server's postinst made host keys; each instance makes its own (dockyard-init).
rm -f "$ROOT"/etc/ssh/ssh_host_*

# No CAP_AUDIT_CONTROL in a container: a required pam_loginuid would refuse every ssh session.
sed -i 's/^session\s\+required\s\+pam_loginuid\.so/session optional pam_loginuid.so/' \
  "$ROOT/etc/pam.d/sshd"

mkdir -p "$ROOT/etc/dockyard/supervisor.d" "$ROOT/var/log/supervisor"
chmod 0755 "$ROOT/usr/local/sbin/dockyard-init"

# Downloaded package lists and debs are build leftovers; the machine-id is per instance.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
if [ -f "$ROOT/etc/machine-id" ]; then : >"$ROOT/etc/machine-id"; fi
