"""The networks part of a watch reply, built once and shared by every host that asks alike.

In a launch burst every launch changes a network's peers, and every host with instances on it
is answered with the networks (peer-only replies: nothing of its own changed). Each reply used
to read every network row and build each `DesiredNetwork` with its peers again, per host.

What that part holds depends on no host: the network rows (they change only with
`meta.NETWORKS_REVISION`: `store/networks.py`), and the peer state the journal gives for the
agent's token (`peers.py`: whole lists, or the changes after the token's SEQ up to the
journal's token). So it is keyed by (networks revision, the journal's token, the agent's
token when it gets a delta) and built by the first watch that asks; the others share it.
Hosts that differ in any of these get different parts: a host behind by more journal entries
gets its own, longer delta.

Invariants: a shared `DesiredNetwork` is never changed after it is stored (built whole,
then published under the lock); the rows of a networks revision older than the newest one
seen are read and built by the caller, never taken from (or stored in) the cache, so a reply
never carries network rows of another revision than the one it read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.model.agent import DesiredNetwork
from dockyard.server.peers import PeerState
from dockyard.store.tables import NetworkRow

KEEP = 64  # built parts kept for the newest networks revision (tokens agents hold)


@dataclass(frozen=True)
class NetworkRows:
    """The network rows of one networks revision, as the replies use them (no session)."""

    bare: dict[str, DesiredNetwork]  # id -> the network without peers (instances' own)
    dns: dict[str, list[str]]  # id -> what an instance's resolv.conf gets
    subnet: dict[str, str]


def network_rows(rows: list[NetworkRow]) -> NetworkRows:
    bare = {r.id: DesiredNetwork(id=r.id, name=r.name, bridge=r.bridge, subnet=r.subnet,
                                 gateway=r.gateway, mode=r.mode, vlan=r.vlan, nat=r.nat)
            for r in rows}
    return NetworkRows(bare, {r.id: list(r.dns) or [r.gateway] for r in rows},
                       {r.id: r.subnet for r in rows})


def with_peers(rows: NetworkRows, state: PeerState) -> list[DesiredNetwork]:
    """Every network with its peers as `state` gives them (and the addresses gone, in a
    delta)."""
    out = []
    for net_id, bare in rows.bare.items():
        update: dict[str, object] = {"peers": state.peers.get(net_id, [])}
        if not state.full:
            update["peers_gone"] = state.gone.get(net_id, [])
        out.append(bare.model_copy(update=update))
    return out


class SharedNetworks:
    """Thread-safe (the watches build their replies in worker threads)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._tag = -1  # the networks revision `_rows` were read at
        self._rows: NetworkRows | None = None
        self._parts: dict[tuple[str, str | None], list[DesiredNetwork]] = {}
        self.built = 0  # parts built (the others were shared): for tests and benches

    def rows(self, tag: int, read: Callable[[], list[NetworkRow]]) -> NetworkRows:
        """The network rows at networks revision `tag` (`read` in the caller's transaction,
        which read `tag`): read once per revision."""
        with self._lock:
            if tag == self._tag and self._rows is not None:
                return self._rows
        fresh = network_rows(read())
        with self._lock:
            if tag > self._tag:
                self._tag, self._rows, self._parts = tag, fresh, {}
        return fresh

    def part(self, tag: int, rows: NetworkRows, state: PeerState,
             token: str | None) -> list[DesiredNetwork]:
        """The networks with their peers for an agent that sent `token`, given `state`
        (`PeerJournal.since(token)`) and `rows` (`self.rows(tag, …)`)."""
        key = (state.token, None if state.full else token)
        with self._lock:
            found = self._parts.get(key) if tag == self._tag else None
            if found is not None:
                return found
        built = with_peers(rows, state)
        with self._lock:
            self.built += 1
            if tag == self._tag and rows is self._rows:
                if len(self._parts) >= self._keep:
                    self._parts.clear()
                self._parts[key] = built
        return built
