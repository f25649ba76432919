"""The agent process: register, then watch, work, heartbeat and listen to Docker events.

Threads (one model for this process; the agent API's uvicorn runs in the main thread):
    watch     long-polls desired state; stores it and enqueues changed ids. The watch is also
              the heartbeat: an idle agent makes one request per server watch timeout
    workers   N threads: queue.get → reconciler.sync → report (serial per id); a report equal
              to the last one sent for the same desired revision is not sent again
    heartbeat checks the inventory every `heartbeat_interval`, posts it when it changed
    events    docker events of this cluster (start/die/oom/destroy) only enqueue ids
    stats     a collector pass every `collector_interval`, posted to the server
Periodic resync (`resync_interval`) asks for the full desired state again, which also repairs
bridges deleted from outside and finds orphans (containers of this cluster the server does
not know: reported as events and stopped, never deleted). Agents may share a dockerd (several
simulated hosts on one machine): containers labelled with another host are not ours.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import uvicorn

from dockyard import faults
from dockyard.adapters import docker_certs, hostinfo, hostlinks, netlink, qemu
from dockyard.adapters.docker_engine import ContainerInfo, ContainerState, DockerEngine
from dockyard.adapters.lxcfs import Lxcfs, MountTable
from dockyard.agent import certs, imagegc
from dockyard.agent.api import create_agent_app
from dockyard.agent.collector import Collector
from dockyard.agent.disks import ContainerDisks
from dockyard.agent.entrance import Entrance
from dockyard.agent.hostfiles import InstanceFiles
from dockyard.agent.limits import LinuxHostLimits
from dockyard.agent.live import LiveHooks, peer_client
from dockyard.agent.lxcfs_watch import LxcfsWatch
from dockyard.agent.network import LinuxHostNetwork
from dockyard.agent.peers import PeerBook
from dockyard.agent.reconciler import Reconciler
from dockyard.agent.resync import DEEP_RESYNCS, HostProbes, HostView, reason
from dockyard.agent.security import HostPolicy
from dockyard.agent.vm import VmImages, VmRuntime
from dockyard.agent.vm_access import VmAccess
from dockyard.agent.workqueue import WorkQueue
from dockyard.client import ApiClient
from dockyard.config import AgentSettings, split_listen
from dockyard.errors import DockyardError, NotFound, TemporaryError
from dockyard.model import ids
from dockyard.model.agent import (
    AgentEvent,
    DesiredInstance,
    DesiredNetwork,
    Heartbeat,
    ObservedState,
    Registration,
    RegistrationReply,
    WatchReply,
)
from dockyard.model.host import HostInventory
from dockyard.serving import KEEP_ALIVE, PromptServer

log = logging.getLogger("dockyard.agent")
WATCH_TIMEOUT = 25.0
FORGET_WAIT = 300.0  # seconds `forget` waits for a sync of the instance already running
BACKLOG = 2048  # uvicorn's default


class ServerProgress:
    """Progress of a long step (an image pull), told to the server as it goes. Best effort:
    a report that does not get through never stops the step."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def report(self, d: DesiredInstance, observed: ObservedState) -> None:
        try:
            self.client.post(f"/v1/agent/instances/{d.id}/report", observed.model_dump())
        except DockyardError as exc:
            log.debug("progress of %s: %s", d.name, exc.message)

    def event(self, d: DesiredInstance, kind: str, message: str) -> None:
        try:
            self.client.post("/v1/agent/events", AgentEvent(
                kind=kind, message=message, instance_id=d.id).model_dump())
        except DockyardError as exc:
            log.debug("event of %s: %s", d.name, exc.message)


