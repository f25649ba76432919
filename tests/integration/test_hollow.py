"""The small version of the scale benchmark (issue 16): 100 hollow agents (`bench/hollow.py`:
the agent protocol without Docker, in two worker processes) against one real `dockyard server`
on SQLite, and a burst of 40 launches. Correctness only: every host registers, every launch is
reported running by its agent and shown running by the API, every delete is seen by its agent
and the row goes, and no agent call was refused. The timings are the benchmark's (`make
bench-scale`); a burst of 100 took 40-75 s of the suite for no more correctness."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from hollow import measure  # noqa: E402

HOSTS = 100
LAUNCHES = 40


def test_a_hundred_hollow_agents_converge() -> None:
    args = argparse.Namespace(hosts=HOSTS, db="sqlite", procs=2, heartbeat=10.0,
                              heartbeat_timeout=60.0, settle=0.0, steady=2.0, down=0,
                              launches=LAUNCHES, clients=8, keep=False, label="")
    result = measure(args)
    assert "burst_error" not in result, result["burst_error"]  # a phase not done in its time
    burst = result["burst"]
    assert result["errors"] == {}
    assert burst["launches"] == LAUNCHES
    assert burst["converged_s"] > 0 and burst["deletes_gone_s"] > 0
    assert result["steady"]["requests_per_s"].get("register", 0) == 0  # nobody re-registered
