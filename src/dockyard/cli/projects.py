"""`project create|list`."""

from __future__ import annotations

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, print_list

project_app = typer.Typer(help="Projects (tenants: every object belongs to one).",
                          no_args_is_help=True)


@project_app.command("create")
def project_create(name: str, as_json: JsonOpt = False) -> None:
    """Create a project (admin)."""
    with client() as api:
        project = api.post("/v1/projects", {"name": name})
    if as_json:
        print_json(project)
    else:
        console.print(f"project {project['name']} created")


@project_app.command("list")
def project_list(as_json: JsonOpt = False) -> None:
    """List projects (a member sees only its own)."""
    print_list("/v1/projects", as_json, [
        ("NAME", lambda r: r["name"]), ("ID", lambda r: r["id"]),
        ("CREATED", lambda r: r["created_at"])], "no projects")
