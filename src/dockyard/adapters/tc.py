"""Network rate limits for instances: one tbf root qdisc per direction (pyroute2 netlink).

Where the limits live
---------------------
* **ingress** (traffic *to* the instance) is shaped on the *egress* of the host-side veth:
  every frame the switch forwards to the instance is transmitted there (a Linux bridge: tested;
  OVS netdev sends through a packet socket without PACKET_QDISC_BYPASS, so the qdisc applies
  too: expected, not measured by this module's tests).
* **egress** (traffic *from* the instance) is shaped on the egress of the instance's own
  ``eth0``, inside its netns. Instances have no CAP_NET_ADMIN, so they cannot remove it. It is
  not done with an ``ingress`` qdisc + ifb on the host veth, because an OVS netdev switch reads
  the host veth through a packet socket *before* tc ingress runs and would bypass it.
* Both qdiscs sit on the two ends of the instance's veth, so they vanish with it when the
  instance is unplumbed: there is nothing else to clean up.

The qdisc
---------
A classless ``tbf`` root qdisc with handle ``d7a:`` (the handle marks it as Dockyard's: only a
tbf with this handle is read back or deleted; whatever else sits at the root is replaced by
`set_*` and left alone by ``rate_bps=None``). tbf rather than htb: one object, one netlink
request to set, one to read; both held 50 mbit within 3 % here (shared/ENVIRONMENT.md).

* rate: ``rate_bps // 8`` bytes/s. Rates are decimal bits/s like tc's ``mbit`` (50 mbit =
  50_000_000); the kernel keeps bytes/s, so a rate reads back rounded down to a multiple of 8.
  Allowed: `MIN_RATE_BPS` (64 kbit/s) .. `MAX_RATE_BPS` (~34.4 Gbit/s, the 32-bit bytes/s
  field that pyroute2 0.9.7 encodes; tbf's RATE64 attribute is not supported by it).
* burst: ``max(10 ms of rate, 4 full frames (4 * (mtu + 14)))`` bytes. At least 10 ms so a TCP
  sender is not starved between token refills; at least a few frames so a frame never exceeds
  the bucket at low rates (tbf drops non-GSO packets larger than the bucket; GSO packets are
  segmented). 50 mbit -> 62_500 bytes.
* limit (queue): ``50 ms of rate + burst`` bytes (tc's ``latency 50ms``): deep enough for full
  TCP throughput, shallow enough to keep added latency bounded. 50 mbit -> 375_000 bytes.

Cost (the agent calls these on every sync)
------------------------------------------
Each call opens a fresh netlink socket (no sharing across agent threads), looks the link up by
name (RTM_GETLINK, no dump) and reads only the root qdisc of that one link: a non-dump
RTM_GETQDISC for ``parent root``. The kernel answers that request only when NLM_F_ECHO is set,
hence ``IPRoute(nlm_echo=True)`` (echo also makes replace/delete answer with the new state,
which is harmless). A set that finds the same rate already configured sends nothing else.
The instance netns is entered as in `netlink` (fd on ``/proc/PID/ns/net``, setns in a
short-lived thread that only creates the socket). Measured on the 2-core test machine
(kernel 6.18, pyroute2 0.9.7), medians of 50: read_ingress 0.7 ms, read_egress 0.9 ms,
idempotent set_ingress / set_egress 0.7 / 0.9 ms, changing or removing a rate 1.1 / 1.3 ms.
The tc command is slower even for a read: ``tc qdisc show dev X`` 1.3 ms, ``nsenter -t PID
-n tc qdisc show dev eth0`` 2.1 ms (fork + exec), and its output would need parsing.

Errors: every failure, a missing interface (also with ``rate_bps=None``), a vanished pid or a
pid sharing the agent's own netns raise `BackendError` naming the interface.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWQDISC, TC_H_ROOT

from dockyard.adapters.netns import (
    failure_reason,
    get_link,
    host_iproute,
    netlink_errors,
    netns_iproute,
)
from dockyard.errors import BackendError

__all__ = [
    "MAX_RATE_BPS",
    "MIN_RATE_BPS",
    "HANDLE",
    "TbfParams",
    "check_rate",
    "read_egress",
    "read_ingress",
    "root_rate",
    "set_egress",
    "set_ingress",
    "tbf_params",
]

log = logging.getLogger(__name__)

MIN_RATE_BPS = 64_000
MAX_RATE_BPS = (2**32 - 1) * 8
HANDLE = 0x0D7A0000  # "d7a:": the root tbf that Dockyard owns
_BURST_MS = 10
_LATENCY_MS = 50
_MIN_BURST_FRAMES = 4
_ETH_HLEN = 14
_DEFAULT_MTU = 1500
_INSTANCE_IFNAME = "eth0"


@dataclass(frozen=True)
class TbfParams:
    """What `set_*` asks the kernel for: rate in bytes/s, burst and queue limit in bytes."""

    rate: int
    burst: int
    limit: int


def _ceil_ms(rate_bytes: int, ms: int) -> int:
    return -(-rate_bytes * ms // 1000)


def check_rate(rate_bps: object) -> int:
    """`rate_bps` as an int in [MIN_RATE_BPS, MAX_RATE_BPS], else BackendError."""
    if isinstance(rate_bps, bool) or not isinstance(rate_bps, int):
        raise BackendError(f"rate must be an integer number of bits/s, not {rate_bps!r}")
    if not MIN_RATE_BPS <= rate_bps <= MAX_RATE_BPS:
        raise BackendError(f"rate {rate_bps} bit/s is outside {MIN_RATE_BPS}..{MAX_RATE_BPS}")
    return rate_bps


def tbf_params(rate_bps: int, mtu: int = _DEFAULT_MTU) -> TbfParams:
    """tbf parameters for `rate_bps` on a link of `mtu` (see the module docstring)."""
    rate = check_rate(rate_bps) // 8
    burst = max(_ceil_ms(rate, _BURST_MS), _MIN_BURST_FRAMES * (max(mtu, 68) + _ETH_HLEN))
    return TbfParams(rate=rate, burst=burst, limit=_ceil_ms(rate, _LATENCY_MS) + burst)


def root_rate(messages: Any) -> int | None:
    """Rate in bits/s of Dockyard's tbf among the RTM_NEWQDISC answers, or None.

    Only a root qdisc of kind tbf with handle `HANDLE` counts; anything else (noqueue, a
    default qdisc, a foreign tbf) is "no limit of ours". ACKs in `messages` are skipped.
    """
    for msg in messages:
        if msg["header"]["type"] != RTM_NEWQDISC:
            continue
        if msg.get_attr("TCA_KIND") != "tbf" or msg["handle"] != HANDLE:
            continue
        if msg["parent"] != TC_H_ROOT:
            continue
        parms = msg.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")
        if parms is None:
            continue
        return int(parms["rate"]) * 8
    return None


# --------------------------------------------------------------------------- sockets


@contextlib.contextmanager
def _in_netns(pid: int) -> Iterator[Any]:
    """A fresh echoing IPRoute inside the netns of `pid` (entered as `netlink` does)."""
    with netns_iproute(pid, echo=True) as target:
        if target is None:
            raise BackendError(f"process {pid} is gone: no network namespace to rate-limit")
        yield target[1]


# --------------------------------------------------------------------------- core


def _link(ipr: Any, ifname: str, where: str) -> tuple[int, int]:
    """(index, mtu) of `ifname`; BackendError when there is no such interface."""
    link = get_link(ipr, ifname)
    if link is None:
        raise BackendError(f"no interface {ifname} {where}")
    return int(link["index"]), int(link.get_attr("IFLA_MTU") or _DEFAULT_MTU)


def _read(ipr: Any, index: int, what: str) -> int | None:
    """Rate of our root tbf on link `index`: one non-dump RTM_GETQDISC (needs NLM_F_ECHO)."""
    with netlink_errors(f"reading the root qdisc of {what}"):
        answers = ipr.tc("get", index=index, parent=TC_H_ROOT, dump_filter=lambda _m: True)
    return root_rate(answers)


def _apply(ipr: Any, index: int, params: TbfParams, what: str) -> None:
    """Create or change our root tbf (RTM_NEWQDISC, create|replace): atomic, no gap."""
    with netlink_errors(f"setting tbf rate {params.rate * 8} bit/s on {what}"):
        ipr.tc("replace", "tbf", index, HANDLE, rate=params.rate, burst=params.burst,
               limit=params.limit)


def _delete(ipr: Any, index: int, what: str) -> None:
    """Delete our root tbf; the kernel reattaches the device's default qdisc."""
    try:
        ipr.tc("del", index=index, handle=HANDLE, parent=TC_H_ROOT)
    except NetlinkError as exc:
        # ENOENT/EINVAL: removed or replaced concurrently; fine if ours is gone now.
        if exc.code not in (errno.ENOENT, errno.EINVAL) or _read(ipr, index, what) is not None:
            raise BackendError(f"removing the rate limit of {what}: {failure_reason(exc)}") from exc


