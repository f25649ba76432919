"""The pure parts of lxcfs support: mountinfo parsing, the mount list, the watch's decisions."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from dockyard.adapters.lxcfs import (
    FILES,
    Lxcfs,
    MountEntry,
    lxcfs_generation,
    parse_mountinfo,
)
from dockyard.agent.lxcfs_watch import LxcfsWatch
from dockyard.errors import BackendError, NotFound

MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
44 27 0:41 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,allow_other
93 27 254:0 /var/lib/dockyard/lxcfs /var/lib/dockyard/lxcfs rw shared:7 - ext4 /dev/vda rw
95 93 0:67 / /var/lib/dockyard/lxcfs/fs rw,nosuid shared:8 master:3 - fuse.lxcfs lxcfs rw
garbage line
96 27 0:68 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo_reads_id_device_mount_point_and_fstype() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert entries[0] == MountEntry(27, "254:0", "/", "ext4")
    assert entries[3] == MountEntry(95, "0:67", "/var/lib/dockyard/lxcfs/fs", "fuse.lxcfs")
    assert entries[-1].mount_point == "/mnt/with space"
    assert len(entries) == 5  # the garbage line is skipped


@pytest.mark.parametrize(("extra", "expected"), [
    ("", "95:0:67"),
    # a new lxcfs mounted on top of a dead one: the later (topmost) line wins
    ("101 95 0:70 / /var/lib/dockyard/lxcfs/fs rw shared:9 - fuse.lxcfs lxcfs rw\n", "101:0:70"),
])
def test_generation_is_the_topmost_lxcfs_mount(extra: str, expected: str) -> None:
    assert lxcfs_generation(MOUNTINFO + extra, "/var/lib/dockyard/lxcfs/fs") == expected


@pytest.mark.parametrize("text", [
    "",  # nothing mounted
    "95 93 0:67 / /var/lib/dockyard/lxcfs/fs rw - tmpfs tmpfs rw\n",  # not lxcfs
    "95 93 0:67 / /var/lib/dockyard/lxcfs rw - fuse.lxcfs lxcfs rw\n",  # not at ROOT/fs
])
def test_no_generation_without_lxcfs_at_root_fs(text: str) -> None:
    assert lxcfs_generation(text, "/var/lib/dockyard/lxcfs/fs") is None


def test_mounts_are_eight_read_only_file_binds_and_no_shared_directory() -> None:
    # no bind of ROOT itself: CRIU cannot dump its propagated FUSE submount, and runc's
    # restore would unmount the host's lxcfs through it (adapters/lxcfs.py)
    files = Lxcfs("/srv/lx").mounts()
    assert [m.target for m in files] == [
        "/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/uptime", "/proc/loadavg",
        "/proc/diskstats", "/proc/swaps", "/sys/devices/system/cpu/online"]
    assert [m.source for m in files] == [f"/srv/lx/fs/{rel}" for rel in FILES]
    assert all(m.read_only and m.kind == "bind" and m.propagation is None for m in files)


def test_rebind_refuses_the_agents_own_mount_namespace() -> None:
    with pytest.raises(BackendError, match="host mount namespace"):
        Lxcfs("/nonexistent").rebind(os.getpid())


class FakeLxcfs(Lxcfs):
    """generation() and rebind() scripted by the test; records every rebind."""

    def __init__(self) -> None:
        super().__init__("/fake")
        self.current: str | None = "g1"
        self.failing: dict[int, Exception] = {}
        self.rebound: list[int] = []
        self.reads = 0  # generation() calls: each parses the whole mount table

    def generation(self) -> str | None:
        self.reads += 1
        return self.current

    def rebind(self, pid: int) -> None:
        if pid in self.failing:
            raise self.failing[pid]
        self.rebound.append(pid)


def test_watch_rebinds_every_pid_once_per_generation() -> None:
    fake = FakeLxcfs()
    watch = LxcfsWatch(fake, lambda: [10, 11], interval=1.0)
    assert watch.check_once() == 2  # first check: a restart may have happened while we were down
    assert watch.check_once() == 0
    fake.current = "g2"
    assert watch.check_once() == 2
    assert fake.rebound == [10, 11, 10, 11]


def test_watch_waits_while_lxcfs_is_not_mounted() -> None:
    fake = FakeLxcfs()
    watch = LxcfsWatch(fake, lambda: [10], interval=1.0)
    watch.check_once()
    fake.current = None
    assert watch.check_once() == 0
    fake.current = "g2"
    assert watch.check_once() == 1
    assert fake.rebound == [10, 10]


def test_watch_retries_failures_drops_gone_pids_and_never_raises() -> None:
    fake = FakeLxcfs()
    fake.failing = {11: BackendError("bind: EPERM"), 12: NotFound("gone"), 13: RuntimeError("x")}
    watch = LxcfsWatch(fake, lambda: [10, 11, 12, 13], interval=1.0)
    assert watch.check_once() == 1
    del fake.failing[11]
    assert watch.check_once() == 1  # only 11 retried; 12 is gone, 13 still failing
    assert watch.check_once() == 0
    assert fake.rebound == [10, 11]


def test_watch_survives_a_failing_pid_list() -> None:
    def broken() -> list[int]:
        raise BackendError("dockerd unreachable")

    assert LxcfsWatch(FakeLxcfs(), broken, interval=1.0).check_once() == 0


def scripted(answers: list[bool], stop: threading.Event) -> Callable[[float], bool]:
    """A mount table waiter answering `answers` in turn, then stopping the watch."""
    pending = iter(answers)

    def changed(timeout: float) -> bool:
        try:
            return next(pending)
        except StopIteration:
            stop.set()
            return False
    return changed


def test_watch_reads_the_mount_table_only_after_it_changed() -> None:
    fake, stop = FakeLxcfs(), threading.Event()
    watch = LxcfsWatch(fake, lambda: [10], interval=60.0,
                       mount_changed=scripted([False, False, True, False, True], stop))
    fake.current = "g1"
    watch.run(stop)
    assert fake.reads == 3  # the first check, then one per change: none while nothing changed
    assert fake.rebound == [10]


def test_watch_retries_a_failed_rebind_every_interval_without_waiting_for_a_mount() -> None:
    fake, stop = FakeLxcfs(), threading.Event()
    fake.failing = {11: BackendError("bind: EPERM")}
    waited: list[float] = []
    watch = LxcfsWatch(fake, lambda: [11], interval=0.01,
                       mount_changed=lambda timeout: waited.append(timeout) or False)
    watch.check_once()
    stop.set()
    watch.wait(stop)  # a retry is pending: the interval, not the mount table
    assert waited == []


def test_watch_falls_back_to_the_interval_when_the_mount_table_cannot_be_watched() -> None:
    def broken(timeout: float) -> bool:
        raise OSError("poll failed")

    watch = LxcfsWatch(FakeLxcfs(), lambda: [], interval=0.01, mount_changed=broken)
    watch.wait(threading.Event())
    assert watch.mount_changed is None
