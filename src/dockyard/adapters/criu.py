"""What a live migration needs to know about this machine and one container's processes.

    criu_facts(path)      is there a criu, which version, does `criu check` pass, does it
                          dump a process holding TCP and UDP sockets here (cached)
    cpu_flags()           the first CPU's flags (a restore needs every flag of the dump host)
    instance_pids(pid)    the processes in the pid namespace of `pid` (the container's)
    sockets(pids, netpid) each socket those processes hold: kind, TCP state, addresses, read
                          from /proc/NETPID/net/* (that process's netns; no setns needed)
    mountinfo(pid)        the mounts of that process's mount namespace (/proc/PID/mountinfo)
    open_devices(pids)    the device files those processes hold open, as named inside
    links(pid)            the network links of that process's netns (/proc/PID/net/dev)
    log_errors(message)   the error lines of the CRIU log a failed docker checkpoint names

The criu is the one runc runs: DOCKYARD_CRIU, else `criu` on PATH (dockerd's PATH must find
the same one; see scripts/criu-wrapper).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dockyard.adapters.lxcfs import unescape
from dockyard.model.live import TCP_STATES, CriuFacts, MountPoint, SocketFact

CHECK_TTL = 60.0
_cache: dict[str, tuple[float, CriuFacts]] = {}
_lock = threading.Lock()


def criu_path() -> str:
    return os.environ.get("DOCKYARD_CRIU") or shutil.which("criu") or "criu"


def criu_facts(path: str | None = None) -> CriuFacts:
    path = path or criu_path()
    with _lock:
        hit = _cache.get(path)
        if hit and time.monotonic() - hit[0] < CHECK_TTL:
            return hit[1]
    facts = _probe(path)
    with _lock:
        _cache[path] = (time.monotonic(), facts)
    return facts


def _probe(path: str) -> CriuFacts:
    exe = shutil.which(path)
    if exe is None:
        return CriuFacts(path=path, found=False)
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=20)
        check = subprocess.run([exe, "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuFacts(path=path, found=True, check_output=str(exc))
    first = (version.stdout.strip().splitlines() or [""])[0]
    output = (check.stdout + check.stderr).strip()
    facts = CriuFacts(path=path, found=True, version=first.removeprefix("Version: "),
                      check_ok=check.returncode == 0, check_output="" if check.returncode == 0
                      else "\n".join(output.splitlines()[-4:]))
    if facts.check_ok:
        facts.inet_sockets_error = inet_dump_error(exe)
        facts.inet_sockets = not facts.inet_sockets_error
    return facts


# the probe's process: a listening TCP socket, a TCP socket and a bound UDP socket (what sshd
# and a DNS client hold), "ready" on stdout, then stdio on /dev/null and asleep
_PROBE = """
import os, signal, socket, sys
tcp = socket.socket(); tcp.bind(("127.0.0.1", 0)); tcp.listen(1)
idle = socket.socket()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
sys.stdout.write("ready\\n"); sys.stdout.flush()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
signal.pause()
"""


def inet_dump_error(exe: str) -> str:
    """"" when this criu dumps a process holding TCP and UDP sockets on this kernel, else the
    error lines of its log: criu 4.1 reads SO_PASSCRED and SO_PASSSEC of every socket, which
    kernels >= 6.16 refuse (EOPNOTSUPP) on all but unix and netlink sockets (criu 4.2 reads
    them of those only). A real `criu dump --leave-running` of a probe process, not a version
    string: a patched or a newer criu answers for itself."""
    with tempfile.TemporaryDirectory(prefix="dockyard-criu-probe-") as tmp:
        proc = subprocess.Popen([sys.executable, "-c", _PROBE], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its own session: criu dumps it whole
        try:
            if proc.stdout is None or proc.stdout.readline().strip() != b"ready":
                return "the probe process did not start"
            proc.stdout.close()
            try:
                done = subprocess.run([exe, "dump", "-t", str(proc.pid), "-D", tmp,
                                       "--leave-running", "-o", "probe.log", "-v2"],
                                      capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"criu dump of the probe: {exc}"
        finally:
            proc.kill()
            proc.wait()
        if done.returncode == 0:
            return ""
        log_file = Path(tmp) / "probe.log"
        log = log_file.read_text(errors="replace") if log_file.exists() else done.stderr
        errors = [line.strip() for line in log.splitlines()
                  if "Error" in line and "RLIMIT_NOFILE" not in line]
        return "; ".join(errors[:3]) or f"criu dump exit {done.returncode}"


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(set(value.split()))
    return []


def _ns(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def instance_pids(init_pid: int) -> list[int]:
    """Every process sharing the pid namespace of `init_pid` (the container's processes)."""
    want = _ns(init_pid, "pid")
    if not want:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns(int(entry), "pid") == want:
            pids.append(int(entry))
    return sorted(pids)


def _socket_inodes(pid: int) -> list[int]:
    out: list[int] = []
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.append(int(target[8:-1]))
    return out


def _addr(hexaddr: str) -> str:
    ip_hex, _, port_hex = hexaddr.partition(":")
    port = int(port_hex, 16)
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{port}"
    words = struct.unpack("<4I", raw)
    return f"[{socket.inet_ntop(socket.AF_INET6, struct.pack('>4I', *words))}]:{port}"


def parse_inet_table(text: str, kind: str) -> dict[int, SocketFact]:
    """/proc/net/{tcp,tcp6,udp,udp6,raw,raw6}: inode -> socket."""
    out: dict[int, SocketFact] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        state = int(cols[3], 16)
        name = TCP_STATES.get(state, str(state)) if kind.startswith("tcp") else ""
        out[int(cols[9])] = SocketFact(kind=kind, state=name, local=_addr(cols[1]),
                                       remote=_addr(cols[2]), inode=int(cols[9]))
    return out


def parse_inode_table(text: str, kind: str, column: int) -> dict[int, SocketFact]:
    """/proc/net/{unix,packet,netlink}: inode in `column`."""
    out: dict[int, SocketFact] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) > column and cols[column].isdigit():
            out[int(cols[column])] = SocketFact(kind=kind, inode=int(cols[column]),
                                                local=cols[column + 1] if kind == "unix"
                                                and len(cols) > column + 1 else "")
    return out


