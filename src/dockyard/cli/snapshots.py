"""`snapshot create|list|delete`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import console, print_json, print_list
from dockyard.model.units import format_size

snapshot_app = typer.Typer(help="Snapshots: instances committed to the registry, with their "
                           "volumes.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]
SLOW = 900.0  # seconds: these calls answer when the work is over


@snapshot_app.command("create")
def snapshot_create(
    name: Annotated[str, typer.Argument(help="instance")],
    tag: Annotated[str | None, typer.Option(help="the snapshot's name")] = None,
    pause: Annotated[bool, typer.Option("--pause", help="freeze the instance during the "
                                        "commit (consistent; same PID after)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Commit the instance while it runs, push it, archive its named volumes."""
    with client(timeout=SLOW) as api:
        snap = api.post(f"/v1/instances/{name}/snapshot", {"tag": tag, "pause": pause})
    if as_json:
        print_json(snap)
        return
    console.print(f"snapshot {snap['name']} of {name}: {snap['image']} "
                  f"({format_size(snap['size'])}, {len(snap['volumes'])} volumes)",
                  highlight=False)


@snapshot_app.command("list")
def snapshot_list(name: Annotated[str | None, typer.Argument(help="instance")] = None,
                  as_json: JsonOpt = False) -> None:
    """List snapshots (of one instance)."""
    only: dict[str, Any] = {"instance": name} if name else {}
    print_list("/v1/snapshots", as_json, [
        ("NAME", lambda r: r["name"]), ("INSTANCE", lambda r: r["instance"]),
        ("SIZE", lambda r: format_size(r["size"])),
        ("VOLUMES", lambda r: ", ".join(v["name"] for v in r["volumes"]) or None),
        ("CREATED", lambda r: r["created_at"][:19])], "no snapshots", **only)


@snapshot_app.command("delete")
def snapshot_delete(name: Annotated[str, typer.Argument(help="snapshot")]) -> None:
    """Delete a snapshot (its registry image and volume archives)."""
    with client() as api:
        api.delete(f"/v1/snapshots/{name}")
    console.print(f"deleted snapshot {name}", highlight=False)
