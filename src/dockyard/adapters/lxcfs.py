"""lxcfs: the instance's own view of /proc (meminfo, cpuinfo, uptime, ...), surviving restarts.

Layout on the host (made by ``scripts/lxcfs.sh start``)
-------------------------------------------------------
lxcfs is mounted at ``ROOT/fs`` (ROOT default /var/lib/dockyard/lxcfs) with its pid file at
``ROOT/lxcfs.pid``. Each instance gets (`mounts`) eight read-only *file* binds
``ROOT/fs/proc/{meminfo,...}`` and ``ROOT/fs/sys/devices/system/cpu/online`` over the same
paths in the instance, and nothing else: no directory of ROOT is shared into the instance.

Why no shared directory (live migration)
----------------------------------------
An earlier layout also bound ROOT itself (a *shared* mount) at /run/lxcfs with rslave
propagation, so a restarted lxcfs appeared inside by propagation. CRIU cannot dump that
propagated FUSE submount ("Mount ./run/lxcfs/fs (master_id: 3) has unreachable sharing"),
and runc's restore binds every bind-mount source recursively onto the rootfs in the host
namespace and detaches it afterwards: the copy of ROOT is a peer of the host's ROOT, so the
detach propagates and unmounts the host's lxcfs at ROOT/fs for every instance (seen on
runc 1.1.5). File binds are external mounts to runc/CRIU: the dump records them, the restore
binds the *target's* own ``ROOT/fs/...`` files (the same paths on every host).

Why `rebind` exists
-------------------
A file bind pins the FUSE superblock it was made from. When lxcfs restarts, the old binds
answer "Transport endpoint is not connected" forever (upstream never solved this for Docker:
lxc/lxcfs#193, moby/moby#33729). `rebind(pid)` repairs a running instance with the same PID:
the agent clones each new source file as a detached mount in its own namespace
(open_tree(OPEN_TREE_CLONE)), then a forked child (setns(CLONE_NEWNS) needs a single-threaded
caller) enters the instance's mount namespace and attaches the clone over each target
(move_mount), private and read-only. The instance itself cannot do this (no CAP_SYS_ADMIN).

Invariants
----------
* `rebind` never touches the agent's own mount namespace: a pid sharing it is refused.
* `rebind` first checks that every new source opens (and clones it); only then does it detach
  dead binds (those answering ENOTCONN) and attach the new file. A healthy target already
  showing the current source is left alone, so `rebind` is idempotent and never stacks mounts.
* Between detaching a dead bind and attaching the new file (two syscalls) the instance sees
  the kernel's own file; it never sees a dead one afterwards.
* An attached bind is private (no peer group reaching outside the instance: CRIU could not
  dump it) and read-only, like Docker's own binds.
* Every failure is `BackendError` (`NotFound` for a pid that is gone) naming the path and errno.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
from dataclasses import dataclass
from pathlib import Path

from dockyard.adapters.docker_engine import MountSpec
from dockyard.errors import BackendError, NotFound

__all__ = ["FILES", "Lxcfs", "MountEntry", "MountTable", "lxcfs_generation",
           "parse_mountinfo", "unescape"]

DEFAULT_ROOT = "/var/lib/dockyard/lxcfs"
FSTYPE = "fuse.lxcfs"
FILES = (
    "proc/meminfo", "proc/cpuinfo", "proc/stat", "proc/uptime", "proc/loadavg",
    "proc/diskstats", "proc/swaps", "sys/devices/system/cpu/online",
)

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_PRIVATE = 0x40000
_MNT_DETACH = 0x2
_SYS_OPEN_TREE = 428  # the same number on every architecture (5.2+)
_SYS_MOVE_MOUNT = 429
_OPEN_TREE_CLONE = 0x1
_AT_FDCWD = -100
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MAX_DEAD_LAYERS = 64  # dead binds peeled per target before giving up
_REBIND_TIMEOUT = 10.0  # a hung FUSE open must not hang the agent
_libc: ctypes.CDLL | None = None


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/PID/mountinfo (the fields we use)."""

    mount_id: int
    device: str  # "major:minor"
    mount_point: str
    fstype: str


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse mountinfo text; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < 10 or sep + 1 >= len(fields):
            continue
        try:
            mount_id = int(fields[0])
        except ValueError:
            continue
        entries.append(MountEntry(mount_id=mount_id, device=fields[2],
                                  mount_point=unescape(fields[4]), fstype=fields[sep + 1]))
    return entries