def _tables(netpid: int) -> dict[int, SocketFact]:
    base = f"/proc/{netpid}/net"
    known: dict[int, SocketFact] = {}
    for kind in ("tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6"):
        try:
            known.update(parse_inet_table(Path(f"{base}/{kind}").read_text(), kind))
        except OSError:
            continue
    for kind, column in (("unix", 6), ("packet", 8), ("netlink", 9)):
        try:
            known.update(parse_inode_table(Path(f"{base}/{kind}").read_text(), kind, column))
        except OSError:
            continue
    return known


def sockets(pids: list[int], netpid: int) -> list[SocketFact]:
    """Each socket held by `pids`, as the netns of `netpid` lists it ("unknown" if no
    table does)."""
    known = _tables(netpid)
    out: list[SocketFact] = []
    seen: set[int] = set()
    for pid in pids:
        for inode in _socket_inodes(pid):
            if inode in seen:
                continue
            seen.add(inode)
            fact = known.get(inode) or SocketFact(kind="unknown", inode=inode)
            out.append(fact.model_copy(update={"pid": pid}))
    return out


def parse_mountinfo(text: str) -> list[MountPoint]:
    """/proc/PID/mountinfo: mount point, fstype, root and propagation tags of each line."""
    out: list[MountPoint] = []
    for line in text.splitlines():
        cols = line.split()
        if "-" not in cols[6:] or len(cols) < 10:
            continue
        sep = cols.index("-", 6)
        if sep + 1 >= len(cols):
            continue
        out.append(MountPoint(mount_point=unescape(cols[4]), fstype=cols[sep + 1],
                              root=unescape(cols[3]), propagation=cols[6:sep]))
    return out


def mountinfo(pid: int) -> list[MountPoint]:
    try:
        return parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())
    except OSError:
        return []


def open_devices(pids: list[int]) -> list[str]:
    """Character and block devices held open by `pids` (paths as the processes see them)."""
    found: set[str] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
                mode = os.stat(f"{fd_dir}/{name}").st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                found.add(target)
    return sorted(found)


def parse_net_dev(text: str) -> list[str]:
    """/proc/net/dev: the link names (two header lines, then "NAME: counters")."""
    return [line.split(":", 1)[0].strip() for line in text.splitlines()[2:] if ":" in line]


def links(pid: int) -> list[str]:
    try:
        return parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text())
    except OSError:
        return []


def log_errors(message: str, limit: int = 8) -> str:
    """The error lines of the CRIU log a failed runc checkpoint/restore names ("… path=
    /…/criu-dump.log" or "log file: …"): runc's own message says only "criu failed: type
    NOTIFY errno 0", whatever failed. "" when the message names no readable log."""
    for word in message.replace("\n", " ").split():
        word = word.rstrip(":,;")
        if word.endswith(".log") and word.startswith("/") and "criu" in word:
            try:
                text = Path(word).read_text(errors="replace")
            except OSError:
                return ""
            lines = [line.strip() for line in text.splitlines() if "Error (" in line]
            return "; ".join(lines[:limit])
    return ""
