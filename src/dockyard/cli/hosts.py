"""`host list|show|add|drain|undrain|remove`."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.config import ca_path, client, read_config
from dockyard.cli.output import JsonOpt, console, print_json, print_list, print_one
from dockyard.model.units import format_size

host_app = typer.Typer(help="Hosts (machines with dockerd and an agent).", no_args_is_help=True)


@host_app.command("list")
def host_list(as_json: JsonOpt = False) -> None:
    """List hosts."""
    print_list("/v1/hosts", as_json, [
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
    print_one(f"/v1/hosts/{name}", as_json, lambda host: [
        ("name", host["name"]), ("id", host["id"]), ("state", host["state"]),
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
