"""`dockyard`: the command line. Errors print one clear line on stderr and exit non-zero.

Commands load lazily. `COMMANDS` names, for each command, the module of `dockyard.cli` and
the function (or Typer group) that defines it; a module is imported, and its command built by
Typer, only when that command runs or is listed (`dockyard --help`, shell completion of a
command name). So `dockyard list` imports `instances.py` and the client, and neither the other
command modules nor the server side that `up` runs (issue 18: a command starts in ≤ 0.15 s;
tests/unit/test_cli_startup.py keeps the server side out).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

if not sys.stdout.isatty():  # help for a pipe or a script: plain text, without Rich (~80 ms)
    os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402  (reads TYPER_USE_RICH when imported)
import typer.main
from typer.core import TyperCommand, TyperGroup

from dockyard.cli import coercion
from dockyard.cli.output import error_line
from dockyard.errors import DockyardError

# name → (module in dockyard.cli, attribute): a command function or a Typer group.
# The order is the order of `dockyard --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("up", "up"),
    "server": ("up", "server"),
    "agent": ("up", "agent"),
    "reset": ("up", "reset"),
    "launch": ("instances", "launch"),
    "list": ("instances", "list_"),
    "show": ("instances", "show"),
    "start": ("instances", "start"),
    "stop": ("instances", "stop"),
    "restart": ("instances", "restart"),
    "delete": ("instances", "delete"),
    "resize": ("instances", "resize"),
    "migrate": ("moves", "migrate"),
    "rebuild": ("moves", "rebuild"),
    "evacuate": ("moves", "evacuate"),
    "exec": ("instances", "exec_"),
    "logs": ("instances", "logs"),
    "console": ("instances", "serial_console"),
    "events": ("instances", "events"),
    "stats": ("stats", "stats"),
    "top": ("stats", "top"),
    "doctor": ("doctor", "doctor"),
    "audit": ("audit", "audit"),
    "backup": ("backup", "backup"),
    "restore": ("backup", "restore"),
    "login": ("login", "login"),
    "host": ("hosts", "host_app"),
    "network": ("networks", "network_app"),
    "volume": ("volumes", "volume_app"),
    "alert": ("alerts", "alert_app"),
    "alerts": ("alerts", "alerts"),  # the old spelling of `alert list`: hidden (HIDDEN)
    "webhook": ("webhooks", "webhook_app"),
    "image": ("images", "image_app"),
    "snapshot": ("snapshots", "snapshot_app"),
    "stack": ("stack", "stack_app"),
    "repo": ("repos", "repo_app"),
    "build": ("builds", "build_app"),
    "project": ("projects", "project_app"),
    "token": ("tokens", "token_app"),
    "quota": ("quotas", "quota_app"),
    "dev-cluster": ("devcluster", "dev_cluster_app"),
}
# Kept working, not shown in `dockyard --help` nor offered by completion.
HIDDEN = frozenset({"alerts"})
# `dockyard exec NAME ls -l`: options after NAME belong to the command run in the instance.
CONTEXT_SETTINGS: dict[str, dict[str, Any]] = {"exec": {"allow_interspersed_args": False}}


def load_command(name: str) -> TyperCommand | TyperGroup:
    """Import the module of command `name` and let Typer build its click command."""
    module, attr = COMMANDS[name]
    # __import__ (not importlib.import_module): an import `python -X importtime` reports
    target = getattr(__import__(f"dockyard.cli.{module}", fromlist=[attr]), attr)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        coercion.install(group)
        return group
    single = typer.Typer(add_completion=False)
    single.command(name, context_settings=CONTEXT_SETTINGS.get(name),
                   hidden=name in HIDDEN)(target)
    command = typer.main.get_command(single)
    assert isinstance(command, TyperCommand)
    coercion.install(command)  # its values converted without pydantic (coercion.py)
    return command


class _LazyCommands(MutableMapping[str, Any]):
    """The root group's `commands`: every name of COMMANDS, each built at its first lookup."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = load_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __contains__(self, name: object) -> bool:  # without building it
        return name in COMMANDS or name in self._built

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **self._built})

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))


class LazyGroup(TyperGroup):
    """Typer's group over `_LazyCommands`; listing names builds nothing."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)


app = typer.Typer(cls=LazyGroup, help="Dockyard: a private container cloud of VM-like machine "
                  "containers.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """(Typer makes a group, not a single command, of an app with a callback.)"""


def main() -> None:
    command = typer.main.get_command(app)  # what app() runs, with its --install-completion …
    coercion.install(command)  # … converted without pydantic
    try:
        command()
    except DockyardError as exc:
        error_line(exc.message)
        sys.exit(1)


if __name__ == "__main__":
    main()
