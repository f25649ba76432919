"""Every list command of the CLI prints the whole list, not its first page (issue 17 item 4):
each reads through `output.listing` (most through `output.print_list`), which follows the
`next` cursors.

The fake is the client's seam, its `Transport` (what `cli/config.client()` builds over the
standard library): the command runs as a user runs it, through `config.client()` and
`ApiClient`, and only the bytes come from here. The fake cuts every list into pages of PAGE
items, as a server may, and takes the cursor in the query parameter the real route reads
(`before` for the builds, newest first; `after` elsewhere).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import typer.main
from click.testing import CliRunner
from typer.core import TyperArgument, TyperCommand, TyperGroup

from dockyard.cli import main, transport

PAGE = 2
CURSOR = {"/v1/builds": "before"}  # else "after"


class FakeTransport:
    """Answers every GET with one page of `lists[path]` (or of two generic items), and
    records the requests."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]]) -> None:
        self.lists = lists
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def send(self, method: str, path: str, *, params: dict[str, Any] | None, json: Any,
             content: Iterator[bytes] | None = None,
             timeout: float | None = None) -> tuple[int, bytes]:
        params = dict(params or {})
        self.requests.append((path, params))
        if method != "GET":
            return 405, b'{"error": {"code": "invalid", "message": "only GET here"}}'
        rows = self.lists.get(path) or [{"id": i, "name": f"item{i}"} for i in (1, 2, 3)]
        start = int(params.get(CURSOR.get(path, "after"), 0))
        page = rows[start:start + PAGE]
        more = start + PAGE < len(rows)
        return 200, json_bytes({"items": page, "next": str(start + PAGE) if more else None})

    @contextmanager
    def open_stream(self, method: str, path: str, *, params: dict[str, Any] | None,
                    json: Any) -> Iterator[tuple[int, Iterator[bytes]]]:
        raise AssertionError("a list command does not stream")
        yield  # pragma: no cover

    def close(self) -> None:
        pass


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTransport:
    served = FakeTransport({})
    monkeypatch.setenv("DOCKYARD_URL", "https://dockyard.test:8443")
    monkeypatch.setenv("DOCKYARD_TOKEN", "tok")
    monkeypatch.setattr(transport, "proxy_configured", lambda: False)
    monkeypatch.setattr(transport, "StdlibTransport", lambda *_args: served)
    return served


def run(argv: list[str]) -> str:
    result = CliRunner().invoke(typer.main.get_command(main.app), argv,
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, f"{argv}: {result.output}"
    return result.output


def repo(name: str) -> dict[str, Any]:
    return {"name": name, "url": f"https://git.test/{name}.git", "branch": "main",
            "image": f"default/{name}", "deploy": []}


def stack(name: str) -> dict[str, Any]:
    return {"name": name, "version": 1, "services": [{"running": 1, "replicas": 1}]}


@pytest.mark.parametrize(("argv", "path", "make"), [
    (["repo", "ls"], "/v1/repos", repo), (["stack", "ls"], "/v1/stacks", stack)],
    ids=["repo ls", "stack ls"])
def test_table_and_json_hold_every_page(fake: FakeTransport, argv: list[str], path: str,
                                        make: Any) -> None:
    names = [f"n{i}" for i in range(5)]
    fake.lists[path] = [make(n) for n in names]

    shown = [line.split()[0] for line in run(argv).splitlines()[1:]]
    assert shown == names
    assert [p.get("after") for _, p in fake.requests] == [None, "2", "4"]

    listed = json.loads(run([*argv, "--json"]))
    assert listed == {"items": fake.lists[path], "next": None}


# the last word of a command that lists: `list`/`ls` (STYLE 10), a stack's `ps` and
# `history`, `events`, `audit`, and the hidden `alerts` (the old `alert list`)
LIST_WORDS = {"list", "ls", "ps", "history", "events", "audit", "alerts"}


def leaves(command: TyperCommand | TyperGroup,
           path: list[str]) -> Iterator[tuple[list[str], TyperCommand]]:
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            assert isinstance(sub, TyperCommand | TyperGroup)
            yield from leaves(sub, [*path, name])
    else:
        yield path, command


def list_commands() -> list[tuple[list[str], TyperCommand]]:
    found = []
    for name in main.COMMANDS:
        for path, command in leaves(main.load_command(name), [name]):
            if path[-1] in LIST_WORDS:
                found.append((path, command))
    return found


def test_the_list_commands_are_found() -> None:
    """The next test covers what this finds: all the list commands there are today."""
    found = {" ".join(path) for path, _ in list_commands()}
    assert found >= {"list", "events", "audit", "alerts", "host list", "network list",
                     "volume list", "alert list", "alert rule list", "webhook list",
                     "image list", "snapshot list", "stack ls", "stack ps", "stack history",
                     "repo ls", "build ls", "project list", "token list"}


@pytest.mark.parametrize(("path", "command"), list_commands(),
                         ids=[" ".join(path) for path, _ in list_commands()])
def test_every_list_command_prints_every_page(fake: FakeTransport, path: list[str],
                                              command: TyperCommand) -> None:
    arguments = ["x" for p in command.params if isinstance(p, TyperArgument) and p.required]
    printed = json.loads(run([*path, *arguments, "--json"]))
    items = printed["items"] if isinstance(printed, dict) else printed
    assert [item["name"] for item in items] == ["item1", "item2", "item3"]
    assert len(fake.requests) == 2
