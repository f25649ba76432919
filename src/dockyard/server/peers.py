"""The networks' peer lists (/etc/hosts) as a journal of changes, so that a watch answers deltas.

A watch reply used to carry every network's whole peer list whenever any peer changed, and
each changed instance carried its network's list again: in a burst of L launches on N hosts
that is L × N full lists — O(N²) bytes and CPU once the instances grow with the hosts — and
every watch read the whole peer list from the store.

Now each server keeps in memory the latest peer snapshot and a bounded journal of the
differences between consecutive snapshots. The snapshot is read from the store once per
change of `meta.NETWORKS_REVISION` (by the first watch that sees the new value), not once per
watch. An agent sends the token of the peer state it holds (`EPOCH:SEQ`, from its last reply)
and gets only the peers added or changed and the addresses gone since SEQ. No token, a token of
another server or of an earlier run of this one (another EPOCH), or one older than the journal
get the full lists: the resync path.

Invariants: applying entries SEQ+1 … S to snapshot SEQ gives snapshot S exactly (each entry is
the difference of two consecutive snapshots); a snapshot is at least as new as the
NETWORKS_REVISION it is tagged with (the caller reads the peers after that value, in the same
transaction), so a reply never brings an agent to an older peer state than its revision says.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.model.agent import Peer

PeerMap = dict[str, dict[str, Peer]]  # network id -> ip -> peer
Change = dict[str, dict[str, Peer | None]]  # network id -> ip -> peer (None: gone)

KEEP = 512  # journal entries: an agent further behind than this resyncs


@dataclass(frozen=True)
class PeerState:
    """What a watch reply carries: `peers` are whole lists (`full`) or the peers added or
    changed since the agent's token; `gone` the addresses removed (deltas only)."""

    token: str
    full: bool
    peers: dict[str, list[Peer]] = field(default_factory=dict)
    gone: dict[str, list[str]] = field(default_factory=dict)


def by_ip(peers: dict[str, Peer]) -> list[Peer]:
    """A network's peers (ip -> peer) as the list a reply carries, ordered by address."""
    return [peers[ip] for ip in sorted(peers)]


def _diff(old: PeerMap, new: PeerMap) -> Change:
    out: Change = {}
    for net in old.keys() | new.keys():
        before, after = old.get(net, {}), new.get(net, {})
        change: dict[str, Peer | None] = {ip: None for ip in before.keys() - after.keys()}
        change.update({ip: p for ip, p in after.items() if before.get(ip) != p})
        if change:
            out[net] = change
    return out


class PeerJournal:
    """Thread-safe (the watches read it from the thread pool)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lock = threading.Lock()
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._tag = -1  # the NETWORKS_REVISION the snapshot was read at
        self._snapshot: PeerMap = {}
        self._entries: deque[tuple[int, Change]] = deque(maxlen=keep)
        self._folded: dict[int, PeerState] = {}  # from SEQ to now: agents share these

    @property
    def token(self) -> str:
        with self._lock:
            return f"{self._epoch}:{self._seq}"

    def refresh(self, tag: int, read: Callable[[], PeerMap]) -> None:
        """Read the peers (`read`) when `tag` is newer than the snapshot's; one reader at a
        time, the others use its result."""
        with self._lock:
            if tag <= self._tag:
                return
            fresh = read()
            change = _diff(self._snapshot, fresh)
            self._snapshot, self._tag = fresh, tag
            if change:
                self._seq += 1
                self._entries.append((self._seq, change))
                self._folded.clear()

    def since(self, token: str | None) -> PeerState:
        """The peer state after `token` (None or unusable: everything)."""
        with self._lock:
            seq = self._usable(token)
            if seq is None:
                return PeerState(f"{self._epoch}:{self._seq}", True,
                                 {net: by_ip(peers) for net, peers in self._snapshot.items()})
            state = self._folded.get(seq)
            if state is None:
                state = self._folded[seq] = self._fold(seq)
            return state

    def _usable(self, token: str | None) -> int | None:
        epoch, _, number = (token or "").partition(":")
        if epoch != self._epoch or not number.isdigit():
            return None
        seq = int(number)
        oldest = self._entries[0][0] if self._entries else self._seq + 1
        if seq > self._seq or seq < oldest - 1:
            return None
        return seq

    def _fold(self, seq: int) -> PeerState:
        merged: Change = {}
        for number, change in self._entries:
            if number > seq:
                for net, peers in change.items():
                    merged.setdefault(net, {}).update(peers)
        added = {net: by_ip({ip: p for ip, p in peers.items() if p is not None})
                 for net, peers in merged.items()}
        gone = {net: sorted(ip for ip, p in peers.items() if p is None)
                for net, peers in merged.items()}
        return PeerState(f"{self._epoch}:{self._seq}", False,
                         {net: peers for net, peers in added.items() if peers},
                         {net: ips for net, ips in gone.items() if ips})
