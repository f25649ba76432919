"""Containers through dockerd: create, start, inspect, update, stop, remove, list, logs.

Part of the `DockerEngine` facade (`docker_engine`). A container that vanished
mid-operation is a normal answer (`inspect` returns None, `remove`/`stop` succeed), not a
crash. The create path costs three round-trips: create, start, inspect (for the PID to
plumb).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from docker.types import LogConfig, Mount

from dockyard.adapters.docker_sdk import post_json, translate
from dockyard.errors import BackendError, Conflict, NotFound

__all__ = ["CPU_PERIOD", "RESTART_POLICY", "ContainerInfo", "ContainerSpec", "ContainerState",
           "Containers", "MountSpec", "Resources", "container_info", "cpu_quota"]


@dataclass(frozen=True)
class MountSpec:
    source: str
    target: str
    read_only: bool
    kind: str  # "bind" | "volume"
    propagation: str | None = None  # bind only: "rslave", "rshared", ... (None: Docker's default)


# Docker brings an instance's container back after a crash or a dockerd restart
RESTART_POLICY = "unless-stopped"


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    hostname: str
    labels: dict[str, str]
    env: dict[str, str]
    cpuset: str
    pids_limit: int
    cpu_quota: int | None = None
    cpu_shares: int | None = None
    memory: int | None = None
    mounts: list[MountSpec] = field(default_factory=list)
    restart_policy: str = RESTART_POLICY
    log_max_size: str = "10m"
    log_max_file: int = 3
    stop_timeout: int = 10
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)  # e.g. no-new-privileges
    healthcheck: dict[str, Any] | None = None  # Docker's Healthcheck (durations in ns)
    command: list[str] | None = None  # None: the image's CMD
    entrypoint: list[str] | None = None  # None: the image's; []: none


@dataclass(frozen=True)
class Resources:
    """The limits dockerd can change on a running container (`docker update`)."""

    cpuset: str = ""
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # microseconds per CPU_PERIOD; None = no quota
    memory: int | None = None
    pids_limit: int | None = None


CPU_PERIOD = 100_000  # µs, as docker's --cpus


def cpu_quota(cpus: float | None) -> int | None:
    return int(cpus * CPU_PERIOD) if cpus else None


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | paused | restarting | exited | dead
    pid: int
    labels: dict[str, str]
    image: str
    exit_code: int
    oom_killed: bool
    cpuset: str
    resources: Resources = field(default_factory=lambda: Resources())
    health: str = "none"  # State.Health.Status: starting | healthy | unhealthy; none
    # overlay2: the directory of the container's own layer (diff/ and work/), "" otherwise
    layer_dir: str = ""
    # Config.NetworkDisabled: no libnetwork sandbox, runc makes the netns (see `create`)
    network_disabled: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting") and self.pid > 0


@dataclass(frozen=True)
class ContainerState:
    """A container as `docker ps -a` lists it: no PID, no limits (those need an inspect)."""

    id: str
    name: str
    status: str  # created | running | paused | restarting | exited | dead
    labels: dict[str, str]

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


def container_info(data: dict[str, Any]) -> ContainerInfo:
    """A `docker inspect` answer as a ContainerInfo."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    return ContainerInfo(
        id=data["Id"], name=str(data.get("Name", "")).lstrip("/"),
        status=str(state.get("Status", "")), pid=int(state.get("Pid") or 0),
        labels=dict(config.get("Labels") or {}), image=str(config.get("Image", "")),
        exit_code=int(state.get("ExitCode") or 0), oom_killed=bool(state.get("OOMKilled")),
        cpuset=str((data.get("HostConfig") or {}).get("CpusetCpus") or ""),
        resources=_resources(data.get("HostConfig") or {}),
        health=str((state.get("Health") or {}).get("Status") or "none"),
        layer_dir=_layer_dir(data), network_disabled=bool(config.get("NetworkDisabled")))


