"""Small fakes at the adapter seams: a Docker engine and a host network kept in dicts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dockyard.adapters.docker_engine import (
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    Resources,
)
from dockyard.errors import BackendError, NotFound
from dockyard.model.agent import DesiredInstance, DesiredNetwork


class FakeEngine:
    def __init__(self, images: set[str] | None = None) -> None:
        self.images = images or {"img"}
        self.containers: dict[str, ContainerInfo] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.calls: list[str] = []
        self.fail_start = False
        self._pid = 1000

    def inspect(self, name: str) -> ContainerInfo | None:
        return self.containers.get(name)

    def create(self, spec: ContainerSpec) -> str:
        self.calls.append(f"create {spec.name}")
        if spec.image not in self.images:
            raise NotFound(f"image {spec.image} not found")
        self.specs[spec.name] = spec
        cid = f"c-{spec.name}"
        if any(c.id == cid for c in self.containers.values()):
            cid += f"-{len(self.calls)}"
        self.containers[spec.name] = ContainerInfo(
            id=cid, name=spec.name, status="created", pid=0, labels=spec.labels,
            image=spec.image, exit_code=0, oom_killed=False, cpuset=spec.cpuset,
            resources=Resources(cpuset=spec.cpuset, cpu_shares=spec.cpu_shares,
                                cpu_quota=spec.cpu_quota, memory=spec.memory,
                                pids_limit=spec.pids_limit))
        return cid

    def start(self, name: str) -> ContainerInfo:
        self.calls.append(f"start {name}")
        if self.fail_start:
            raise BackendError("start failed")
        self._pid += 1
        info = replace(self.containers[name], status="running", pid=self._pid)
        self.containers[name] = info
        return info

    def stop(self, name: str, timeout: int) -> None:
        self.calls.append(f"stop {name}")
        key = self._key(name)
        if key is not None:
            self.containers[key] = replace(self.containers[key], status="exited", pid=0)

    def remove(self, name: str) -> None:
        self.calls.append(f"remove {name}")
        key = self._key(name)
        if key is not None:
            self.containers.pop(key)

    def _key(self, name: str) -> str | None:
        return next((k for k, c in self.containers.items() if name in (k, c.id)), None)

    def rename(self, name: str, new_name: str) -> None:
        self.calls.append(f"rename {name} {new_name}")
        key = self._key(name)
        if key is None:
            raise NotFound(f"container {name} not found")
        self.containers[new_name] = replace(self.containers.pop(key), name=new_name)

    def list_owned(self, cluster: str, instance_id: str | None = None) -> list[ContainerInfo]:
        return [c for c in self.containers.values()
                if c.labels.get("dockyard.cluster") == cluster
                and instance_id in (None, c.labels.get("dockyard.instance"))]

    def owned_states(self, cluster: str) -> list[ContainerState]:
        return [ContainerState(c.id, c.name, c.status, c.labels)
                for c in self.list_owned(cluster)]

    def update(self, name: str, want: Resources, fields: set[str]) -> None:
        self.calls.append(f"update {name} {sorted(fields)}")
        for key, info in self.containers.items():
            if info.id == name or key == name:
                res = replace(info.resources, **{f: getattr(want, f) for f in fields})
                self.containers[key] = replace(info, resources=res, cpuset=res.cpuset)


@dataclass
class FakeEth0:
    mac: str
    addresses: list[str]
    up: bool = True


@dataclass
class FakeNetwork:
    bridges: set[str] = field(default_factory=set)
    plumbed: dict[int, FakeEth0] = field(default_factory=dict)
    veths: set[str] = field(default_factory=set)
    arrivals: list[str] = field(default_factory=list)
    fail_plumb: bool = False

    def ensure_network(self, net: DesiredNetwork) -> None:
        self.bridges.add(net.bridge)

    def plumb(self, pid: int, d: DesiredInstance) -> None:
        if self.fail_plumb:
            raise BackendError("veth name taken")
        self.plumbed[pid] = FakeEth0(d.mac, [f"{d.ip}/{d.prefixlen}"])
        self.veths.add(d.id)

    def arrived(self, d: DesiredInstance) -> None:
        self.arrivals.append(d.id)

    def unplumb(self, instance_id: str) -> None:
        self.veths.discard(instance_id)

    def eth0(self, pid: int) -> FakeEth0 | None:
        return self.plumbed.get(pid)
