"""QEMU processes of VM instances: the command line, the process, and QMP (the `qemu.qmp`
package, QEMU's own client library) for what a running VM is asked.

A VM's QEMU is started with `-daemonize`: it forks, calls setsid and is re-parented away
from the agent, so an agent restart (or kill -9) never stops a VM. What finds it again is in
its run directory: `qemu.pid` (written by QEMU) and `qmp.sock` (its QMP server). A pid is
only believed when /proc/PID/cmdline is a QEMU naming that run directory (pids are reused).

Every QMP exchange is one short connection (`asyncio.run` of the library's QMPClient in the
calling worker thread): the agent's threads never share a QMP session.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError

from dockyard.errors import BackendError, TemporaryError

QEMU = "qemu-system-x86_64"
QMP_TIMEOUT = 5.0


@dataclass(frozen=True)
class VmLaunch:
    """Everything one QEMU command line says."""

    name: str  # -name: the instance id (what `ps` shows)
    run_dir: Path  # qemu.pid, qmp.sock, qga.sock, console.sock, serial.log
    accel: str  # kvm | tcg
    vcpus: int
    memory_bytes: int
    kernel: Path
    initrd: Path
    cmdline: str
    disk: Path  # the instance's qcow2 overlay
    seed: Path  # the NoCloud seed (ISO 9660, volume id cidata)
    tap: str
    mac: str


def pidfile(run_dir: Path) -> Path:
    return run_dir / "qemu.pid"


def qmp_socket(run_dir: Path) -> Path:
    return run_dir / "qmp.sock"


def serial_log(run_dir: Path) -> Path:
    return run_dir / "serial.log"


def console_socket(run_dir: Path) -> Path:
    """The serial console (ttyS0): one client at a time; all output also goes to serial.log."""
    return run_dir / "console.sock"


def guest_agent_socket(run_dir: Path) -> Path:
    """The virtio-serial port org.qemu.guest_agent.0 (adapters/qemu_ga.py speaks to it)."""
    return run_dir / "qga.sock"


def command(v: VmLaunch) -> list[str]:
    """The QEMU command line (pure). Direct kernel boot: the disk needs no boot loader."""
    cpu = "host" if v.accel == "kvm" else "max"
    return [
        QEMU, "-name", v.name, "-machine", f"pc,accel={v.accel}", "-cpu", cpu,
        "-smp", str(v.vcpus), "-m", f"{v.memory_bytes // (1024 * 1024)}M",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(v.kernel), "-initrd", str(v.initrd), "-append", v.cmdline,
        "-drive", f"file={v.disk},if=virtio,format=qcow2,discard=unmap",
        "-drive", f"file={v.seed},if=virtio,format=raw,readonly=on",
        "-netdev", f"tap,id=net0,ifname={v.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={v.mac}",
        "-chardev", f"socket,id=serial0,path={console_socket(v.run_dir)},server=on,wait=off,"
                    f"logfile={serial_log(v.run_dir)},logappend=on",
        "-serial", "chardev:serial0",
        "-chardev", f"socket,id=qga0,path={guest_agent_socket(v.run_dir)},server=on,wait=off",
        "-device", "virtio-serial-pci,id=vser0",
        "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
        "-qmp", f"unix:{qmp_socket(v.run_dir)},server=on,wait=off",
        "-pidfile", str(pidfile(v.run_dir)), "-daemonize",
    ]


def start(v: VmLaunch) -> int:
    """Start the VM's QEMU, detached; its pid once QEMU wrote it (QEMU's parent exits only
    after the daemon is set up, so the pidfile and the QMP socket exist by then)."""
    pidfile(v.run_dir).unlink(missing_ok=True)
    proc = subprocess.run(command(v), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise BackendError(f"qemu of {v.name} did not start: "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    pid = running_pid(v.run_dir)
    if pid is None:
        raise BackendError(f"qemu of {v.name} exited at once (see {serial_log(v.run_dir)})")
    return pid


def running_pid(run_dir: Path) -> int | None:
    """The pid of the QEMU of `run_dir` if it runs (a zombie or a reused pid does not)."""
    try:
        pid = int(pidfile(run_dir).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state == "Z" or not cmdline or not cmdline[0].endswith(QEMU.encode()):
        return None
    return pid if str(pidfile(run_dir)).encode() in cmdline else None


def _qmp(run_dir: Path, commands: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
    async def exchange() -> list[Any]:
        client = QMPClient(run_dir.name)
        await client.connect(str(qmp_socket(run_dir)))
        try:
            return [await client.execute(name, args) for name, args in commands]
        finally:
            await client.disconnect()

    try:
        return asyncio.run(asyncio.wait_for(exchange(), QMP_TIMEOUT))
    except (TimeoutError, OSError, QMPError) as exc:
        raise TemporaryError(f"QMP of {run_dir.name}: {exc!r}", delay=1.0) from exc


def vcpu_threads(run_dir: Path) -> list[int]:
    """The host thread ids of the VM's vCPUs (QMP query-cpus-fast), in cpu-index order."""
    cpus = _qmp(run_dir, [("query-cpus-fast", None)])[0]
    return [int(c["thread-id"]) for c in sorted(cpus, key=lambda c: c["cpu-index"])]


