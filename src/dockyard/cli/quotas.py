"""`quota show|set`: a project's limits and usage."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, table
from dockyard.model.units import format_size

quota_app = typer.Typer(help="Project quotas (instances, cores, memory, volumes, snapshots).",
                        no_args_is_help=True)


def _quota_value(field: str, value: int | None) -> str:
    if value is None:
        return "-"
    return format_size(value) if field == "memory_bytes" else str(value)


@quota_app.command("show")
def quota_show(project: Annotated[str | None, typer.Argument(
                   help="default: the token's project")] = None,
               as_json: JsonOpt = False) -> None:
    """Show a project's quota: limit and usage per resource."""
    from dockyard.model.tenancy import QUOTA_FIELDS
    with client() as api:
        name = project or api.get("/v1/whoami")["project"]
        quota = api.get(f"/v1/projects/{name}/quota")
    if as_json:
        print_json(quota)
        return
    console.print(f"project [bold]{quota['project']}[/]")
    rows = [{"resource": f, "used": quota["usage"][f], "limit": quota["limits"][f]}
            for f in QUOTA_FIELDS]
    table(rows, [("RESOURCE", lambda r: r["resource"]),
                 ("USED", lambda r: _quota_value(r["resource"], r["used"])),
                 ("LIMIT", lambda r: _quota_value(r["resource"], r["limit"]))], "no quota")


def _limit(value: str | None) -> int | str | None:
    """`none` (or `-1`) removes a limit; numbers stay numbers; sizes go as written."""
    if value is None or value.lower() in ("none", "unlimited", "-1"):
        return None
    return int(value) if value.isdigit() else value


@quota_app.command("set")
def quota_set(
    project: str,
    instances: Annotated[str | None, typer.Option(help="N, or none")] = None,
    cores: Annotated[str | None, typer.Option(help="exclusive cores, N or none")] = None,
    memory: Annotated[str | None, typer.Option(help="e.g. 8G, or none")] = None,
    volumes: Annotated[str | None, typer.Option(help="N, or none")] = None,
    snapshots: Annotated[str | None, typer.Option(help="N, or none")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a project's limits (admin); options not given stay as they are."""
    from dockyard.model.tenancy import QUOTA_FIELDS
    given = {"instances": instances, "cores": cores, "memory": memory, "volumes": volumes,
             "snapshots": snapshots}
    body: dict[str, Any] = {k: _limit(v) for k, v in given.items() if v is not None}
    if not body:
        raise typer.BadParameter("give at least one of --instances --cores --memory "
                                 "--volumes --snapshots")
    with client() as api:
        quota = api.put(f"/v1/projects/{project}/quota", body)
    if as_json:
        print_json(quota)
        return
    limits = quota["limits"]
    console.print(f"quota of {quota['project']}: " + ", ".join(
        f"{f} {_quota_value(f, limits[f])}" for f in QUOTA_FIELDS))
