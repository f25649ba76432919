"""`dockyard stats [NAME]` (live view of the collector's samples) and `dockyard top NAME`.

Rates (CPU %, disk and network bytes/s) come from two consecutive samples of the same
instance; CPU % is of one core, as `docker stats` shows it.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from dockyard.cli.config import client
from dockyard.cli.output import console, print_json
from dockyard.errors import NotFound
from dockyard.model.units import format_size

if TYPE_CHECKING:
    from dockyard.client import ApiClient

REFRESH = 2.0
Sample = dict[str, Any]
COLUMNS = ("NAME", "CPU %", "RSS", "CACHE", "LIMIT", "DISK READ", "DISK WRITE", "NET RX",
           "NET TX", "PIDS")


def _seconds(a: Sample, b: Sample) -> float:
    return (datetime.fromisoformat(b["time"]) - datetime.fromisoformat(a["time"])) \
        .total_seconds()


def _rate(prev: Sample | None, cur: Sample, key: str) -> float | None:
    if prev is None or prev.get(key) is None or cur.get(key) is None:
        return None
    span = _seconds(prev, cur)
    if span <= 0:
        return None
    return max(0.0, float(cur[key] - prev[key]) / span)


def _per_second(value: float | None) -> str:
    return "-" if value is None else f"{format_size(int(value))}/s"


def row(name: str, prev: Sample | None, cur: Sample) -> list[str]:
    """One table row: gauges from `cur`, rates from `prev` → `cur`."""
    cpu = _rate(prev, cur, "cpu_seconds")
    return [name, "-" if cpu is None else f"{cpu * 100:.1f}",
            format_size(cur.get("memory_rss_bytes")), format_size(cur.get("memory_cache_bytes")),
            format_size(cur.get("memory_limit_bytes")),
            _per_second(_rate(prev, cur, "blkio_read_bytes")),
            _per_second(_rate(prev, cur, "blkio_write_bytes")),
            _per_second(_rate(prev, cur, "net_rx_bytes")),
            _per_second(_rate(prev, cur, "net_tx_bytes")),
            str(cur.get("pids_current") if cur.get("pids_current") is not None else "-")]


def _table(rows: list[list[str]]) -> Table:
    tbl = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for title in COLUMNS:
        tbl.add_column(title, justify="left" if title == "NAME" else "right")
    for cells in rows:
        tbl.add_row(*cells)
    return tbl


class _View:
    """Keeps the previous sample of each instance between polls."""

    def __init__(self, api: ApiClient, name: str | None) -> None:
        self.api, self.name = api, name
        self.previous: dict[str, Sample] = {}

    def _pairs(self) -> list[tuple[str, Sample | None, Sample]]:
        if self.name is not None:
            items = self.api.get(f"/v1/instances/{self.name}/stats", since="60")["items"]
            if not items:
                return []
            return [(self.name, items[-2] if len(items) > 1 else None, items[-1])]
        out: list[tuple[str, Sample | None, Sample]] = []
        for cur in self.api.get("/v1/stats")["items"]:
            prev = self.previous.get(cur["name"])
            if prev is not None and prev["time"] == cur["time"]:
                prev = prev.get("_prev")
            cur["_prev"] = prev
            self.previous[cur["name"]] = cur
            out.append((cur["name"], prev, cur))
        return out

    def render(self) -> Table:
        return _table([row(name, prev, cur) for name, prev, cur in self._pairs()])


def stats(name: Annotated[str | None, typer.Argument(help="instance (default: all)")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print the newest sample as "
                                                "JSON (all instances' without NAME)")] = False,
          once: Annotated[bool, typer.Option("--once", help="print once, do not refresh")]
          = False) -> None:
    """Live resource usage of instances: CPU, memory, disk and network rates, pids."""
    with client() as api:
        if as_json:
            if name is None:
                print_json(api.get("/v1/stats")["items"])
                return
            items = api.get(f"/v1/instances/{name}/stats", since="60")["items"]
            if not items:
                raise NotFound(f"no samples of {name} in the last minute (is it running?)")
            print_json(items[-1])
            return
        view = _View(api, name)
        if once:
            console.print(view.render())
            return
        try:
            with Live(view.render(), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(REFRESH)
                    live.update(view.render(), refresh=True)
        except KeyboardInterrupt:
            pass


def top(name: str, as_json: Annotated[bool, typer.Option("--json", help="print the API's "
                                                         "JSON")] = False) -> None:
    """The processes running in an instance."""
    with client() as api:
        reply = api.get(f"/v1/instances/{name}/top")
    if as_json:
        print_json(reply)
        return
    tbl = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for title in reply["titles"]:
        tbl.add_column(title)
    for proc in reply["processes"]:
        tbl.add_row(*[str(v) for v in proc])
    console.print(tbl)
