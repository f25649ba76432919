"""Netlink sockets in the agent's netns or in an instance's, and netlink error translation.

Shared by `netlink` (veth plumbing, bridges) and `tc` (rate limits): both open a fresh
`IPRoute` per call (no sharing across agent threads) and translate `NetlinkError`/`OSError`
into `BackendError` naming the step that failed.

Reaching an instance's netns: pyroute2 0.9.7's ``IPRoute(netns=...)`` forks a
``multiprocessing`` child per socket (~6 ms, and an unknown path is *created* as a new netns).
Here ``/proc/PID/ns/net`` is opened once (the fd pins the netns even if the pid exits), a
short-lived thread joins it with setns(2) (which moves only the calling thread) and creates
the socket there, and the socket is handed to ``IPRoute(fileno=...)``: ~1 ms. The agent's own
netns is never treated as an instance's (`refuse_own_netns`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import BackendError

__all__ = ["failure_reason", "get_link", "host_iproute", "netlink_errors", "netns_iproute",
           "open_netns", "refuse_own_netns", "run_in_netns"]

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_libc: ctypes.CDLL | None = None


def failure_reason(exc: BaseException) -> str:
    """"No such device (errno 19)" for a netlink or OS error, else the exception's text."""
    code = getattr(exc, "code", None) if isinstance(exc, NetlinkError) else None
    if code is None and isinstance(exc, OSError):
        code = exc.errno
    if isinstance(code, int) and code > 0:
        return f"{os.strerror(code)} (errno {code})"
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def netlink_errors(what: str) -> Iterator[None]:
    """Translate netlink/OS failures of one step into BackendError naming the step."""
    try:
        yield
    except (NetlinkError, OSError) as exc:
        raise BackendError(f"{what}: {failure_reason(exc)}") from exc


@contextlib.contextmanager
def host_iproute(echo: bool = False) -> Iterator[Any]:
    """A fresh IPRoute in the agent's own netns (~0.5 ms; not shared across threads).

    `echo` sets NLM_F_ECHO on requests (tc needs it to read one root qdisc; see `tc`)."""
    with netlink_errors("opening a netlink socket"):
        ipr = IPRoute(nlm_echo=True) if echo else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _setns_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def run_in_netns(nsfd: int, fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread that first joins the netns `nsfd`; the caller never moves.

    Sockets created by `fn` stay bound to that netns after the thread has exited.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            if _setns_libc().setns(nsfd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=body, name="dockyard-netns", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def open_netns(pid: int) -> int | None:
    """An O_RDONLY fd on the netns of `pid`, or None when the process is gone."""
    try:
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        raise BackendError(f"opening the netns of pid {pid}: {failure_reason(exc)}") from exc


def refuse_own_netns(nsfd: int, pid: int) -> None:
    """Invariant guard: never treat the agent's own netns as an instance's."""
    theirs = os.fstat(nsfd)
    ours = os.stat("/proc/self/ns/net")
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        raise BackendError(f"pid {pid} shares the host network namespace; refusing to plumb it")


@contextlib.contextmanager
def netns_iproute(pid: int, echo: bool = False) -> Iterator[tuple[int, Any] | None]:
    """(netns fd, a fresh IPRoute inside it) for `pid`, or None when the process is gone.

    BackendError when `pid` lives in the agent's own netns. `echo` as in `host_iproute`."""
    nsfd = open_netns(pid)
    if nsfd is None:
        yield None
        return
    try:
        refuse_own_netns(nsfd, pid)
        with netlink_errors(f"opening a netlink socket in the netns of pid {pid}"):
            sock = run_in_netns(
                nsfd, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))
            fileno = sock.detach()
            try:
                ipr = IPRoute(fileno=fileno, nlm_echo=True) if echo else IPRoute(fileno=fileno)
            except BaseException:
                os.close(fileno)
                raise
        try:
            yield nsfd, ipr
        finally:
            ipr.close()
    finally:
        os.close(nsfd)


def get_link(ipr: Any, name: str) -> Any | None:
    """The RTM_NEWLINK message of `name`, or None (the kernel looks the name up: no dump)."""
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise BackendError(f"looking up link {name}: {failure_reason(exc)}") from exc
