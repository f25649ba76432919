"""Settings of the server and the agent. Durations are settings so tests can shorten them."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = Path("/var/lib/dockyard")
DEFAULT_LISTEN = "127.0.0.1:7070"
DEFAULT_SUBNET = "10.240.0.0/16"
DEFAULT_REGISTRY_LISTEN = "127.0.0.1:5000"
# `dockyard image build machine` (adapters/machine_image.py): its tag and where it keeps the
# downloaded base tree. Here, so the CLI shows them without importing the adapters.
MACHINE_TAG = "dockyard/machine:bookworm"
DEFAULT_IMAGE_CACHE = Path("/var/cache/dockyard/images")


def env_home() -> Path:
    return Path(os.environ.get("DOCKYARD_HOME", str(DEFAULT_HOME)))


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, not {listen!r}")
    return host, int(port)


@dataclass
class ServerSettings:
    home: Path
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    heartbeat_interval: float = 60.0  # agent inventory check; liveness rides on the watch
    heartbeat_timeout: float = 30.0
    watch_timeout: float = 25.0
    memory_overcommit: float = 1.0  # scheduler: reserved memory <= host memory × this
    disk_overcommit: float = 1.0  # same for disk (hosts that report a disk budget)
    pids_overcommit: float = 1.0  # same for the sum of pids limits (hosts with pid_max)
    host_path_root: str = ""  # allowed root of host-path volumes; "" = home/host-paths
    wait_timeout: float = 120.0
    alert_interval: float = 10.0  # seconds between alert passes
    alert_stale: float = 60.0  # samples older than this are unknown to the alert rules
    rss_for: float = 60.0  # builtin memory rule: rss >= 90 % of the limit this long
    load_for: float = 300.0  # builtin load rule: CPU demand >= the cores this long
    oom_window: float = 300.0  # builtin oom rule: firing this long after an OOM kill
    webhook_retry_base: float = 5.0  # first webhook retry delay; doubles per attempt
    webhook_max_attempts: int = 8
    webhook_timeout: float = 10.0
    stats_raw_retention: float = 24 * 3600.0  # raw samples; older ones are down-sampled
    stats_max_age: float = 7 * 24 * 3600.0  # samples older than this are dropped
    registry_url: str = f"http://{DEFAULT_REGISTRY_LISTEN}"  # an outside registry (unmanaged)
    # the server runs docker-registry on HOME/registry/registry.sock and serves it at /v2/
    # behind its tokens (server/registry_proxy.py); registry_url is then unused
    registry_managed: bool = False
    registry_address: str = ""  # HOST:PORT hosts' engines reach /v2/ at; "" = the listen one
    tls_dir: Path | None = None  # serve HTTPS with the cluster CA kept here (see dockyard/tls.py)
    rate_limit: float = 0.0  # calls a second per API token (server/ratelimit.py); 0 = off
    rate_burst: int = 200  # calls a token may make at once before the rate applies
    build_timeout: float = 1800.0  # seconds a build may take (a repository may ask for less)
    build_parallel: int = 8  # builds this server runs at once (one per repository)
    build_host_parallel: int = 2  # builds one host runs at once; more wait in the queue
    build_memory: int = 2 << 30  # memory of a build's step containers (a repo may ask less)
    build_cpus: float = 2.0  # CPUs (CFS quota) of a build's step containers (same)
    hook_max_bytes: int = 1 << 20  # a push webhook's body; a larger one is a 413
    build_upload_max_bytes: int = 64 << 20  # an uploaded build context; larger: 413

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'dockyard.db'}"

    def allowed_host_root(self) -> str:
        return self.host_path_root or str(self.home / "host-paths")

    def public_registry(self) -> str:
        """HOST:PORT of the registry as image references name it and engines pull from it:
        this server's own address for a managed registry (the host's name when it listens on
        every address), the outside registry's otherwise."""
        if not self.registry_managed:
            return self.registry_url.split("://", 1)[-1].rstrip("/")
        if self.registry_address:
            return self.registry_address
        host, port = split_listen(self.listen)
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = socket.getfqdn()
        return f"{host}:{port}"


@dataclass
class AgentSettings:
    server: str
    token: str
    name: str
    home: Path
    api_listen: str = "127.0.0.1:0"
    docker_url: str | None = None
    workers: int = 8
    resync_interval: float = 60.0
    stop_timeout: int = 10
    cores: list[int] | None = None
    reserved_cores: list[int] = field(default_factory=list)
    memory_bytes: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    lxcfs_root: str = "/var/lib/dockyard/lxcfs"
    lxcfs_check_interval: float = 2.0
    collector_interval: float = 10.0  # seconds between stats passes
    uplink: str | None = None  # NIC trunking networks to other hosts (agent/network.py)
    ovs_db: str | None = None  # ovsdb-server of this host, e.g. unix:/run/ovs/db.sock
    ca: Path | None = None  # the cluster CA: trust the server by it, serve the API over TLS
    image_budget: int | None = None  # bytes of images kept on the host; None: no image GC
    image_gc_interval: float = 300.0  # seconds between image GC passes
    vm_images: Path = Path("/var/lib/dockyard/vm-images")  # VM images (agent/vm.py)
    vm_accel: str = "auto"  # VMs through: auto (KVM when usable, else none) | kvm | tcg | none
    # HOST:PORT where this host runs the stacks' HTTP entrance (HAProxy, agent/entrance.py),
    # e.g. 0.0.0.0:8080; None: this host is not an entrance host
    entrance: str | None = None
