"""Builds on this host (the server's build runner calls them):

    PUT /v1/builds/{id}/context  ─▶ an uploaded context archive, kept for that build
    POST /v1/builds (AgentBuild) ─▶ JSON lines: {"log"}, {"commit", "author", "message"},
                                    and last {"status": succeeded|failed|cancelled, …}
    POST /v1/builds/{id}/cancel  ─▶ the build is stopped (its git or its build killed)

A build runs in a thread of its own; the reply streams what it puts in a queue:

    git checkout at the commit (or the uploaded archive, its sha256 checked, unpacked with
    tarfile's `data` filter; tagged :<sha256[:12]>, no branch tag) ─▶ Dockerfile's base
    images: each must name the cluster registry (not another project's), pulled with the
    host's registry login; a missing one is named ─▶ classic build tagged
    REGISTRY/PROJECT/NAME:<short sha> (never pulls) ─▶ a failing step: failed with that
    step, nothing pushed ─▶ push :<short sha> (its digest), then :<branch> ─▶ the local
    tags dropped, the checkout removed

Its time limit stops it wherever it is (failed: "time limit"); a cancel does the same
(cancelled); the server going away (the reply closed) stops it too. A build's checkout lives
in HOME/builds/build-ID-*/ (an uploaded archive: HOME/builds/build-ID-upload/context.tar, removed
with the build) with the local tag it makes written beside it (`tag`): an agent
killed mid-build (kill -9) leaves them, and the next agent's start removes them (the tag
untagged, the directory deleted) before it takes any build. dockerd itself ends the step the
killed agent's connection was running (the reply's socket closed), and removes its container
(forcerm); the server marks the build failed when the agent's stream breaks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request

from dockyard.adapters.docker_build import BuildLimits, BuildSession
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.adapters.git import Git, credential_env
from dockyard.builds.dockerfile import base_images, base_problem
from dockyard.errors import DockyardError, InvalidRequest
from dockyard.model.build import AgentBuild, BuildLine, BuildState, short_sha

STEP_RE = re.compile(r"^Step \d+/\d+ : ")
BUILD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHUNK = 1 << 16
_log = logging.getLogger(__name__)


class _Stopped(Exception):
    pass


class _Run:
    """One build's stop switch: what is running now (git or the docker build) and why it
    was stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Git | BuildSession | None = None
        self.reason: str | None = None  # "timeout" | "cancelled" | "gone"

    def attach(self, part: Git | BuildSession) -> None:
        with self._lock:
            self._current = part
            if self.reason is not None:
                part.stop()

    def check(self) -> None:
        if self.reason is not None:
            raise _Stopped(self.reason)

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._current is not None:
                self._current.stop()


