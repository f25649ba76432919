"""The CLI starts without the server side, and within its import budget (issue 18 item 1).

A user command (`list`, `show`, `launch`, `exec`, `--help`, shell completion) imports the
client side only: `python -X importtime` of the real entry point must list none of the server,
agent, store, scheduler or adapters packages nor the libraries only they use. Commands that
run that code (`up`, `server`, `agent`, `backup`, `restore`, `image build`, `dev-cluster`)
import it inside the command. The budget of a user command also leaves out the heavy client
libraries: pydantic (Typer's value conversion is replaced for plain values, cli/coercion.py),
httpx (the CLI's transport is http.client, cli/transport.py) and Rich until something is
printed through it. No wall-clock time is asserted here: `bench/cli_startup.py` measures it.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.core import TyperGroup

from dockyard.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINT = Path(sysconfig.get_path("scripts")) / "dockyard"
SERVER_SIDE = ("dockyard.server", "dockyard.agent", "dockyard.store", "dockyard.adapters",
               "dockyard.scheduler", "dockyard.devcluster", "sqlalchemy", "alembic", "fastapi",
               "uvicorn", "docker", "pyroute2", "psycopg")
# Loaded only by the commands that need them: Dockyard's pydantic models (`launch -v`, quotas,
# `image push`; Typer itself uses pydantic to convert option values), cryptography (`login`
# checking a CA), websockets (`exec -it`).
LEAN = ("dockyard.model.instance", "dockyard.model.tenancy", "dockyard.model.image",
        "dockyard.model.alerts", "dockyard.tls", "cryptography", "websockets")
# Out of a user command's import budget: pydantic (Typer converts values with it; coercion.py
# does it for plain values), httpx and its stack (the CLI's transport is the stdlib's).
HEAVY = ("pydantic", "pydantic_core", "httpx", "httpcore", "h11", "anyio")
# Rich only once something is printed through it (a table, a spinner, a help page).
RICH = ("rich",)
# Where no server answers: loopback port 9 (discard) refuses at once.
OFFLINE = {"DOCKYARD_URL": "http://127.0.0.1:9", "DOCKYARD_TOKEN": "t"}


def imported(args: list[str], env: dict[str, str] | None = None,
             tmp: Path | None = None) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules `python -X importtime ARGS` imported, and the finished process."""
    full_env = {**os.environ, "DOCKYARD_CONFIG": str((tmp or ROOT) / "no-such-config.json"),
                "COLUMNS": "100", **(env or {})}
    for var in ("DOCKYARD_URL", "DOCKYARD_TOKEN", "DOCKYARD_CA"):
        if env is None or var not in env:
            full_env.pop(var, None)
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "typer" in names, proc.stderr[-2000:]  # the importtime report was read
    return names, proc