def lxcfs_generation(text: str, fs_path: str) -> str | None:
    """"<mount id>:<device>" of the topmost lxcfs mount at `fs_path`, or None.

    Each lxcfs start makes a new FUSE mount, so a new mount id and device."""
    found = [e for e in parse_mountinfo(text) if e.mount_point == fs_path and e.fstype == FSTYPE]
    if not found:
        return None
    top = found[-1]  # later lines are mounted on top of earlier ones
    return f"{top.mount_id}:{top.device}"


def _libc_handle() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_ulong, ctypes.c_void_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.syscall.restype = ctypes.c_long
        _libc = libc
    return _libc


def _check(result: int, what: str, path: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


class MountTable:
    """Tells when the agent's mount table changed, without reading it: poll(2) on
    /proc/self/mountinfo reports POLLPRI once after each mount or unmount since the last
    report (proc(5)); nothing else wakes it."""

    def __init__(self) -> None:
        try:
            self._fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise BackendError(f"opening /proc/self/mountinfo: {exc}") from exc
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI)

    def changed(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when something was mounted or unmounted."""
        return bool(self._poll.poll(int(timeout * 1000)))

    def close(self) -> None:
        os.close(self._fd)


class Lxcfs:
    """The lxcfs layout under `root` (see the module docstring); cheap to construct."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.fs = self.root / "fs"
        self.pidfile = self.root / "lxcfs.pid"

    def generation(self) -> str | None:
        """Changes whenever lxcfs is (re)mounted at ROOT/fs; None when nothing is mounted."""
        try:
            text = Path("/proc/self/mountinfo").read_text()
        except OSError as exc:
            raise BackendError(f"reading /proc/self/mountinfo: {exc}") from exc
        return lxcfs_generation(text, str(self.fs))

    def available(self) -> bool:
        """ROOT/fs is a live lxcfs mount: listed as fuse.lxcfs and its meminfo is readable."""
        if self.generation() is None:
            return False
        try:
            with open(self.fs / "proc" / "meminfo", "rb") as f:
                return bool(f.read(1))
        except OSError:
            return False

    def mounts(self) -> list[MountSpec]:
        """The Docker mounts an instance with lxcfs needs: the eight read-only file binds."""
        return [MountSpec(str(self.fs / rel), f"/{rel}", True, "bind") for rel in FILES]

    def rebind(self, pid: int) -> None:
        """Re-bind the lxcfs files inside the mount namespace of `pid` (see the invariants)."""
        nsfd = _open_mnt_ns(pid)
        clones: list[int] = []
        try:
            binds = []
            for rel in FILES:
                src = str(self.fs / rel)
                clone, st = _clone(src)
                clones.append(clone)
                binds.append((clone, st, f"/{rel}"))
            message, code = _run_forked(nsfd, binds)
        except OSError as exc:
            raise BackendError(f"rebinding lxcfs in pid {pid}: {exc.strerror or exc} "
                               f"({exc.filename})") from exc
        finally:
            for fd in [nsfd, *clones]:
                os.close(fd)
        if code != 0:
            raise BackendError(f"rebinding lxcfs in pid {pid}: {message or f'exit status {code}'}")


def _clone(src: str) -> tuple[int, os.stat_result]:
    """A detached mount of the file `src` (open_tree(OPEN_TREE_CLONE)) and its stat."""
    st = os.stat(src)  # a dead or missing lxcfs fails here, before anything is touched
    libc = _libc_handle()
    fd = libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, src.encode(),
                      _OPEN_TREE_CLONE | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree: {os.strerror(err)}", src)
    return int(fd), st


def _open_mnt_ns(pid: int) -> int:
    """An fd of the pid's mount namespace (pins it); refuses the agent's own namespace."""
    try:
        nsfd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise NotFound(f"rebinding lxcfs: process {pid} is gone") from exc
    except OSError as exc:
        raise BackendError(f"opening the mount namespace of pid {pid}: "
                           f"{os.strerror(exc.errno or 0)}") from exc
    try:
        same = os.fstat(nsfd).st_ino == os.stat("/proc/self/ns/mnt").st_ino
    except OSError as exc:
        os.close(nsfd)
        raise BackendError(f"comparing mount namespaces of pid {pid}: {exc}") from exc
    if same:
        os.close(nsfd)
        raise BackendError(f"pid {pid} shares the host mount namespace; refusing to rebind")
    return nsfd


Bind = tuple[int, os.stat_result, str]  # (detached clone, its source's stat, target)


def _run_forked(nsfd: int, binds: list[Bind]) -> tuple[str, int]:
    """Fork a child that rebinds inside `nsfd`; return (its error text, its exit code)."""
    libc = _libc_handle()  # resolved before fork: the child only calls into it
    rfd, wfd = os.pipe()
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child, which never returns
            os.close(rfd)
            _child_main(libc, nsfd, wfd, binds)
        os.close(wfd)
        wfd = -1
        message = _read_until_eof(rfd, child)
        _, status = os.waitpid(child, 0)
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    return message, os.waitstatus_to_exitcode(status)


def _read_until_eof(rfd: int, child: int) -> str:
    """The child's error text; kills the child if it hangs (a stuck FUSE mount)."""
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([rfd], [], [], _REBIND_TIMEOUT)
        if not ready:
            os.kill(child, signal.SIGKILL)
            return f"timed out after {_REBIND_TIMEOUT:.0f} s (lxcfs not answering?)"
        chunk = os.read(rfd, 4096)
        if not chunk:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(chunk)


def _child_main(libc: ctypes.CDLL, nsfd: int, wfd: int,
                binds: list[Bind]) -> None:  # pragma: no cover - forked child
    """In the forked child: enter the namespace, rebind, report through `wfd`, _exit."""
    code = 0
    try:
        _check(libc.setns(nsfd, _CLONE_NEWNS), "setns", "/proc/PID/ns/mnt")
        for clone, st, dst in binds:
            _rebind_file(libc, clone, dst, st)
    except OSError as exc:
        code = 1
        with contextlib.suppress(OSError):
            os.write(wfd, f"{exc.strerror or exc} ({exc.filename})".encode())
    except BaseException:  # noqa: B036 - nothing may escape a forked child
        code = 2
    finally:
        os._exit(code)


def _rebind_file(libc: ctypes.CDLL, clone: int, dst: str, src_st: os.stat_result) -> None:
    """Peel dead binds off `dst`, then attach `clone` private and read-only over it unless
    `dst` already shows the current source."""
    for _ in range(_MAX_DEAD_LAYERS):
        try:
            fd = os.open(dst, os.O_RDONLY)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            _check(libc.umount2(dst.encode(), _MNT_DETACH), "detach dead bind", dst)
            continue
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        break
    else:
        raise OSError(errno.ENOTCONN, "too many dead lxcfs binds", dst)
    if (st.st_dev, st.st_ino) == (src_st.st_dev, src_st.st_ino):
        return
    _check(libc.syscall(_SYS_MOVE_MOUNT, clone, b"", _AT_FDCWD, dst.encode(),
                        _MOVE_MOUNT_F_EMPTY_PATH), "move_mount", dst)
    _check(libc.mount(None, dst.encode(), None, _MS_PRIVATE, None), "make private", dst)
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(libc.mount(None, dst.encode(), None, flags, None), "remount read-only", dst)
