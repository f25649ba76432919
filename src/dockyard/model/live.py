"""Live migration (CRIU): the facts each host reports, and the pure preflight over them.

    agent (source)  HostFacts + InstanceFacts: what runc/CRIU will be asked to dump, read
                    from the running instance (its processes' sockets and open devices, the
                    mounts of its mount namespace, the links of its netns) and dockerd's
                    config (the mounts runc hands CRIU as external)
    agent (target)  HostFacts (lxcfs there?)                   ─▶ evaluate(...) ─▶ [Failure]
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
# mounts runc always hands CRIU as external besides the config's binds: dockerd's own files
RUNC_EXTERNAL = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"}
# file systems CRIU dumps and restores by itself (criu/filesystems.c); any other mount inside
# the instance must be external (a bind runc names), else the dump fails
CRIU_FSTYPES = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay",
                "devtmpfs", "binfmt_misc", "securityfs", "debugfs", "tracefs", "pstore",
                "fusectl", "bpf", "autofs", "nsfs"}
# propagation of a config mount that runc's restore can re-bind without harm
PRIVATE_PROPAGATION = {"", "private", "rprivate"}
# device files CRIU restores by path (terminals included); another open device is refused
SAFE_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                "/dev/tty", "/dev/console", "/dev/ptmx"}
# network links the move handles: lo is dumped, eth0 is unplumbed before and plumbed after
MOVED_LINKS = {"lo", "eth0"}
# the socket kinds whose SO_PASSCRED/SO_PASSSEC a kernel >= 6.16 refuses, which criu 4.1 reads
# (CriuFacts.inet_sockets)
NO_PASSCRED_KINDS = {"tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6",
                     "packet"}


class CriuFacts(BaseModel):
    path: str = Field(description="the criu the host's runc runs (DOCKYARD_CRIU or PATH)")
    found: bool = False
    version: str = ""
    check_ok: bool = False
    check_output: str = Field(default="", description="the tail of `criu check` when it failed")
    inet_sockets: bool = Field(default=True, description="this criu dumped a probe process "
                               "holding TCP and UDP sockets here (criu 4.1 reads SO_PASSCRED "
                               "and SO_PASSSEC of every socket, which kernels >= 6.16 refuse "
                               "on all but unix and netlink sockets; criu 4.2 does not)")
    inet_sockets_error: str = Field(default="", description="the probe dump's errors")


class SocketFact(BaseModel):
    kind: str  # tcp, tcp6, udp, unix, netlink, packet, raw, ..., unknown
    state: str = ""  # TCP state name; "" for the others
    local: str = ""
    remote: str = ""
    pid: int = 0
    inode: int = 0


class MountFact(BaseModel):
    """A mount of the container's config (docker inspect): runc names each bind to CRIU as
    external, and re-binds its source at the restore."""

    kind: str  # bind | volume | tmpfs | ...
    source: str
    destination: str
    propagation: str = ""  # rprivate (Docker's default), rslave, ...


class MountPoint(BaseModel):
    """A line of the instance's /proc/PID/mountinfo: what CRIU will really find."""

    mount_point: str
    fstype: str
    root: str = "/"  # the path inside its file system that is mounted here
    propagation: list[str] = Field(default_factory=list)  # shared:N, master:N, ...


