"""`dockyard dev-cluster up --listen` on an address the simulated hosts cannot reach is refused
at once, through the CLI, before anything is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCKYARD = Path(sys.executable).parent / "dockyard"


@pytest.mark.parametrize("listen", ["127.0.0.1:7999", "localhost:7999", "0.0.0.0:7999",
                                    "[::1]:7999"])
def test_unreachable_listen_is_refused_before_anything_is_made(tmp_path: Path,
                                                               listen: str) -> None:
    home = tmp_path / "cluster"
    proc = subprocess.run([str(DOCKYARD), "dev-cluster", "up", "--hosts", "1", "--home",
                           str(home), "--listen", listen], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "1000",
                                           "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "own network namespaces" in proc.stderr and "leave --listen out" in proc.stderr
    assert listen in proc.stderr
    assert not home.exists()  # refused before any state, bridge or process
