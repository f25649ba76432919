"""`webhook add|list|delete`: notified of every alert state change."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.config import client
from dockyard.cli.output import JsonOpt, console, print_json, print_list
from dockyard.model.alert_kinds import WebhookFormat

webhook_app = typer.Typer(help="Webhooks notified of every alert state change.",
                          no_args_is_help=True)


@webhook_app.command("add")
def webhook_add(url: str,
                fmt: Annotated[WebhookFormat, typer.Option(
                    "--format", help="generic JSON, or slack ({\"text\": ...})")]
                = WebhookFormat.generic,
                as_json: JsonOpt = False) -> None:
    """Add a webhook."""
    with client() as api:
        hook = api.post("/v1/webhooks", {"url": url, "format": fmt.value})
    if as_json:
        print_json(hook)
        return
    console.print(f"webhook [bold]{hook['id']}[/bold] added")


@webhook_app.command("list")
def webhook_list(as_json: JsonOpt = False) -> None:
    """List webhooks with their notification counts."""
    print_list("/v1/webhooks", as_json, [
        ("ID", lambda r: r["id"]), ("URL", lambda r: r["url"]),
        ("FORMAT", lambda r: r["format"]),
        ("SENT", lambda r: r["delivered"]),
        ("PENDING", lambda r: r["pending"]),
        ("FAILED", lambda r: r["failed"])], "no webhooks")


@webhook_app.command("delete")
def webhook_delete(webhook_id: str) -> None:
    """Delete a webhook (its pending notifications are dropped)."""
    with client() as api:
        api.delete(f"/v1/webhooks/{webhook_id}")
    console.print(f"webhook {webhook_id} deleted")
