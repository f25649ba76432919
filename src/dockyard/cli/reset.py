"""`dockyard reset --home H`: remove what a stopped `dockyard up` home left on this machine.

A home's Dockyard that stopped leaves its instances' containers, their anti-spoofing rules,
its networks' bridges with their forwarding / NAT rules and its volumes: the bridge keeps the
default subnet, so a second home cannot take it. `reset` lists all of that (read from the
home's own store, never guessed by name), asks, removes it, then the home directory.
Refused while a process of that home runs.

    read H/dockyard.db (cluster uuid, networks, instances, volumes)
      → refuse if a dockyard process names H
      → containers (dockyard.cluster=<uuid>) → rules of each instance's veth → volumes
      → the HTTP entrance (HAProxy, its namespace and legs)
      → each network: NAT, forwarding rules, trunk port, bridge → the directory H
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.adapters.processes import command_lines
from dockyard.errors import Conflict, NotFound


@dataclass
class HomeState:
    home: Path
    cluster: str
    bridges: dict[str, str] = field(default_factory=dict)  # bridge -> subnet
    instances: dict[str, str] = field(default_factory=dict)  # id -> name
    volumes: list[str] = field(default_factory=list)  # ids


def read_home(home: Path) -> HomeState:
    """The home's networks, instances and volumes, from its SQLite store (read-only)."""
    db = home / "dockyard.db"
    if not db.is_file():
        raise NotFound(f"no Dockyard home at {home} (no dockyard.db)")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cluster = conn.execute("SELECT value FROM meta WHERE key = 'cluster'").fetchone()
        state = HomeState(home=home, cluster=cluster[0] if cluster else "")
        state.bridges = dict(conn.execute("SELECT bridge, subnet FROM networks"))
        state.instances = dict(conn.execute("SELECT id, name FROM instances"))
        state.volumes = [row[0] for row in conn.execute("SELECT id FROM volumes")]
    finally:
        conn.close()
    return state


def home_processes(home: Path) -> list[int]:
    """PIDs of dockyard processes (`up`, `server`, `agent`) run with this home (this
    process aside)."""
    wanted = {str(home), str(home / "agent")}
    found = []
    for pid, argv in command_lines():
        if not any(a.endswith("dockyard") for a in argv[:3]):
            continue
        homes = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--home"}
        homes |= {a.removeprefix("--home=") for a in argv if a.startswith("--home=")}
        if homes & wanted:
            found.append(pid)
    return found


def home_using(bridge: str, candidates: list[Path]) -> Path | None:
    """The home (among `candidates`) whose store names `bridge`."""
    for home in candidates:
        try:
            if bridge in read_home(home.resolve()).bridges:
                return home.resolve()
        except (NotFound, sqlite3.Error):
            continue
    return None


def plan(state: HomeState) -> list[str]:
    """What `remove` will do, one line each (shown before asking)."""
    from dockyard.adapters.docker_engine import DockerEngine
    from dockyard.adapters.netlink import link_exists

    engine = DockerEngine()
    try:
        containers = engine.list_owned(state.cluster) if state.cluster else []
    finally:
        engine.close()
    lines = [f"container {c.name} ({'running' if c.running else 'stopped'}) of instance "
             f"{state.instances.get(c.labels.get('dockyard.instance', ''), '?')}"
             for c in containers]
    lines += [f"volume {name}" for name in state.volumes]
    lines += [f"bridge {b} ({subnet}{'' if link_exists(b) else ', already gone'}) and its "
              "forwarding/NAT rules" for b, subnet in state.bridges.items()]
    if (state.home / "agent" / "entrance").is_dir():
        lines.append("the HTTP entrance (HAProxy) and its network namespace")
    lines.append(f"the directory {state.home} (store, certificates, registry, logs)")
    return lines


def remove(state: HomeState) -> None:
    """Remove the home's containers, rules, volumes, bridges and directory (idempotent)."""
    from dockyard.adapters import antispoof
    from dockyard.adapters.docker_engine import DockerEngine
    from dockyard.adapters.netlink import unplumb
    from dockyard.agent import entrance
    from dockyard.agent.network import LinuxHostNetwork
    from dockyard.model.ids import LABEL_INSTANCE, host_veth_name
    from dockyard.model.volume import docker_volume_name

    if pids := home_processes(state.home):
        raise Conflict(f"the Dockyard of {state.home} is running (pid "
                       f"{', '.join(map(str, pids))}): stop it first (Ctrl-C of `dockyard up`)")
    engine = DockerEngine()
    try:
        instance_ids = set(state.instances)
        for container in engine.list_owned(state.cluster) if state.cluster else []:
            instance_ids.add(container.labels.get(LABEL_INSTANCE, ""))
            engine.remove(container.id)
        for instance_id in instance_ids - {""}:
            antispoof.remove(host_veth_name(instance_id))
            unplumb(host_veth_name(instance_id))
        for volume_id in state.volumes:
            engine.remove_volume(docker_volume_name(volume_id))
    finally:
        engine.close()
    entrance.remove(state.home / "agent")  # HAProxy outlives the agent (agent/entrance.py)
    network = LinuxHostNetwork()
    for bridge in state.bridges:
        network.remove_network(bridge)
    shutil.rmtree(state.home)
