"""The layers of STYLE.md §1 hold (import-linter contract in .importlinter)."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_routers_contract_forbids_sql_and_tables() -> None:
    """Issue 17: the API routers go through the store's query functions. The contract exists
    and names the routers package (its modules included) and both forbidden imports; only
    indirect imports (through `dockyard.store` modules) are allowed."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    contract = config["importlinter:contract:routers-through-the-store"]
    assert contract["type"] == "forbidden"
    assert contract["source_modules"].split() == ["dockyard.server.routers"]
    assert {"sqlalchemy", "dockyard.store.tables"} <= set(contract["forbidden_modules"].split())
    assert contract["allow_indirect_imports"] == "True"


def test_no_router_imports_sqlalchemy_or_the_tables() -> None:
    """What the contract enforces, read from the sources (every import statement, also those
    inside functions or under TYPE_CHECKING)."""
    found = []
    for path in sorted((ROOT / "src/dockyard/server/routers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names
                      if n.split(".")[0] == "sqlalchemy" or n.startswith("dockyard.store.tables")]
    assert found == []
