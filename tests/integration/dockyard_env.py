"""A real single-host Dockyard for integration tests: `dockyard up` as a subprocess with its
own home, HOME (CLI config), port, subnet and therefore its own bridge, so it never collides
with a user's Dockyard. Everything it creates is removed afterwards, even when tests fail.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from dockyard.adapters import antispoof
from dockyard.adapters.iptables import remove_bridge_forwarding
from dockyard.client import ApiClient, client_context

IMAGE = "dockyard/busybox:latest"
VENV_BIN = Path(sys.executable).parent


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, below the kernel's ephemeral range (an outgoing
    connection made before the caller binds the port could take one from that range, as the
    kernel's port 0 would pick) and not given before in this run."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randrange(10000, max(low, 10001))
        if port in _GIVEN_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def routes_over(subnet: str) -> list[str]:
    """The routes of this machine that overlap `subnet` (a running Dockyard's bridges, a
    user's networks, another test's links), the default route aside."""
    net = ipaddress.ip_network(subnet)
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    hits = []
    for line in routes:
        dst = line.split()[0] if line.split() else "default"
        if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(net):
            hits.append(line.strip())
    return hits


def free_subnet(pool: str = "10.243.0.0/16", prefixlen: int = 24) -> str:
    """A random subnet of `pool` (a /24 of 10.243.0.0/16 by default) that no route of this
    machine overlaps. Every test that puts addresses on the host takes its subnet here."""
    subnets = list(ipaddress.ip_network(pool).subnets(new_prefix=prefixlen))[1:-1]
    for net in random.sample(subnets, min(100, len(subnets))):
        if not routes_over(str(net)):
            return str(net)
    raise RuntimeError(f"no free test subnet in {pool}")


def require_unrouted(subnet: str) -> None:
    """For a test whose addresses are fixed: refuse to start when `subnet` is in use here
    rather than collide with whatever uses it."""
    hits = routes_over(subnet)
    if hits:
        raise RuntimeError(f"{subnet} is already routed on this machine ({'; '.join(hits)}): "
                           "this test would collide with it")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Dockyard:
    root: Path
    port: int
    subnet: str
    tls: bool = True  # the default: https with the cluster CA in home/tls (False: --no-tls)
    resync_interval: float = 5.0  # the agent's full resync, which repairs what a watch missed
    up_args: list[str] = field(default_factory=list)  # more `dockyard up` options
    proc: subprocess.Popen[bytes] | None = None
    cluster: str = ""
    bridges: set[str] = field(default_factory=set)
    seen_instances: set[str] = field(default_factory=set)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path | None:
        """The cluster CA the CLI config names (None without TLS)."""
        return self.home / "tls" / "ca.pem" if self.tls else None

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify=` for raw requests to this Dockyard (and its agents)."""
        return client_context(self.ca)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env["HOME"] = str(self.root)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        return env

    @property
    def registry(self) -> str:
        """Where engines reach its registry: the server's own /v2/ (the docker-registry
        behind it listens on a unix socket in its home, never a user's :5000)."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log_path = self.root / "up.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "dockyard"), "up", "--home", str(self.home), "--listen",
                 f"127.0.0.1:{self.port}", "--subnet", self.subnet,
                 "--resync-interval", str(self.resync_interval),
                 "--collector-interval", "1",
                 "--tls" if self.tls else "--no-tls", *self.up_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard up exited: {self.log_tail()}")
            if b"is up" in log_path.read_bytes()[offset:]:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"dockyard up did not come up: {self.log_tail()}")
        self.cluster = self.db_query("SELECT value FROM meta WHERE key='cluster'")[0][0]
        with self.api() as api:
            self.bridges |= {n["bridge"] for n in api.get("/v1/networks")["items"]}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self) -> str:
        parts = []
        for name in ("up.log", "home/logs/server.log", "home/logs/agent.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def token(self) -> str:
        cfg = json.loads((self.root / ".config/dockyard/config.json").read_text())
        return str(cfg["token"])

    def api(self) -> ApiClient:
        return ApiClient(self.url, self.token(), timeout=120, ca=self.ca)

    def cli(self, *args: str, timeout: float = 120) -> CliResult:
        proc = subprocess.run([str(VENV_BIN / "dockyard"), *args], capture_output=True,
                              text=True, env=self.env(), timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> CliResult:
        result = self.cli(*args)
        assert result.code == 0, f"dockyard {' '.join(args)} failed: {result.err}{result.out}"
        return result

    def db_query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.home / 'dockyard.db'}?mode=ro", uri=True,
                               timeout=10)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def containers(self) -> list[Any]:
        client = docker.from_env()
        try:
            return list(client.containers.list(
                all=True, filters={"label": f"dockyard.cluster={self.cluster}"}))
        finally:
            client.close()

    def cleanup(self) -> None:
        """Remove everything this Dockyard made on the machine."""
        self.stop()
        for container in self.containers():
            container.remove(force=True)
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        for bridge in self.bridges:
            remove_bridge_forwarding(bridge)
            if f" {bridge}:" in links:
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def make_dockyard() -> Dockyard:
    root = Path(tempfile.mkdtemp(prefix="dockyard-test-"))
    return Dockyard(root=root, port=free_port(), subnet=free_subnet())


def host_links(master: str | None = None) -> set[str]:
    cmd = ["ip", "-o", "link", "show"] + (["master", master] if master else [])
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def leaks(dy: Dockyard) -> list[str]:
    """Everything that exists on the machine or in the ledger without a live instance."""
    problems = []
    known = {row[0] for row in dy.db_query("SELECT id FROM instances")}
    dy.seen_instances |= known | {row[0] for row in dy.db_query(
        "SELECT instance_id FROM events WHERE instance_id IS NOT NULL")}
    for container in dy.containers():
        iid = container.labels.get("dockyard.instance")
        if iid not in known:
            problems.append(f"container {container.name} of unknown instance {iid}")
    ours = set().union(*(host_links(b) for b in dy.bridges)) if dy.bridges else set()
    ours |= {link for link in host_links() if link[3:] in dy.seen_instances}
    for link in ours:
        if link.startswith(("dyh", "dyc")) and link[3:] not in known:
            problems.append(f"veth {link} of unknown instance")
    for port in antispoof.ports():
        if port[3:] in dy.seen_instances and port[3:] not in known:
            problems.append(f"anti-spoofing rules of {port} of unknown instance")
    hosts = {row[0] for row in dy.db_query("SELECT id FROM hosts")}
    for (iid,) in dy.db_query("SELECT instance_id FROM ip_allocations"):
        if iid.startswith("entrance:"):  # an entrance host's leg: kept while host and network
            if iid.removeprefix("entrance:") not in hosts:
                problems.append(f"entrance leg of unknown host {iid}")
        elif iid not in known:
            problems.append(f"ip reservation of unknown instance {iid}")
    for (iid,) in dy.db_query("SELECT instance_id FROM core_allocations"):
        if iid not in known:
            problems.append(f"core reservation of unknown instance {iid}")
    for (iid,) in dy.db_query("SELECT id FROM operations WHERE status='running'"):
        row = dy.db_query("SELECT instance_id FROM operations WHERE id=?", iid)
        if row and row[0][0] not in known:
            problems.append(f"running operation {iid} of unknown instance")
    instances_dir = dy.home / "agent" / "instances"
    if instances_dir.exists():
        for path in instances_dir.iterdir():
            if path.name not in known:
                problems.append(f"agent files of unknown instance {path.name}")
    disks_dir = dy.home / "agent" / "disks"  # container disks (agent/disks.py)
    if disks_dir.exists():
        problems += [f"disk files of unknown instance {path.name}"
                     for path in disks_dir.iterdir() if path.name not in known]
    return problems


def pid_of(container_id: str) -> int:
    """PID 1 of a container on the main engine."""
    client = docker.from_env()
    try:
        return int(client.api.inspect_container(container_id)["State"]["Pid"])
    finally:
        client.close()
