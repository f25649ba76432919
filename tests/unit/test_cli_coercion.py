"""cli/coercion.py converts plain values exactly as Typer's own (pydantic) conversion does.

A small Typer command with every parameter kind the CLI declares is run on a table of
arguments twice: as Typer builds it, and with `coercion.install`. The function must receive
the same values (types included), and a refused value the same error message. Then: the
installed conversion really is the one used (no pydantic import in a fresh process for plain
values), and a value it declines still gets Typer's answer.
"""

from __future__ import annotations

import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main

from dockyard.cli import coercion


class Strategy(StrEnum):
    spread = "spread"
    pack = "pack"


def make_app(received: list[dict[str, Any]]) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def run(name: str,
            rest: Annotated[list[str] | None, typer.Argument()] = None,
            count: Annotated[int, typer.Option()] = 0,
            maybe: Annotated[int | None, typer.Option()] = None,
            ratio: Annotated[float | None, typer.Option()] = None,
            label: Annotated[str | None, typer.Option()] = None,
            path: Annotated[Path | None, typer.Option()] = None,
            must_exist: Annotated[Path | None, typer.Option(exists=True)] = None,
            strategy: Annotated[Strategy, typer.Option()] = Strategy.spread,
            env: Annotated[list[str], typer.Option("-e")] = [],  # noqa: B006
            keys: Annotated[list[Path], typer.Option("--key")] = [],  # noqa: B006
            ports: Annotated[list[int], typer.Option("--port")] = [],  # noqa: B006
            ranged: Annotated[int | None, typer.Option(min=1, max=5)] = None,
            flag: Annotated[bool, typer.Option("--flag/--no-flag")] = False) -> None:
        values = {k: (type(v).__name__, v) for k, v in locals().items() if k != "received"}
        received.append(values)

    @app.command()
    def other() -> None:  # two commands: Typer makes a group, as in the CLI's groups
        pass
    return app


ARGS = [
    ["run", "web"], ["run", "wëb", "a", "b c", "-d"], ["run", "web", "--count", "12"],
    ["run", "web", "--count", "-3"], ["run", "web", "--count", "007"],
    ["run", "web", "--count", " 5"], ["run", "web", "--count", "1.0"],
    ["run", "web", "--count", "1_000"], ["run", "web", "--count", "abc"],
    ["run", "web", "--count", ""], ["run", "web", "--maybe", "4"],
    ["run", "web", "--ratio", "0.5"], ["run", "web", "--ratio", "1"],
    ["run", "web", "--ratio", "-2.25"], ["run", "web", "--ratio", "1e3"],
    ["run", "web", "--ratio", ".5"], ["run", "web", "--ratio", "nan"],
    ["run", "web", "--ratio", "x"], ["run", "web", "--label", ""],
    ["run", "web", "--label", "-"], ["run", "web", "--path", "rel/p"],
    ["run", "web", "--path", "/dev/null"], ["run", "web", "--path", ""],
    ["run", "web", "--must-exist", "/dev/null"], ["run", "web", "--must-exist", "/nonexistent"],
    ["run", "web", "--strategy", "pack"], ["run", "web", "--strategy", "PACK"],
    ["run", "web", "--strategy", "nope"], ["run", "web", "-e", "A=1", "-e", "B=2"],
    ["run", "web", "--key", "/dev/null", "--key", "x"], ["run", "web", "--port", "80",
                                                          "--port", "x"],
    ["run", "web", "--port", "80", "--port", "443"], ["run", "web", "--ranged", "3"],
    ["run", "web", "--ranged", "9"], ["run", "web", "--flag"], ["run", "web", "--no-flag"],
    ["run"], ["run", "web", "--count"],
]


def outcome(install: bool, argv: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """(the error the command ended with, or "ok"; the values the function received)"""
    received: list[dict[str, Any]] = []
    command = typer.main.get_command(make_app(received))
    if install:
        coercion.install(command)
    try:
        command.main(argv, prog_name="t", standalone_mode=False)
    except Exception as exc:  # Typer's usage errors: BadParameter, MissingParameter …
        return f"{type(exc).__name__}: {exc}", received
    return "ok", received


@pytest.mark.parametrize("argv", ARGS, ids=[" ".join(a) for a in ARGS])
def test_plain_conversion_gives_what_typer_gives(argv: list[str]) -> None:
    assert repr(outcome(True, argv)) == repr(outcome(False, argv))  # repr: nan == nan


def test_the_table_covers_values_received_and_refused() -> None:
    ends = [outcome(True, argv)[0] for argv in ARGS]
    assert ends.count("ok") >= 20 and sum(e.startswith("BadParameter") for e in ends) >= 8


def test_plain_values_are_converted_without_pydantic() -> None:
    """In a fresh process: the installed conversion runs (pydantic stays out) and a value it
    declines (`--count abc`) is answered by Typer's own, which imports pydantic."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import typer.main
from test_cli_coercion import make_app
from dockyard.cli import coercion
received = []
command = typer.main.get_command(make_app(received))
coercion.install(command)
try:
    command(sys.argv[1:], standalone_mode=False)
except Exception as exc:
    print(type(exc).__name__, exc)
print(received[0]["count"] if received else None, "pydantic" in sys.modules)
"""
    plain = [sys.executable, "-c", script, "run", "web", "--count", "3", "--strategy", "pack",
             "--key", "/dev/null", "--ratio", "0.5", "-e", "A=1", "--flag"]
    out = subprocess.run(plain, capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[-2] == "('int', 3) False", out.stderr
    declined = [sys.executable, "-c", script, "run", "web", "--count", "abc"]
    out = subprocess.run(declined, capture_output=True, text=True, timeout=60)
    assert "BadParameter Input should be a valid integer" in out.stdout, out.stderr
    assert out.stdout.split("\n")[-2] == "None True"
