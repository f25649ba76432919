"""`dockyard up` supervises its children: an agent killed with SIGKILL is restarted (and the
restart recorded as a host event), its instances are untouched and a new launch works."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.test_restarts import ping, wait_for


def child_pid(parent: int, role: str) -> int | None:
    """The PID of `dockyard up`'s `role` child (`python -m dockyard agent|server …`)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if argv[1:4] == [b"-m", b"dockyard", role.encode()]:
            return int(pid)
    return None


def host_events(dy: Dockyard) -> list[dict[str, Any]]:
    """Every event without an instance (pages followed)."""
    items: list[dict[str, Any]] = []
    after = "0"
    with dy.api() as api:
        while after:
            page = api.get("/v1/events", after=after, limit=1000)
            items += [e for e in page["items"] if not e.get("instance")]
            after = page["next"]
    return items


def _registrations(dy: Dockyard) -> int:
    return sum(e["kind"] == "host_registered" for e in host_events(dy))


def test_a_killed_agent_is_restarted_and_instances_stay(dy: Dockyard) -> None:
    assert dy.proc is not None
    inst = dy.ok("launch", IMAGE, "kept", "--json").json()
    try:
        old_agent, server = child_pid(dy.proc.pid, "agent"), child_pid(dy.proc.pid, "server")
        assert old_agent is not None and server is not None
        registered = _registrations(dy)
        os.kill(old_agent, signal.SIGKILL)
        wait_for(lambda: child_pid(dy.proc.pid, "agent") not in (None, old_agent))  # type: ignore[union-attr]
        assert dy.proc.poll() is None and child_pid(dy.proc.pid, "server") == server
        assert ping(inst["ip"], 3)
        # the host still reads "up" from the dead agent's last heartbeat: the new agent is in
        # charge once it has registered its own address (a launch before that goes to the old one)
        wait_for(lambda: _registrations(dy) > registered)
        assert dy.ok("host", "show", "local", "--json").json()["state"] == "up"
        assert any(e["kind"] == "agent_restarted" and "SIGKILL" in e["message"]
                   for e in host_events(dy)), host_events(dy)
        new = dy.ok("launch", IMAGE, "fresh", "--json").json()  # the new agent drives it
        assert ping(new["ip"], 3)
        shown = dy.ok("show", "kept", "--json").json()
        assert shown["state"] == "running" and shown["container_id"] == inst["container_id"]
        assert "restarting it" in (dy.root / "up.log").read_text()
    finally:
        dy.cli("delete", "kept", "--force")
        dy.cli("delete", "fresh", "--force")
