"""Live migration (CRIU): the facts each host reports, and the pure preflight over them.

    agent (source)  HostFacts + InstanceFacts (its processes' sockets, its mounts)
    agent (target)  HostFacts                                  ─▶ evaluate(...) ─▶ [Failure]
    server          the scheduler's verdict for the target

Every failure has a stable `code`, the host it concerns, what was found and how to fix it.
The checks are pure (no I/O), so each is tested on its own, table-driven.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

# TCP states of /proc/net/tcp (include/net/tcp_states.h); CRIU dumps LISTEN and CLOSE
# sockets, and the connected states only with --tcp-established, which Docker never passes
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}
TCP_DUMPABLE = {"LISTEN", "CLOSE"}
# the socket families CRIU checkpoints without options; anything else ("unknown": an inode no
# /proc/PID/net table lists, e.g. AF_ALG, AF_VSOCK, AF_BLUETOOTH) is refused
SUPPORTED_SOCKETS = {"tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6",
                     "unix", "packet", "netlink"}
# bind mounts Dockyard itself makes: the instance files and lxcfs (volumes are type volume)
OWN_FILE_TARGETS = {"/etc/hosts", "/etc/resolv.conf", "/etc/dockyard/authorized_keys"}


class CriuFacts(BaseModel):
    path: str = Field(description="the criu the host's runc runs (DOCKYARD_CRIU or PATH)")
    found: bool = False
    version: str = ""
    check_ok: bool = False
    check_output: str = Field(default="", description="the tail of `criu check` when it failed")


class SocketFact(BaseModel):
    kind: str  # tcp, tcp6, udp, unix, netlink, packet, raw, ..., unknown
    state: str = ""  # TCP state name; "" for the others
    local: str = ""
    remote: str = ""
    pid: int = 0
    inode: int = 0


class MountFact(BaseModel):
    kind: str  # bind | volume | tmpfs | ...
    source: str
    destination: str


class InstanceFacts(BaseModel):
    running: bool
    pid: int = 0
    processes: int = 0
    sockets: list[SocketFact] = Field(default_factory=list)
    mounts: list[MountFact] = Field(default_factory=list)


class HostFacts(BaseModel):
    host: str
    criu: CriuFacts
    checkpoint: bool = Field(description="dockerd runs with experimental features "
                             "(docker checkpoint)")
    docker_version: str = ""
    storage_driver: str = Field(default="", description="overlay2: the root filesystem delta "
                                "travels as the container's upperdir, no commit needed")
    kernel: str = ""
    cpu_flags: list[str] = Field(default_factory=list)
    own_roots: list[str] = Field(default_factory=list, description="directories whose bind "
                                 "mounts are Dockyard's own (instance files, lxcfs)")
    instance: InstanceFacts | None = None
    error: str = Field(default="", description="the facts could not be read (agent "
                       "unreachable, ...)")


class Failure(BaseModel):
    code: str
    host: str
    message: str
    fix: str


class PreflightReport(BaseModel):
    instance: str
    source: str
    target: str
    ok: bool
    failures: list[Failure]
    facts: list[HostFacts] = Field(default_factory=list)


def _unreachable(source: HostFacts, target: HostFacts) -> list[Failure]:
    return [Failure(code="host_facts_unavailable", host=h.host,
                    message=f"cannot ask {h.host}: {h.error}",
                    fix="bring the host's agent and dockerd up (dockyard host list; "
                        "dockyard doctor)")
            for h in (source, target) if h.error]


def _criu(source: HostFacts, target: HostFacts) -> list[Failure]:
    out: list[Failure] = []
    for h in (source, target):
        if h.error:
            continue
        if not h.criu.found:
            out.append(Failure(code="criu_missing", host=h.host,
                               message=f"no criu at {h.criu.path!r}",
                               fix="install a CRIU that passes `criu check` on this kernel "
                                   "(here: Debian 13's criu 4.1 through scripts/criu-wrapper) "
                                   "and point DOCKYARD_CRIU and dockerd's PATH at it"))
        elif not h.criu.check_ok:
            out.append(Failure(code="criu_check_failed", host=h.host,
                               message=f"`{h.criu.path} check` fails"
                                       f"{' (' + h.criu.version + ')' if h.criu.version else ''}"
                                       f": {h.criu.check_output.strip()[-300:]}",
                               fix="use a CRIU built for this kernel (Debian 12's criu 3.17 "
                                   "fails on 6.x kernels; scripts/criu-wrapper runs criu 4.1)"))
    return out


def _checkpoint(source: HostFacts, target: HostFacts) -> list[Failure]:
    return [Failure(code="no_checkpoint_support", host=h.host,
                    message=f"dockerd {h.docker_version} of {h.host} runs without "
                            "experimental features: `docker checkpoint` is unavailable",
                    fix="start dockerd with --experimental (or \"experimental\": true in "
                        "daemon.json), with the working criu first on its PATH")
            for h in (source, target) if not h.error and not h.checkpoint]


def _kernel(source: HostFacts, target: HostFacts) -> list[Failure]:
    if source.error or target.error:
        return []
    out: list[Failure] = []
    if source.kernel != target.kernel:
        out.append(Failure(code="kernel_mismatch", host=target.host,
                           message=f"kernel {target.kernel} on {target.host}, "
                                   f"{source.kernel} on {source.host}",
                           fix="choose a target running the same kernel (--to), or move it "
                               "cold (--fallback)"))
    missing = sorted(set(source.cpu_flags) - set(target.cpu_flags))
    if missing:
        out.append(Failure(code="cpu_features_missing", host=target.host,
                           message=f"{target.host} lacks CPU features of {source.host}: "
                                   f"{' '.join(missing[:12])}",
                           fix="choose a target with the same CPU model (--to), or move it "
                               "cold (--fallback)"))
    return out


def _instance(source: HostFacts, target: HostFacts) -> list[Failure]:
    if source.error:
        return []
    inst = source.instance
    if inst is None or not inst.running:
        return [Failure(code="instance_not_running", host=source.host,
                        message="the instance's container is not running on its host",
                        fix="start it (dockyard start NAME) and check again")]
    return [*_tcp(source.host, inst), *_sockets(source.host, inst),
            *_mounts(source.host, source.own_roots, inst)]


def _tcp(host: str, inst: InstanceFacts) -> list[Failure]:
    live = [s for s in inst.sockets if s.kind in ("tcp", "tcp6")
            and s.state and s.state not in TCP_DUMPABLE]
    if not live:
        return []
    shown = ", ".join(f"{s.local}->{s.remote} {s.state} (pid {s.pid})" for s in live[:5])
    return [Failure(code="tcp_established", host=host,
                    message=f"{len(live)} connected TCP socket(s): {shown}",
                    fix="close the connections (stop the client or server holding them), or "
                        "move it cold with --fallback (CRIU is not asked to repair TCP)")]


def _sockets(host: str, inst: InstanceFacts) -> list[Failure]:
    odd = [s for s in inst.sockets if s.kind not in SUPPORTED_SOCKETS]
    if not odd:
        return []
    shown = ", ".join(f"{s.kind} inode {s.inode} (pid {s.pid})" for s in odd[:5])
    return [Failure(code="unsupported_sockets", host=host,
                    message=f"{len(odd)} socket(s) CRIU cannot checkpoint: {shown}",
                    fix="stop the processes holding them, or move it cold with --fallback")]


def own_mount(m: MountFact, own_roots: list[str]) -> bool:
    """Volumes and the bind mounts Dockyard makes itself (instance files, lxcfs)."""
    if m.kind != "bind":
        return True
    under = any(m.source == r or m.source.startswith(r.rstrip("/") + "/") for r in own_roots)
    return under and (m.destination in OWN_FILE_TARGETS or m.destination.startswith("/proc/")
                      or m.destination.startswith("/sys/") or m.destination.startswith(
                          "/run/lxcfs") or m.destination.startswith("/var/lib/lxcfs"))


def _mounts(host: str, own_roots: list[str], inst: InstanceFacts) -> list[Failure]:
    external = [m for m in inst.mounts if not own_mount(m, own_roots)]
    if not external:
        return []
    shown = ", ".join(f"{m.source}:{m.destination}" for m in external[:5])
    return [Failure(code="external_bind_mounts", host=host,
                    message=f"host paths bind-mounted into the instance: {shown}",
                    fix="the target has no copy of a host path: use named volumes instead, "
                        "or move it cold with --fallback")]


CHECKS: list[Callable[[HostFacts, HostFacts], list[Failure]]] = [
    _unreachable, _criu, _checkpoint, _kernel, _instance]


def evaluate(source: HostFacts, target: HostFacts, capacity: str | None) -> list[Failure]:
    """Every reason the live move cannot work; [] when it can. `capacity`: the scheduler's
    reason the target does not fit (None: it fits)."""
    failures = [f for check in CHECKS for f in check(source, target)]
    if capacity:
        failures.append(Failure(code="target_capacity", host=target.host, message=capacity,
                                fix="free room on the target, or choose another (--to)"))
    return failures


def summary(failures: list[Failure]) -> str:
    return "; ".join(f"{f.code} on {f.host}: {f.message} (fix: {f.fix})" for f in failures)