def _layer_dir(data: dict[str, Any]) -> str:
    upper = str(((data.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir") or "")
    return upper.rsplit("/", 1)[0] if upper.endswith("/diff") else ""


def _resources(host: dict[str, Any]) -> Resources:
    def positive(key: str) -> int | None:
        value = host.get(key)
        return int(value) if value and int(value) > 0 else None

    return Resources(cpuset=str(host.get("CpusetCpus") or ""), cpu_shares=positive("CpuShares"),
                     cpu_quota=positive("CpuQuota"), memory=positive("Memory"),
                     pids_limit=positive("PidsLimit"))


class Containers:
    """The container calls of `DockerEngine` (`api`: the SDK's low-level APIClient)."""

    api: Any

    def inspect(self, name: str) -> ContainerInfo | None:
        try:
            with translate(f"inspect {name}"):
                return container_info(self.api.inspect_container(name))
        except NotFound:
            return None

    def create(self, spec: ContainerSpec) -> str:
        mounts = [Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only,
                        propagation=m.propagation) for m in spec.mounts]
        host_config = self.api.create_host_config(
            network_mode="none", cpuset_cpus=spec.cpuset or None,
            cpu_period=CPU_PERIOD if spec.cpu_quota else None, cpu_quota=spec.cpu_quota,
            cpu_shares=spec.cpu_shares, mem_limit=spec.memory,
            memswap_limit=spec.memory, pids_limit=spec.pids_limit, mounts=mounts,
            cap_add=spec.cap_add or None, cap_drop=spec.cap_drop or None,
            security_opt=spec.security_opt or None,
            restart_policy={"Name": spec.restart_policy},
            log_config=LogConfig(type="json-file", config={
                "max-size": spec.log_max_size, "max-file": str(spec.log_max_file)}))
        with translate(f"create {spec.name}"):
            reply = self.api.create_container(
                spec.image, name=spec.name, hostname=spec.hostname, labels=spec.labels,
                environment=[f"{k}={v}" for k, v in spec.env.items()],
                host_config=host_config, stop_timeout=spec.stop_timeout, detach=True,
                healthcheck=spec.healthcheck, command=spec.command,
                # no libnetwork sandbox: runc makes the netns and the agent plumbs it
                # (eth0, lo up). Docker's "none" sandbox adds a prestart hook that execs
                # dockerd's binary (libnetwork-setkey) on every start and CRIU restore,
                # ~0.1-0.15 s each, and makes the netns external to CRIU.
                entrypoint=spec.entrypoint, network_disabled=True)
        return str(reply["Id"])

    def start(self, name: str) -> ContainerInfo:
        """Start and return the fresh state (with the PID needed for plumbing)."""
        with translate(f"start {name}"):
            self.api.start(name)
            return container_info(self.api.inspect_container(name))

    def set_restart_policy(self, name: str, policy: str) -> None:
        """`docker update --restart POLICY`, live. A checkpoint's exit counts as a crash to
        dockerd's restart manager (it is not a manual stop), so a container about to be
        checkpointed away gets "no" first, or dockerd would start it again at once."""
        with translate(f"update {name}"):
            post_json(self.api, "/containers/{0}/update", name,
                      {"RestartPolicy": {"Name": policy}})

    def upper_dir(self, name: str) -> str:
        """The container's writable layer on the host (overlay2's upperdir): its root
        filesystem delta against the image. BackendError on another storage driver."""
        with translate(f"inspect {name}"):
            data = self.api.inspect_container(name)
        graph = data.get("GraphDriver") or {}
        upper = (graph.get("Data") or {}).get("UpperDir")
        if graph.get("Name") != "overlay2" or not upper:
            raise BackendError(f"{name}: storage driver {graph.get('Name')!r} has no upperdir")
        return str(upper)

    def mounts(self, name: str) -> list[dict[str, str]]:
        """The container's mounts as dockerd lists them: Type, Source, Destination,
        Propagation."""
        with translate(f"inspect {name}"):
            data = self.api.inspect_container(name)
        return [{"type": str(m.get("Type") or ""), "source": str(m.get("Source") or ""),
                 "destination": str(m.get("Destination") or ""),
                 "propagation": str(m.get("Propagation") or "")}
                for m in data.get("Mounts") or []]

    def stop(self, name: str, timeout: int) -> None:
        try:
            with translate(f"stop {name}"):
                self.api.stop(name, timeout=timeout)
        except NotFound:
            pass

    def remove(self, name: str) -> None:
        try:
            with translate(f"remove {name}"):
                self.api.remove_container(name, force=True, v=False)
        except NotFound:
            pass
        except Conflict as exc:  # "removal already in progress"
            if "in progress" not in exc.message:
                raise

    def rename(self, name: str, new_name: str) -> None:
        with translate(f"rename {name}"):
            self.api.rename(name, new_name)

    def update_cpuset(self, name: str, cpuset: str) -> None:
        """Re-pin a running container live (same PID)."""
        self.update(name, Resources(cpuset=cpuset), {"cpuset"})

    def update(self, name: str, want: Resources, fields: set[str]) -> None:
        """`docker update` of the given fields, live (same PID); kept across restarts."""
        body: dict[str, Any] = {}
        if "cpuset" in fields:
            body["CpusetCpus"] = want.cpuset
        if "cpu_shares" in fields:
            body["CpuShares"] = want.cpu_shares or 1024
        if "cpu_quota" in fields:
            body["CpuPeriod"] = CPU_PERIOD
            body["CpuQuota"] = want.cpu_quota or -1
        if "memory" in fields and want.memory:
            body["Memory"] = want.memory
            body["MemorySwap"] = want.memory
        if "pids_limit" in fields:
            body["PidsLimit"] = want.pids_limit or -1
        if not body:
            return
        with translate(f"update {name}"):
            post_json(self.api, "/containers/{0}/update", name, body)

    def list_owned(self, cluster: str, instance_id: str | None = None) -> list[ContainerInfo]:
        """Every container labelled with this cluster's uuid (running or not), or only those
        of one instance. A container removed between the list and its inspect (another
        instance's delete running alongside) is no longer there: it is left out, not an
        error."""
        labels = [f"dockyard.cluster={cluster}"]
        if instance_id is not None:
            labels.append(f"dockyard.instance={instance_id}")
        with translate("list containers"):
            summaries = self.api.containers(all=True, filters={"label": labels})
        found = (self.inspect(str(s["Id"])) for s in summaries)
        return [info for info in found if info is not None]

    def owned_states(self, cluster: str) -> list[ContainerState]:
        """Every container of this cluster (running or not) from one list call, no inspect:
        what a resync or the orphan scan needs to see of all of them at once."""
        with translate("list containers"):
            summaries = self.api.containers(all=True,
                                            filters={"label": f"dockyard.cluster={cluster}"})
        return [ContainerState(id=str(s["Id"]),
                               name=str((s.get("Names") or [""])[0]).lstrip("/"),
                               status=str(s.get("State") or ""),
                               labels=dict(s.get("Labels") or {})) for s in summaries]

    def running_owned(self, cluster: str) -> dict[str, dict[str, str]]:
        """Container id -> labels of this cluster's running containers: one list call, no
        inspect (the collector's cheap view)."""
        with translate("list containers"):
            summaries = self.api.containers(filters={"label": f"dockyard.cluster={cluster}",
                                                     "status": "running"})
        return {str(s["Id"]): dict(s.get("Labels") or {}) for s in summaries}

    def top(self, name: str) -> dict[str, Any]:
        """`docker top`: {"titles": [...], "processes": [[...], ...]}."""
        with translate(f"top of {name}"):
            reply = self.api.top(name)
        return {"titles": list(reply.get("Titles") or []),
                "processes": [list(p) for p in reply.get("Processes") or []]}

    def logs(self, name: str, follow: bool, tail: int | str) -> Iterator[bytes]:
        with translate(f"logs of {name}"):
            stream = self.api.logs(name, stream=True, follow=follow, tail=tail)
        with translate(f"logs of {name}"):
            yield from stream

    def events(self, cluster: str) -> Any:
        """A blocking iterator of container events of this cluster; `.close()` ends it."""
        with translate("docker events"):
            return self.api.events(decode=True, filters={
                "type": "container", "label": f"dockyard.cluster={cluster}"})
