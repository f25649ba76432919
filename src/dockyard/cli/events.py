"""`dockyard events --follow`: long-polls `GET /v1/events?after=ID&wait=S`, which answers as
soon as a newer event is recorded, and prints each new event as one line (or JSON line)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dockyard.cli.output import console

if TYPE_CHECKING:
    from dockyard.client import ApiClient

WAIT = 25.0  # seconds one long poll may wait; the server answers at once on a new event


def event_line(event: dict[str, Any]) -> str:
    time = event["time"][:19].replace("T", " ")
    where = event.get("instance_name") or event.get("host") or "-"
    return f"{time}  {where:<20} {event['kind']:<16} {event['message']}"


def _matches(event: dict[str, Any], name: str | None) -> bool:
    return name is None or name in (event.get("instance_name"), event.get("instance"))


def follow(api: ApiClient, name: str | None, after: int, as_json: bool) -> None:
    """Print events newer than `after` as they come, until interrupted."""
    while True:
        page = api.request("GET", "/v1/events", params={"after": after, "wait": WAIT,
                                                        "limit": 1000}, timeout=WAIT + 30)
        for event in page["items"]:
            after = max(after, int(event["id"]))
            if not _matches(event, name):
                continue
            if as_json:
                print(json.dumps(event), flush=True)
            else:
                console.print(event_line(event), highlight=False, markup=False,
                              soft_wrap=True)
