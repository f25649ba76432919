"""Command groups with explicit verbs: `host list|show|add|drain|undrain|remove`,
`network list|show|create|delete`,
`volume list|show|create|delete`."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.config import ca_path, client, read_config
from dockyard.cli.output import console, details, print_json, table
from dockyard.model.units import format_size

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]

host_app = typer.Typer(help="Hosts (machines with dockerd and an agent).", no_args_is_help=True)
network_app = typer.Typer(help="Networks (bridges with a subnet, no NAT).", no_args_is_help=True)
volume_app = typer.Typer(help="Volumes (named data volumes, kept on the host of first use).",
                         no_args_is_help=True)


@host_app.command("list")
def host_list(as_json: JsonOpt = False) -> None:
    """List hosts."""
    with client() as api:
        page = api.get("/v1/hosts")
    if as_json:
        print_json(page)
        return
    table(page["items"], [
        ("NAME", lambda r: r["name"]),
        ("STATE", lambda r: r["state"] + (" (draining)" if r.get("draining") else "")),
        ("CORES", lambda r: len(r["cores"])), ("SHARED", lambda r: r["shared_cpuset"]),
        ("MEMORY", lambda r: f"{format_size(r['memory_reserved_bytes'])}/"
                             f"{format_size(r['memory_bytes'])}"),
        ("INSTANCES", lambda r: r["instances"]), ("DOCKER", lambda r: r["docker_version"])],
        "no hosts")


@host_app.command("show")
def host_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one host."""
    with client() as api:
        host = api.get(f"/v1/hosts/{name}")
    if as_json:
        print_json(host)
        return
    details([("name", host["name"]), ("id", host["id"]), ("state", host["state"]),
             ("cores", ",".join(map(str, host["cores"]))),
             ("exclusive", ", ".join(f"{c}→{i}" for c, i in host["exclusive_cores"].items())),
             ("shared cpuset", host["shared_cpuset"]),
             ("memory", format_size(host["memory_bytes"])),
             ("memory reserved", format_size(host["memory_reserved_bytes"])),
             ("instances", host["instances"]), ("docker", host["docker_version"]),
             ("kernel", host["kernel"]), ("last heartbeat", host["last_heartbeat"]),
             ("draining", host.get("draining", False)),
             ("labels", ", ".join(f"{k}={v}" for k, v in host.get("labels", {}).items())),
             ("feed requests", ", ".join(f"{k} {v}" for k, v
                                         in sorted(host.get("feed_requests", {}).items())))])


def parse_labels(items: list[str]) -> dict[str, str]:
    """`k=v` options into a dict (a later key wins)."""
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: a label is KEY=VALUE")
        labels[key] = value
    return labels


@host_app.command("add")
def host_add(name: str, label: Annotated[list[str], typer.Option(
                 help="label k=v (repeatable); wins over the agent's own --label")] = [],  # noqa: B006
             as_json: JsonOpt = False) -> None:
    """Add a host: mint its agent's token (shown once) and print what its agent needs: the
    server URL, the token and, for an https server, the cluster CA (path here and SHA-256)."""
    with client() as api:
        host = api.post("/v1/hosts", {"name": name, "labels": parse_labels(label)})
        ca = api.get("/v1/cluster/ca") if api.url.startswith("https://") else None
    if as_json:
        print_json(host)
        return
    console.print(f"host [bold]{host['name']}[/] added (down until its agent registers)")
    console.print(f"token (shown once): {host['token']}")
    ca_file = ca_path(read_config()) or "ca.pem"
    if ca is not None:
        console.print(f"cluster CA: {ca_file} (SHA-256 {ca['fingerprint']}); copy it to the "
                      "host (`GET /v1/cluster/ca` serves it too) and check the fingerprint",
                      soft_wrap=True)
    console.print("run on the host:")
    console.print(f"  dockyard agent --server {api.url} --token {host['token']} "
                  f"--name {host['name']}" + (f" --ca {ca_file}" if ca is not None else ""),
                  soft_wrap=True)


def _host_action(name: str, verb: str, done: str) -> None:
    with client() as api:
        api.post(f"/v1/hosts/{name}/{verb}")
    console.print(f"host {name} {done}")


@host_app.command("drain")
def host_drain(name: str) -> None:
    """Stop placing new instances on a host (its instances stay)."""
    _host_action(name, "drain", "is draining: no new placements")


@host_app.command("undrain")
def host_undrain(name: str) -> None:
    """Allow placements on a drained host again."""
    _host_action(name, "undrain", "takes placements again")


@host_app.command("remove")
def host_remove(name: str) -> None:
    """Forget a host and revoke its tokens (refused while it has instances)."""
    with client() as api:
        api.delete(f"/v1/hosts/{name}")
    console.print(f"host {name} removed")


@network_app.command("list")
def network_list(as_json: JsonOpt = False) -> None:
    """List networks (every page)."""
    from dockyard.client import NetworkItem
    with client() as api:
        items = api.list_all("/v1/networks", NetworkItem, limit=1000)
    if as_json:
        print_json({"items": items, "next": None})
        return
    table(items, [("NAME", lambda r: r["name"]), ("SUBNET", lambda r: r["subnet"]),
                          ("GATEWAY", lambda r: r["gateway"]), ("MODE", lambda r: r["mode"]),
                          ("BRIDGE", lambda r: r["bridge"]),
                          ("INSTANCES", lambda r: r["instances"])], "no networks")


@network_app.command("show")
def network_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one network."""
    with client() as api:
        net = api.get(f"/v1/networks/{name}")
    if as_json:
        print_json(net)
        return
    details([(k, net[k]) for k in ("name", "id", "subnet", "gateway", "mode", "bridge",
                                   "instances")] + [("dns", ", ".join(net["dns"]))])


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


@volume_app.command("list")
def volume_list(as_json: JsonOpt = False) -> None:
    """List the project's volumes (every page)."""
    from dockyard.client import VolumeItem
    with client() as api:
        items = api.list_all("/v1/volumes", VolumeItem, limit=1000)
    if as_json:
        print_json({"items": items, "next": None})
        return
    table(items, [("NAME", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
                          ("DOCKER NAME", lambda r: r["docker_name"]),
                          ("ATTACHED TO", lambda r: ", ".join(r["attached_to"]) or None)],
          "no volumes")


@volume_app.command("show")
def volume_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one volume."""
    with client() as api:
        vol = api.get(f"/v1/volumes/{name}")
    if as_json:
        print_json(vol)
        return
    details([(k, vol[k]) for k in ("name", "id", "project", "host", "docker_name")]
            + [("attached to", ", ".join(vol["attached_to"])),
               ("created", vol["created_at"])])


@volume_app.command("create")
def volume_create(name: str, as_json: JsonOpt = False) -> None:
    """Create a volume (`launch -v NAME:/path` also creates one on first use)."""
    with client() as api:
        vol = api.post("/v1/volumes", {"name": name})
    if as_json:
        print_json(vol)
    else:
        console.print(f"volume {vol['name']} created")


@volume_app.command("delete")
def volume_delete(name: str) -> None:
    """Delete a volume and its data; refused while an instance mounts it."""
    with client() as api:
        api.delete(f"/v1/volumes/{name}")
    console.print(f"volume {name} deleted")
