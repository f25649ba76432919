"""`dockyard doctor [HOST]`: check hosts' setup and print the fix for whatever is wrong.

Exits 1 when any check fails (or a host's agent cannot be asked); warnings alone exit 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import console, err_console, listing, print_json
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.client import ApiClient

_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


def _reports(api: ApiClient, host: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The doctor report of `host` (default: every host), and the hosts that could not answer."""
    names = [host] if host else [h["name"] for h in listing(api, "/v1/hosts", False) or []]
    reports, errors = [], []
    for name in names:
        try:
            reports.append(api.get(f"/v1/hosts/{name}/doctor"))
        except DockyardError as exc:
            if host:
                raise
            errors.append(f"{name}: {exc.message}")
    return reports, errors


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table  # Rich: when a report is printed (output.py)
    from rich.text import Text
    tbl = Table(title=f"host {report['host']}", title_justify="left", show_header=True,
                header_style="bold", box=None, pad_edge=False)
    for title in ("", "CHECK", "RESULT", "FIX"):
        tbl.add_column(title, overflow="fold")
    for check in report["checks"]:
        mark, color = _MARKS.get(check["status"], ("?", "white"))
        tbl.add_row(Text(mark, style=color), check["name"], Text(check["message"]),
                    Text(check["fix"] or ""))
    console.print(tbl)


def doctor(
    host: Annotated[str | None, typer.Argument(help="host name or id (default: every host)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Check hosts (storage driver, pid_max, pids controller, live-restore, lxcfs, forwarding
    rules, OVS, disk, clock) and explain the fix for each problem."""
    with client() as api:
        reports, errors = _reports(api, host)
    if as_json:
        print_json(reports)
    else:
        for report in reports:
            _print_report(report)
    for line in errors:
        err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
    failed = any(c["status"] == "fail" for r in reports for c in r["checks"])
    if failed or errors:
        raise typer.Exit(1)
