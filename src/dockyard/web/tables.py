"""A list page's table, filtered and sorted by its query string (`?q=` words every shown
row must contain, `?sort=COLUMN`, `?desc=1`), as every list page of the console offers.

    rows (cells: shown text + sort key) ─▶ filter (each word of q in some cell, any case)
        ─▶ sort (the column's keys: sizes by bytes, times by time, None last) ─▶ page
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from dockyard.errors import InvalidRequest

Q_LIMIT = 200  # characters of a filter


@dataclass(frozen=True)
class Cell:
    text: str
    key: Any = None  # how the column sorts (default: the text, any case)

    @property
    def sort_key(self) -> tuple[int, Any]:
        key = self.text.lower() if self.key is None else self.key
        return (0, key) if key != "" else (1, "")


def cell(value: Any, key: Any = None) -> Cell:
    return value if isinstance(value, Cell) else Cell("" if value is None else str(value), key)


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    link: str | None = None  # where the first cell leads
    data: dict[str, str] = field(default_factory=dict)  # data-* attributes of the <tr>


def row(link: str | None, *values: Any, data: dict[str, str] | None = None) -> Row:
    return Row(tuple(cell(v) for v in values), link, data or {})


@dataclass(frozen=True)
class View:
    """What the query string asks of a table: filter words, sort column and direction."""

    q: str = ""
    sort: str = ""
    desc: bool = False

    @classmethod
    def of(cls, params: QueryParams, columns: tuple[str, ...]) -> View:
        """`columns`: every sortable column of the page (400 for another)."""
        q = params.get("q", "").strip()
        if len(q) > Q_LIMIT:
            raise InvalidRequest(f"q: a filter is at most {Q_LIMIT} characters")
        sort = params.get("sort", "")
        if sort and sort not in columns:
            raise InvalidRequest(f"sort={sort!r}: one of {', '.join(columns)}")
        return cls(q, sort, params.get("desc", "") in ("1", "true", "on"))

    def link(self, column: str) -> str:
        """The query of a click on `column`'s heading: sort by it, reversed if it already is."""
        values = {"q": self.q, "sort": column,
                  "desc": "1" if column == self.sort and not self.desc else ""}
        return "?" + urlencode({k: v for k, v in values.items() if v})

    def aria_sort(self, column: str) -> str:
        if column != self.sort:
            return "none"
        return "descending" if self.desc else "ascending"

    def matches(self, values: list[str]) -> bool:
        text = " ".join(values).lower()
        return all(word in text for word in self.q.lower().split())


def apply(view: View, columns: tuple[str, ...], rows: list[Row]) -> list[Row]:
    """The rows the view's words match, sorted by its column (when this table has it)."""
    shown = [r for r in rows if view.matches([c.text for c in r.cells])] if view.q else rows
    if view.sort in columns:
        index = columns.index(view.sort)
        present = [r for r in shown if r.cells[index].sort_key[0] == 0]
        empty = [r for r in shown if r.cells[index].sort_key[0] == 1]
        present.sort(key=lambda r: r.cells[index].sort_key, reverse=view.desc)
        shown = present + empty  # empty cells last either way
    return shown


@dataclass(frozen=True)
class Table:
    caption: str
    columns: tuple[str, ...]
    rows: list[Row]
    view: View
    total: int  # rows before the filter

    @classmethod
    def of(cls, caption: str, columns: tuple[str, ...], rows: list[Row],
           params: QueryParams, page_columns: tuple[str, ...] = ()) -> Table:
        """`page_columns`: the columns of every table of the page (one filter and sort for
        all of them), when there are more tables than this one."""
        view = View.of(params, page_columns or columns)
        return cls(caption, columns, apply(view, columns, rows), view, len(rows))
