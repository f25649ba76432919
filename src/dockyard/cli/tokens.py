"""`token create|list|revoke`: user tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, print_list

token_app = typer.Typer(help="User tokens (admin or member of one project).",
                        no_args_is_help=True)


@token_app.command("create")
def token_create(
    project: Annotated[str, typer.Option(help="the project the token acts in")],
    role: Annotated[str, typer.Option(help="member or admin")] = "member",
    description: Annotated[str, typer.Option(help="who or what uses it")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a user token (admin); the token is printed this once."""
    with client() as api:
        created = api.post("/v1/tokens", {"project": project, "role": role,
                                          "description": description})
    if as_json:
        print_json(created)
        return
    console.print(f"token {created['id']} ({created['role']} of {created['project']})")
    console.print(f"token (shown once): {created['token']}", soft_wrap=True)


@token_app.command("list")
def token_list(project: Annotated[str | None, typer.Option(help="only this project's")] = None,
               as_json: JsonOpt = False) -> None:
    """List user tokens (admin): ids, roles and descriptions, never the secrets."""
    only: dict[str, Any] = {"project": project} if project else {}
    print_list("/v1/tokens", as_json, [
        ("ID", lambda r: r["id"]), ("PROJECT", lambda r: r["project"]),
        ("ROLE", lambda r: r["role"]),
        ("DESCRIPTION", lambda r: r["description"] or None),
        ("CREATED", lambda r: r["created_at"])], "no tokens", **only)


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token (admin): it is refused from the next request on."""
    with client() as api:
        api.delete(f"/v1/tokens/{token_id}")
    console.print(f"token {token_id} revoked")
