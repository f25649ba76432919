"""VM instances (`type: vm`): one QEMU each, converged level-triggered like containers.

    sync(desired) of a VM, under HOME/vms/<id>/ (qemu.pid, qmp.sock, disk.qcow2, seed.iso,
    serial.log):
      ├─ desired deleted → stop (below), tap + its rules, the whole directory   → "deleted"
      ├─ desired stopped → ACPI power button (QMP system_powerdown), SIGKILL after
      │                    stop_timeout; tap and its rules removed              → "stopped"
      └─ desired running → restart if asked; not running? overlay (first time: a qcow2
                           over the image, grown to --disk), seed, tap on the bridge with
                           anti-spoofing rules, QEMU started detached; then the tap on its
                           bridge (tbf for --ingress), the vCPU threads pinned to the
                           instance's cores, QEMU in its memory cgroup (guest memory +
                           QEMU_OVERHEAD), every pass                           → "running"

QEMU is no child of the agent (`-daemonize`): an agent restart leaves it running and the
next pass adopts it from qemu.pid + qmp.sock (adapters/qemu.py). vCPUs = the instance's
exclusive cores (1 without any); each vCPU thread (QMP query-cpus-fast) may run only on
those cores. `--egress` is refused for VMs: a qdisc inside the guest is the guest's to
remove, and the VM's traffic enters the host at the tap's ingress, where shaping needs an
ifb (not done). The guest's
memory is `-m` = the memory limit (the scheduler reserved it
without over-commit). A failure during the *first* create removes what it made and reports
`deleted` + `failed_create`, as for containers.

VM images live in the agent's image directory, one directory per image (see
scripts/vm-image.sh): vmlinuz, initrd.img, disk.qcow2 and image.json ({"cmdline",
"min_memory_bytes"}); QEMU boots the kernel directly, so disks need no boot loader.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dockyard.adapters import antispoof, qemu, qemu_tap, tc, vm_cgroup
from dockyard.agent import vm_seed
from dockyard.agent.hostfiles import InstanceFiles
from dockyard.errors import DockyardError, InvalidRequest, NotFound, TemporaryError
from dockyard.model import ids
from dockyard.model.agent import DesiredInstance, DesiredNetwork, ObservedState
from dockyard.model.cpulist import parse_cpu_list
from dockyard.model.instance import DesiredState

log = logging.getLogger(__name__)
KILL_WAIT = 5.0  # seconds for a SIGKILLed QEMU to be gone
# QEMU's own memory beyond the guest's RAM (device state, I/O buffers; under TCG its
# translation cache too): the cgroup limit is the guest's memory plus this
QEMU_OVERHEAD = 256 * 1024 * 1024


@dataclass(frozen=True)
class VmImage:
    name: str
    kernel: Path
    initrd: Path
    disk: Path
    cmdline: str
    min_memory_bytes: int


class VmImages:
    """The VM images of this host: directories under `root` with an image.json."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str) -> VmImage:
        path = self.root / name
        if "/" in name or name.startswith(".") or not (path / "image.json").is_file():
            raise NotFound(f"VM image {name!r} is not on this host ({self.root})")
        try:
            meta = json.loads((path / "image.json").read_text())
            return VmImage(name=name, kernel=path / "vmlinuz", initrd=path / "initrd.img",
                           disk=path / "disk.qcow2", cmdline=str(meta["cmdline"]),
                           min_memory_bytes=int(meta.get("min_memory_bytes", 0)))
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidRequest(f"VM image {name}: bad image.json: {exc}") from exc

    def catalogue(self) -> dict[str, int]:
        """name -> minimum memory, for the host inventory."""
        out: dict[str, int] = {}
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.iterdir()):
            try:
                out[path.name] = self.get(path.name).min_memory_bytes
            except DockyardError:
                continue
        return out


class HostBridge(Protocol):
    """What the VM runtime needs of agent/network.py (the bridge of a network)."""

    def ensure_network(self, net: DesiredNetwork) -> None: ...


def tap_name(instance_id: str) -> str:
    return ids.vm_tap_name(instance_id)


