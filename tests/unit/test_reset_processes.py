"""`dockyard reset` refuses while a Dockyard of the home runs (`home_processes`), and a
wrapper of the reset itself (`timeout 60 dockyard reset --home H`) is not one: this process
and its ancestors are never among the command lines (adapters/processes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dockyard.adapters.processes import lineage, parent_of

SCRIPT = """#!{python}
import json, sys, time
from pathlib import Path
from dockyard.cli.reset import home_processes
if sys.argv[1] == "agent":
    time.sleep(30)
else:
    print(json.dumps(home_processes(Path(sys.argv[-1]))))
"""


def test_a_wrapper_of_the_reset_is_not_a_running_dockyard(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "dockyard"  # named as the CLI is: argv[:3] ends with "dockyard"
    fake.parent.mkdir()
    fake.write_text(SCRIPT.format(python=sys.executable))
    fake.chmod(0o755)
    home = tmp_path / "home"
    other = subprocess.Popen([str(fake), "agent", "--home", str(home / "agent")])
    try:
        out = subprocess.run(["timeout", "60", str(fake), "reset", "--home", str(home)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert json.loads(out) == [other.pid]  # the agent of the home, not `timeout`
    finally:
        other.kill()
        other.wait()


def test_lineage_walks_up_to_init() -> None:
    mine = lineage(os.getpid())
    assert os.getpid() in mine and os.getppid() in mine and 1 in mine
    assert parent_of(os.getpid()) == os.getppid()
    assert parent_of(2 ** 22 + 7) is None  # no such process
