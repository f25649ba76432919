"""What a dev-cluster made, written down as it is made (HOME/dev-cluster.json), so that
`down` removes exactly these objects, also after an `up` that failed half-way."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "dev-cluster.json"


@dataclass
class SimHost:
    name: str  # host1 …
    netns: str  # dyc<k>h<n>
    mgmt_ip: str  # mgmt0 inside the netns
    mgmt_link: str  # root-netns end of the management veth
    uplink_link: str  # root-netns end of the uplink veth (on the fabric)
    root: str  # directory of this host: docker/, ovs/, agent/, logs
    cgroup_parent: str
    pids: dict[str, int] = field(default_factory=dict)  # dockerd, ovsdb, vswitchd, agent


@dataclass
class ClusterState:
    index: int  # k: names dyc<k>…, management subnet 10.239.<k>.0/24
    home: str
    url: str = ""
    mgmt_bridge: str = ""
    fabric_bridge: str = ""
    server_pid: int = 0
    criu: str = ""  # directory whose `criu` the hosts' dockerd and agents use (--criu)
    entrance: str = ""  # HOST:PORT of host1's HTTP entrance of stacks (--entrance PORT)
    hosts: list[SimHost] = field(default_factory=list)

    def save(self) -> None:
        path = Path(self.home) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    def host(self, name: str) -> SimHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


def load(home: Path) -> ClusterState | None:
    try:
        raw = json.loads((home / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    hosts = [SimHost(**h) for h in raw.pop("hosts", [])]
    return ClusterState(**raw, hosts=hosts)