class Builder:
    def __init__(self, engine: DockerEngine, registry: str, workroot: Path) -> None:
        self.engine = engine
        self.registry = registry
        self.workroot = workroot
        self._runs: dict[str, _Run] = {}
        self._early: set[str] = set()  # cancelled before they arrived
        self._lock = threading.Lock()

    def sweep(self) -> list[str]:
        """Remove what builds of an earlier agent process left (it was killed mid-build):
        their local tags and checkouts. Called once, before any build starts here."""
        if not self.workroot.is_dir():
            return []
        removed = []
        for leftover in sorted(self.workroot.glob("build-*")):
            tag_file = leftover / "tag"
            if tag_file.is_file():
                with contextlib.suppress(DockyardError):  # an image in use keeps its tag
                    self.engine.remove_image(tag_file.read_text().strip(), untag_only=True)
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover.name)
        return removed

    def cancel(self, build_id: str) -> bool:
        with self._lock:
            run = self._runs.get(build_id)
            if run is None:
                self._early.add(build_id)
                return False
        run.stop("cancelled")
        return True

    def upload_dir(self, build_id: str) -> Path:
        if not BUILD_ID_RE.match(build_id):
            raise InvalidRequest(f"{build_id!r} is not a build id")
        return self._root() / f"build-{build_id}-upload"

    def stream(self, req: AgentBuild) -> Iterator[bytes]:
        run = _Run()
        with self._lock:
            self._runs[req.id] = run
            if req.id in self._early:
                self._early.discard(req.id)
                run.stop("cancelled")
        lines: queue.Queue[BuildLine | None] = queue.Queue()
        timer = threading.Timer(req.timeout, run.stop, args=("timeout",))
        timer.daemon = True
        worker = threading.Thread(target=self._work, args=(req, run, lines.put), daemon=True,
                                  name=f"build-{req.id}")
        timer.start()
        worker.start()
        try:
            while (line := lines.get()) is not None:
                yield (line.model_dump_json(exclude_none=True) + "\n").encode()
        finally:
            timer.cancel()
            run.stop("gone")  # a no-op once it ended; the server went away otherwise
            with self._lock:
                self._runs.pop(req.id, None)

    def _work(self, req: AgentBuild, run: _Run,
              emit: Callable[[BuildLine | None], None]) -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"build-{req.id}-", dir=self._root()))
        try:
            emit(self._build(req, run, workdir, emit))
        except _Stopped:
            emit(self._stopped(req, run))
        except DockyardError as exc:
            if run.reason is not None:
                emit(self._stopped(req, run))
            else:
                emit(BuildLine(log=f"error: {exc.message}", status=BuildState.failed,
                               error=exc.message))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if req.archive_sha256 is not None:
                shutil.rmtree(self.upload_dir(req.id), ignore_errors=True)
            emit(None)

    def _root(self) -> Path:
        self.workroot.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.workroot

    @staticmethod
    def _stopped(req: AgentBuild, run: _Run) -> BuildLine:
        if run.reason == "cancelled":
            return BuildLine(log="cancelled", status=BuildState.cancelled, error="cancelled")
        if run.reason == "timeout":
            text = f"the build ran over its time limit of {req.timeout:g}s and was killed"
            return BuildLine(log=text, status=BuildState.failed, error=text)
        return BuildLine(status=BuildState.failed, error="the server went away")

    def _build(self, req: AgentBuild, run: _Run, workdir: Path,
               emit: Callable[[BuildLine | None], None]) -> BuildLine:
        def log(text: str) -> None:
            emit(BuildLine(log=text))

        src = workdir / "src"
        if req.archive_sha256 is not None:
            self._unpack(req, src, log)
            commit, author, subject = None, None, None
            tag = f"{req.repository}:{short_sha(req.archive_sha256)}"
        else:
            commit, author, subject = self._checkout(req, run, workdir, src, emit)
            tag = f"{req.repository}:{short_sha(commit)}"
        run.check()
        failure = self._pull_bases(req, src, log)
        if failure is not None:
            return failure
        run.check()
        (workdir / "tag").write_text(tag)  # for the sweep, should this process be killed
        log(f"build limits: memory {req.memory_bytes} bytes, {req.cpus:g} CPUs")
        session = BuildSession(self.engine.api, src, req.context, req.dockerfile, tag,
                               BuildLimits(req.memory_bytes, req.cpus))
        run.attach(session)
        failure = self._docker_build(session, log)
        run.check()
        if failure is not None:
            return failure
        try:
            digest = self._push(tag, tag, log)
            run.check()
            if req.branch_tag:
                self._push(tag, f"{req.repository}:{req.branch_tag}", log)
        finally:
            self.engine.remove_image(tag, untag_only=True)
        log(f"pushed {tag} ({digest})")
        return BuildLine(status=BuildState.succeeded, image=tag, digest=digest,
                         commit=commit, author=author, message=subject)

    @staticmethod
    def _checkout(req: AgentBuild, run: _Run, workdir: Path, src: Path,
                  emit: Callable[[BuildLine | None], None]) -> tuple[str, str, str]:
        """The git checkout at the build's commit: (commit, author, subject)."""
        def log(text: str) -> None:
            emit(BuildLine(log=text))

        assert req.url is not None
        git = Git(src, credential_env(req.credentials, workdir / "key"), log)
        run.attach(git)
        log(f"cloning {req.url} at {req.commit or req.ref}")
        checkout = git.checkout(req.url, req.ref, req.commit)
        log(f"checked out {checkout.commit}: {checkout.subject}")
        emit(BuildLine(commit=checkout.commit, author=checkout.author,
                       message=checkout.subject))
        return checkout.commit, checkout.author, checkout.subject

    def _unpack(self, req: AgentBuild, src: Path, log: Callable[[str], None]) -> None:
        """The uploaded archive (PUT before the build) into `src`, checked against its
        sha256; tarfile's `data` filter refuses paths and links outside `src`, devices."""
        path = self.upload_dir(req.id) / "context.tar"
        if not path.is_file():
            raise DockyardError("the uploaded context archive did not arrive on this host")
        digest = hashlib.sha256()
        with path.open("rb") as data:
            for chunk in iter(lambda: data.read(CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != req.archive_sha256:
            raise DockyardError("the uploaded context archive arrived damaged (sha256 differs)")
        log(f"unpacking the uploaded context sha256:{req.archive_sha256} "
            f"({path.stat().st_size} bytes)")
        src.mkdir(mode=0o700)
        try:
            with tarfile.open(path, mode="r:*") as tar:
                tar.extractall(src, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise DockyardError(f"the uploaded context cannot be unpacked: {exc}") from exc

    def _pull_bases(self, req: AgentBuild, src: Path,
                    log: Callable[[str], None]) -> BuildLine | None:
        dockerfile = (src / req.dockerfile)
        if not dockerfile.is_file():
            text = f"no Dockerfile at {req.dockerfile} in the repository"
            return BuildLine(log=f"error: {text}", status=BuildState.failed, error=text)
        for image in base_images(dockerfile.read_text(errors="replace")):
            problem = base_problem(image, self.registry, req.denied_prefixes)
            if problem is None:
                log(f"pulling base image {image}")
                try:
                    for _ in self.engine.pull(image):
                        pass
                except DockyardError as exc:
                    problem = (f"base image {image} is not in Dockyard's registry "
                               f"({exc.message})")
            if problem is not None:
                return BuildLine(log=f"error: {problem}", status=BuildState.failed,
                                 step=f"FROM {image}", error=problem)
        return None

    @staticmethod
    def _docker_build(session: BuildSession, log: Callable[[str], None]) -> BuildLine | None:
        step: str | None = None
        for message in session.messages():
            text = str(message.get("stream") or "")
            for line in text.splitlines():
                if STEP_RE.match(line):
                    step = line
                if line.strip():
                    log(line)
            if message.get("error"):
                error = str(message["error"]).strip()
                log(f"error: {error}")
                return BuildLine(status=BuildState.failed, step=step,
                                 error=f"{step}: {error}" if step else error)
        return None

    def _push(self, source: str, target: str, log: Callable[[str], None]) -> str | None:
        log(f"pushing {target}")
        digest = None
        for message in self.engine.push(source, target):
            aux: Any = message.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
        return digest


def install_build(app: FastAPI, engine: DockerEngine, authorized: Callable[..., None],
                  registry: str, home: Path | None) -> Builder:
    from fastapi.responses import StreamingResponse

    workroot = (home or Path(tempfile.gettempdir()) / "dockyard-agent") / "builds"
    builder = Builder(engine, registry, workroot)
    left = builder.sweep()
    if left:
        _log.warning("removed what %d builds of a killed agent left: %s", len(left),
                    ", ".join(left))

    @app.post("/v1/builds", dependencies=[Depends(authorized)])
    def build(body: AgentBuild) -> StreamingResponse:
        """Run a build here, streaming its log and result as JSON lines."""
        return StreamingResponse(builder.stream(body), media_type="application/x-ndjson")

    @app.put("/v1/builds/{build_id}/context", dependencies=[Depends(authorized)])
    async def context(build_id: str, request: Request) -> dict[str, int]:
        """An uploaded build context (a tar archive) for build `build_id`, sent before it."""
        target = builder.upload_dir(build_id)
        target.mkdir(mode=0o700, exist_ok=True)
        size = 0
        with (target / "context.tar").open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
                size += len(chunk)
        return {"size": size}

    @app.post("/v1/builds/{build_id}/cancel", dependencies=[Depends(authorized)])
    def cancel(build_id: str) -> dict[str, bool]:
        return {"running": builder.cancel(build_id)}

    return builder
