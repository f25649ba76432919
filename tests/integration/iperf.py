"""One iperf3 TCP run between two network namespaces, for the rate-limit tests."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time


def received_bps(server_pid: int, server_ip: str, client_pid: int, *, reverse: bool,
                 seconds: int = 3) -> float:
    """Received bits/s of a `seconds` TCP run after 1 s left out (tbf's initial burst).
    The server runs in `server_pid`'s netns, the client in `client_pid`'s; `reverse` (-R)
    sends from the server to the client."""
    port = str(20000 + secrets.randbelow(20000))
    server = subprocess.Popen(["nsenter", "-t", str(server_pid), "-n", "iperf3", "-s", "-1",
                               "-p", port], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cmd = ["nsenter", "-t", str(client_pid), "-n", "iperf3", "-c", server_ip, "-p", port,
               "-t", str(seconds), "-O", "1", "-J", *(["-R"] if reverse else [])]
        deadline = time.monotonic() + 10
        while True:  # iperf3 -J exits 0 even when it could not connect yet
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
            if "Connection refused" not in run.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the server is not listening yet
        received = None
        with contextlib.suppress(ValueError):
            received = json.loads(run.stdout).get("end", {}).get("sum_received")
        assert run.returncode == 0 and received is not None, (
            f"iperf3 failed: {run.stdout[-2000:]} {run.stderr}")
        return float(received["bits_per_second"])
    finally:
        server.kill()
        server.wait(timeout=10)