def loaded(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_importing_the_cli_loads_no_server_side_and_no_command_module() -> None:
    names, proc = imported(["-c", "import dockyard.cli.main"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert loaded(names, SERVER_SIDE + LEAN + HEAVY + RICH) == []
    assert loaded(names, ("dockyard.client",)) == []
    commands = {f"dockyard.cli.{module}" for module, _ in cli_main.COMMANDS.values()}
    assert sorted(commands & names) == []


@pytest.mark.parametrize("argv", [
    ["--help"], ["list", "--help"], ["show", "--help"], ["launch", "--help"],
    ["exec", "--help"], ["up", "--help"], ["image", "build", "--help"],
    ["backup", "--help"], ["dev-cluster", "up", "--help"], ["agent", "--help"]])
def test_help_of_a_command_loads_no_server_side(argv: list[str], tmp_path: Path) -> None:
    names, proc = imported([str(ENTRY_POINT), *argv], tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage: dockyard" in proc.stdout
    assert loaded(names, SERVER_SIDE + LEAN + HEAVY) == []


@pytest.mark.parametrize(("argv", "prints"), [
    (["list"], False), (["show", "web"], False), (["exec", "web", "--", "true"], False),
    (["list", "--json"], False), (["launch", "dockyard/busybox:latest", "web"], False),
    (["launch", "dockyard/busybox:latest", "web", "--cores", "1", "--cpus", "0.5",
      "--strategy", "pack", "--ssh-key", "/dev/null", "-e", "A=1", "--no-wait"], False),
    (["network", "list"], False), (["doctor"], False)])
def test_a_user_command_loads_the_client_only(argv: list[str], prints: bool,
                                              tmp_path: Path) -> None:
    """The command really runs: it converts its options, builds its request and fails to
    reach the server. `launch` (waiting) shows a spinner on a terminal only: to a pipe (here)
    it prints its line without Rich, as `list` and `show` print nothing through it before
    the reply."""
    names, proc = imported([str(ENTRY_POINT), *argv], OFFLINE, tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: cannot reach Dockyard at http://127.0.0.1:9" in proc.stderr
    assert {"dockyard.client", "dockyard.cli.transport", "http.client"} <= names
    assert loaded(names, SERVER_SIDE + LEAN + HEAVY) == []
    assert bool(loaded(names, RICH)) == prints


def test_every_command_is_listed_and_only_its_own_module_is_loaded(tmp_path: Path) -> None:
    """One process: `dockyard list` imports instances.py, and no other command module."""
    names, proc = imported([str(ENTRY_POINT), "list"], OFFLINE, tmp_path)
    modules = {f"dockyard.cli.{module}" for module, _ in cli_main.COMMANDS.values()}
    assert sorted(modules & names) == ["dockyard.cli.instances"]
    listing = subprocess.run([str(ENTRY_POINT), "--help"], capture_output=True, text=True,
                             env={**os.environ, "COLUMNS": "200"}, timeout=120)
    # plain help to a pipe: "Commands:", then "  name  help" lines (continuations indented)
    commands = listing.stdout.split("Commands:\n", 1)[1].splitlines()
    shown = {line.split()[0] for line in commands
             if line.startswith("  ") and line[2] != " "}
    assert shown == set(cli_main.COMMANDS) - cli_main.HIDDEN


def test_every_command_builds() -> None:
    """Each entry of COMMANDS names something Typer can build, under its own name."""
    for name in cli_main.COMMANDS:
        command = cli_main.load_command(name)
        assert command.name == name
        assert command.get_short_help_str()


def test_one_module_per_command_group_and_alerts_is_an_alias_of_alert_list() -> None:
    """Issue 17 item 6: each group or set of verbs has its own module; `dockyard alerts`
    (the old spelling) runs `alert list` and is not shown."""
    modules = {name: module for name, (module, _) in cli_main.COMMANDS.items()}
    groups = {name: module for name, (module, attr) in cli_main.COMMANDS.items()
              if attr.endswith("_app")}
    assert len(set(groups.values())) == len(groups)  # no module holds two groups
    assert {modules[v] for v in ("migrate", "rebuild", "evacuate")} == {"moves"}
    assert {modules[v] for v in ("login", "token", "quota", "project")} == {
        "login", "tokens", "quotas", "projects"}
    alias = cli_main.load_command("alerts")
    listing = cli_main.load_command("alert")
    assert isinstance(listing, TyperGroup)
    same = listing.commands["list"].callback.__wrapped__  # type: ignore[union-attr]
    assert alias.hidden and alias.callback.__wrapped__ is same  # type: ignore[union-attr]
    assert {"alerts"} == cli_main.HIDDEN


def test_a_mistyped_command_is_still_answered_with_a_suggestion(tmp_path: Path) -> None:
    proc = subprocess.run([str(ENTRY_POINT), "lsit"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert proc.returncode == 2
    assert "No such command 'lsit'. Did you mean 'list'?" in proc.stderr


def test_image_build_shows_the_defaults_of_the_build() -> None:
    """`image build --help` names the tag and cache the adapter builds with (config.py keeps
    them, so the help needs no adapter import)."""
    from dockyard.adapters import machine_image
    proc = subprocess.run([str(ENTRY_POINT), "image", "build", "--help"], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert str(machine_image.DEFAULT_IMAGE_CACHE) in proc.stdout
    assert machine_image.MACHINE_TAG in proc.stdout


# --- shell completion (Typer's) --------------------------------------------------------------

def _completion_env(tmp_path: Path) -> dict[str, str]:
    # Typer takes the shell as an argument instead of detecting it from the parent process
    # when this variable is set (its own tests do so); HOME: where --install-completion writes.
    return {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
            "HOME": str(tmp_path), "SHELL": "/bin/bash"}


def test_show_completion_prints_a_bash_script(tmp_path: Path) -> None:
    proc = subprocess.run([str(ENTRY_POINT), "--show-completion", "bash"], capture_output=True,
                          text=True, env=_completion_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "_DOCKYARD_COMPLETE=complete_bash" in proc.stdout
    assert "complete -o default -F _dockyard_completion dockyard" in proc.stdout


def test_install_completion_writes_the_script_for_bash(tmp_path: Path) -> None:
    proc = subprocess.run([str(ENTRY_POINT), "--install-completion", "bash"],
                          capture_output=True, text=True, env=_completion_env(tmp_path),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / ".bash_completions" / "dockyard.sh"
    assert "_DOCKYARD_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize(("words", "expected"), [
    ("dockyard l", {"launch", "list", "logs", "login"}), ("dockyard network l", {"list"}),
    ("dockyard dev-cluster st", {"status"}), ("dockyard exe", {"exec"})])
def test_completion_completes_commands_without_the_server_side(
        words: str, expected: set[str], tmp_path: Path) -> None:
    """What bash runs at each TAB: the names come back, and nothing heavy is imported."""
    env = {"_DOCKYARD_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    names, proc = imported([str(ENTRY_POINT)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(proc.stdout.split()) == expected
    assert loaded(names, SERVER_SIDE + LEAN + HEAVY + RICH) == []


# --- the import-linter contract --------------------------------------------------------------

def test_importlinter_lets_the_client_commands_import_only_the_client_side() -> None:
    """The contract exists (issue 17 item 5): every command module but the named exceptions
    may import, of Dockyard, only the client and the shared lower layers; every other package
    of src/dockyard is forbidden (a new package is forbidden until named here). The contract
    itself is checked by test_layers.py."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    contract = config["importlinter:contract:cli-client-side"]
    assert contract["type"] == "forbidden"
    sources = set(contract["source_modules"].split())
    forbidden = set(contract["forbidden_modules"].split())
    assert set(SERVER_SIDE) <= forbidden
    exceptions = {"dockyard.cli.up", "dockyard.cli.backup", "dockyard.cli.images",
                  "dockyard.cli.devcluster", "dockyard.cli.reset", "dockyard.cli.stack"}
    every = {f"dockyard.cli.{p.stem}" for p in (ROOT / "src/dockyard/cli").glob("*.py")
             if p.stem != "__init__"}
    assert sources == every - exceptions
    client_side = {"cli", "client", "errors", "model", "tls"}
    packages = {p.stem for p in (ROOT / "src/dockyard").iterdir()
                if (p.suffix == ".py" or (p / "__init__.py").exists())
                and p.stem not in ("__init__", "__main__")}
    assert client_side < packages
    assert {m for m in forbidden if m.startswith("dockyard.")} == {
        f"dockyard.{p}" for p in packages - client_side}
    assert contract.get("allow_indirect_imports", "False") == "False"
