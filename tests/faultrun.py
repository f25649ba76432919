"""Run a `dockyard` command with one fault point armed: when the process reaches it, the point's
name is appended to MARKER and the process SIGKILLs itself (as `kill -9` would).

    python -m tests.faultrun POINT MARKER -- server --home …
"""

from __future__ import annotations

import os
import signal
import sys

from dockyard import faults
from dockyard.cli.main import main


def arm(point: str, marker: str) -> None:
    if point not in faults.POINTS:
        raise SystemExit(f"unknown fault point {point}")

    def hook(name: str) -> None:
        if name == point:
            with open(marker, "a") as fh:
                fh.write(name + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

    faults.install(hook)


if __name__ == "__main__":
    point, marker, sep, *rest = sys.argv[1:]
    assert sep == "--", "usage: faultrun POINT MARKER -- ARGS…"
    arm(point, marker)
    sys.argv = ["dockyard", *rest]
    main()
