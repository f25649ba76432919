"""The HTTP entrance on an entrance host (`dockyard agent --entrance HOST:PORT`): one HAProxy,
kept on the cluster's routes.

    loop: GET /v1/agent/entrance?known=DIGEST (long poll: answered when the routes differ
          from DIGEST, or after the watch timeout)
      ─▶ stacks.entrance.render(routes, listen) ─▶ adapters.haproxy.apply: unchanged bytes and
         a live master ─▶ nothing; else checked (`haproxy -c`), then started or gracefully
         reloaded ─▶ DIGEST = the routes' digest
      any error ─▶ logged, the running proxy left as it is, asked again after `pause`

HAProxy is a daemon with a pid file in HOME/entrance: an agent restart does not stop it (its
traffic goes on) and the next agent adopts it. The `known` digest of each poll is also the
server's proof that this entrance runs those routes: a replica is stopped only after every
entrance confirmed routes without it (server/entrance.py), and a request that still meets a
replica that died is retried on another by HAProxy.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from dockyard.adapters.haproxy import HAProxy
from dockyard.client import ApiClient
from dockyard.errors import DockyardError
from dockyard.stacks.entrance import EntranceRoutes, render

log = logging.getLogger("dockyard.agent.entrance")
POLL_TIMEOUT = 25.0


class Entrance:
    def __init__(self, client: ApiClient, listen: str, home: Path,
                 proxy: HAProxy | None = None) -> None:
        self.client = client
        self.listen = listen
        self.proxy = proxy or HAProxy(home / "entrance")
        self.known = ""  # the digest of the routes HAProxy runs

    def once(self, timeout: float = POLL_TIMEOUT) -> bool:
        """One long poll and, when the routes changed, one apply; True when HAProxy was
        started or reloaded."""
        if self.proxy.master_pid() is None:
            self.known = ""  # (re)start it now, not after the next change
        raw = self.client.request("GET", "/v1/agent/entrance",
                                  params={"known": self.known, "timeout": timeout},
                                  timeout=timeout + 15)
        reply = EntranceRoutes.model_validate(raw)
        config = render(reply.routes, self.listen)
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
