"""`snapshot create|list|delete`, `migrate`, `rebuild`, `evacuate`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import console, print_json, table
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
    with client() as api:
        reply = api.get("/v1/snapshots", **({"instance": name} if name else {}))
    if as_json:
        print_json(reply)
        return
    table(reply["items"], [
        ("NAME", lambda r: r["name"]), ("INSTANCE", lambda r: r["instance"]),
        ("SIZE", lambda r: format_size(r["size"])),
        ("VOLUMES", lambda r: ", ".join(v["name"] for v in r["volumes"]) or None),
        ("CREATED", lambda r: r["created_at"][:19])], "no snapshots")


@snapshot_app.command("delete")
def snapshot_delete(name: Annotated[str, typer.Argument(help="snapshot")]) -> None:
    """Delete a snapshot (its registry image and volume archives)."""
    with client() as api:
        api.delete(f"/v1/snapshots/{name}")
    console.print(f"deleted snapshot {name}", highlight=False)


def migrate(name: Annotated[str, typer.Argument(help="instance")],
            to: Annotated[str | None, typer.Option("--to", help="target host (default: the "
                                                   "scheduler picks)")] = None,
            live: Annotated[bool, typer.Option("--live", help="move the running processes "
                                               "(CRIU), after a preflight")] = False,
            check: Annotated[bool, typer.Option("--check", help="with --live: only run the "
                                                "preflight on both hosts")] = False,
            fallback: Annotated[bool, typer.Option("--fallback", help="with --live: move it "
                                                   "cold when the preflight fails")] = False,
            as_json: JsonOpt = False) -> None:
    """Cold migration: same IP, MAC, hostname, limits and data on another host; --live keeps
    its processes running (CRIU checkpoint/restore)."""
    if (check or fallback) and not live:
        raise typer.BadParameter("--check and --fallback go with --live")
    with client(timeout=SLOW) as api:
        reply = api.post(f"/v1/instances/{name}/migrate",
                         {"host": to, "live": live, "check": check, "fallback": fallback})
    if as_json:
        print_json(reply)
        if check and not reply["ok"]:
            raise typer.Exit(1)
        return
    if check:
        _print_preflight(reply)
        return
    if reply.get("fallback"):
        console.print("[yellow]live migration not possible, moved cold instead:[/yellow]",
                      highlight=False)
        for f in reply.get("reasons", []):
            console.print(f"  {f['code']} ({f['host']}): {f['message']}\n    fix: {f['fix']}",
                          highlight=False)
    mode = reply.get("mode", "cold")
    console.print(f"{name}: {reply['source']} -> {reply['target']} ({mode}), downtime "
                  f"{reply['downtime']:.2f} s", highlight=False)


def _print_preflight(report: dict[str, Any]) -> None:
    head = (f"live migration of {report['instance']}: {report['source']} -> "
            f"{report['target']}: ")
    if report["ok"]:
        console.print(head + "[green]possible[/green]", highlight=False)
        return
    console.print(head + "[red]not possible[/red]", highlight=False)
    for f in report["failures"]:
        console.print(f"  {f['code']} ({f['host']}): {f['message']}\n    fix: {f['fix']}",
                      highlight=False)
    raise typer.Exit(1)


def rebuild(name: Annotated[str, typer.Argument(help="instance")],
            image: Annotated[str, typer.Option("--image", help="the new image")]) -> None:
    """Recreate the container from another image, keeping name, IP, MAC, hostname, limits
    and volumes."""
    with client(timeout=SLOW) as api:
        reply = api.post(f"/v1/instances/{name}/rebuild", {"image": image})
    console.print(f"{name} rebuilt from {reply['image']}", highlight=False)


def evacuate(host: Annotated[str, typer.Argument(help="a down host")],
             force: Annotated[bool, typer.Option("--force", help="also if the host is up")
                              ] = False,
             as_json: JsonOpt = False) -> None:
    """Re-place a down host's instances elsewhere (last snapshot or image; same IPs)."""
    with client(timeout=SLOW) as api:
        reply = api.post(f"/v1/hosts/{host}/evacuate", {"force": force})
    if as_json:
        print_json(reply)
        return
    for inst, target in reply["moved"].items():
        console.print(f"{inst} -> {target}", highlight=False)
    for inst, error in reply["failed"].items():
        console.print(f"[red]{inst}: {error}[/red]", highlight=False)
    if reply["failed"]:
        raise typer.Exit(1)