class InstanceFacts(BaseModel):
    running: bool
    pid: int = 0
    processes: int = 0
    sockets: list[SocketFact] = Field(default_factory=list)
    mounts: list[MountFact] = Field(default_factory=list)
    mountinfo: list[MountPoint] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list, description="device files the "
                               "instance's processes hold open (as named inside it)")
    links: list[str] = Field(default_factory=list, description="network links of its netns")
    sandbox: bool = Field(default=False, description="its netns is a Docker (libnetwork) "
                          "sandbox: a container made before Dockyard created them with "
                          "networking disabled")


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
    lxcfs: bool = Field(default=False, description="lxcfs answers on this host (a restored "
                        "instance's /proc binds come from it)")
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
                                   "(here: Debian forky's criu 4.2 through scripts/criu-wrapper) "
                                   "and point DOCKYARD_CRIU and dockerd's PATH at it"))
        elif not h.criu.check_ok:
            out.append(Failure(code="criu_check_failed", host=h.host,
                               message=f"`{h.criu.path} check` fails"
                                       f"{' (' + h.criu.version + ')' if h.criu.version else ''}"
                                       f": {h.criu.check_output.strip()[-300:]}",
                               fix="use a CRIU built for this kernel (Debian 12's criu 3.17 "
                                   "fails on 6.x kernels; scripts/criu-wrapper runs criu 4.2)"))
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
    return [*_tcp(source.host, inst), *_sockets(source.host, inst), *_sockopts(source, inst),
            *_mounts(source.host, source.own_roots, inst), *_propagation(source.host, inst),
            *_mountinfo(source.host, inst), *_devices(source.host, inst),
            *_links(source.host, inst), *_sandbox(source.host, inst), *_lxcfs(inst, target)]


def _tcp(host: str, inst: InstanceFacts) -> list[Failure]:
    live = [s for s in inst.sockets if s.kind in ("tcp", "tcp6")
            and s.state and s.state not in TCP_DUMPABLE]
    if not live:
        return []
    shown = ", ".join(f"{s.local}->{s.remote} {s.state} (pid {s.pid})" for s in live[:5])
    return [Failure(code="tcp_established", host=host,
                    message=f"{len(live)} connected TCP socket(s): {shown}",
                    fix="close the connections (stop the client or server holding them), or "
                        "move it cold with --fallback (docker checkpoint gives CRIU no "
                        "--tcp-established: a connected socket fails the dump)")]


def _sockets(host: str, inst: InstanceFacts) -> list[Failure]:
    odd = [s for s in inst.sockets if s.kind not in SUPPORTED_SOCKETS]
    if not odd:
        return []
    shown = ", ".join(f"{s.kind} inode {s.inode} (pid {s.pid})" for s in odd[:5])
    return [Failure(code="unsupported_sockets", host=host,
                    message=f"{len(odd)} socket(s) CRIU cannot checkpoint: {shown}",
                    fix="stop the processes holding them, or move it cold with --fallback")]


def _sockopts(source: HostFacts, inst: InstanceFacts) -> list[Failure]:
    held = [s for s in inst.sockets if s.kind in NO_PASSCRED_KINDS]
    if source.criu.inet_sockets or not held:
        return []
    shown = ", ".join(f"{s.kind} {s.local} {s.state} (pid {s.pid})".replace("  ", " ")
                      for s in held[:5])
    return [Failure(code="criu_socket_options", host=source.host,
                    message=f"{len(held)} inet/packet socket(s): {shown}; criu "
                            f"{source.criu.version or '?'} failed to dump a probe process "
                            f"holding TCP and UDP sockets on kernel {source.kernel}"
                            f" ({source.criu.inet_sockets_error.strip()[:300] or '?'}): "
                            "the dump would fail",
                    fix="close the sockets (stop the server holding them, e.g. sshd), use a "
                        "CRIU that dumps them on this kernel (criu >= 4.2: scripts/criu-wrapper), "
                        "or move it cold with --fallback")]


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


def _propagation(host: str, inst: InstanceFacts) -> list[Failure]:
    odd = [m for m in inst.mounts if m.propagation not in PRIVATE_PROPAGATION]
    if not odd:
        return []
    shown = ", ".join(f"{m.source}:{m.destination} ({m.propagation})" for m in odd[:5])
    return [Failure(code="propagated_mounts", host=host,
                    message=f"mounts with propagation: {shown}; runc's restore binds each "
                            "source in the host namespace and detaches it again, which "
                            "propagates (an earlier lxcfs layout unmounted the host's lxcfs "
                            "that way)",
                    fix="move it cold once (--fallback): the new container gets private "
                        "mounts (the current layout)")]


