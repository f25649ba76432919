"""Which held watches a change concerns, read once per change for all of them.

Every commit wakes every held watch (the notifier is not keyed by host). Before, each woken
watch read the store again: with N hosts a burst of L launches cost N × L reads, and every
change to a network's peers (each launch, each delete) answered all N watches at once, which
then came back, each to be answered again at the next change.

Now the first watch woken by a change reads, in one query (`ChangeIndex.current`), the newest
desired-state revision of every host whose instances changed since the last read, and the
networks' revision; every other watch woken by the same change decides in memory
(`Snapshot.decide`):

* its host's instances changed after its `since`: answer now (the launch path stays at once);
* only networks or their peers changed: answer, but no sooner than the pacer's interval after
  this host's previous answer (`Pacer`): PEER_BATCH seconds, longer with many held watches
  (one per PEER_ANSWERS_PER_S-th of a second each), so that a burst's peer changes go out
  together and the peer-only answers of all hosts stay near PEER_ANSWERS_PER_S a second
  whatever their number (/etc/hosts of 1,000 hosts follow within ~5 s; 10,000 within ~50 s);
* nothing of its own: wait again.

A snapshot holds the notifier token taken before its read: when that token is set a change
came after the read, and the next watch to ask reads again (so a change is never missed: the
waiters wait on that token).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from fastapi.concurrency import run_in_threadpool

from dockyard.store import instances as instance_rows
from dockyard.store import revision

if TYPE_CHECKING:
    from dockyard.server.context import ServerContext

PEER_BATCH = 0.5  # seconds: a host gets peer-only changes at most about this often
PEER_ANSWERS_PER_S = 200.0  # and all hosts together about this many a second


class Decision(Enum):
    now = "now"
    batch = "batch"  # only networks/peers changed: answer at the pacer's time
    wait = "wait"


@dataclass(frozen=True)
class Snapshot:
    revision: int
    networks: int
    hosts: dict[str, int]  # host name -> newest revision of its instances (those read)
    taken: asyncio.Event  # the notifier token taken before the read

    def decide(self, host: str, since: int) -> Decision:
        if self.hosts.get(host, 0) > since:
            return Decision.now
        if self.networks > since:
            return Decision.batch
        return Decision.wait


class ChangeIndex:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._snap: Snapshot | None = None

    async def current(self, ctx: ServerContext) -> Snapshot:
        """A snapshot read after the last change this server has been told of."""
        async with self._lock:
            snap = self._snap
            if snap is None or snap.taken.is_set():
                taken = ctx.notifier.token()
                snap = self._snap = await run_in_threadpool(self._read, ctx, snap, taken)
            return snap

    @staticmethod
    def _read(ctx: ServerContext, old: Snapshot | None, taken: asyncio.Event) -> Snapshot:
        with ctx.db.read() as sess:
            current, networks = revision.current_and_networks(sess)
            hosts = dict(old.hosts) if old is not None else {}
            hosts.update(instance_rows.newest_per_host(sess, old.revision if old else 0))
        return Snapshot(current, networks, hosts, taken)


@dataclass
class Pacer:
    """When each host was last answered, and how many watches are held (this server's
    memory; thread-safe)."""

    _last: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    watching: int = 0

    def held(self, change: int) -> None:
        with self._lock:
            self.watching += change

    def answered(self, host: str) -> None:
        with self._lock:
            self._last[host] = time.monotonic()

    def due(self, host: str) -> float:
        """Monotonic time at which a peer-only answer may go to `host`."""
        with self._lock:
            interval = max(PEER_BATCH, self.watching / PEER_ANSWERS_PER_S)
            return self._last.get(host, 0.0) + interval
