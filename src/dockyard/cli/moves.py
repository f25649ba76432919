"""Moving an instance: `migrate` (cold, `--live`), `rebuild` (another image, same identity),
`evacuate` (a down host's instances re-placed elsewhere)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json

SLOW = 900.0  # seconds: these calls answer when the work is over


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