class VmRuntime:
    def __init__(self, home: Path, images: VmImages, accel: str, network: HostBridge,
                 files: InstanceFiles, stop_timeout: int = 10) -> None:
        self.root = home / "vms"
        self.images = images
        self.accel = accel
        self.network = network
        self.files = files
        self.stop_timeout = stop_timeout

    def run_dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def pid(self, instance_id: str) -> int | None:
        return qemu.running_pid(self.run_dir(instance_id))

    def sync(self, d: DesiredInstance) -> ObservedState:
        if d.desired_state == DesiredState.deleted:
            self.remove(d.id)
            return self._observed(d, "deleted")
        if d.desired_state == DesiredState.stopped:
            self._stop(d.id)
            return self._observed(d, "stopped")
        if not self.accel:
            raise InvalidRequest("this host runs no VMs (no usable /dev/kvm)")
        if d.network.mode == "ovs" and d.network.vlan is not None:
            raise InvalidRequest("VMs on ovs networks are not supported yet")
        if d.restart_serial > self.files.applied_restart(d.id):
            self._stop(d.id)
            if self.run_dir(d.id).is_dir():
                self.files.set_applied_restart(d.id, d.restart_serial)
        pid = self.pid(d.id)
        if pid is None:
            return self._boot(d)
        self._ensure_tap(d)
        self._pin(d)
        self._limit_memory(d, pid)
        return self._observed(d, "running")

    def _boot(self, d: DesiredInstance) -> ObservedState:
        first = not (self.run_dir(d.id) / "disk.qcow2").exists()
        try:
            image = self.images.get(d.image)
            memory = d.limits.memory_bytes or 0
            if memory < image.min_memory_bytes:
                raise InvalidRequest(f"memory {memory} is below the minimum of image "
                                     f"{image.name} ({image.min_memory_bytes})")
            run = self.run_dir(d.id)
            run.mkdir(parents=True, exist_ok=True)
            if first:
                self.files.set_applied_restart(d.id, d.restart_serial)
                self._make_disk(d, image, run / "disk.qcow2")
            qemu.make_seed(run / "seed.iso", vm_seed.user_data(d), vm_seed.meta_data(d),
                           vm_seed.network_config(d))
            self._ensure_tap(d)
            pid = qemu.start(qemu.VmLaunch(
                name=d.id, run_dir=run, accel=self.accel, vcpus=max(1, d.limits.cores),
                memory_bytes=memory, kernel=image.kernel, initrd=image.initrd,
                cmdline=image.cmdline, disk=run / "disk.qcow2", seed=run / "seed.iso",
                tap=tap_name(d.id), mac=d.mac))
            self._limit_memory(d, pid)
            self._pin(d)
            return self._observed(d, "running")
        except TemporaryError:
            raise
        except DockyardError as exc:
            if not (d.creating and first):
                raise
            log.warning("create of VM %s failed, rolling back: %s", d.name, exc.message)
            self.remove(d.id)
            return ObservedState(state="deleted", generation=d.generation, failed_create=True,
                                 message=exc.message)

    @staticmethod
    def _make_disk(d: DesiredInstance, image: VmImage, overlay: Path) -> None:
        base = qemu.disk_size(image.disk)
        if d.disk_bytes is not None and d.disk_bytes < base:
            raise InvalidRequest(f"disk {d.disk_bytes} is smaller than image {image.name} "
                                 f"({base} bytes)")
        tmp = overlay.with_suffix(".tmp")
        qemu.create_overlay(image.disk, tmp, d.disk_bytes)
        tmp.replace(overlay)  # a crash before this line leaves no half-made disk

    def _ensure_tap(self, d: DesiredInstance) -> None:
        self.network.ensure_network(d.network)
        tap = tap_name(d.id)
        antispoof.ensure(tap, d.mac, d.ip)  # before the tap is on the bridge
        qemu_tap.ensure_tap(tap, d.network.bridge)
        tc.set_ingress(tap, d.limits.ingress_bps)  # tbf towards the VM, as on a veth

    @staticmethod
    def _limit_memory(d: DesiredInstance, pid: int) -> None:
        vm_cgroup.ensure(d.id, pid, (d.limits.memory_bytes or 0) + QEMU_OVERHEAD)

    def _pin(self, d: DesiredInstance) -> None:
        cores = parse_cpu_list(d.limits.cpuset) if d.limits.cores else []
        if not cores:
            return
        tids = qemu.vcpu_threads(self.run_dir(d.id))
        if any(qemu.thread_cpus(tid) != set(cores) for tid in tids):
            qemu.pin_threads(tids, cores)

    def _stop(self, instance_id: str) -> None:
        run = self.run_dir(instance_id)
        pid = qemu.running_pid(run)
        if pid is not None:
            try:
                qemu.powerdown(run)
            except TemporaryError as exc:  # no QMP answer: the kill below still works
                log.warning("powerdown of %s: %s", instance_id, exc.message)
            if not qemu.wait_gone(run, self.stop_timeout):
                log.warning("VM %s ignored the power button for %ss: killed", instance_id,
                            self.stop_timeout)
                qemu.kill(pid)
                if not qemu.wait_gone(run, KILL_WAIT):
                    raise TemporaryError(f"qemu {pid} of {instance_id} outlived SIGKILL")
        vm_cgroup.remove(instance_id)
        tap = tap_name(instance_id)
        antispoof.remove(tap)
        qemu_tap.delete_tap(tap)

    def remove(self, instance_id: str) -> None:
        self._stop(instance_id)
        shutil.rmtree(self.run_dir(instance_id), ignore_errors=True)
        self.files.remove(instance_id)

    def known_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []

    @staticmethod
    def _observed(d: DesiredInstance, state: str) -> ObservedState:
        return ObservedState(state=state, generation=d.generation,
                             restart_serial=d.restart_serial, revision=d.revision)
