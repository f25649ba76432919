"""The agent's copy of every network's peers (/etc/hosts), kept from whole lists or deltas.

The agent sends `peers=TOKEN` on each watch (the `peers_token` of the reply it applied, "" when
it holds nothing). A reply with `peers_delta` brings only the peers added or changed and the
addresses gone (`DesiredNetwork.peers_gone`) since that token; any other reply with networks
brings whole lists and replaces the book (a resync). Either way `networks()` hands out whole
lists, sorted by address, so an agent that followed deltas writes the same /etc/hosts as one
that just resynced.
"""

from __future__ import annotations

from dockyard.model.agent import DesiredNetwork, Peer, WatchReply


def _sorted(peers: dict[str, Peer]) -> list[Peer]:
    return [peers[ip] for ip in sorted(peers)]


class PeerBook:
    def __init__(self) -> None:
        self.token = ""
        self._networks: dict[str, DesiredNetwork] = {}

    def apply(self, reply: WatchReply) -> list[DesiredNetwork]:
        """The reply's networks with whole peer lists (the book updated); [] when the reply
        names no network (nothing changed)."""
        if not reply.networks and not reply.full:
            self.token = reply.peers_token or self.token
            return []
        out: dict[str, DesiredNetwork] = {}
        for net in reply.networks:
            peers = {p.ip: p for p in net.peers}
            if reply.peers_delta:
                held = self._networks.get(net.id)
                known = {p.ip: p for p in held.peers} if held is not None else {}
                for ip in net.peers_gone:
                    known.pop(ip, None)
                peers = known | peers
            out[net.id] = net.model_copy(update={"peers": _sorted(peers), "peers_gone": []})
        self._networks = out
        self.token = reply.peers_token
        return list(out.values())

    def network(self, net: DesiredNetwork) -> DesiredNetwork:
        """`net` (an instance's own, without peers in delta replies) with the book's peers."""
        held = self._networks.get(net.id)
        if held is None:
            return net
        return net.model_copy(update={"peers": held.peers})
