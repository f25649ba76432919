"""`network list|show|create|delete`."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, print_list, print_one

network_app = typer.Typer(help="Networks (bridges with a subnet, no NAT).", no_args_is_help=True)


@network_app.command("list")
def network_list(as_json: JsonOpt = False) -> None:
    """List networks (every page)."""
    from dockyard.client import NetworkItem
    print_list("/v1/networks", as_json, [
        ("NAME", lambda r: r["name"]), ("SUBNET", lambda r: r["subnet"]),
        ("GATEWAY", lambda r: r["gateway"]), ("MODE", lambda r: r["mode"]),
        ("BRIDGE", lambda r: r["bridge"]),
        ("INSTANCES", lambda r: r["instances"])], "no networks", item=NetworkItem, limit=1000)


@network_app.command("show")
def network_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one network."""
    print_one(f"/v1/networks/{name}", as_json, lambda net: [
        (k, net[k]) for k in ("name", "id", "subnet", "gateway", "mode", "bridge", "instances")]
        + [("dns", ", ".join(net["dns"]))])


@network_app.command("create")
def network_create(
    name: str,
    subnet: Annotated[str, typer.Option(help="IPv4 subnet, e.g. 10.241.0.0/24")],
    gateway: Annotated[str | None, typer.Option(help="default: first address")] = None,
    dns: Annotated[list[str], typer.Option(help="DNS server (repeatable)")] = [],  # noqa: B006
    mode: Annotated[str, typer.Option(help="bridge (Linux bridge) or ovs (Open vSwitch)")]
    = "bridge",
    vlan: Annotated[int | None, typer.Option(help="802.1Q tag across hosts (2-4094); "
                                             "default: the server picks one")] = None,
    nat: Annotated[bool, typer.Option("--nat", help="masquerade traffic leaving the host "
                                     "(no routed subnet, e.g. a laptop)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a network (a bridge on every host, gateway on the bridge, no NAT); hosts
    with an uplink join it across hosts on its VLAN."""
    with client() as api:
        net = api.post("/v1/networks", {"name": name, "subnet": subnet, "gateway": gateway,
                                        "dns": dns, "nat": nat, "mode": mode, "vlan": vlan})
    if as_json:
        print_json(net)
    else:
        console.print(f"network {net['name']} {net['subnet']} gateway {net['gateway']} "
                      f"{net['mode']} {net['bridge']} vlan {net['vlan']}")


@network_app.command("delete")
def network_delete(name: str) -> None:
    """Delete a network that no instance uses."""
    with client() as api:
        api.delete(f"/v1/networks/{name}")
    console.print(f"network {name} deleted")