def _set(ipr: Any, ifname: str, rate_bps: int | None, where: str) -> None:
    what = f"{ifname} {where}"
    index, mtu = _link(ipr, ifname, where)
    current = _read(ipr, index, what)
    if rate_bps is None:
        if current is not None:
            _delete(ipr, index, what)
            log.info("removed the rate limit of %s", what)
        return
    params = tbf_params(rate_bps, mtu)
    if current == params.rate * 8:
        return
    _apply(ipr, index, params, what)
    log.info("rate limit of %s: %d bit/s (was %s)", what, params.rate * 8, current)


# --------------------------------------------------------------------------- API


def set_ingress(host_ifname: str, rate_bps: int | None) -> None:
    """Limit traffic *to* the instance: tbf on the egress of its host-side veth.

    None removes our qdisc (the link returns to its default). A no-op when the same rate is
    already set. BackendError if the interface does not exist or the kernel refuses.
    """
    if rate_bps is not None:
        check_rate(rate_bps)
    with host_iproute(echo=True) as ipr:
        _set(ipr, host_ifname, rate_bps, "on the host")


def set_egress(pid: int, rate_bps: int | None, ifname: str = _INSTANCE_IFNAME) -> None:
    """Limit traffic *from* the instance: tbf on `ifname` inside the netns of `pid`.

    Same semantics as `set_ingress`; BackendError also when `pid` is gone or lives in the
    agent's own netns (that would limit the host's interface).
    """
    if rate_bps is not None:
        check_rate(rate_bps)
    with _in_netns(pid) as ipr:
        _set(ipr, ifname, rate_bps, f"in the netns of pid {pid}")


def read_ingress(host_ifname: str) -> int | None:
    """The ingress limit set on `host_ifname` in bits/s, or None when there is none."""
    where = "on the host"
    with host_iproute(echo=True) as ipr:
        index, _ = _link(ipr, host_ifname, where)
        return _read(ipr, index, f"{host_ifname} {where}")


def read_egress(pid: int, ifname: str = _INSTANCE_IFNAME) -> int | None:
    """The egress limit set on `ifname` in the netns of `pid` in bits/s, or None."""
    where = f"in the netns of pid {pid}"
    with _in_netns(pid) as ipr:
        index, _ = _link(ipr, ifname, where)
        return _read(ipr, index, f"{ifname} {where}")