def powerdown(run_dir: Path) -> None:
    """Press the ACPI power button (the guest shuts down if it listens)."""
    _qmp(run_dir, [("system_powerdown", None)])


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def wait_gone(run_dir: Path, timeout: float) -> bool:
    """Poll until the QEMU of `run_dir` is gone; False when it still runs at the deadline."""
    deadline = time.monotonic() + timeout
    while running_pid(run_dir) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def pin_threads(tids: list[int], cores: list[int]) -> None:
    """Each thread may run only on `cores` (sched_setaffinity); a thread gone is skipped."""
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:
            continue
        except OSError as exc:
            raise BackendError(f"pinning thread {tid} to {cores}: {exc.strerror}") from exc


def thread_cpus(tid: int) -> set[int] | None:
    try:
        return set(os.sched_getaffinity(tid))
    except OSError:
        return None


def create_overlay(base: Path, overlay: Path, size: int | None) -> None:
    """A copy-on-write qcow2 over `base` (grown to `size` when given); the base is never
    written."""
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
            str(overlay)]
    if size is not None:
        args.append(str(size))
    _run(args, f"overlay {overlay}")


def disk_size(image: Path) -> int:
    """The virtual size of a disk image in bytes (qemu-img info)."""
    out = _run(["qemu-img", "info", "--output=json", "-U", str(image)], f"info {image}")
    return int(json.loads(out)["virtual-size"])


def make_seed(path: Path, user_data: str, meta_data: str, network_config: str) -> None:
    """A NoCloud seed (cloud-localds: ISO 9660, volume id `cidata`) holding the three files."""
    work = path.parent / (path.name + ".d")
    work.mkdir(parents=True, exist_ok=True)
    files = {"user-data": user_data, "meta-data": meta_data, "network-config": network_config}
    for name, text in files.items():
        (work / name).write_text(text)
    tmp = path.with_suffix(".tmp")
    _run(["cloud-localds", "-N", str(work / "network-config"), str(tmp),
          str(work / "user-data"), str(work / "meta-data")], f"seed {path}")
    tmp.replace(path)
    for name in files:
        (work / name).unlink()
    work.rmdir()


def _run(args: list[str], what: str) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        raise BackendError(f"{what}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


ACCELS = ("auto", "kvm", "tcg", "none")


def kvm_usable() -> bool:
    """/dev/kvm opens read-write and runs ordinary guests. Under PVM (the `kvm_pvm` module:
    KVM in a VM without hardware virtualisation, as on this project's CI machine) it opens,
    but only PVM-enabled guest kernels boot; a stock kernel hangs right after its real-mode
    setup, so PVM counts as no KVM."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return not Path("/sys/module/kvm_pvm").exists()


def accelerator(choice: str) -> str:
    """The accelerator VMs run with for the operator's `--vm-accel`: `auto` is kvm when
    usable, else "" (this host runs no VMs); `tcg` is QEMU's emulation, slow but
    everywhere (test and development hosts); `none` turns VMs off."""
    if choice not in ACCELS:
        raise ValueError(f"--vm-accel must be one of {', '.join(ACCELS)}, not {choice!r}")
    if choice == "auto":
        return "kvm" if kvm_usable() else ""
    return "" if choice == "none" else choice