class Agent:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.engine = DockerEngine(settings.docker_url)
        self.network = LinuxHostNetwork(settings.uplink, settings.ovs_db)
        self.files = InstanceFiles(settings.home)
        self.client = ApiClient(settings.server, settings.token, timeout=WATCH_TIMEOUT + 15,
                                ca=settings.ca)
        self.queue = WorkQueue()
        self.desired: dict[str, DesiredInstance] = {}
        self.bridges: dict[str, str] = {}  # network id -> bridge
        self.networks: dict[str, DesiredNetwork] = {}  # the newest, with peers
        self.peer_book = PeerBook()  # every network's peers, from whole lists or deltas
        self.secret = secrets.token_urlsafe(32)
        self.stopping = threading.Event()
        self.cluster = ""
        self.registry = ""  # HOST:PORT of the cluster's registry, from the registration
        self.heartbeat_interval = 60.0
        self.watch_timeout = WATCH_TIMEOUT
        self.posted_inventory: HostInventory | None = None
        self.reported: dict[str, ObservedState] = {}
        self.held: set[str] = set()  # being checkpointed away: the reconciler keeps off
        self.incoming: set[str] = set()  # restored here, not yet in the desired state
        self.departed: dict[str, int] = {}  # left this host (`forget`): id -> its revision
        self.resynced = False  # a full desired state arrived: orphans can be told apart
        self.reconciler: Reconciler | None = None
        self.collector: Collector | None = None
        self.lxcfs = Lxcfs(settings.lxcfs_root)
        self.lxcfs_watch = LxcfsWatch(self.lxcfs, self._lxcfs_pids,
                                      interval=settings.lxcfs_check_interval,
                                      mount_changed=_mount_waiter())
        self.vm_images = VmImages(settings.vm_images)
        self.vm_accel = qemu.accelerator(settings.vm_accel)

    # -- registration and inventory -------------------------------------------------------
    def inventory(self) -> HostInventory:
        s = self.settings
        return HostInventory(
            cores=s.cores or hostinfo.online_cores(), reserved_cores=s.reserved_cores,
            memory_bytes=s.memory_bytes or hostinfo.memory_total(),
            routes=netlink.list_routes(), docker_version=self.engine.version(),
            kernel=hostinfo.kernel_release(), vm_accel=self.vm_accel,
            vm_images=self.vm_images.catalogue() if self.vm_accel else {})

    def register(self, api_url: str, csr: str = "") -> RegistrationReply:
        body = Registration(name=self.settings.name, api_url=api_url, api_secret=self.secret,
                            inventory=self.inventory(), labels=dict(self.settings.labels),
                            csr=csr)
        while True:
            try:
                reply = RegistrationReply.model_validate(
                    self.client.post("/v1/agent/register", body.model_dump(mode="json")))
                break
            except TemporaryError as exc:
                log.warning("server not ready (%s); retrying", exc.message)
            except DockyardError as exc:
                if exc.status < 500:
                    raise
                log.warning("cannot register yet: %s", exc.message)
            self.stopping.wait(1.0)
        self.cluster = reply.cluster
        self.heartbeat_interval = reply.heartbeat_interval
        self.watch_timeout = reply.watch_timeout
        self.posted_inventory = body.inventory
        self.registry = reply.registry
        if reply.registry_login:  # the server's /v2/ knows agents by their host token
            self.engine.log_in(reply.registry, self.settings.name, self.settings.token)
            self._trust_registry(reply.registry)
        self.reconciler = Reconciler(self.engine, self.network, self.files, self.cluster,
                                     self.settings.stop_timeout,
                                     LinuxHostLimits(self.engine.data_root()), self.lxcfs,
                                     ServerProgress(self.client), host=self.settings.name,
                                     policy=HostPolicy(reply.host_path_root,
                                                       hostinfo.bounding_capabilities()),
                                     vms=VmRuntime(self.settings.home, self.vm_images,
                                                   self.vm_accel, self.network, self.files,
                                                   self.settings.stop_timeout),
                                     disks=ContainerDisks(self.settings.home))
        self.collector = Collector(self.engine, self.cluster, lambda: self.desired,
                                   body.inventory.cores, body.inventory.reserved_cores)
        return reply

    def _trust_registry(self, registry: str) -> None:
        """The server's /v2/ rides on its https listener: this host's engine must trust the
        cluster CA for it (adapters/docker_certs.py; loopback needs nothing). Only for an
        engine on this machine, whose /etc/docker it is."""
        ca, url = self.settings.ca, self.settings.docker_url or ""
        remote_engine = bool(url) and not url.startswith("unix:")
        if ca is None or remote_engine or not docker_certs.needs_ca(registry):
            return
        try:
            if docker_certs.trust_registry_ca(registry, ca.read_bytes()):
                log.info("the engine trusts the cluster CA for %s", registry)
        except OSError as exc:
            log.warning("cannot write the registry CA for %s: %s", registry, exc)

    # -- loops -----------------------------------------------------------------------------
    def _loop(self, name: str, body: Any, pause: float) -> None:
        while not self.stopping.is_set():
            try:
                body()
            except Exception as exc:  # a loop must outlive any one failure
                log.warning("%s: %s", name, exc)
                self.stopping.wait(pause)

    def _watch_once(self, state: dict[str, float]) -> None:
        full = time.monotonic() - state["last_full"] > self.settings.resync_interval
        params = {"since": int(state["since"]), "full": str(full).lower(),
                  "timeout": self.watch_timeout, "peers": self.peer_book.token}
        try:
            raw = self.client.request("GET", "/v1/agent/watch", params=params,
                                      timeout=self.watch_timeout + 15)
        except DockyardError:
            # after any trouble, ask for everything again, at once (since=0 is not held)
            state["last_full"], state["since"] = 0.0, 0.0
            self.reported.clear()
            self.peer_book = PeerBook()
            raise
        reply = WatchReply.model_validate(raw)
        if reply.full:
            state["last_full"] = time.monotonic()
        self._apply(reply)
        state["since"] = reply.revision

    def _apply(self, reply: WatchReply) -> None:
        if reply.full:
            self.network.forget()
        nets = self.peer_book.apply(reply)
        if nets or reply.full:
            self._sync_networks(nets)
        # a reply made before an instance left this host must not bring it back (`forget`)
        wanted = [d for d in reply.instances if d.revision >= self.departed.get(d.id, 0)]
        for d in wanted:
            if reply.peers_token:  # its own network came without peers: the book has them
                d = d.model_copy(update={"network": self.peer_book.network(d.network)})
            self.departed.pop(d.id, None)
            self.desired[d.id] = d
            self.incoming.discard(d.id)
            if not reply.full:
                self.queue.add(d.id)
        if reply.full:
            states = self._resync([d.id for d in wanted])
            self._find_orphans({d.id for d in wanted}, states)
            self.resynced = True

    def _resync(self, keys: list[str]) -> list[ContainerState] | None:
        """A full resync enqueues the instances whose cheap reads differ from their last
        converged pass (agent/resync.py), every one of them when the bulk reads fail.
        Returns the container list it read (the orphan scan's too), None if none."""
        rec = self.reconciler
        try:
            states = self._own_states()
            view = HostView({c.name: c for c in states}, hostlinks.link_states())
        except DockyardError as exc:
            log.warning("resync: cannot read the host at once (%s): syncing every instance",
                        exc.message)
            states, view = None, None
        now, deep = time.monotonic(), DEEP_RESYNCS * self.settings.resync_interval
        probes = HostProbes(self.files, rec.limits) if rec is not None else None
        reasons: Counter[str] = Counter()
        for key in keys:
            d = self.desired.get(key)
            if d is None:
                continue
            why = "no view" if view is None or rec is None or probes is None else reason(
                self._current(d), rec.converged.get(key), view, probes, now, deep)
            if why is not None:
                log.debug("resync %s: %s", d.name, why)
                reasons[why] += 1
                self.queue.add(key)
        if reasons:
            log.info("resync: %d of %d instance(s) to sync (%s)", reasons.total(), len(keys),
                     ", ".join(f"{why}: {n}" for why, n in reasons.most_common()))
        return states

    def _current(self, d: DesiredInstance) -> DesiredInstance:
        """`d` with its network's newest peers (a peer change rewrites /etc/hosts without
        touching the desired entries)."""
        net = self.networks.get(d.network.id)
        if net is not None and net.peers != d.network.peers:
            return d.model_copy(update={"network": net})
        return d

    def _sync_networks(self, nets: list[DesiredNetwork]) -> None:
        current = {n.id: n.bridge for n in nets}
        for net in nets:
            try:
                self.network.ensure_network(net)
            except DockyardError as exc:
                log.warning("network %s: %s", net.name, exc.message)
            self._refresh_peers(net)
        for net_id, bridge in self.bridges.items():
            if net_id not in current and not any(d.network.id == net_id
                                                 for d in self.desired.values()):
                self.network.remove_network(bridge)
        self.bridges = current

    def _refresh_peers(self, net: DesiredNetwork) -> None:
        """A peer came or went: rewrite /etc/hosts of this host's instances on `net` directly
        (a file write, not a full sync per instance: a burst of N launches would otherwise
        cost N² syncs). A worker syncing an instance concurrently uses the newest network
        too (see `_sync_one`), so the file ends up current."""
        previous = self.networks.get(net.id)
        self.networks[net.id] = net
        if previous is None or previous.peers == net.peers:
            return
        for d in list(self.desired.values()):
            if d.network.id == net.id:
                # not stored back: a worker may be replacing or removing this entry right now
                fresh = d.model_copy(update={"network": net})
                try:
                    self.files.write_hosts(fresh)
                except DockyardError as exc:
                    log.warning("hosts of %s: %s", d.name, exc.message)

    def _find_orphans(self, known: set[str],
                      states: list[ContainerState] | None = None) -> None:
        for info in self._own_states() if states is None else states:
            instance_id = info.labels.get(ids.LABEL_INSTANCE, "")
            if instance_id in known or instance_id in self.incoming:
                continue
            self.desired.pop(instance_id, None)
            if info.running:
                self.engine.stop(info.id, self.settings.stop_timeout)
                self._event("orphan", f"container {info.name} ({instance_id}) is not known to "
                            "the server: stopped, not deleted")

    def _own_states(self) -> list[ContainerState]:
        """`_own_containers` from one list call, without the PIDs and limits."""
        return [c for c in self.engine.owned_states(self.cluster)
                if c.labels.get(ids.LABEL_HOST, self.settings.name) == self.settings.name]

    def _own_containers(self) -> list[ContainerInfo]:
        """This cluster's containers, less those another host's agent made on a shared
        dockerd (unlabelled ones predate host labels and are ours)."""
        return [c for c in self.engine.list_owned(self.cluster)
                if c.labels.get(ids.LABEL_HOST, self.settings.name) == self.settings.name]

    def _event(self, kind: str, message: str, instance_id: str | None = None) -> None:
        try:
            self.client.post("/v1/agent/events", AgentEvent(
                kind=kind, message=message, instance_id=instance_id).model_dump())
        except DockyardError as exc:
            log.warning("cannot send event: %s", exc.message)

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self._sync_one(key)
            finally:
                self.queue.done(key)

    def _sync_one(self, key: str) -> None:
        d = self.desired.get(key)
        if d is None or self.reconciler is None or key in self.held:
            return
        d = self._current(d)
        try:
            observed = self.reconciler.sync(d)
        except TemporaryError as exc:
            log.warning("sync %s: %s (retrying in %.1fs)", d.name, exc.message, exc.delay)
            self._retry_later(key, exc.delay)
            return
        except DockyardError as exc:  # reported; the next resync tries again
            log.warning("sync %s: %s", d.name, exc.message)
            observed = ObservedState(state="error", message=exc.message,
                                     generation=d.generation, restart_serial=d.restart_serial)
        except Exception as exc:  # a bug must not kill the worker; the next pass retries
            log.exception("sync %s failed", d.name)
            observed = ObservedState(state="error", message=f"internal error: {exc!r}",
                                     generation=d.generation, restart_serial=d.restart_serial)
        self._report(key, observed)

    def _report(self, key: str, observed: ObservedState) -> None:
        faults.point("agent.report.before")
        if self.reported.get(key) == observed:
            return  # a resync found nothing new: the server already knows this
        try:
            self.client.post(f"/v1/agent/instances/{key}/report", observed.model_dump())
        except NotFound:
            self.desired.pop(key, None)
            return
        except DockyardError as exc:
            log.warning("report %s: %s (will retry)", key, exc.message)
            self._retry_later(key, 1.0)
            return
        self.reported[key] = observed
        if observed.state == "deleted":
            self.desired.pop(key, None)
            self.reported.pop(key, None)

    def stop(self) -> None:
        """The threads end on this event (and the workers on the closed queue); the process
        exits without waiting for them (daemons)."""
        self.stopping.set()
        self.queue.close()

    def _retry_later(self, key: str, delay: float) -> None:
        """Enqueue `key` again after `delay`; a daemon timer, so a stopping agent exits at
        once instead of waiting for pending retries."""
        timer = threading.Timer(delay, self.queue.add, (key,))
        timer.daemon = True
        timer.start()

    def _heartbeat_once(self) -> None:
        """Liveness rides on the watch; this only keeps the server's inventory current."""
        self.stopping.wait(self.heartbeat_interval)
        inventory = self.inventory()
        if inventory != self.posted_inventory:
            self.client.post("/v1/agent/heartbeat",
                             Heartbeat(inventory=inventory).model_dump(mode="json"))
            self.posted_inventory = inventory

    def _events_once(self) -> None:
        stream = self.engine.events(self.cluster)
        for known in list(self.desired):  # whatever happened while we were not listening
            self.queue.add(known)
        try:
            for event in stream:
                attrs = (event.get("Actor") or {}).get("Attributes") or {}
                instance_id = attrs.get(ids.LABEL_INSTANCE)
                status = event.get("status")
                if instance_id and status == "oom":
                    self._event("oom", "out of memory: the kernel killed a process "
                                "(OOM kill)", instance_id)
                if self.collector is not None and status in ("start", "die", "destroy"):
                    self.collector.invalidate()
                if (status == "start" and self.reconciler is not None
                        and self.reconciler.own_start(str(event.get("id", "")))):
                    continue  # the sync that started it plumbs and reports it
                if instance_id in self.desired and (
                        status in ("start", "die", "oom", "destroy", "update")
                        or str(status).startswith("health_status")):  # reported to the server
                    self.queue.add(instance_id)
                elif (instance_id and status == "start" and self.resynced
                      and instance_id not in self.incoming and instance_id not in self.held):
                    # a container of this cluster that nobody asked for started: an orphan
                    # found now, not at the next full resync (this agent starts only what
                    # is desired, and the desired state comes before the start)
                    self._find_orphans(set(self.desired))
                if self.stopping.is_set():
                    return
        finally:
            stream.close()

    def _stats_once(self) -> None:
        started = time.monotonic()
        if self.collector is not None:
            report = self.collector.collect()
            self.client.post("/v1/agent/stats", report.model_dump(mode="json"))
        self.stopping.wait(max(0.1, self.settings.collector_interval
                               - (time.monotonic() - started)))

    def forget(self, instance_id: str, revision: int = 0) -> None:
        """The instance left this host (migrated away; the caller removes its copy next): stop
        syncing its old desired state. A sync of it already running is waited out, or it could
        create or start the copy after the removal (the orphan scan only stops such a copy);
        a desired state older than `revision` (the server's revision of the move away: a
        watch reply made before it) is not taken again."""
        if revision:
            self.departed[instance_id] = max(revision, self.departed.get(instance_id, 0))
        self.desired.pop(instance_id, None)
        self.reported.pop(instance_id, None)
        self.held.discard(instance_id)
        if not self.queue.wait_idle(instance_id, FORGET_WAIT):
            log.warning("instance %s: a sync of it still runs after %.0f s", instance_id,
                        FORGET_WAIT)

    def release(self, instance_id: str) -> None:
        """A checkpointed instance stays here after all: sync it again (plumb, start)."""
        self.held.discard(instance_id)
        self.reported.pop(instance_id, None)
        self.queue.add(instance_id)

    def live_hooks(self) -> LiveHooks:
        return LiveHooks(name=self.settings.name, home=self.settings.home,
                         reconciler=lambda: self.reconciler, hold=self.held.add,
                         release=self.release, adopt=self.incoming.add,
                         own_roots=[str(self.files.root), self.settings.lxcfs_root],
                         lxcfs=self.lxcfs,
                         peers=peer_client(self.settings.ca))

    def _image_gc_once(self) -> None:
        self.stopping.wait(self.settings.image_gc_interval)
        if self.settings.image_budget is not None:
            imagegc.collect(self.engine, self.settings.image_budget)

    def _lxcfs_pids(self) -> list[int]:
        return [c.pid for c in self._own_containers()
                if c.running and c.labels.get(ids.LABEL_LXCFS) == "1"]

    def start_threads(self) -> None:
        state = {"since": 0.0, "last_full": 0.0}
        threads = [("watch", lambda: self._watch_once(state), 1.0),
                   ("heartbeat", self._heartbeat_once, 2.0),
                   ("events", self._events_once, 1.0),
                   ("stats", self._stats_once, self.settings.collector_interval),
                   ("image-gc", self._image_gc_once, 10.0)]
        for name, body, pause in threads:
            threading.Thread(target=self._loop, args=(name, body, pause), name=name,
                             daemon=True).start()
        threading.Thread(target=self.lxcfs_watch.run, args=(self.stopping,),
                         name="lxcfs-watch", daemon=True).start()
        if self.settings.entrance:  # an entrance host (agent/entrance.py)
            entrance = Entrance(self.client, self.settings.entrance, self.settings.home)
            threading.Thread(target=entrance.run, args=(self.stopping,), name="entrance",
                             daemon=True).start()
        for n in range(self.settings.workers):
            threading.Thread(target=self._work, name=f"worker-{n}", daemon=True).start()


