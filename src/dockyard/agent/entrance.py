"""The HTTP entrance on an entrance host (`dockyard agent --entrance HOST:PORT`): one HAProxy,
kept on the cluster's routes.

    loop: GET /v1/agent/entrance?known=DIGEST (long poll: answered when the routes differ
          from DIGEST, or after the watch timeout)
      ─▶ the legs: a network namespace of the entrance's own (`netns_name`), with a veth
         leg into each network the routes reach, holding this host's own address on it
         (adapters/legs.py says why not the host's: the anycast gateway); legs of networks
         no longer reached are removed; the agent's own namespace named too (`host_name`)
      ─▶ stacks.entrance.render(routes, listen, host_name) ─▶ adapters.haproxy.apply:
         unchanged bytes and a live master ─▶ nothing; else checked (`haproxy -c`), then
         started or gracefully reloaded ─▶ DIGEST = the routes' digest
      any error ─▶ logged, the running proxy left as it is, asked again after `pause`

HAProxy runs *in* the entrance's namespace (its connections and checks to replicas leave from
the legs) and listens in the host's, which it names in its `bind` (`namespace` keyword).
Not the other way round (HAProxy in the host's namespace with `namespace` on each `server`):
HAProxy 2.6 then fails the connections of a worker being replaced by a reload — a request that
worker took just before answers 503 (3-8 per 60-150 reloads under a 10 ms client here, none
without the keyword or with this layout).

HAProxy is a daemon with a pid file in HOME/entrance: an agent restart does not stop it nor
the namespace (its traffic goes on) and the next agent adopts both (one found in another
namespace, as before the legs, is stopped and started again in the entrance's);
`remove(home)` ends them (`dockyard reset`, the dev-cluster's `down`, tests).

The `known` digest of each poll is also the server's proof that this entrance runs those
routes: a replica is stopped only after every entrance confirmed routes without it
(server/entrance.py), and a request that still meets a replica that died is retried on another
by HAProxy.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from dockyard.adapters import legs as legs_adapter
from dockyard.adapters.haproxy import HAProxy
from dockyard.client import ApiClient
from dockyard.errors import DockyardError
from dockyard.model import ids
from dockyard.stacks.entrance import EntranceRoutes, Leg, render

log = logging.getLogger("dockyard.agent.entrance")
POLL_TIMEOUT = 25.0


def _home_hash(home: Path) -> str:
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]


def netns_name(home: Path) -> str:
    """The entrance's network namespace: one per agent home (dev-cluster hosts share a
    machine and its /run/netns)."""
    return "dye" + _home_hash(home)


def host_name(home: Path) -> str:
    """The name of the agent's own namespace, where HAProxy listens."""
    return "dyo" + _home_hash(home)


def leg_names(network_id: str) -> tuple[str, str]:
    """(near end on the network's bridge, far end in the entrance's namespace)."""
    short = network_id[:ids.ID_LEN]
    return f"dyl{short}", f"eth{short}"


def remove(home: Path) -> None:
    """End the entrance of the agent home `home`: HAProxy (soft stop), its namespace with
    every leg, the name of the host's. Idempotent."""
    HAProxy(home / "entrance").stop()
    legs_adapter.delete_netns(netns_name(home))
    legs_adapter.delete_netns(host_name(home))


class Legs:
    """The entrance's namespace with exactly the legs it is given (adapters/legs.py); the
    seam a unit test fakes."""

    def __init__(self, netns: str, host: str) -> None:
        self.netns = netns
        self.host = host

    def apply(self, wanted: list[Leg]) -> None:
        """Made before HAProxy starts in the namespace or reads a configuration naming the
        host's (it opens it then)."""
        legs_adapter.ensure_netns(self.netns)
        legs_adapter.name_own_netns(self.host)
        present = legs_adapter.legs(self.netns)  # one read per poll: most find all in place
        keep = set()
        for leg in wanted:
            near, far = leg_names(leg.network)
            legs_adapter.ensure_leg(self.netns, near, far, leg.bridge, leg.address, present)
            keep.add(far)
        for far in present.keys() - keep:
            if far.startswith("eth"):
                legs_adapter.remove_leg("dyl" + far.removeprefix("eth"))


class Entrance:
    def __init__(self, client: ApiClient, listen: str, home: Path,
                 proxy: HAProxy | None = None, legs: Legs | None = None) -> None:
        self.client = client
        self.listen = listen
        self.legs = legs or Legs(netns_name(home), host_name(home))
        self.proxy = proxy or HAProxy(home / "entrance", netns=self.legs.netns)
        self.known = ""  # the digest of the routes HAProxy runs

    def once(self, timeout: float = POLL_TIMEOUT) -> bool:
        """One long poll and, when the routes changed, one apply; True when HAProxy was
        started or reloaded."""
        master = self.proxy.master_pid()
        if master is not None and not self.proxy.in_its_netns(master):
            log.info("entrance: HAProxy %d runs outside the entrance's namespace: "
                     "started again in it", master)
            self.proxy.stop()
            master = None
        if master is None:
            self.known = ""  # (re)start it now, not after the next change
        raw = self.client.request("GET", "/v1/agent/entrance",
                                  params={"known": self.known, "timeout": timeout},
                                  timeout=timeout + 15)
        reply = EntranceRoutes.model_validate(raw)
        self.legs.apply(reply.legs)
        config = render(reply.routes, self.listen, self.legs.host)
        changed = self.proxy.apply(config)
        if changed:
            log.info("entrance on %s: %d routes, %d replicas", self.listen, len(reply.routes),
                     sum(len(r.backends) for r in reply.routes))
        self.known = reply.digest
        return changed

    def run(self, stopping: threading.Event, pause: float = 1.0) -> None:
        """Until `stopping`; HAProxy keeps running after (see the module docstring)."""
        while not stopping.is_set():
            try:
                self.once()
            except (DockyardError, OSError, ValueError) as exc:
                log.warning("entrance: %s", getattr(exc, "message", exc))
                self.known = ""  # ask again at once next time, and re-apply
                stopping.wait(pause)
