"""VM instances end to end (issue #15): a real QEMU guest launched through `dockyard launch
--type vm` on a single-host Dockyard, one VM shared by the module (tests run in file order).

The guest is `vm-busybox` (scripts/vm-image.sh): Debian's cloud kernel and a busybox
initramfs that configures itself from the NoCloud seed the agent builds. QEMU runs with KVM
where /dev/kvm runs ordinary guests; on a PVM host (this project's CI machine, see
agent/README.md) with TCG, QEMU's emulation: every part but the accelerator is the same.
Everything the module made (QEMU processes, taps, overlays) is removed even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters import antispoof, qemu, qemu_tap, tc, vm_cgroup
from dockyard.agent.vm import QEMU_OVERHEAD
from dockyard.errors import DockyardError
from dockyard.model import ids
from dockyard.model.cpulist import parse_cpu_list
from tests.integration.dockyard_env import IMAGE, VENV_BIN, Dockyard, leaks, make_dockyard
from tests.integration.test_alerts import wait_for
from tests.integration.test_up_supervision import child_pid
from tests.requirements import missing

ROOT = Path(__file__).resolve().parents[2]
VM_IMAGES = Path("/var/cache/dockyard/vm-images")
VM_IMAGE = "vm-busybox"
GUEST_WAIT = 120  # seconds for a TCG guest to boot far enough (2 cores, a busy suite)


class VmDockyard(Dockyard):
    """A Dockyard whose agent runs VMs from the module's image directory."""

    accel: str = "tcg"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["DOCKYARD_VM_IMAGES"] = str(VM_IMAGES)
        env["DOCKYARD_VM_ACCEL"] = self.accel
        return env

    @property
    def vms(self) -> Path:
        return self.home / "agent" / "vms"


def _qemus(dy: VmDockyard) -> dict[str, int]:
    """instance id -> pid of its running QEMU."""
    if not dy.vms.is_dir():
        return {}
    return {run.name: pid for run in dy.vms.iterdir()
            if (pid := qemu.running_pid(run)) is not None}


def _taps() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()
            if ": dyv" in line}


def _remove_vms(dy: VmDockyard) -> None:
    for instance_id, pid in _qemus(dy).items():
        os.kill(pid, signal.SIGKILL)
        qemu.wait_gone(dy.vms / instance_id, 10)
    if dy.vms.is_dir():
        for run in dy.vms.iterdir():
            tap = ids.vm_tap_name(run.name)
            antispoof.remove(tap)
            qemu_tap.delete_tap(tap)
            vm_cgroup.remove(run.name)


def _alive(pid: int) -> bool:
    """The process runs (a zombie waiting for a parent that does not reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ping(ip: str) -> bool:
    return subprocess.run(["ping", "-c1", "-W1", ip], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def vmdy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmDockyard]:
    for tool in ("qemu-system-x86_64", "qemu-img", "cloud-localds"):
        if shutil.which(tool) is None:
            missing(tool, "scripts/setup.sh (qemu-system-x86, qemu-utils, cloud-image-utils)")
    built = subprocess.run([str(ROOT / "scripts" / "vm-image.sh"), str(VM_IMAGES)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    base = make_dockyard()
    dy = VmDockyard(root=base.root, port=base.port, subnet=base.subnet)
    dy.accel = "kvm" if qemu.kvm_usable() else "tcg"
    try:
        dy.start()
        yield dy
    finally:
        _remove_vms(dy)
        dy.cleanup()


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real key pair (the private half; the public one is launch's --ssh-key)."""
    if shutil.which("ssh") is None:
        missing("ssh", "scripts/setup.sh (openssh-client)")
    path = tmp_path_factory.mktemp("vmkey") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t@vm", "-f",
                    str(path)], check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def key_file(ssh_key: Path) -> Path:
    return ssh_key.with_suffix(".pub")


@pytest.fixture(scope="module")
def vm(vmdy: VmDockyard, key_file: Path) -> dict[str, Any]:
    shown: dict[str, Any] = vmdy.ok(
        "launch", VM_IMAGE, "vm1", "--type", "vm", "--cores", "1", "--memory", "512M",
        "--ingress", "50mbit", "--ssh-key", str(key_file), "--json").json()
    return shown


