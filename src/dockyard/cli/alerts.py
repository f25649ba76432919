"""`alert list|rule add|list|delete`: alerts and their rules in one group (`dockyard alerts`,
the old spelling of `alert list`, stays as a hidden alias)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, table
from dockyard.model.alert_kinds import RuleKind

alert_app = typer.Typer(help="Alerts (`alert list`) and the rules that raise them "
                        "(`alert rule …`).", no_args_is_help=True)
rule_app = typer.Typer(help="Rules: builtin ones and your own.", no_args_is_help=True)
alert_app.add_typer(rule_app, name="rule")


def _time(value: str | None) -> str | None:
    return value[:19].replace("T", " ") if value else None


def _value(row: dict[str, Any]) -> str:
    return "-" if row["value"] is None else f"{row['value']:.3g}"


@alert_app.command("list")
def alerts(show_all: Annotated[bool, typer.Option("--all", help="resolved alerts too")] = False,
           as_json: JsonOpt = False) -> None:
    """Firing alerts (with --all: resolved ones too)."""
    state = "all" if show_all else "firing"
    with client() as api:
        items = api.list_all("/v1/alerts", state=state, limit=1000)
    if as_json:
        print_json({"items": items, "next": None})
        return
    table(items, [("ID", lambda r: r["id"]), ("STATE", lambda r: r["state"]),
                  ("RULE", lambda r: r["rule"]), ("KIND", lambda r: r["kind"]),
                  ("SUBJECT", lambda r: f"{r['subject_kind']} {r['subject_name']}"),
                  ("VALUE", _value), ("THRESHOLD", lambda r: f"{r['threshold']:g}"),
                  ("STARTED", lambda r: _time(r["started_at"])),
                  ("RESOLVED", lambda r: _time(r["resolved_at"]))],
          "no firing alerts" if not show_all else "no alerts")


@rule_app.command("add")
def rule_add(name: str,
             kind: Annotated[RuleKind, typer.Option(help="what the rule measures")],
             threshold: Annotated[float, typer.Option(help="fires when value >= threshold "
                                                      "(ratios: 0.9 = 90 %)")],
             for_seconds: Annotated[float, typer.Option(
                 "--for", help="seconds the condition must hold (oom: the window)")] = 0.0,
             as_json: JsonOpt = False) -> None:
    """Add an alert rule."""
    with client() as api:
        rule = api.post("/v1/alerts/rules", {"name": name, "kind": kind.value,
                                             "threshold": threshold,
                                             "for_seconds": for_seconds})
    if as_json:
        print_json(rule)
        return
    console.print(f"rule [bold]{rule['name']}[/bold] added ({rule['id']})")


@rule_app.command("list")
def rule_list(as_json: JsonOpt = False) -> None:
    """List alert rules."""
    with client() as api:
        page = api.get("/v1/alerts/rules")
    if as_json:
        print_json(page)
        return
    table(page["items"], [("NAME", lambda r: r["name"]), ("KIND", lambda r: r["kind"]),
                          ("THRESHOLD", lambda r: f"{r['threshold']:g}"),
                          ("FOR", lambda r: f"{r['for_seconds']:g}s"),
                          ("PROJECT", lambda r: r["project"] or "(all)"),
                          ("BUILTIN", lambda r: "yes" if r["builtin"] else "")], "no rules")


@rule_app.command("delete")
def rule_delete(name: str) -> None:
    """Delete an alert rule (with its alerts)."""
    with client() as api:
        api.delete(f"/v1/alerts/rules/{name}")
    console.print(f"rule {name} deleted")
