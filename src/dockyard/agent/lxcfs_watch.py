"""Notice an lxcfs restart and repair every running instance's /proc views, same PIDs.

Level-triggered on the lxcfs *generation* (the mount id/device of ROOT/fs, see
adapters/lxcfs.py): whenever it differs from the one the instances were last bound to, every
pid from `list_pids()` is rebound. The first check after the agent starts rebinds too, since an
lxcfs restart may have happened while the agent was down (`rebind` is idempotent: a target
that already shows the current lxcfs is left alone).

When: reading the generation parses the whole mount table (it grows with every container's
overlay), so with a `mount_changed` waiter (adapters/lxcfs.py `MountTable`: poll(2) on
/proc/self/mountinfo) the watch checks only after a mount or unmount, and at least every
`SAFETY_CHECKS` intervals; without one, or while a failed rebind waits for its retry, every
`interval` seconds.

Invariants
----------
* `check_once` never raises: failures are logged per pid, and a pid that failed is retried on
  the next check (a pid that is gone is dropped: its instance's next sync owns it).
* Nothing is rebound while lxcfs is not mounted (generation None): the next mount will change
  the generation anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dockyard.adapters.lxcfs import Lxcfs
from dockyard.errors import DockyardError, NotFound

__all__ = ["LxcfsWatch"]

log = logging.getLogger(__name__)
SAFETY_CHECKS = 30  # a check at least every this many intervals even if no mount changed


class LxcfsWatch:
    """`list_pids` returns the PIDs of running instances that have lxcfs mounts."""

    def __init__(self, lxcfs: Lxcfs, list_pids: Callable[[], list[int]],
                 interval: float,
                 mount_changed: Callable[[float], bool] | None = None) -> None:
        self.lxcfs = lxcfs
        self.list_pids = list_pids
        self.interval = interval
        self.mount_changed = mount_changed  # waits up to N s; True after a (un)mount
        self._generation: str | None = None
        self._retry: dict[int, str] = {}  # pid -> last error, to retry at the same generation

    def check_once(self) -> int:
        """Rebind what needs it; return how many pids were rebound successfully."""
        try:
            generation = self.lxcfs.generation()
            if generation is None:
                return 0
            changed = generation != self._generation
            if not changed and not self._retry:
                return 0
            pids = self.list_pids()
        except Exception:  # noqa: BLE001 - the watch must survive anything and try again
            log.exception("lxcfs watch: cannot read the lxcfs generation or the instance pids")
            return 0
        if changed:
            log.info("lxcfs generation %s (was %s): rebinding %d instance(s)",
                     generation, self._generation, len(pids))
        else:
            pids = [pid for pid in pids if pid in self._retry]
        self._generation = generation
        return self._rebind_all(pids)

    def _rebind_all(self, pids: list[int]) -> int:
        rebound = 0
        retry: dict[int, str] = {}
        for pid in pids:
            try:
                self.lxcfs.rebind(pid)
            except NotFound:
                continue  # the instance stopped meanwhile: nothing to repair
            except DockyardError as exc:
                retry[pid] = exc.message
            except Exception as exc:  # noqa: BLE001 - one pid must not stop the others
                retry[pid] = repr(exc)
            else:
                rebound += 1
                continue
            if self._retry.get(pid) != retry[pid]:  # log each new failure once, not per tick
                log.warning("lxcfs rebind of pid %d failed: %s", pid, retry[pid])
        self._retry = retry
        return rebound

    def run(self, stop: threading.Event) -> None:
        """Check, then wait for the next reason to (`wait`), until `stop` is set (the body of
        a daemon thread)."""
        while not stop.is_set():
            self.check_once()
            self.wait(stop)

    def wait(self, stop: threading.Event) -> None:
        """Until the next check is due: a mount or unmount, SAFETY_CHECKS intervals, or one
        interval while a rebind waits for its retry (or with no mount table to watch)."""
        if self._retry or self.mount_changed is None:
            stop.wait(self.interval)
            return
        deadline = time.monotonic() + SAFETY_CHECKS * self.interval
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if self.mount_changed(self.interval):
                    return
            except Exception:  # noqa: BLE001 - fall back to checking every interval
                log.exception("lxcfs watch: cannot wait for mount table changes")
                self.mount_changed = None
                return
