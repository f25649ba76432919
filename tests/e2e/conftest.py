"""One dev-cluster of 3 hosts for the whole e2e package (short heartbeats), always removed,
right after the package's last test (package scope): its server, agents and dockerds do not
run on under the integration and unit tests.

The cluster gets its own home and CLI config, so a user's Dockyard is never touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.requirements import missing

ENTRANCE_PORT = 8080  # host1's HTTP entrance, in host1's own namespace (test_stacks_cluster)
DOCKYARD = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dockyard")


@dataclass
class DevCluster:
    home: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKYARD, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def ok(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"dockyard {' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def launch(self, name: str, host: str, network: str) -> dict[str, object]:
        self.ok("launch", "dockyard/busybox", name, "--host", host, "--network", network,
                "--no-lxcfs")
        shown: dict[str, object] = json.loads(self.ok("show", name, "--json"))
        assert shown["host"] == host
        return shown

    @property
    def entrance(self) -> str:
        """The address of host1's HTTP entrance (on its management address)."""
        from dockyard.devcluster import state
        st = state.load(self.home)
        assert st is not None and st.entrance, "the dev-cluster runs no entrance"
        return st.entrance.rsplit(":", 1)[0]

    def reaches(self, src: str, ip: str) -> bool:
        proc = self.cli("exec", src, "--", "ping", "-c", "2", "-W", "2", ip)
        return proc.returncode == 0

    def arp_reaches(self, src: str, ip: str) -> bool:
        """An L2 answer: an ARP request only goes as far as the VLAN of `src`."""
        proc = self.cli("exec", src, "--", "arping", "-c", "2", "-w", "3", "-I", "eth0", ip)
        return proc.returncode == 0


@pytest.fixture(scope="package")
def cluster() -> Iterator[DevCluster]:
    if os.geteuid() != 0 or shutil.which("ovs-vswitchd") is None:
        missing("root or Open vSwitch for the dev-cluster", "scripts/setup.sh, run as root")
    base = Path(tempfile.mkdtemp(prefix="dockyard-e2e-"))
    env = {**os.environ, "DOCKYARD_CONFIG": str(base / "config.json")}
    env.pop("DOCKYARD_URL", None)
    env.pop("DOCKYARD_TOKEN", None)
    dc = DevCluster(home=base / "home", env=env)
    try:
        dc.ok("dev-cluster", "up", "--hosts", "3", "--home", str(dc.home),
              "--heartbeat-timeout", "6", "--resync-interval", "10",
              "--entrance", str(ENTRANCE_PORT))
        yield dc
    finally:
        dc.cli("dev-cluster", "down", "--home", str(dc.home))
        shutil.rmtree(base, ignore_errors=True)
