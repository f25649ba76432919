"""`volume list|show|create|delete`."""

from __future__ import annotations

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, print_list, print_one

volume_app = typer.Typer(help="Volumes (named data volumes, kept on the host of first use).",
                         no_args_is_help=True)


@volume_app.command("list")
def volume_list(as_json: JsonOpt = False) -> None:
    """List the project's volumes (every page)."""
    from dockyard.client import VolumeItem
    print_list("/v1/volumes", as_json, [
        ("NAME", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
        ("DOCKER NAME", lambda r: r["docker_name"]),
        ("ATTACHED TO", lambda r: ", ".join(r["attached_to"]) or None)],
        "no volumes", item=VolumeItem, limit=1000)


@volume_app.command("show")
def volume_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one volume."""
    print_one(f"/v1/volumes/{name}", as_json, lambda vol: [
        (k, vol[k]) for k in ("name", "id", "project", "host", "docker_name")]
        + [("attached to", ", ".join(vol["attached_to"])), ("created", vol["created_at"])])


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