def _external(point: str, inst: InstanceFacts) -> bool:
    """runc names this mount point to CRIU as external (it is re-bound at the restore)."""
    return point in RUNC_EXTERNAL or any(m.destination == point for m in inst.mounts)


def _mountinfo(host: str, inst: InstanceFacts) -> list[Failure]:
    shared = {tag for m in inst.mountinfo for tag in m.propagation if tag.startswith("shared:")}
    unsupported = [m for m in inst.mountinfo if m.fstype not in CRIU_FSTYPES
                   and not _external(m.mount_point, inst)]
    # a slave of a peer group outside the instance: "has unreachable sharing"; the root and
    # the external mounts (a named volume's bind is a slave on a dockerd whose data root is
    # shared) are runc's: CRIU restores them as external slaves
    slaves = [m for m in inst.mountinfo if m.mount_point != "/"
              and not _external(m.mount_point, inst) and any(
        tag.startswith("master:") and f"shared:{tag[7:]}" not in shared
        for tag in m.propagation)]
    out: list[Failure] = []
    if unsupported:
        shown = ", ".join(f"{m.mount_point} ({m.fstype})" for m in unsupported[:5])
        out.append(Failure(code="unsupported_mounts", host=host,
                           message=f"mounts inside the instance that CRIU cannot dump and "
                                   f"runc does not name as external: {shown}",
                           fix="unmount them inside the instance, or move it cold with "
                               "--fallback"))
    if slaves:
        shown = ", ".join(f"{m.mount_point} ({' '.join(m.propagation)})" for m in slaves[:5])
        out.append(Failure(code="shared_mounts", host=host,
                           message=f"mounts receiving propagation from outside the instance "
                                   f"(CRIU: unreachable sharing): {shown}",
                           fix="move it cold with --fallback (the new container's mounts "
                               "are private)"))
    return out


def _devices(host: str, inst: InstanceFacts) -> list[Failure]:
    odd = sorted({d for d in inst.devices
                  if d not in SAFE_DEVICES and not d.startswith("/dev/pts/")})
    if not odd:
        return []
    return [Failure(code="open_devices", host=host,
                    message=f"device files held open: {', '.join(odd[:8])}; the target has "
                            "no such device state to restore",
                    fix="stop the processes holding them, or move it cold with --fallback")]


def _links(host: str, inst: InstanceFacts) -> list[Failure]:
    odd = [link for link in inst.links if link not in MOVED_LINKS]
    if not odd:
        return []
    return [Failure(code="network_links", host=host,
                    message=f"network links in the instance's netns besides lo and eth0: "
                            f"{', '.join(odd[:8])}; only eth0 is unplumbed and plumbed "
                            "again on the target",
                    fix="delete them inside the instance, or move it cold with --fallback")]


def _sandbox(host: str, inst: InstanceFacts) -> list[Failure]:
    if not inst.sandbox:
        return []
    return [Failure(code="docker_sandbox", host=host,
                    message="the instance's container was made with a Docker network "
                            "sandbox (an external netns to CRIU), and its copy on the target "
                            "would be made without one",
                    fix="move it cold once (dockyard migrate NAME, or --fallback): the "
                        "copy made there has none, and later moves can be live")]


def _lxcfs(inst: InstanceFacts, target: HostFacts) -> list[Failure]:
    uses = any(m.fstype == "fuse.lxcfs" for m in inst.mountinfo)
    if not uses or target.error or target.lxcfs:
        return []
    return [Failure(code="lxcfs_missing", host=target.host,
                    message=f"the instance's /proc views come from lxcfs, which does not "
                            f"answer on {target.host}: the restore binds the target's own "
                            "lxcfs files",
                    fix="start lxcfs there (scripts/lxcfs.sh start), or choose another "
                        "target (--to)")]


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
