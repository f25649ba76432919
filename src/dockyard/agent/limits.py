"""Limits the agent enforces outside `docker update`: disk IO throttles (cgroup files) and
network rates (tc qdiscs on both ends of the instance's veth). Each `ensure_*` reads what is
in force, compares it with the desired value and writes only the difference, so it is cheap
to call on every sync and repairs limits lost by a restart of the container."""

from __future__ import annotations

import logging

from dockyard.adapters import blockdev, cgroup_io, tc
from dockyard.adapters.cgroup_io import IoLimits
from dockyard.errors import BackendError
from dockyard.model import ids
from dockyard.model.instance import Limits

log = logging.getLogger(__name__)


def io_limits(limits: Limits) -> IoLimits:
    return IoLimits(read_bps=limits.read_bps, write_bps=limits.write_bps,
                    read_iops=limits.read_iops, write_iops=limits.write_iops)


class LinuxHostLimits:
    def __init__(self, data_root: str) -> None:
        try:
            self.device: str | None = blockdev.device_of(data_root)
        except BackendError as exc:
            log.warning("disk IO limits unavailable: %s", exc.message)
            self.device = None

    def ensure_io(self, pid: int, limits: Limits) -> None:
        want = io_limits(limits)
        if self.device is None:
            if want != IoLimits():
                raise BackendError("disk IO limits are not available on this host "
                                   "(Docker's data root is not on a block device)")
            return
        if cgroup_io.read_io(pid, self.device) != want:
            cgroup_io.write_io(pid, self.device, want)

    def io_matches(self, pid: int, limits: Limits) -> bool:
        """The throttles in force are the desired ones (a read only: a resync's check)."""
        if self.device is None:
            return io_limits(limits) == IoLimits()
        try:
            return cgroup_io.read_io(pid, self.device) == io_limits(limits)
        except BackendError:
            return False

    @staticmethod
    def ensure_rates(pid: int, instance_id: str, limits: Limits) -> None:
        """Ingress: tbf on the host end of the veth (traffic *to* the instance). Egress: tbf
        on eth0 inside the instance's netns, where it holds on a Linux bridge and on OVS
        alike and the instance (no CAP_NET_ADMIN) cannot remove it. Both go with the veth."""
        tc.set_ingress(ids.host_veth_name(instance_id), limits.ingress_bps)
        tc.set_egress(pid, limits.egress_bps)
