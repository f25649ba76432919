"""Printing: `--json` prints exactly the API's JSON; otherwise Rich tables.

Rich is imported when something is printed through it, not when a command starts (issue 18):
`console` and `err_console` build their `rich.console.Console` at first use, and a command's
error line (`error_line`) needs no Rich at all.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, overload

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from dockyard.client import ApiClient


JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


class _LazyConsole:
    """A `rich.console.Console(**options)` made at the first attribute looked up."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console
            self._console = Console(**self._options)
        return getattr(self._console, name)


if TYPE_CHECKING:
    console: Console
    err_console: Console
else:
    console = _LazyConsole(emoji=False)  # ":CD:" in a fingerprint is not 💿
    err_console = _LazyConsole(stderr=True, emoji=False)


def error_line(message: str) -> None:
    """`error: MESSAGE` on stderr, "error:" in red on a terminal (as Rich would print it:
    not with NO_COLOR or TERM=dumb)."""
    colour = (sys.stderr.isatty() and not os.environ.get("NO_COLOR")
              and os.environ.get("TERM") != "dumb")
    label = "\033[31merror:\033[0m" if colour else "error:"
    sys.stderr.write(f"{label} {message}\n")
    sys.stderr.flush()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


Column = tuple[str, Callable[[dict[str, Any]], Any]]
Row = TypeVar("Row")  # a TypedDict of client.py: its columns' keys are checked


@overload
def listing(api: ApiClient, path: str, as_json: bool, item: type[Row], *,
            cursor: str = "after", **params: Any) -> list[Row] | None: ...


@overload
def listing(api: ApiClient, path: str, as_json: bool, item: None = None, *,
            cursor: str = "after", **params: Any) -> list[dict[str, Any]] | None: ...


def listing(api: ApiClient, path: str, as_json: bool, item: type[Any] | None = None, *,
            cursor: str = "after", **params: Any) -> list[Any] | None:
    """What every list command reads: the whole list at `path`, page after page along the
    `next` cursors (`ApiClient.list_all`; `cursor`: the query parameter that takes them).
    With `as_json` it is printed in the API's shape, one page holding every item
    (`"next": null`), and None is returned; else the items, for the command's table."""
    items = api.list_all(path, item, cursor=cursor, **params)
    if as_json:
        print_json({"items": items, "next": None})
        return None
    return items


@overload
def print_list(path: str, as_json: bool, columns: Sequence[tuple[str, Callable[[Row], Any]]],
               empty: str, *, item: type[Row], cursor: str = "after",
               **params: Any) -> None: ...


@overload
def print_list(path: str, as_json: bool, columns: Sequence[Column], empty: str, *,
               item: None = None, cursor: str = "after", **params: Any) -> None: ...


def print_list(path: str, as_json: bool, columns: Sequence[tuple[str, Callable[[Any], Any]]],
               empty: str, *, item: type[Any] | None = None, cursor: str = "after",
               **params: Any) -> None:
    """A list command: the list at `path` read by `listing` (every page), printed as the
    API's JSON or as a table of `columns` (`empty` when the list is)."""
    from dockyard.cli.config import client
    with client() as api:
        items = listing(api, path, as_json, item, cursor=cursor, **params)
    if items is not None:
        table(items, columns, empty)


def fetch(path: str, as_json: bool) -> dict[str, Any] | None:
    """What every show command reads: the object at `path`. With `as_json` it is printed as
    the API's JSON and None is returned; else the object, for the command's details."""
    from dockyard.cli.config import client
    with client() as api:
        body = api.get(path)
    if as_json:
        print_json(body)
        return None
    return dict(body)


def print_one(path: str, as_json: bool,
              pairs: Callable[[dict[str, Any]], Sequence[tuple[str, Any]]]) -> None:
    """A show command: the object at `path` read by `fetch`, printed as the API's JSON or as
    `details` of the (label, value) pairs that `pairs` picks from it."""
    body = fetch(path, as_json)
    if body is not None:
        details(pairs(body))


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
    from rich.table import Table
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
