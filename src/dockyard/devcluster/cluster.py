"""`dev-cluster up|down|cut-uplink|restore-uplink`: a real cluster on one machine.

    root netns:  server (on 10.239.<k>.1)   mgmt bridge dyc<k>m   fabric bridge dyc<k>f
                         │ HTTP only                │ mgmt0             │ uplink0 (802.1Q trunk)
    netns dyc<k>h<n>:  agent ── dockerd (own socket, dirs, cgroup parent) · ovsdb + vswitchd
                       trunk `dytrunk` (OVS) ── network bridges / OVS instance ports

See README.md in this folder. Every object is recorded in the state file before the next one
is made, so `down` (also after a failed `up`) removes exactly what exists.
"""

from __future__ import annotations

import shutil
import sys
from functools import partial
from pathlib import Path

import httpx

from dockyard.adapters import iptables
from dockyard.adapters.processes import alive
from dockyard.agent import entrance as agent_entrance
from dockyard.client import ApiClient
from dockyard.devcluster import plumbing as pl
from dockyard.devcluster.state import STATE_FILE, ClusterState, SimHost, load
from dockyard.errors import Conflict, InvalidRequest
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.store.db import Database

DEFAULT_SUBNET = "10.241.0.0/24"


def _pick_index() -> int:
    used = pl.run("ip", "netns", "list").stdout + pl.run("ip", "-br", "link").stdout
    for k in range(1, 250):
        if f"dyc{k}h" not in used and f"dyc{k}m" not in used:
            return k
    raise Conflict("no free dev-cluster index (dyc1…dyc249 all in use)")


def up(hosts: int, home: Path, listen: str | None, heartbeat_timeout: float,
       resync_interval: float, criu: bool = False,
       entrance: int | None = None) -> tuple[ClusterState, str]:
    """Make the cluster; returns its state and an admin token. `criu`: the hosts' dockerd
    run --experimental with a working criu on their PATH (live migration). `entrance`: host1
    runs the HTTP entrance of stacks on that port of its management address."""
    if load(home) is not None:
        raise Conflict(f"a dev-cluster already lives in {home}; `dockyard dev-cluster down`")
    home.mkdir(parents=True, exist_ok=True)
    k = _pick_index()
    st = ClusterState(index=k, home=str(home), mgmt_bridge=f"dyc{k}m",
                      fabric_bridge=f"dyc{k}f",
                      entrance=f"10.239.{k}.11:{entrance}" if entrance else "")
    st.save()
    try:
        if criu:
            st.criu = pl.criu_bin(home)
            st.save()
        token = _server(st, listen, heartbeat_timeout)
        tarball = home / "image.tar"
        for n in range(1, hosts + 1):
            _host(st, n, tarball, resync_interval, token)
        api = ApiClient(st.url, token, timeout=30)
        for host in st.hosts:
            pl.wait_for(partial(_host_up, api, host.name),
                        f"agent of {host.name}", host.pids["agent"],
                        Path(host.root) / "agent.log")
        api.post("/v1/networks", {"name": "default", "subnet": DEFAULT_SUBNET})
    except BaseException:
        down(home)
        raise
    return st, token


def _host_up(api: ApiClient, name: str) -> bool:
    return bool(api.get(f"/v1/hosts/{name}")["state"] == "up")


def _server(st: ClusterState, listen: str | None, heartbeat_timeout: float) -> str:
    k, home = st.index, Path(st.home)
    pl.make_bridge(st.mgmt_bridge, f"10.239.{k}.1/24")
    pl.make_bridge(st.fabric_bridge, None)
    for bridge in (st.mgmt_bridge, st.fabric_bridge):  # FORWARD policy DROP of the dockerd
        iptables.ensure_bridge_forwarding(bridge)
    listen = listen or f"10.239.{k}.1:7070"
    st.url = f"http://{listen}"
    db = Database(f"sqlite:///{home / 'dockyard.db'}")
    token = mint_admin_token(db, init_store(db))
    db.close()
    log = home / "server.log"
    st.server_pid = pl.spawn([sys.executable, "-m", "dockyard", "server", "--home", str(home),
                              "--listen", listen, "--heartbeat-timeout",
                              str(heartbeat_timeout), "--no-tls"], log)  # README: plain HTTP
    # the hosts' dockerd pull from the server's /v2/ on the management bridge (an
    # insecure registry for them: start_dockerd)
    st.save()
    pl.wait_for(lambda: httpx.get(f"{st.url}/healthz", timeout=2).status_code == 200,
                "server", st.server_pid, log)
    return token


