"""Tenancy commands: `project create|list`, `token create|list|revoke`, `quota show|set`,
and `login URL` (checks the token against the server, then writes the CLI config; an https
server's cluster CA is trusted by --ca FILE or by its SHA-256 --fingerprint)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from dockyard.cli.config import client, config_path, write_config
from dockyard.cli.output import console, print_json, table
from dockyard.errors import InvalidRequest
from dockyard.model.units import format_size

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]

project_app = typer.Typer(help="Projects (tenants: every object belongs to one).",
                          no_args_is_help=True)
token_app = typer.Typer(help="User tokens (admin or member of one project).",
                        no_args_is_help=True)
quota_app = typer.Typer(help="Project quotas (instances, cores, memory, volumes, snapshots).",
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
    with client() as api:
        page = api.get("/v1/projects")
    if as_json:
        print_json(page)
        return
    table(page["items"], [("NAME", lambda r: r["name"]), ("ID", lambda r: r["id"]),
                          ("CREATED", lambda r: r["created_at"])], "no projects")


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
    with client() as api:
        page = api.get("/v1/tokens", **({"project": project} if project else {}))
    if as_json:
        print_json(page)
        return
    table(page["items"], [("ID", lambda r: r["id"]), ("PROJECT", lambda r: r["project"]),
                          ("ROLE", lambda r: r["role"]),
                          ("DESCRIPTION", lambda r: r["description"] or None),
                          ("CREATED", lambda r: r["created_at"])], "no tokens")


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token (admin): it is refused from the next request on."""
    with client() as api:
        api.delete(f"/v1/tokens/{token_id}")
    console.print(f"token {token_id} revoked")


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


def _trust(url: str, fingerprint: str | None) -> Path | None:
    """The CA file to trust for an https `url` that the system's trust store refuses: the
    server's cluster CA once its SHA-256 fingerprint matches `fingerprint` (or the user, at a
    terminal, accepted it), kept next to the CLI config."""
    from dockyard import tls  # cryptography: only to check a server's CA
    from dockyard.client import fetch_cluster_ca, trusted_by_system
    if fingerprint is None and trusted_by_system(url):
        return None
    pem = fetch_cluster_ca(url)
    seen = tls.fingerprint(pem)  # computed here, never taken from the server's reply
    if fingerprint is not None:
        if not tls.same_fingerprint(seen, fingerprint):
            raise InvalidRequest(f"the server's CA has fingerprint {seen}, not {fingerprint}: "
                                 "not trusted")
    elif sys.stdin.isatty():
        console.print(f"cluster CA of {url}: SHA-256 {seen}", soft_wrap=True)
        if not typer.confirm("trust it (compare with `dockyard up`'s output)?"):
            raise typer.Exit(1)
    else:
        raise InvalidRequest(f"{url} has a certificate from an unknown CA (SHA-256 {seen}): "
                             "pass --fingerprint with the fingerprint `dockyard up` printed, "
                             "or --ca with the cluster CA file")
    split = urlsplit(url)
    path = config_path().parent / f"ca-{split.hostname}-{split.port or 443}.pem"
    tls.write_file(path, pem.encode())
    return path


def login(url: str, token: Annotated[str | None, typer.Option(
              envvar="DOCKYARD_TOKEN", help="the token (asked for when not given)")] = None,
          ca: Annotated[Path | None, typer.Option(
              help="the cluster CA (ca.pem) of an https server")] = None,
          fingerprint: Annotated[str | None, typer.Option(
              help="SHA-256 of the cluster CA, as `dockyard up` printed it: its CA is "
              "fetched from the server and trusted when it matches")] = None,
          ) -> None:
    """Check a token against a Dockyard server and write the CLI config for it.

    An https server whose certificate the system does not trust (the cluster CA of `dockyard
    up`): give --ca FILE or --fingerprint SHA256; at a terminal, the CA's fingerprint is shown
    and asked about."""
    from dockyard.client import ApiClient
    url = url.rstrip("/")
    if ca is None and url.startswith("https://"):
        ca = _trust(url, fingerprint)
    secret = token or getpass.getpass("token: ")
    with ApiClient(url, secret, timeout=30, ca=ca) as api:  # checks the server against `ca`
        who = api.get("/v1/whoami")
    path = write_config(url, secret, ca=ca.resolve() if ca else None)
    console.print(f"logged in to {url} as {who['role']} of project {who['project']} "
                  f"(config {path})")
