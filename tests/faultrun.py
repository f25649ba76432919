"""Run a `dockyard` command with one fault point armed: when the process reaches it, the point's
name is appended to MARKER and the process SIGKILLs itself (as `kill -9` would).

    python -m tests.faultrun POINT MARKER -- server --home …
    python -m tests.faultrun pause:POINT MARKER -- agent …

With `pause:` the process instead waits at the point (once) until the file MARKER.release
appears, so a test can change the world (remove an image, stop dockerd, take a name) exactly
there, then let it go on.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from dockyard import faults
from dockyard.cli.main import main


def _record(marker: str, name: str) -> None:
    with open(marker, "a") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def arm(spec: str, marker: str) -> None:
    pause, _, point = spec.rpartition(":")
    if point not in faults.POINTS:
        raise SystemExit(f"unknown fault point {point}")
    paused: list[str] = []

    def hook(name: str) -> None:
        if name != point:
            return
        if not pause:
            _record(marker, name)
            os.kill(os.getpid(), signal.SIGKILL)
        if paused:
            return
        paused.append(name)
        _record(marker, name)
        release = marker + ".release"
        while not os.path.exists(release):
            time.sleep(0.02)
        os.unlink(release)

    faults.install(hook)


if __name__ == "__main__":
    point, marker, sep, *rest = sys.argv[1:]
    assert sep == "--", "usage: faultrun POINT MARKER -- ARGS…"
    arm(point, marker)
    sys.argv = ["dockyard", *rest]
    main()