def _host(st: ClusterState, n: int, tarball: Path, resync_interval: float,
          admin_token: str) -> None:
    k = st.index
    root = Path(st.home) / f"h{n}"
    host = SimHost(name=f"host{n}", netns=f"dyc{k}h{n}", mgmt_ip=f"10.239.{k}.{10 + n}",
                   mgmt_link=f"dyc{k}m{n}", uplink_link=f"dyc{k}u{n}", root=str(root),
                   cgroup_parent=f"dyc{k}h{n}")
    st.hosts.append(host)
    st.save()
    root.mkdir(parents=True, exist_ok=True)
    pl.run("ip", "netns", "add", host.netns)
    pl.run("ip", "-n", host.netns, "link", "set", "lo", "up")
    # like a host whose dockerd manages iptables: nothing is routed between networks unless
    # a rule says so (the agent's per-bridge ACCEPT); dockerd here runs --iptables=false
    pl.run(*pl.in_netns(host.netns, "iptables", "-w", "-P", "FORWARD", "DROP"))
    pl.make_veth_into(host.mgmt_link, host.netns, "mgmt0", st.mgmt_bridge,
                      f"{host.mgmt_ip}/24")
    pl.make_veth_into(host.uplink_link, host.netns, "uplink0", st.fabric_bridge)
    host.pids["dockerd"] = pl.start_dockerd(host.netns, root / "docker", host.cgroup_parent,
                                            st.criu)
    st.save()
    host.pids["ovsdb"], host.pids["vswitchd"] = pl.start_ovs(host.netns, root / "ovs")
    st.save()
    if n == 1:  # images reach hosts only through the registry
        pl.seed_registry(root / "docker", tarball, st.url.split("://", 1)[1], admin_token)
    db = Database(f"sqlite:///{Path(st.home) / 'dockyard.db'}")
    token = mint_host_token(db, host.name)
    db.close()
    host.pids["agent"] = pl.spawn(pl.in_netns(
        host.netns, sys.executable, "-m", "dockyard", "agent", "--server", st.url,
        "--name", host.name, "--home", str(root / "agent"),
        "--api-listen", f"{host.mgmt_ip}:0",
        "--docker-url", f"unix://{root / 'docker' / 'docker.sock'}",
        "--uplink", "uplink0", "--ovs-db", f"unix:{root / 'ovs' / 'db.sock'}",
        "--resync-interval", str(resync_interval),
        *(["--entrance", st.entrance] if st.entrance and n == 1 else [])), root / "agent.log",
        {"DOCKYARD_TOKEN": token, **({"DOCKYARD_CRIU": f"{st.criu}/criu"} if st.criu else {})})
    st.save()


def down(home: Path) -> bool:
    """Remove everything the state file names; False when there is no dev-cluster."""
    st = load(home)
    if st is None:
        return False
    for host in st.hosts:
        root = Path(host.root)
        pl.stop(host.pids.get("agent", 0))
        agent_entrance.remove(root / "agent")  # its HAProxy and namespace outlive the agent
        if alive(host.pids.get("dockerd", 0)):
            pl.remove_containers(root / "docker")
        for name in ("dockerd", "vswitchd", "ovsdb"):
            pl.stop(host.pids.get(name, 0), timeout=60)
        pl.run("umount", "-R", str(root / "docker" / "exec"), check=False)
        # dockerd bind-mounts its data root onto itself at each start; a daemon restarted
        # during the cluster's life (tests do) leaves one such mount behind
        for _ in range(8):
            if pl.run("umount", str(root / "docker" / "data"), check=False).returncode != 0:
                break
        pl.run("ip", "netns", "del", host.netns, check=False)
        pl.delete_link(host.mgmt_link)
        pl.delete_link(host.uplink_link)
        pl.remove_cgroups(host.cgroup_parent)
        shutil.rmtree(root, ignore_errors=True)
    pl.stop(st.server_pid)
    for bridge in (st.mgmt_bridge, st.fabric_bridge):
        if bridge:
            iptables.remove_bridge_forwarding(bridge)
            pl.delete_link(bridge)
    for name in ("dockyard.db", "image.tar", "server.log", STATE_FILE):
        (home / name).unlink(missing_ok=True)
    shutil.rmtree(home / "host-paths", ignore_errors=True)
    shutil.rmtree(home / "criu-bin", ignore_errors=True)
    return True


def set_uplink(home: Path, host_name: str, up_: bool) -> None:
    """Cut (down) or restore (up) a host's uplink at the fabric side."""
    st = _require(home)
    try:
        host = st.host(host_name)
    except KeyError:
        raise InvalidRequest(f"no host {host_name!r} in this dev-cluster") from None
    pl.run("ip", "link", "set", host.uplink_link, "up" if up_ else "down")


def _require(home: Path) -> ClusterState:
    st = load(home)
    if st is None:
        raise InvalidRequest(f"no dev-cluster in {home}")
    return st


def status(home: Path) -> list[dict[str, object]]:
    st = _require(home)
    rows: list[dict[str, object]] = []
    for host in st.hosts:
        link = pl.run("ip", "-br", "link", "show", host.uplink_link, check=False).stdout
        rows.append({"host": host.name, "netns": host.netns, "mgmt_ip": host.mgmt_ip,
                     "entrance": st.entrance if host.name == "host1" else "",
                     "uplink": "up" if " UP " in f" {link} " or "LOWER_UP" in link
                     else "down",
                     **{name: ("up" if alive(pid) else "dead")
                        for name, pid in host.pids.items()}})
    return rows
