"""The Docker adapter: a thin wrapper over the docker SDK's low-level API.

Every docker/requests exception is translated here, in `_translate`, and nowhere else:
ImageNotFound/NotFound -> NotFound, 409 -> Conflict, connection trouble -> TemporaryError,
anything else -> BackendError. A container that vanished mid-operation is a normal answer
(`inspect` returns None, `remove`/`stop` succeed), not a crash.

The create path costs three round-trips: create, start, inspect (for the PID to plumb).

`attach_exec` hands out an `ExecSession`: an exec with stdin attached over the hijacked
dockerd connection (raw bytes with a tty; 8-byte-header frames without one, which the session
unwraps, merging stdout and stderr). Its methods block; callers give it its own thread.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import docker
import docker.errors
import requests
from docker.types import LogConfig, Mount

from dockyard.errors import BackendError, Conflict, NotFound, TemporaryError
from dockyard.model.instance import ExecResult


@dataclass(frozen=True)
class MountSpec:
    source: str
    target: str
    read_only: bool
    kind: str  # "bind" | "volume"
    propagation: str | None = None  # bind only: "rslave", "rshared", ... (None: Docker's default)


# Docker brings an instance's container back after a crash or a dockerd restart
RESTART_POLICY = "unless-stopped"


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    hostname: str
    labels: dict[str, str]
    env: dict[str, str]
    cpuset: str
    pids_limit: int
    cpu_quota: int | None = None
    cpu_shares: int | None = None
    memory: int | None = None
    mounts: list[MountSpec] = field(default_factory=list)
    restart_policy: str = RESTART_POLICY
    log_max_size: str = "10m"
    log_max_file: int = 3
    stop_timeout: int = 10
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)  # e.g. no-new-privileges


@dataclass(frozen=True)
class Resources:
    """The limits dockerd can change on a running container (`docker update`)."""

    cpuset: str = ""
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # microseconds per CPU_PERIOD; None = no quota
    memory: int | None = None
    pids_limit: int | None = None


CPU_PERIOD = 100_000  # µs, as docker's --cpus


def cpu_quota(cpus: float | None) -> int | None:
    return int(cpus * CPU_PERIOD) if cpus else None


@dataclass(frozen=True)
class ImageRecord:
    id: str
    tags: list[str]
    size: int
    created: float  # epoch seconds


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # created | running | paused | restarting | exited | dead
    pid: int
    labels: dict[str, str]
    image: str
    exit_code: int
    oom_killed: bool
    cpuset: str
    resources: Resources = field(default_factory=lambda: Resources())

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting") and self.pid > 0


@contextmanager
def _translate(what: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise NotFound(f"{what}: image not found: {exc.explanation}") from exc
    except docker.errors.NotFound as exc:
        raise NotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"{what}: {exc.explanation}") from exc
        raise BackendError(f"{what}: {exc.explanation or exc}") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TemporaryError(f"{what}: dockerd unreachable: {exc}", delay=1.0) from exc
    except docker.errors.DockerException as exc:
        raise BackendError(f"{what}: {exc}") from exc


def _raise_stream_error(what: str, message: dict[str, Any]) -> None:
    if message.get("error"):
        raise BackendError(f"{what}: {message['error']}")


def _info(data: dict[str, Any]) -> ContainerInfo:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    return ContainerInfo(
        id=data["Id"], name=str(data.get("Name", "")).lstrip("/"),
        status=str(state.get("Status", "")), pid=int(state.get("Pid") or 0),
        labels=dict(config.get("Labels") or {}), image=str(config.get("Image", "")),
        exit_code=int(state.get("ExitCode") or 0), oom_killed=bool(state.get("OOMKilled")),
        cpuset=str((data.get("HostConfig") or {}).get("CpusetCpus") or ""),
        resources=_resources(data.get("HostConfig") or {}))


def _resources(host: dict[str, Any]) -> Resources:
    def positive(key: str) -> int | None:
        value = host.get(key)
        return int(value) if value and int(value) > 0 else None

    return Resources(cpuset=str(host.get("CpusetCpus") or ""), cpu_shares=positive("CpuShares"),
                     cpu_quota=positive("CpuQuota"), memory=positive("Memory"),
                     pids_limit=positive("PidsLimit"))


class ExecSession:
    """One attached exec: `send`/`recv` raw bytes, `resize` its tty, `close_stdin`, `close`.

    `recv` returns b"" once the process closed its output; `exit_code` then waits briefly for
    dockerd to record the exit (the stream ends a moment before inspect says so).
    """

    def __init__(self, api: Any, exec_id: str, response: Any, tty: bool, what: str) -> None:
        self._api = api
        self._id = exec_id
        self._response = response  # requests.Response of the hijacked POST /exec/ID/start
        # Read through http.client's buffer: output that arrived together with the 101
        # answer sits there, not in the socket (docker-py's socket=True loses it).
        self._reader = response.raw._fp.fp  # io.BufferedReader over the connection
        self._sock: socket.socket = self._reader.raw._sock
        self._sock.settimeout(None)  # an idle console is not a timeout
        self._tty = tty
        self._what = what

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:  # the process is gone; its exit code tells the story
            raise BackendError(f"{self._what}: stdin closed: {exc}") from exc

    def recv(self) -> bytes:
        """The next chunk of output, or b"" at the end."""
        try:
            if self._tty:
                return bytes(self._reader.read1(65536))
            while True:  # without a tty dockerd frames stdout/stderr: skip empty frames
                header = self._reader.read(8)
                if len(header) < 8:
                    return b""
                _, length = struct.unpack(">BxxxL", header)
                if length:
                    return bytes(self._reader.read(length))
        except (OSError, ValueError):  # closed under us (close() from another thread)
            return b""

    def resize(self, cols: int, rows: int) -> None:
        if self._tty:
            with _translate(f"resize {self._what}"):
                self._api.exec_resize(self._id, height=rows, width=cols)

    def close_stdin(self) -> None:
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def hangup(self) -> None:
        """SIGHUP a still-running tty process, as a terminal hanging up would: dockerd keeps
        a tty exec alive after its client left (without a tty, stdin's end does the job)."""
        if not self._tty:
            return
        with _translate(f"inspect {self._what}"):
            info = self._api.exec_inspect(self._id)
        if info.get("Running") and info.get("Pid"):
            with suppress(ProcessLookupError):
                os.kill(int(info["Pid"]), signal.SIGHUP)

    def exit_code(self, wait: float = 5.0) -> int:
        """The process's exit code (-1 if dockerd does not know it within `wait`)."""
        deadline = time.monotonic() + wait
        while True:
            with _translate(f"inspect {self._what}"):
                info = self._api.exec_inspect(self._id)
            code = info.get("ExitCode")
            if not info.get("Running") and code is not None:
                return int(code)
            if time.monotonic() >= deadline:
                return -1
            time.sleep(0.05)

    def close(self) -> None:
        """Idempotent; unblocks a `recv` waiting in another thread first."""
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            self._response.close()
            self._sock.close()


class DockerEngine:
    def __init__(self, base_url: str | None = None, timeout: int = 60) -> None:
        with _translate("connect to dockerd"):
            if base_url:
                self._client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                self._client = docker.from_env(timeout=timeout)
        self.api = self._client.api
        self._registry = ""  # HOST:PORT whose pulls and pushes carry _credentials
        self._credentials: dict[str, str] | None = None

    def log_in(self, registry: str, username: str, password: str) -> None:
        """Credentials for every pull and push of `registry` (passed per call, as
        `docker login` would; nothing is written to the engine's or a user's config)."""
        self._registry = registry
        self._credentials = {"username": username, "password": password,
                             "serveraddress": registry}

    def _auth(self, ref: str) -> dict[str, str] | None:
        return self._credentials if self._registry and \
            ref.startswith(f"{self._registry}/") else None

    def close(self) -> None:
        self._client.close()

    def version(self) -> str:
        with _translate("docker version"):
            return str(self.api.version().get("Version", ""))

    def image_exists(self, ref: str) -> bool:
        try:
            with _translate(f"inspect image {ref}"):
                self.api.inspect_image(ref)
        except NotFound:
            return False
        return True

    def pull(self, ref: str) -> Iterator[dict[str, Any]]:
        """`docker pull`, yielding dockerd's progress messages. An error dockerd reports
        inside the stream (registry gone, manifest unknown) raises like any other."""
        with _translate(f"pull {ref}"):
            stream = self.api.pull(ref, stream=True, decode=True, auth_config=self._auth(ref))
        with _translate(f"pull {ref}"):
            for message in stream:
                _raise_stream_error(f"pull {ref}", message)
                yield message

    def push(self, source: str, target: str) -> Iterator[dict[str, Any]]:
        """Tag `source` as `target`, `docker push` it (yielding progress) and drop that tag
        again, so the engine's list shows only the user's own names."""
        with _translate(f"tag {source}"):
            repository, _, tag = target.rpartition(":")
            self.api.tag(source, repository, tag)
        try:
            with _translate(f"push {target}"):
                for message in self.api.push(repository, tag, stream=True, decode=True,
                                             auth_config=self._auth(target)):
                    _raise_stream_error(f"push {target}", message)
                    yield message
        finally:
            if target != source:
                with suppress(NotFound, Conflict, BackendError), _translate(f"untag {target}"):
                    self.api.remove_image(target, noprune=True)

    def load(self, archive: BinaryIO) -> list[str]:
        """`docker load` from an open `docker save` archive (streamed from the file); the
        names (or ids) dockerd says it loaded."""
        loaded: list[str] = []
        with _translate("load image archive"):
            for message in self.api.load_image(archive):
                _raise_stream_error("load image archive", message)
                text = str(message.get("stream") or "")
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix):].strip())
        return loaded

    def tag(self, source: str, target: str) -> None:
        repository, _, tag = target.rpartition(":")
        with _translate(f"tag {source}"):
            self.api.tag(source, repository, tag)

    def remove_image(self, ref: str, untag_only: bool = False) -> None:
        """Remove an image (or only this tag of it); one already gone is success."""
        with suppress(NotFound), _translate(f"remove image {ref}"):
            self.api.remove_image(ref, noprune=untag_only)

    def commit(self, name: str, target: str, pause: bool) -> str:
        """`docker commit` of a (running) container as `target`; the container keeps running
        with the same PID (frozen meanwhile when `pause`)."""
        repository, _, tag = target.rpartition(":")
        with _translate(f"commit {name}"):
            reply = self.api.commit(name, repository=repository, tag=tag, pause=pause)
        return str(reply["Id"])

    def image_records(self) -> list[ImageRecord]:
        """Every image of the engine with its tags, size and creation time."""
        with _translate("list images"):
            rows = self.api.images()
        return [ImageRecord(id=str(r["Id"]), tags=[t for t in r.get("RepoTags") or []
                                                    if t != "<none>:<none>"],
                            size=int(r.get("Size") or 0), created=float(r.get("Created") or 0))
                for r in rows]

    def images_in_use(self) -> set[str]:
        """Image ids that any container (running or not) of the engine was made from."""
        with _translate("list containers"):
            return {str(c.get("ImageID") or "") for c in self.api.containers(all=True)}

    def volume_path(self, name: str, create: bool = False) -> str:
        """The host directory of a local volume (created first when asked)."""
        if create:
            with _translate(f"create volume {name}"):
                self.api.create_volume(name)
        with _translate(f"inspect volume {name}"):
            return str(self.api.inspect_volume(name)["Mountpoint"])

    def inspect(self, name: str) -> ContainerInfo | None:
        try:
            with _translate(f"inspect {name}"):
                return _info(self.api.inspect_container(name))
        except NotFound:
            return None

    def create(self, spec: ContainerSpec) -> str:
        mounts = [Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only,
                        propagation=m.propagation) for m in spec.mounts]
        host_config = self.api.create_host_config(
            network_mode="none", cpuset_cpus=spec.cpuset or None,
            cpu_period=CPU_PERIOD if spec.cpu_quota else None, cpu_quota=spec.cpu_quota,
            cpu_shares=spec.cpu_shares, mem_limit=spec.memory,
            memswap_limit=spec.memory, pids_limit=spec.pids_limit, mounts=mounts,
            cap_add=spec.cap_add or None, cap_drop=spec.cap_drop or None,
            security_opt=spec.security_opt or None,
            restart_policy={"Name": spec.restart_policy},
            log_config=LogConfig(type="json-file", config={
                "max-size": spec.log_max_size, "max-file": str(spec.log_max_file)}))
        with _translate(f"create {spec.name}"):
            reply = self.api.create_container(
                spec.image, name=spec.name, hostname=spec.hostname, labels=spec.labels,
                environment=[f"{k}={v}" for k, v in spec.env.items()],
                host_config=host_config, stop_timeout=spec.stop_timeout, detach=True)
        return str(reply["Id"])

    def start(self, name: str) -> ContainerInfo:
        """Start and return the fresh state (with the PID needed for plumbing)."""
        with _translate(f"start {name}"):
            self.api.start(name)
            return _info(self.api.inspect_container(name))

    def checkpoint(self, name: str, checkpoint: str) -> None:
        """`docker checkpoint create --leave-running=false`: CRIU dumps the container's
        processes into DATA-ROOT/containers/ID/checkpoints/CHECKPOINT and the container stops
        (experimental dockerd only). The default directory on purpose: `docker start` refuses
        a custom --checkpoint-dir ("custom checkpointdir is not supported", moby#37344)."""
        with _translate(f"checkpoint {name}"):
            url = self.api._url("/containers/{0}/checkpoints", name)
            self.api._raise_for_status(self.api._post_json(url, data={
                "CheckpointID": checkpoint, "Exit": True}))

    def set_restart_policy(self, name: str, policy: str) -> None:
        """`docker update --restart POLICY`, live. A checkpoint's exit counts as a crash to
        dockerd's restart manager (it is not a manual stop), so a container about to be
        checkpointed away gets "no" first, or dockerd would start it again at once."""
        with _translate(f"update {name}"):
            url = self.api._url("/containers/{0}/update", name)
            self.api._raise_for_status(self.api._post_json(url, data={
                "RestartPolicy": {"Name": policy}}))

    def start_checkpoint(self, name: str, checkpoint: str) -> ContainerInfo:
        """`docker start --checkpoint CHECKPOINT`: CRIU restores the processes into the
        (created or stopped) container from its own checkpoints directory."""
        with _translate(f"restore {name} from {checkpoint}"):
            url = self.api._url("/containers/{0}/start", name)
            self.api._raise_for_status(self.api._post(url, params={"checkpoint": checkpoint}))
            return _info(self.api.inspect_container(name))

    def checkpoint_dir(self, container_id: str, checkpoint: str) -> str:
        """Where dockerd keeps a container's checkpoint (its default directory)."""
        root = getattr(self, "_data_root", None)
        if root is None:  # `docker info` is slow (~0.1 s): asked once, it does not change
            root = self._data_root = self.data_root()
        return os.path.join(root, "containers", container_id, "checkpoints", checkpoint)

    def upper_dir(self, name: str) -> str:
        """The container's writable layer on the host (overlay2's upperdir): its root
        filesystem delta against the image. BackendError on another storage driver."""
        with _translate(f"inspect {name}"):
            data = self.api.inspect_container(name)
        graph = data.get("GraphDriver") or {}
        upper = (graph.get("Data") or {}).get("UpperDir")
        if graph.get("Name") != "overlay2" or not upper:
            raise BackendError(f"{name}: storage driver {graph.get('Name')!r} has no upperdir")
        return str(upper)

    def mounts(self, name: str) -> list[dict[str, str]]:
        """The container's mounts as dockerd lists them: Type, Source, Destination,
        Propagation."""
        with _translate(f"inspect {name}"):
            data = self.api.inspect_container(name)
        return [{"type": str(m.get("Type") or ""), "source": str(m.get("Source") or ""),
                 "destination": str(m.get("Destination") or ""),
                 "propagation": str(m.get("Propagation") or "")}
                for m in data.get("Mounts") or []]

    def stop(self, name: str, timeout: int) -> None:
        try:
            with _translate(f"stop {name}"):
                self.api.stop(name, timeout=timeout)
        except NotFound:
            pass

    def remove(self, name: str) -> None:
        try:
            with _translate(f"remove {name}"):
                self.api.remove_container(name, force=True, v=False)
        except NotFound:
            pass
        except Conflict as exc:  # "removal already in progress"
            if "in progress" not in exc.message:
                raise

    def rename(self, name: str, new_name: str) -> None:
        with _translate(f"rename {name}"):
            self.api.rename(name, new_name)

    def remove_volume(self, name: str) -> None:
        """Remove a Docker volume; one already gone is success. In use → Conflict."""
        try:
            with _translate(f"remove volume {name}"):
                self.api.remove_volume(name)
        except NotFound:
            pass

    def update_cpuset(self, name: str, cpuset: str) -> None:
        """Re-pin a running container live (same PID)."""
        self.update(name, Resources(cpuset=cpuset), {"cpuset"})

    def update(self, name: str, want: Resources, fields: set[str]) -> None:
        """`docker update` of the given fields, live (same PID); kept across restarts."""
        body: dict[str, Any] = {}
        if "cpuset" in fields:
            body["CpusetCpus"] = want.cpuset
        if "cpu_shares" in fields:
            body["CpuShares"] = want.cpu_shares or 1024
        if "cpu_quota" in fields:
            body["CpuPeriod"] = CPU_PERIOD
            body["CpuQuota"] = want.cpu_quota or -1
        if "memory" in fields and want.memory:
            body["Memory"] = want.memory
            body["MemorySwap"] = want.memory
        if "pids_limit" in fields:
            body["PidsLimit"] = want.pids_limit or -1
        if not body:
            return
        with _translate(f"update {name}"):
            url = self.api._url("/containers/{0}/update", name)
            self.api._raise_for_status(self.api._post_json(url, data=body))

    def data_root(self) -> str:
        with _translate("docker info"):
            return str(self.api.info().get("DockerRootDir", "/var/lib/docker"))

    def info(self) -> dict[str, Any]:
        """`docker info` as dockerd answers it (Driver, DriverStatus, LiveRestoreEnabled, ...)."""
        with _translate("docker info"):
            return dict(self.api.info())

    def list_owned(self, cluster: str, instance_id: str | None = None) -> list[ContainerInfo]:
        """Every container labelled with this cluster's uuid (running or not), or only those
        of one instance. A container removed between the list and its inspect (another
        instance's delete running alongside) is no longer there: it is left out, not an
        error."""
        labels = [f"dockyard.cluster={cluster}"]
        if instance_id is not None:
            labels.append(f"dockyard.instance={instance_id}")
        with _translate("list containers"):
            summaries = self.api.containers(all=True, filters={"label": labels})
        found = (self.inspect(str(s["Id"])) for s in summaries)
        return [info for info in found if info is not None]

    def running_owned(self, cluster: str) -> dict[str, dict[str, str]]:
        """Container id -> labels of this cluster's running containers: one list call, no
        inspect (the collector's cheap view)."""
        with _translate("list containers"):
            summaries = self.api.containers(filters={"label": f"dockyard.cluster={cluster}",
                                                     "status": "running"})
        return {str(s["Id"]): dict(s.get("Labels") or {}) for s in summaries}

    def top(self, name: str) -> dict[str, Any]:
        """`docker top`: {"titles": [...], "processes": [[...], ...]}."""
        with _translate(f"top of {name}"):
            reply = self.api.top(name)
        return {"titles": list(reply.get("Titles") or []),
                "processes": [list(p) for p in reply.get("Processes") or []]}

    def exec(self, name: str, command: list[str], env: dict[str, str],
             workdir: str | None, user: str | None) -> ExecResult:
        with _translate(f"exec in {name}"):
            handle = self.api.exec_create(name, command, stdout=True, stderr=True,
                                          environment=[f"{k}={v}" for k, v in env.items()],
                                          workdir=workdir, user=user or "")
            out, err = self.api.exec_start(handle["Id"], demux=True)
            code = self.api.exec_inspect(handle["Id"]).get("ExitCode")
        return ExecResult(exit_code=int(code if code is not None else -1),
                          stdout=(out or b"").decode(errors="replace"),
                          stderr=(err or b"").decode(errors="replace"))

    def attach_exec(self, name: str, command: list[str], env: dict[str, str],
                    workdir: str | None, user: str | None, tty: bool) -> ExecSession:
        """Start `command` with stdin attached (and a tty if asked); the caller closes it.

        Like the SDK's `exec_start(socket=True)`, but keeping the response, whose buffer
        may already hold the first output (see ExecSession)."""
        what = f"exec in {name}"
        environment = [f"{k}={v}" for k, v in env.items()]
        with _translate(what):
            handle = self.api.exec_create(name, command, stdout=True, stderr=True, stdin=True,
                                          tty=tty, environment=environment, workdir=workdir,
                                          user=user or "")
            response = self.api.post(self.api._url("/exec/{0}/start", handle["Id"]),
                                     json={"Tty": tty, "Detach": False}, stream=True,
                                     headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                                     timeout=self.api.timeout)
            try:
                self.api._raise_for_status(response)
            except docker.errors.APIError:
                response.close()
                raise
        return ExecSession(self.api, handle["Id"], response, tty, what)

    def logs(self, name: str, follow: bool, tail: int | str) -> Iterator[bytes]:
        with _translate(f"logs of {name}"):
            stream = self.api.logs(name, stream=True, follow=follow, tail=tail)
        with _translate(f"logs of {name}"):
            yield from stream

    def events(self, cluster: str) -> Any:
        """A blocking iterator of container events of this cluster; `.close()` ends it."""
        with _translate("docker events"):
            return self.api.events(decode=True, filters={
                "type": "container", "label": f"dockyard.cluster={cluster}"})