def _mount_waiter() -> Callable[[float], bool] | None:
    """The lxcfs watch's wake-up on mount table changes; None (check every interval) if the
    table cannot be watched."""
    try:
        return MountTable().changed
    except DockyardError as exc:
        log.warning("lxcfs watch: %s; checking every interval instead", exc.message)
        return None


def listening_socket(host: str, port: int) -> socket.socket:
    """The agent API's socket, listening before the agent registers. Registering marks the
    host up, and a server may call the API at once (a create checks the image there); until
    uvicorn serves, such a connection waits in the backlog instead of being refused (CI stop
    24: two creates right after `dockyard up` got "agent unreachable: Connection refused")."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def run_agent(settings: AgentSettings) -> None:
    """Run until SIGINT/SIGTERM. Instances keep running when the agent stops."""
    settings.home.mkdir(parents=True, exist_ok=True)
    host, port = split_listen(settings.api_listen)
    sock = listening_socket(host, port)
    pending = certs.request(settings)  # TLS cluster: serve https with a CA-signed cert
    api_url = f"{'https' if pending else 'http'}://{host}:{sock.getsockname()[1]}"
    agent = Agent(settings)
    reply = agent.register(api_url, pending.csr if pending else "")
    cert, key = certs.install(settings.home, pending, reply.certificate) if pending \
        else (None, None)
    log.info("agent %s registered (cluster %s), API at %s", settings.name, agent.cluster, api_url)
    agent.start_threads()
    app = create_agent_app(agent.engine, agent.secret, agent.cluster, agent.lxcfs,
                           agent.registry, settings.home, agent.forget,
                           agent.live_hooks(), VmAccess(settings.home / "vms"))
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=BACKLOG,
                            timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=1,
                            ssl_certfile=cert, ssl_keyfile=key)
    try:
        PromptServer(config, on_shutdown=agent.stop).run(sockets=[sock])
    finally:
        agent.stop()
