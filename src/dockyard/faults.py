"""Named fault points: the places in create, delete, stop and start where a test may kill the
process (kill -9) to prove that the next pass repairs everything (STYLE.md §11).

Production installs no hook, so `point()` is a set lookup and nothing else: there is no
environment switch. The fault tests run the agent or the server through `tests/faultrun.py`,
which installs a hook that records the point's name and SIGKILLs its own process there; the
tests then check that every name in `POINTS` was hit.
"""

from __future__ import annotations

from collections.abc import Callable

POINTS: frozenset[str] = frozenset({
    # agent, create: files → docker create → start → plumb → report
    "agent.create.files_written",
    "agent.create.container_created",
    "agent.create.started",
    "agent.create.plumbed",
    # agent, delete: unplumb → remove container → remove files
    "agent.delete.unplumbed",
    "agent.delete.container_removed",
    # agent, stop / start
    "agent.stop.unplumbed",
    "agent.stop.stopped",
    "agent.start.started",
    # agent, between a sync and its report
    "agent.report.before",
    # server: after a desired-state change is committed, before the reply / notify
    "server.create.committed",
    "server.delete.committed",
    "server.action.committed",
    "server.report.before_apply",
    # server, cold migration (server/migrate.py): after each journalled step
    "server.migrate.prepared",
    "server.migrate.volumes_copied",
    "server.migrate.stopped",
    "server.migrate.committed",
    "server.migrate.delta_copied",
    "server.migrate.switched",
    "server.migrate.running",
    # server, live migration (server/live_migrate.py): after each journalled step
    "server.live.prepared",
    "server.live.checkpointed",
    "server.live.committed",
    "server.live.delta_copied",
    "server.live.restored",
    "server.live.switched",
    "server.live.running",
    "server.live.image_kept",
})

_hook: Callable[[str], None] | None = None


def install(hook: Callable[[str], None] | None) -> None:
    global _hook
    _hook = hook


def point(name: str) -> None:
    if name not in POINTS:
        raise KeyError(f"unknown fault point {name}")
    if _hook is not None:
        _hook(name)
