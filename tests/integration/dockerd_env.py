"""A second, private dockerd for tests that must stop or restart the engine (ENVIRONMENT.md:
own data-root, exec-root, socket, pidfile, cgroup parent, a bridge made beforehand, no
iptables, live-restore, and its own empty config file). Never `--bridge=none`."""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.integration.dockyard_env import free_subnet

IMAGE = "dockyard/busybox:latest"


@dataclass
class PrivateDockerd:
    root: Path
    bridge: str
    gateway: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def docker(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True,
                              text=True, **kw)  # type: ignore[call-overload]

    def start(self) -> None:
        (self.root / "daemon.json").write_text("{}")
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--config-file", str(self.root / "daemon.json"),
                 "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                 "-H", self.url, "--pidfile", str(self.root / "docker.pid"),
                 "--bridge", self.bridge, "--iptables=false", "--live-restore",
                 "--cgroup-parent", self.bridge],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        for _ in range(120):
            if self.docker("info").returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.25)
        raise RuntimeError("private dockerd did not start: " +
                           (self.root / "dockerd.log").read_text()[-2000:])

    def stop(self) -> None:
        """SIGTERM, as a service manager would; with live-restore containers keep running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.proc = None
        for _ in range(100):  # the old pidfile is released when the daemon is really gone
            if not (self.root / "docker.pid").exists():
                break
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()

    def load_image(self) -> None:
        save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", self.url, "load"], stdin=save.stdout,
                       capture_output=True, check=True)
        assert save.stdout is not None
        save.stdout.close()
        save.wait()

    def cleanup(self) -> None:
        if self.proc is None and self.sock.exists():
            self.start()
        if self.proc is not None:
            ids = self.docker("ps", "-aq").stdout.split()
            if ids:
                self.docker("rm", "-f", *ids)
        self.stop()
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        _remove_cgroups(self.bridge)


def _remove_cgroups(parent: str) -> None:
    base = Path("/sys/fs/cgroup")
    for ctrl in base.iterdir() if base.exists() else []:
        path = ctrl / parent
        if path.is_dir():
            for sub in sorted(path.rglob("*"), reverse=True):
                if sub.is_dir():
                    os.rmdir(sub)
            os.rmdir(path)


def make_dockerd() -> PrivateDockerd:
    bridge = next(name for name in (f"dyxd{random.randint(1, 9999)}" for _ in range(100))
                  if not Path(f"/sys/class/net/{name}").exists())
    gateway = str(ipaddress.ip_network(free_subnet("10.246.0.0/16")).network_address + 1)
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"{gateway}/24", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    root = Path(tempfile.mkdtemp(prefix="dockyard-dockerd-"))
    daemon = PrivateDockerd(root=root, bridge=bridge, gateway=gateway)
    try:
        daemon.start()
        daemon.load_image()
    except Exception:
        daemon.cleanup()
        raise
    return daemon
