"""Printing: `--json` prints exactly the API's JSON; otherwise Rich tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from rich.console import Console
from rich.table import Table

console = Console(emoji=False)  # ":CD:" in a fingerprint is not 💿
err_console = Console(stderr=True, emoji=False)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


Column = tuple[str, Callable[[dict[str, Any]], Any]]
Row = TypeVar("Row")  # a TypedDict of client.py: its columns' keys are checked


@overload
def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> None: ...


@overload
def table(rows: Sequence[Row], columns: Sequence[tuple[str, Callable[[Row], Any]]],
          empty: str) -> None: ...


def table(rows: Sequence[Any], columns: Sequence[tuple[str, Callable[[Any], Any]]],
          empty: str) -> None:
    if not rows:
        console.print(f"[dim]{empty}[/dim]")
        return
    tbl = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for title, _ in columns:
        tbl.add_column(title)
    for row in rows:
        tbl.add_row(*[str(get(row)) if get(row) is not None else "-" for _, get in columns])
    console.print(tbl)


def details(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        shown = value if value not in (None, "") else "-"
        console.print(f"[bold]{key.ljust(width)}[/bold]  {shown}")