def test_vm_is_shown_as_a_vm_with_its_limits(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    shown = vmdy.ok("show", "vm1", "--json").json()
    assert shown["type"] == "vm" and shown["state"] == "running"
    assert shown["limits"]["cores"] == 1 and len(parse_cpu_list(shown["limits"]["cpuset"])) == 1
    assert shown["limits"]["memory_bytes"] == 512 * 1024 * 1024
    assert shown["mac"] == ids.mac_for_ip(shown["ip"])
    listed = vmdy.ok("list").out
    assert "vm1" in listed and " vm " in listed
    host = vmdy.ok("host", "show", "local", "--json").json()
    assert host["exclusive_cores"] == {shown["limits"]["cpuset"]: shown["id"]}


def test_vm_answers_ping_from_the_host_and_from_a_container(vmdy: VmDockyard,
                                                            vm: dict[str, Any]) -> None:
    wait_for(f"ping {vm['ip']} from the host", lambda: _ping(vm["ip"]), 90)
    vmdy.ok("launch", IMAGE, "c1", "--no-lxcfs")
    try:
        proc = vmdy.cli("exec", "c1", "--", "ping", "-c1", "-W2", vm["ip"])
        assert proc.code == 0, proc.err + proc.out
        serial = vmdy.cli("console", "c1", timeout=30)  # a container has no serial console
        assert serial.code != 0 and "only VMs have a serial console" in serial.err
    finally:
        vmdy.ok("delete", "c1", "--force")


def test_the_seed_gave_the_guest_its_hostname_and_address(vmdy: VmDockyard,
                                                          vm: dict[str, Any]) -> None:
    log = qemu.serial_log(vmdy.vms / vm["id"])
    line = f"up as vm1 with {vm['ip']}/"
    wait_for(f"{line!r} in {log}", lambda: line in log.read_text(errors="replace"), 90)


def _ssh(key: Path, ip: str, *command: str) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH client, key only, no known_hosts (the host key is new each boot)."""
    return subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o",
                           "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
                           f"root@{ip}", *command],
                          capture_output=True, text=True, timeout=60)


def _collect(proc: subprocess.Popen[bytes]) -> list[bytes]:
    """What `proc` prints, appended by a reader thread as it comes."""
    seen: list[bytes] = []
    out = proc.stdout
    assert out is not None

    def read() -> None:
        try:
            while chunk := os.read(out.fileno(), 4096):
                seen.append(chunk)
        except OSError:  # closed under it: the process is done
            return
    threading.Thread(target=read, daemon=True).start()
    return seen


def _guest_agent_answers(vmdy: VmDockyard) -> bool:
    return vmdy.cli("exec", "vm1", "--", "true").code == 0


def test_exec_runs_through_the_guest_agent(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    wait_for("the guest agent answers", lambda: _guest_agent_answers(vmdy), GUEST_WAIT)
    proc = vmdy.cli("exec", "vm1", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (proc.code, proc.out, proc.err) == (7, "out\n", "err\n")
    assert vmdy.ok("exec", "vm1", "--", "hostname").out == "vm1\n"
    assert vmdy.ok("exec", "-w", "/data", "-e", "WHO=dockyard", "vm1", "--",
                   "sh", "-c", "echo $WHO in $(pwd)").out == "dockyard in /data\n"
    gone = vmdy.cli("exec", "vm1", "--", "no-such-command")
    assert gone.code == 127 and "No such file or directory" in gone.err


def test_exec_it_on_a_vm_is_refused_with_the_console_named(vmdy: VmDockyard,
                                                           vm: dict[str, Any]) -> None:
    proc = vmdy.cli("exec", "-it", "vm1", "--", "sh", timeout=30)
    assert proc.code != 0 and "dockyard console" in proc.err, proc.err + proc.out
    with vmdy.api() as api, pytest.raises(DockyardError) as caught:
        api.post("/v1/instances/vm1/exec", {"command": ["id"], "user": "nobody"})
    assert caught.value.status == 422


def test_ssh_with_the_real_openssh_client(vmdy: VmDockyard, vm: dict[str, Any],
                                          ssh_key: Path) -> None:
    wait_for("ssh answers", lambda: _ssh(ssh_key, vm["ip"], "true").returncode == 0,
             GUEST_WAIT)
    assert _ssh(ssh_key, vm["ip"], "hostname").stdout == "vm1\n"
    assert _ssh(ssh_key, vm["ip"], "nproc").stdout == "1\n"  # --cores 1
    free = _ssh(ssh_key, vm["ip"], "free", "-m").stdout.splitlines()
    total = int(next(line for line in free if line.startswith("Mem:")).split()[1])
    assert 400 <= total <= 512, free  # --memory 512M, less what the kernel keeps
    other = Path(str(ssh_key) + "-other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True, timeout=30)
    assert _ssh(other, vm["ip"], "true").returncode != 0  # a key not in the seed: refused


def test_logs_are_the_serial_log_and_follow(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    logs = vmdy.ok("logs", "vm1").out
    assert f"dockyard-guest: up as vm1 with {vm['ip']}/" in logs
    assert "Linux version" in logs  # the kernel's own console lines
    assert len(vmdy.ok("logs", "vm1", "--tail", "2").out.splitlines()) <= 2
    with subprocess.Popen([str(VENV_BIN / "dockyard"), "logs", "-f", "--tail", "0", "vm1"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=vmdy.env()) as follower:
        _follow(vmdy, follower)


def _follow(vmdy: VmDockyard, follower: subprocess.Popen[bytes]) -> None:
    try:
        seen = _collect(follower)

        def echoed() -> bool:  # written until followed: the follower may start after a write
            vmdy.ok("exec", "vm1", "--", "sh", "-c", "echo followed-$((6*7)) > /dev/console")
            return b"followed-42" in b"".join(seen)
        wait_for("the followed line", echoed, 30)
    finally:
        follower.kill()
        follower.wait(10)


def test_a_vm_whose_guest_agent_is_silent_is_an_error_not_a_hang(
        vmdy: VmDockyard, vm: dict[str, Any], ssh_key: Path) -> None:
    """qemu-ga killed inside the guest: exec fails within seconds with why; started again
    (through ssh), exec works again."""
    killed = _ssh(ssh_key, vm["ip"], "kill $(pidof qemu-ga)")
    assert killed.returncode == 0, killed.stderr
    proc = vmdy.cli("exec", "vm1", "--", "true", timeout=60)
    assert proc.code != 0 and "does not answer" in proc.err, proc.err + proc.out
    port = _ssh(ssh_key, vm["ip"], "for p in /sys/class/virtio-ports/*; do "
                "[ $(cat $p/name) = org.qemu.guest_agent.0 ] && echo /dev/${p##*/}; done")
    restart = _ssh(ssh_key, vm["ip"], "qemu-ga", "-d", "-m", "virtio-serial", "-p",
                   port.stdout.strip(), "-t", "/run", "-f", "/run/qemu-ga.pid")
    assert restart.returncode == 0, restart.stderr
    wait_for("the guest agent answers again", lambda: _guest_agent_answers(vmdy), 30)


def test_console_attaches_to_the_serial_console(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    with subprocess.Popen([str(VENV_BIN / "dockyard"), "console", "vm1"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=vmdy.env()) as console:
        _type_into(console)


def _type_into(console: subprocess.Popen[bytes]) -> None:
    """A line typed on the serial console runs in the guest's shell; Ctrl-] leaves."""
    assert console.stdin is not None and console.stdout is not None
    try:
        seen = _collect(console)

        def typed() -> bool:  # the shell may still be starting: type until it answers
            assert console.stdin is not None
            console.stdin.write(b"echo console-$((6*7)) $(hostname)\n")
            console.stdin.flush()
            return b"console-42 vm1" in b"".join(seen)
        wait_for("the serial shell answers", typed, 60)
        console.stdin.write(b"\x1d")  # Ctrl-]: leave
        console.stdin.flush()
        assert console.wait(30) == 0
    finally:
        if console.poll() is None:
            console.kill()
            console.wait(10)


def test_vcpu_threads_run_only_on_the_vms_cores(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    cores = parse_cpu_list(vm["limits"]["cpuset"])
    run = vmdy.vms / vm["id"]
    pid = qemu.running_pid(run)
    assert pid is not None
    tids = qemu.vcpu_threads(run)
    assert len(tids) == 1  # --cores 1: one vCPU
    for tid in tids:
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        allowed = next(line.split(":")[1] for line in status.splitlines()
                       if line.startswith("Cpus_allowed_list"))
        assert parse_cpu_list(allowed) == cores


def test_qemu_runs_in_its_memory_cgroup_and_the_tap_is_shaped(vmdy: VmDockyard,
                                                              vm: dict[str, Any]) -> None:
    pid = qemu.running_pid(vmdy.vms / vm["id"])
    assert pid is not None
    cgroup = vm_cgroup.directory(vm["id"])
    assert str(pid) in (cgroup / "cgroup.procs").read_text().split()
    assert vm_cgroup.limit(vm["id"]) == 512 * 1024 * 1024 + QEMU_OVERHEAD
    assert tc.read_ingress(ids.vm_tap_name(vm["id"])) == 50_000_000  # --ingress 50mbit


def test_agent_killed_leaves_the_vm_running_and_adopts_it(vmdy: VmDockyard,
                                                          vm: dict[str, Any]) -> None:
    assert vmdy.proc is not None
    up = vmdy.proc.pid
    before = _qemus(vmdy)[vm["id"]]
    agent = child_pid(up, "agent")
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    wait_for("agent restarted",
             lambda: (child_pid(up, "agent") or agent) != agent, 30)
    assert _qemus(vmdy).get(vm["id"]) == before  # the same QEMU, never stopped
    wait_for("ping after the agent restart", lambda: _ping(vm["ip"]), 30)


def test_stop_and_start_keep_the_ip(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    tap = ids.vm_tap_name(vm["id"])
    # the agent may still be starting after the test before killed it
    wait_for("exec through the agent", lambda: _guest_agent_answers(vmdy), 60)
    vmdy.ok("exec", "vm1", "--", "sh", "-c", "echo kept > /data/f && sync")
    vmdy.ok("stop", "vm1")
    assert vmdy.ok("show", "vm1", "--json").json()["state"] == "stopped"
    assert vm["id"] not in _qemus(vmdy) and tap not in _taps()
    assert (vmdy.vms / vm["id"] / "disk.qcow2").exists()  # the disk stays
    vmdy.ok("start", "vm1")
    shown = vmdy.ok("show", "vm1", "--json").json()
    assert shown["state"] == "running" and shown["ip"] == vm["ip"]
    assert vm["id"] in _qemus(vmdy) and tap in _taps()
    wait_for("ping after start", lambda: _ping(vm["ip"]), 90)
    wait_for("the guest agent after start", lambda: _guest_agent_answers(vmdy), GUEST_WAIT)
    assert vmdy.ok("exec", "vm1", "--", "cat", "/data/f").out == "kept\n"  # the disk's data


@pytest.mark.parametrize(("body", "message"), [
    ({"image": VM_IMAGE}, "is a VM image: launch it with --type vm"),
    ({"image": IMAGE, "type": "vm"}, "is not a VM image on host local"),
    ({"image": VM_IMAGE, "type": "vm", "limits": {"memory": "64M"}},
     "below the minimum of image vm-busybox"),
    ({"image": VM_IMAGE, "type": "vm", "limits": {"egress": "10mbit"}},
     "egress limits are not supported on VMs"),
    ({"image": VM_IMAGE, "type": "vm", "disk": "1G", "volumes": [
        {"source": "data", "target": "/data"}]}, "volumes are not supported on VMs"),
])
def test_bad_input_is_a_422_and_leaves_nothing(vmdy: VmDockyard, vm: dict[str, Any],
                                               body: dict[str, Any], message: str) -> None:
    qemus, taps = set(_qemus(vmdy)), _taps()
    with vmdy.api() as api, pytest.raises(DockyardError) as caught:
        api.post("/v1/instances", {"name": "bad", **body})
    assert caught.value.status == 422 and message in caught.value.message
    names = {row[0] for row in vmdy.db_query("SELECT name FROM instances")}
    assert names == {"vm1"}
    assert set(_qemus(vmdy)) == qemus and _taps() == taps
    assert leaks(vmdy) == []


def test_explain_names_the_cores_a_second_vm_lacks(vmdy: VmDockyard,
                                                   vm: dict[str, Any]) -> None:
    proc = vmdy.cli("launch", "--explain", VM_IMAGE, "big", "--type", "vm", "--cores", "1",
                    "--json")
    out = proc.json()  # no host fits: the command fails, and prints why
    assert out["chosen"] is None
    assert [h["reason"] for h in out["hosts"]] == ["not enough free cores"]


def test_delete_leaves_no_tap_process_or_overlay(vmdy: VmDockyard, vm: dict[str, Any]) -> None:
    run = vmdy.vms / vm["id"]
    pid = qemu.running_pid(run)
    assert pid is not None and (run / "disk.qcow2").exists()
    vmdy.ok("delete", "vm1", "--force")
    wait_for("the instance row gone",
             lambda: not vmdy.db_query("SELECT id FROM instances WHERE id = ?", vm["id"]), 60)
    assert qemu.running_pid(run) is None
    assert not _alive(pid)
    assert ids.vm_tap_name(vm["id"]) not in _taps()
    assert not run.exists()
    assert ids.vm_tap_name(vm["id"]) not in antispoof.ports()
    assert not vm_cgroup.directory(vm["id"]).exists()
    assert leaks(vmdy) == []
    assert json.loads(vmdy.ok("host", "show", "local", "--json").out)["exclusive_cores"] == {}
