"""`dockyard audit [--json] [--limit N]`: the audit log of mutating API calls (admin)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import listing, print_json, table


def _when(entry: dict[str, Any]) -> str:
    return str(entry["time"])[:19].replace("T", " ")


def audit(as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
          limit: Annotated[int, typer.Option(help="show the newest N entries (0: all)")] = 100,
          ) -> None:
    """Who did what: every mutating API call with its caller, project and result."""
    with client() as api:
        items = listing(api, "/v1/audit", False, limit=1000) or []
    if limit:
        items = items[-limit:]
    if as_json:
        print_json(items)
        return
    table(items, [("TIME", _when), ("TOKEN", lambda e: e["token"] or e["token_id"]),
                  ("ROLE", lambda e: e["role"]), ("PROJECT", lambda e: e["project"]),
                  ("CALL", lambda e: f"{e['method']} {e['path']}"),
                  ("STATUS", lambda e: e["status"]), ("TARGET", lambda e: e["target"])],
          "no audited calls yet")
