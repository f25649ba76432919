"""Signs of life from the agents, written in batches: one UPDATE for every host heard from.

A heartbeat or a watch proves the host's agent alive. Writing `hosts.last_heartbeat` for each
was a write transaction per call (at 10,000 hosts, ~1,000 a second on one core). Instead each
call notes its host here (`note`, memory only) and the first call a `FLUSH_EVERY` after the
last flush writes every noted host at once (`flush`: `store.hosts.touch_many`, then the usual
`host_up` transition for any of them stored `down`); the server's `flusher` task writes what
is still noted every `flush_interval` (FLUSH_EVERY, or a tenth of the heartbeat timeout when
that is shorter), so a note never waits for another host's call. A stored heartbeat lags the
real one by at most that interval. (Without the task, a host whose watch ended just after
another host's flush stayed unwritten until the next call of any host: with few hosts and
short timeouts, long enough to be reported `down` — seen on the dev-cluster.)
A host not heard from for `heartbeat_timeout / 2` (it may be
`down`), and a host this process has not written yet, are written at once by the caller
(`due_now`), so a host coming back is seen as soon as it calls, as before.

An agent's inventory is written by its heartbeat only when it differs from what this process
last wrote for it, or that was more than INVENTORY_EVERY ago (another server may have written
another one since).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dockyard.store import hosts
from dockyard.store.db import Database
from dockyard.store.events import record as record_event

FLUSH_EVERY = 1.0
INVENTORY_EVERY = 60.0
log = logging.getLogger(__name__)


def flush_interval(heartbeat_timeout: float) -> float:
    return min(FLUSH_EVERY, heartbeat_timeout / 10)


class Liveness:
    """Thread-safe; one per server process (`ServerContext.liveness`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: set[str] = set()
        self._heard: dict[str, float] = {}  # host -> when this process last heard it
        self._inventory: dict[str, tuple[dict[str, Any], float]] = {}
        self._flushed = clock()

    def due_now(self, host: str, timeout: float) -> bool:
        """The host must be written by this call (first time here, or silent for a while)."""
        with self._lock:
            heard = self._heard.get(host)
        return heard is None or self._clock() - heard > timeout / 2

    def wrote(self, host: str, inventory: dict[str, Any] | None = None) -> None:
        """The caller wrote the host's heartbeat (and this inventory) itself."""
        now = self._clock()
        with self._lock:
            self._heard[host] = now
            self._pending.discard(host)
            if inventory is not None:
                self._inventory[host] = (inventory, now)

    def forget(self, host: str) -> None:
        """A registration or removal: the next call writes in full."""
        with self._lock:
            self._heard.pop(host, None)
            self._inventory.pop(host, None)
            self._pending.discard(host)

    def inventory_known(self, host: str, inventory: dict[str, Any]) -> bool:
        with self._lock:
            known = self._inventory.get(host)
        return known is not None and known[0] == inventory and \
            self._clock() - known[1] < INVENTORY_EVERY

    def note(self, host: str) -> bool:
        """Heard from `host`; True when a flush is due (the caller runs `flush`)."""
        now = self._clock()
        with self._lock:
            self._heard[host] = now
            self._pending.add(host)
            return now - self._flushed >= FLUSH_EVERY

    def flush(self, db: Database) -> bool:
        """Write every noted host's heartbeat; True if a host came back up. One flusher at a
        time; a caller that finds one running leaves its notes to it or the next."""
        if not self._flushing.acquire(blocking=False):
            return False
        try:
            with self._lock:
                names, self._pending = sorted(self._pending), set()
                self._flushed = self._clock()
            if not names:
                return False
            came_back = False
            with db.session() as sess:
                for row in hosts.touch_many(sess, names, datetime.now(UTC)):
                    if hosts.set_state(sess, row, "down", "up"):
                        record_event(sess, None, "host_up", "the agent is back", row.name)
                        came_back = True
            return came_back
        finally:
            self._flushing.release()


async def flusher(live: Liveness, db: Database, every: float,
                  came_back: Callable[[], None]) -> None:
    """The server's task: what is noted is written within `every` seconds, whoever calls."""
    while True:
        await asyncio.sleep(every)
        try:
            if await asyncio.to_thread(live.flush, db):
                came_back()
        except Exception:  # a store hiccup must not end the task; the next round writes
            log.exception("writing the noted heartbeats failed")
