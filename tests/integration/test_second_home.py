"""A second home on a machine whose default subnet another home's bridge keeps: the refusal
names that bridge, its home and `--subnet`; `dockyard reset --home H` removes what a stopped
home left (containers, anti-spoofing rules, bridge, forwarding rules, the directory) after
asking, and is refused while that home's Dockyard runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dockyard.adapters import antispoof
from dockyard.adapters.iptables import has_bridge_forwarding
from dockyard.model.ids import host_veth_name
from tests.integration.dockyard_env import IMAGE, VENV_BIN, Dockyard, free_port, make_dockyard


def dockyard(env: Dockyard, *args: str, stdin: str = "",
             extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "dockyard"), *args], capture_output=True, text=True,
                          input=stdin, timeout=180,
                          env={**env.env(), "COLUMNS": "1000", **(extra or {})})


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                          check=True).stdout


def bridge_of(subnet: str) -> str:
    """The link this machine routes `subnet` to (the session Dockyard has more bridges than
    its default network's once other tests made networks)."""
    route = subprocess.run(["ip", "-4", "-o", "route", "show", "exact", subnet],
                           capture_output=True, text=True, check=True).stdout
    return route.split(" dev ", 1)[1].split()[0]


def test_a_second_home_on_a_taken_subnet_names_the_bridge_home_and_subnet(
        dy: Dockyard, tmp_path: Path) -> None:
    bridge = bridge_of(dy.subnet)
    assert bridge in dy.bridges
    home = tmp_path / "second"
    try:
        proc = dockyard(dy, "up", "--home", str(home), "--listen",
                        f"127.0.0.1:{free_port()}", "--subnet", dy.subnet,
                        extra={"HOME": str(tmp_path), "DOCKYARD_HOME": str(dy.home)})
        said = proc.stdout + proc.stderr
        assert proc.returncode != 0, said
        assert f"taken on this machine by bridge {bridge}" in said
        assert f"the Dockyard home {dy.home}" in said  # the default home (DOCKYARD_HOME)
        assert "--subnet 10.2" in said and f"dockyard reset --home {dy.home}" in said
        stray = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert str(home) not in stray  # its server and agent are gone with it
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert dy.ok("list", "--json").code == 0  # the first home is not disturbed


def test_reset_removes_what_a_stopped_home_left_and_nothing_else(dy: Dockyard) -> None:
    env = make_dockyard()
    try:
        env.start()
        bridge = next(iter(env.bridges))
        kept = env.ok("launch", IMAGE, "kept", "--json").json()
        idle = env.ok("launch", IMAGE, "idle", "--json").json()
        env.ok("stop", "idle")
        veths = {host_veth_name(kept["id"]), host_veth_name(idle["id"])}
        assert host_veth_name(kept["id"]) in antispoof.ports()
        running = dockyard(env, "reset", "--home", str(env.home), "--yes")
        assert running.returncode != 0 and "is running" in running.stderr + running.stdout
        env.stop()  # instances keep running, the bridge and its rules stay
        assert f" {bridge}:" in links() and has_bridge_forwarding(bridge)

        asked = dockyard(env, "reset", "--home", str(env.home), stdin="n\n")
        assert asked.returncode != 0 and "Aborted" in asked.stderr + asked.stdout
        assert f"bridge {bridge}" in asked.stdout and "dy-" in asked.stdout
        assert env.home.exists() and f" {bridge}:" in links()  # nothing removed

        done = dockyard(env, "reset", "--home", str(env.home), "--yes")
        assert done.returncode == 0, done.stderr + done.stdout
        assert env.containers() == []
        assert f" {bridge}:" not in links() and not has_bridge_forwarding(bridge)
        assert not veths & antispoof.ports() and not any(f" {v}@" in links() for v in veths)
        assert bridge not in subprocess.run(["iptables-save"], capture_output=True,
                                            text=True).stdout
        assert not env.home.exists()
        again = dockyard(env, "reset", "--home", str(env.home), "--yes")
        assert again.returncode != 0 and "no Dockyard home" in again.stderr + again.stdout
    finally:
        env.cleanup()
    assert dy.ok("list", "--json").code == 0  # the session's home is untouched
