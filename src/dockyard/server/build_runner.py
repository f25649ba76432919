"""`BuildRunner`: runs queued builds on agents, one at a time per repository, at most
`build_host_parallel` at once on a host and `build_parallel` in this server; stores every log
line; records build events; wakes log followers.

    pass (woken by a queued build or a finished one; every POLL seconds anyway):
      stale running builds (their server stopped writing) ─▶ failed
      the build-start lock (store.lock_build_slots: one row, FOR UPDATE on PostgreSQL), so
      the counts below are exact with several servers, then in the same transaction:
      queue.plan(queued, running repos) ─▶ superseded builds cancelled
         ─▶ a host with room: the least busy up agent labelled role=build, or of any up
            agent when none is labelled (said in the log); none has room: the build waits
         ─▶ claim on that host (queued → running, + a `build` operation)
         ─▶ execute in a thread of its own (daemon)
    execute(build):
      an uploaded archive (a repository without url): PUT /v1/builds/{id}/context on its
      host's agent first, from the store (any server can), then
      POST /v1/builds on its host's agent, with the limits (time, memory, CPUs: the
      repository's, at most the server's) (agent/build.py) ─▶ a line stream:
      log lines (stored in batches), the commit cloned, the end (succeeded + image + digest,
      failed + step + error, cancelled) ─▶ the build and its operation finished
      succeeded with --deploy targets ─▶ build_delivery: each STACK/SERVICE redeployed on
      the new image through stacks.deploy, the result recorded on the build (`rollout`)
      a broken stream (agent killed, host gone) ─▶ failed; nothing more is pushed because the
      agent's build ended with its connection, and `:branch` is pushed only after `:sha`

A server that stops mid-build leaves it `running`; the next pass of any server fails it once
its heartbeat (moved by every stored log line, and every HEARTBEAT seconds) is older than
STALE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx

from dockyard.builds import queue
from dockyard.errors import DockyardError, NotFound
from dockyard.model.build import AgentBuild, BuildLine, BuildState, short_sha, tag_of_branch
from dockyard.server import build_delivery
from dockyard.server.agent_proxy import AgentClient
from dockyard.server.build_secrets import SecretBox
from dockyard.server.context import ServerContext
from dockyard.server.placement import effective_labels
from dockyard.store import builds as store
from dockyard.store import hosts as host_store
from dockyard.store import projects
from dockyard.store.tables import HostRow

log = logging.getLogger(__name__)

POLL = 5.0  # seconds between passes without a wake-up (other servers' queues, stale builds)
HEARTBEAT = 10.0  # a running build's heartbeat moves at least this often
STALE = timedelta(seconds=60)  # a running build whose heartbeat is older: its server died
FLUSH = 0.25  # seconds log lines wait to be stored together
BUILD_LABEL = ("role", "build")


class LogHub:
    """Wakes the followers of a build's log (on the event loop) when lines were stored."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def token(self, build_id: str) -> asyncio.Event:
        return self._events.setdefault(build_id, asyncio.Event())

    def changed(self, build_id: str) -> None:
        """Thread-safe."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire, build_id)

    def _fire(self, build_id: str) -> None:
        event = self._events.pop(build_id, None)
        if event is not None:
            event.set()


@dataclass
class _Job:
    build_id: str
    body: AgentBuild
    host: str
    agent: AgentClient
    project_id: str
    deploy: list[str]


class BuildRunner:
    def __init__(self, ctx: ServerContext, box: SecretBox) -> None:
        self.ctx = ctx
        self.box = box
        self.hub = LogHub()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the loop --------------------------------------------------------------------------

    def poke(self) -> None:
        """Thread-safe: run a pass now (a build was queued or one finished)."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.hub.bind(self._loop)
        while True:
            self._wake.clear()
            try:
                started = await asyncio.to_thread(self.pass_once)
            except DockyardError as exc:  # a store conflict: the next pass tries again
                log.warning("build pass: %s", exc.message)
                started = []
            for build_id in started:  # daemon threads: a build never holds up a shutdown
                threading.Thread(target=self.execute, args=(build_id,), daemon=True,
                                 name=f"build-{build_id}").start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL)

    def pass_once(self) -> list[str]:
        """Fail stale builds, skip superseded ones, claim what may start; the ids claimed."""
        cutoff = store.now() - STALE
        with self.ctx.db.session() as sess:
            for row in store.stale_running(sess, cutoff):
                if row.id not in self._running:
                    self._end(sess, row.id, BuildState.failed,
                              error="the server running this build stopped")
        with self._lock:
            free = self.ctx.settings.build_parallel - len(self._running)
        with self.ctx.db.session() as sess:
            store.lock_build_slots(sess)  # every read below holds until the claims commit
            waiting = [queue.Queued(r.id, r.repo_id, r.ref, r.seq) for r in store.queued(sess)]
            plan = queue.plan(waiting, store.running_repos(sess))
            for old, new in plan.superseded.items():
                if store.supersede(sess, old, new):
                    store.record_event(sess, old, "build_cancelled",
                                       f"superseded by build {new}")
            claimed = []
            hosts = _build_hosts(sess)
            busy = store.builds_per_host(sess)
            limit = self.ctx.settings.build_host_parallel
            for build_id in plan.start[:max(0, free)]:
                room = [h for h in hosts.pool if busy.get(h.name, 0) < limit]
                if not room:  # every build host is at its limit: the rest wait, queued
                    break
                host = min(room, key=lambda h: (busy.get(h.name, 0), h.name))
                if store.claim(sess, store.build(sess, None, build_id), host.name):
                    busy[host.name] = busy.get(host.name, 0) + 1
                    claimed.append(build_id)
                    why = "labelled role=build" if hosts.labelled else \
                        "no host is labelled role=build: any up host builds"
                    store.append_logs(sess, build_id, 1,
                                      [f"building on host {host.name} ({why})"])
        with self._lock:
            self._running.update(claimed)
        self.ctx.notifier.bump()  # events --follow: builds ended or skipped in this pass
        return claimed

    # --- one build -------------------------------------------------------------------------

    def execute(self, build_id: str) -> None:
        try:
            job = self._prepare(build_id)
            if job is not None:
                self._stream(job)
        except DockyardError as exc:
            with self.ctx.db.session() as sess:
                self._end(sess, build_id, BuildState.failed, error=exc.message)
        except Exception as exc:  # a bug must not leave the build running for ever
            log.exception("build %s", build_id)
            with self.ctx.db.session() as sess:
                self._end(sess, build_id, BuildState.failed, error=f"internal error: {exc}")
        finally:
            with self._lock:
                self._running.discard(build_id)
            self.hub.changed(build_id)
            self.ctx.notifier.bump()  # its end event
            self.poke()

    def _prepare(self, build_id: str) -> _Job | None:
        settings = self.ctx.settings
        with self.ctx.db.session() as sess:
            row = store.build(sess, None, build_id)
            repo = store.repo_by_id(sess, row.repo_id)
            if repo is None:
                raise NotFound("its repository was removed")
            host = host_store.by_name(sess, row.host) if row.host else None
            if host is None or not host.api_url:
                raise DockyardError(f"its build host {row.host} is gone")
            store.record_event(sess, build_id, "build_started", f"started on host {host.name}")
            store.operation_step(sess, row.operation_id, "host", host=host.name)
            names = projects.ids_by_name(sess)
            project = projects.names_by_id(sess)[row.project_id]
            registry = settings.public_registry()
            archive = store.archive_digest(sess, build_id) if repo.url is None else None
            if repo.url is None and archive is None:
                raise DockyardError("its uploaded context archive is gone")
            body = AgentBuild(
                id=build_id, url=repo.url, ref=row.ref, commit=row.commit,
                archive_sha256=archive,
                dockerfile=repo.dockerfile, context=repo.context,
                repository=f"{registry}/{repo.image}",
                branch_tag=tag_of_branch(row.branch) if row.branch else None,
                credentials=self.box.open(repo.credentials_enc) if repo.credentials_enc
                else None,
                timeout=min(repo.timeout or settings.build_timeout, settings.build_timeout),
                memory_bytes=min(repo.memory_bytes or settings.build_memory,
                                 settings.build_memory),
                cpus=min(repo.cpus or settings.build_cpus, settings.build_cpus),
                denied_prefixes=[f"{registry}/{name}/" for name in names if name != project])
            cancelled = row.cancel_requested
            agent = self.ctx.agents.to(host.name, host.api_url, host.api_secret,
                                       httpx.Timeout(10.0, read=body.timeout + 60.0))
        self.hub.changed(build_id)
        self.ctx.notifier.bump()
        if cancelled:
            with self.ctx.db.session() as sess:
                self._end(sess, build_id, BuildState.cancelled, error="cancelled")
            return None
        return _Job(build_id, body, host.name, agent, row.project_id, list(repo.deploy))

    def _stream(self, job: _Job) -> None:
        with self.ctx.db.read() as sess:
            line_no = store.last_line_no(sess, job.build_id)
        pending: list[str] = []
        last_flush = time.monotonic()
        end: BuildLine | None = None
        try:
            if job.body.archive_sha256 is not None:
                self._hand_over_archive(job)
            for line in _lines(job.agent.chunks("POST", "/v1/builds",
                                                json=job.body.model_dump(mode="json"),
                                                what=f"host {job.host}: build")):
                if line.log is not None:
                    pending.append(line.log)
                if line.commit:
                    with self.ctx.db.session() as sess:
                        store.note_commit(sess, job.build_id, line.commit, line.author,
                                          line.message)
                if line.status is not None:
                    end = line
                if pending and (time.monotonic() - last_flush > FLUSH or len(pending) > 200):
                    line_no = self._flush(job.build_id, line_no, pending)
                    last_flush = time.monotonic()
                elif time.monotonic() - last_flush > HEARTBEAT:
                    line_no = self._flush(job.build_id, line_no, [])
                    last_flush = time.monotonic()
        except DockyardError as exc:
            pending.append(f"error: {exc.message}")
            end = BuildLine(status=BuildState.failed,
                            error=f"host {job.host}: the build was interrupted: {exc.message}")
        line_no = self._flush(job.build_id, line_no, pending)
        if end is None:
            end = BuildLine(status=BuildState.failed,
                            error=f"host {job.host}: the build ended without a result")
        assert end.status is not None
        if end.status == BuildState.succeeded and end.image and job.deploy:
            self._deliver(job, end.image, line_no)
        with self.ctx.db.session() as sess:
            self._end(sess, job.build_id, end.status, image=end.image, digest=end.digest,
                      step=end.step, error=end.error)

    def _hand_over_archive(self, job: _Job) -> None:
        """The uploaded context, to the build host's agent (it unpacks it instead of a git
        checkout)."""
        with self.ctx.db.read() as sess:
            data = store.archive_data(sess, job.build_id)
        if data is None:
            raise DockyardError("its uploaded context archive is gone")
        job.agent.request("PUT", f"/v1/builds/{job.build_id}/context", content=data)

    def _deliver(self, job: _Job, image: str, line_no: int) -> None:
        """Roll the new image out to the repository's --deploy services (the build is still
        `running` meanwhile: it ends once the rollout is recorded)."""
        lines: list[str] = []
        with self.ctx.db.session() as sess:
            store.operation_step(sess, self._operation(job.build_id), "rollout")
        rollout = build_delivery.deliver(self.ctx, job.project_id, job.deploy, image,
                                         lines.append)
        self._flush(job.build_id, line_no, lines)
        with self.ctx.db.session() as sess:
            store.set_rollout(sess, job.build_id, rollout)

    def _operation(self, build_id: str) -> str | None:
        with self.ctx.db.read() as sess:
            return store.build(sess, None, build_id).operation_id

    def _flush(self, build_id: str, line_no: int, pending: list[str]) -> int:
        with self.ctx.db.session() as sess:
            store.append_logs(sess, build_id, line_no + 1, pending)
        line_no += len(pending)
        pending.clear()
        self.hub.changed(build_id)
        return line_no

    def _end(self, sess: store.Session, build_id: str, state: BuildState, *,
             image: str | None = None, digest: str | None = None, step: str | None = None,
             error: str | None = None) -> None:
        if store.finish(sess, build_id, state.value, image=image, digest=digest, step=step,
                        error=error):
            row = store.build(sess, None, build_id)
            sess.refresh(row)  # the conditional UPDATE above bypassed the session's copy
            store.end_operation(sess, row.operation_id, state.value, error)
            store.record_event(sess, build_id, f"build_{state.value}", _outcome(row))
        self.hub.changed(build_id)

    def cancel_on(self, host_name: str, build_id: str) -> None:
        """Ask the agent of `host_name` to stop the build (it ends its stream `cancelled`)."""
        with self.ctx.db.read() as sess:
            host = host_store.by_name(sess, host_name)
            if host is None or not host.api_url:
                return
            agent = self.ctx.agents.to(host.name, host.api_url, host.api_secret)
        with contextlib.suppress(NotFound):  # not (or no longer) running there
            agent.request("POST", f"/v1/builds/{build_id}/cancel")


