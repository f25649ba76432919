"""The agent may not import the store (issue 17 item 5): the contract exists and bites.

test_layers.py checks that every contract of .importlinter is kept by the real tree; here a
copy of the tree with one agent module importing the store must break this contract.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "importlinter:contract:agent-no-store"


def test_the_agent_no_store_contract_exists() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    contract = config[CONTRACT]
    assert contract["type"] == "forbidden"
    assert contract["source_modules"].split() == ["dockyard.agent"]
    assert {"dockyard.store", "sqlalchemy"} <= set(contract["forbidden_modules"].split())
    assert contract.get("allow_indirect_imports", "False") == "False"


def test_an_agent_module_importing_the_store_breaks_it(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "src" / "dockyard", tmp_path / "dockyard",
                    ignore=shutil.ignore_patterns("__pycache__"))
    probe = tmp_path / "dockyard" / "agent" / "workqueue.py"
    probe.write_text(probe.read_text() + "\nimport dockyard.store.tables  # noqa\n")
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter"),
                           "--contract", "agent-no-store"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "dockyard.agent.workqueue -> dockyard.store.tables" in proc.stdout
