"""Per-instance files the agent bind-mounts read-only: /etc/hosts and /etc/resolv.conf.

Written atomically (temp file + rename) under `<agent home>/instances/<id>/`, so a container
never sees a half-written file and a crash leaves either the old or the new content.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dockyard.errors import BackendError
from dockyard.model.agent import DesiredInstance, Peer


def render_hosts(d: DesiredInstance) -> str:
    """localhost, the instance itself, then every other instance of its network (by hostname
    and by instance name), so instances of a network resolve each other's names. A stack
    replica (its own peer entry says which stack) also names each replica of its stack by
    service: `web` is every replica of `web`, one line each (round robin by getaddrinfo)."""
    own = next((p for p in d.network.peers if p.ip == d.ip), None)
    stack = own.stack if own is not None else None

    def names(hostname: str, name: str, peer: Peer | None) -> str:
        out = [hostname] + [n for n in (name, peer.service if peer and stack is not None
                                        and peer.stack == stack else None)
                            if n and n != hostname]
        return " ".join(dict.fromkeys(out))

    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{d.ip}\t{names(d.hostname, d.name, own)}"]
    for peer in d.network.peers:
        if peer.ip != d.ip:
            lines.append(f"{peer.ip}\t{names(peer.hostname, peer.name, peer)}")
    return "\n".join(lines) + "\n"


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def render_resolv(d: DesiredInstance) -> str:
    return "".join(f"nameserver {server}\n" for server in d.dns)


class InstanceFiles:
    """`write` remembers each file's (inode, size, mtime) as it left it, so `unchanged` can
    tell with one stat per file that nobody touched them since (a resync's cheap check)."""

    def __init__(self, home: Path) -> None:
        self.root = home / "instances"
        self._stamps: dict[str, dict[Path, tuple[int, int, int]]] = {}

    def dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def hosts(self, instance_id: str) -> Path:
        return self.dir(instance_id) / "hosts"

    def resolv(self, instance_id: str) -> Path:
        return self.dir(instance_id) / "resolv.conf"

    def authorized_keys(self, instance_id: str) -> Path:
        return self.dir(instance_id) / "authorized_keys"

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """New files appear atomically (temp + rename). An existing file is rewritten in
        place: it is bind-mounted into a running container, and a rename would leave the
        container looking at the old inode."""
        if path.exists():
            with open(path, "r+") as fh:
                fh.write(text)
                fh.truncate()
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def write_hosts(self, d: DesiredInstance) -> None:
        """Refresh /etc/hosts of an existing instance (a peer came or went)."""
        path = self.hosts(d.id)
        if path.exists() and path.read_text() != render_hosts(d):
            try:
                self._write(path, render_hosts(d))
            except OSError as exc:
                raise BackendError(f"cannot write the hosts file of {d.name}: {exc}") from exc

    def write(self, d: DesiredInstance) -> None:
        self._stamps.pop(d.id, None)
        try:
            self.dir(d.id).mkdir(parents=True, exist_ok=True)
            files = [(self.hosts(d.id), render_hosts(d)), (self.resolv(d.id), render_resolv(d))]
            if d.ssh_keys:
                files.append((self.authorized_keys(d.id), "".join(k + "\n" for k in d.ssh_keys)))
            for path, text in files:
                if not path.exists() or path.read_text() != text:
                    self._write(path, text)
            self._stamps[d.id] = {path: _stamp(path) for path, _ in files}
        except OSError as exc:
            raise BackendError(f"cannot write the files of instance {d.name}: {exc}") from exc

    def unchanged(self, instance_id: str) -> bool:
        """The files are as the last `write` left them (False when it has not run)."""
        stamps = self._stamps.get(instance_id)
        if stamps is None:
            return False
        try:
            return all(_stamp(path) == stamp for path, stamp in stamps.items())
        except OSError:
            return False

    def remove(self, instance_id: str) -> None:
        self._stamps.pop(instance_id, None)
        shutil.rmtree(self.dir(instance_id), ignore_errors=True)

    def applied_restart(self, instance_id: str) -> int:
        try:
            data = json.loads((self.dir(instance_id) / "state.json").read_text())
        except (OSError, ValueError):
            return 0
        return int(data.get("restart_serial", 0))

    def set_applied_restart(self, instance_id: str, serial: int) -> None:
        try:
            self.dir(instance_id).mkdir(parents=True, exist_ok=True)
            self._write(self.dir(instance_id) / "state.json",
                        json.dumps({"restart_serial": serial}))
        except OSError as exc:
            raise BackendError(f"cannot write the state of instance {instance_id}: {exc}") \
                from exc

    def known_ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if p.is_dir()] if self.root.exists() else []