@dataclass
class _Hosts:
    pool: list[HostRow]  # where builds may run
    labelled: bool  # the pool is the hosts labelled role=build


def _build_hosts(sess: store.Session) -> _Hosts:
    """The up, undrained hosts labelled role=build, or every up undrained host when none is."""
    hosts = [h for h in host_store.reachable(sess) if not h.draining]
    labelled = [h for h in hosts if effective_labels(h).get(BUILD_LABEL[0]) == BUILD_LABEL[1]]
    return _Hosts(labelled or hosts, bool(labelled))


def _outcome(row: store.BuildRow) -> str:
    """An ended build's event message: what it built, or why not."""
    at = f" at {short_sha(row.commit)}" if row.commit else ""
    if row.state == BuildState.succeeded:
        return f"succeeded{at}: {row.image}" + (f"; {row.rollout}" if row.rollout else "")
    return f"{row.state}{at}: {row.error or 'no reason given'}"


def _lines(chunks: Iterator[bytes]) -> Iterator[BuildLine]:
    """The agent's JSON lines, whatever the chunking."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            if raw.strip():
                yield BuildLine.model_validate(json.loads(raw))
    if buffer.strip():
        yield BuildLine.model_validate(json.loads(buffer))


__all__ = ["BuildRunner", "LogHub", "short_sha"]
