"""What every request handler shares: settings, the database, the notifier, agent access,
the registry."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from anyio import CapacityLimiter

from dockyard.config import ServerSettings
from dockyard.server.agent_proxy import AgentProxy
from dockyard.server.liveness import Liveness
from dockyard.server.notifier import Notifier
from dockyard.server.peers import PeerJournal
from dockyard.server.registry import RegistryClient
from dockyard.server.wakeups import ChangeIndex, Pacer
from dockyard.server.watch_networks import SharedNetworks
from dockyard.store.db import Database

WATCH_THREADS = 8  # replies built at once: more only queue on the GIL (and on SQLite)


class FeedCounter:
    """Agent-feed requests per host and endpoint, in this server's memory (shown in host
    show as `feed_requests`, to keep the watch economy observable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}

    def count(self, host: str, endpoint: str) -> None:
        with self._lock:
            self._counts.setdefault(host, Counter())[endpoint] += 1

    def of(self, host: str) -> dict[str, int]:
        with self._lock:
            return dict(self._counts.get(host, Counter()))


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    notifier: Notifier
    agents: AgentProxy
    registry: RegistryClient
    feed: FeedCounter = field(default_factory=FeedCounter)
    peers: PeerJournal = field(default_factory=PeerJournal)  # the watch's peer deltas
    wakeups: ChangeIndex = field(default_factory=ChangeIndex)  # whom a change concerns
    pacer: Pacer = field(default_factory=Pacer)  # peer-only answers, batched per host
    liveness: Liveness = field(default_factory=Liveness)  # heartbeats, written in batches
    networks: SharedNetworks = field(default_factory=SharedNetworks)  # watch replies share
    # the watch replies' worker threads, apart from anyio's default limiter (every other
    # handler's): a burst of replies does not make the launches wait for a thread
    watch_threads: CapacityLimiter = field(
        default_factory=lambda: CapacityLimiter(WATCH_THREADS))
