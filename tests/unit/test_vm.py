"""VM instances without a VM: placement (`--type vm` and hosts without KVM), the launch
spec's VM fields, the NoCloud seed, the QEMU command line and the host's VM images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from dockyard.adapters import qemu, vm_cgroup
from dockyard.agent import vm_seed
from dockyard.agent.vm import VmImages
from dockyard.errors import NotFound, NoValidHost
from dockyard.model.agent import DesiredInstance
from dockyard.model.instance import VM_DEFAULT_MEMORY, InstanceCreate, InstanceType
from dockyard.scheduler import ClusterView, HostView, PlacementRequest, explain, place
from dockyard.scheduler.filters import REASON_NO_KVM

GiB = 1024**3
NET = "net1"


def _host(name: str, vm: bool) -> HostView:
    return HostView(id=f"id-{name}", name=name, up=True, draining=False, cores=[0, 1, 2, 3],
                    reserved_cores=[], taken_cores=[], memory_bytes=8 * GiB,
                    memory_reserved_bytes=0, networks={NET}, labels={}, vm=vm)


def test_a_vm_goes_only_to_a_host_that_runs_vms_and_explain_says_why() -> None:
    view = ClusterView(hosts=[_host("plain", vm=False), _host("kvm", vm=True)])
    vm = PlacementRequest(cores=1, memory_bytes=GiB, pids=100, network_id=NET, vm=True)
    assert place(vm, view).host_name == "kvm"
    verdicts = {v.name: v.reason for v in explain(vm, view)}
    assert verdicts == {"plain": REASON_NO_KVM, "kvm": None}
    container = PlacementRequest(cores=1, memory_bytes=GiB, pids=100, network_id=NET)
    assert {v.name: v.reason for v in explain(container, view)} == {"plain": None, "kvm": None}


def test_no_host_with_kvm_is_no_valid_host_with_the_reason() -> None:
    view = ClusterView(hosts=[_host("a", vm=False), _host("b", vm=False)])
    vm = PlacementRequest(cores=0, memory_bytes=GiB, pids=100, network_id=NET, vm=True)
    with pytest.raises(NoValidHost, match=r"2 hosts: no KVM on host"):
        place(vm, view)


def test_vm_memory_is_not_over_committed_where_containers_are() -> None:
    full = _host("kvm", vm=True)
    view = ClusterView(hosts=[full], memory_overcommit=2.0)
    container = PlacementRequest(cores=0, memory_bytes=12 * GiB, pids=1, network_id=NET)
    assert place(container, view).host_name == "kvm"
    vm = PlacementRequest(cores=0, memory_bytes=12 * GiB, pids=1, network_id=NET, vm=True)
    with pytest.raises(NoValidHost, match="not enough memory"):
        place(vm, view)


def test_launch_spec_vm_fields() -> None:
    vm = InstanceCreate.model_validate({"name": "v", "image": "vm-busybox", "type": "vm"})
    assert vm.type == InstanceType.vm and vm.limits.memory == VM_DEFAULT_MEMORY
    sized = InstanceCreate.model_validate({"name": "v", "image": "vm-busybox", "type": "vm",
                                           "disk": "10G", "limits": {"memory": "1G"}})
    assert sized.disk == 10 * GiB and sized.limits.memory == GiB
    assert InstanceCreate.model_validate({"name": "c", "image": "busybox"}).type == "container"
    assert InstanceCreate.model_validate({"name": "c", "image": "busybox",
                                          "disk": "1G"}).disk == GiB  # a container's disk
    with pytest.raises(ValidationError, match="at least 1M"):
        InstanceCreate.model_validate({"name": "c", "image": "busybox", "disk": "1K"})
    with pytest.raises(ValidationError, match="volumes are not supported on VMs"):
        InstanceCreate.model_validate({"name": "v", "image": "x", "type": "vm",
                                       "volumes": [{"source": "data", "target": "/d"}]})
    with pytest.raises(ValidationError):
        InstanceCreate.model_validate({"name": "v", "image": "x", "type": "lxc"})


def _desired() -> DesiredInstance:
    return DesiredInstance.model_validate({
        "id": "0123456789ab", "name": "web", "project": "default", "generation": 3,
        "desired_state": "running", "restart_serial": 0, "image": "vm-busybox",
        "hostname": "web-1", "ip": "10.9.0.5", "prefixlen": 24, "mac": "02:d7:0a:09:00:05",
        "dns": ["10.9.0.1"], "limits": {"cores": 1, "cpuset": "2", "memory_bytes": GiB},
        "volumes": [], "env": {}, "revision": 7, "type": "vm",
        "ssh_keys": ["ssh-ed25519 AAAAC3Nza key@test"],
        "network": {"id": "n1", "name": "default", "bridge": "dybn1", "subnet": "10.9.0.0/24",
                    "gateway": "10.9.0.1"}})


def test_the_seed_says_hostname_key_and_static_network() -> None:
    d = _desired()
    assert yaml.safe_load(vm_seed.meta_data(d)) == {"instance-id": "0123456789ab-g3",
                                                     "local-hostname": "web-1"}
    assert "\nlocal-hostname: web-1\n" in vm_seed.meta_data(d)  # a line of its own
    user = vm_seed.user_data(d)
    assert user.startswith("#cloud-config\n")
    assert yaml.safe_load(user)["users"][0]["ssh_authorized_keys"] == d.ssh_keys
    net = yaml.safe_load(vm_seed.network_config(d))
    eth0 = net["ethernets"]["eth0"]
    assert net["version"] == 2 and eth0["match"] == {"macaddress": "02:d7:0a:09:00:05"}
    assert eth0["addresses"] == ["10.9.0.5/24"]
    assert eth0["routes"] == [{"to": "0.0.0.0/0", "via": "10.9.0.1"}]
    assert eth0["nameservers"] == {"addresses": ["10.9.0.1"]}


def test_every_ssh_key_is_one_line_of_user_data() -> None:
    """The test guest's /init reads root's keys as the `- KEY` lines: never folded."""
    rsa = "ssh-rsa " + "A" * 700 + " someone@somewhere"
    d = _desired().model_copy(update={"ssh_keys": ["ssh-ed25519 AAAAC3Nza key@test", rsa]})
    lines = vm_seed.user_data(d).splitlines()
    assert "  - ssh-ed25519 AAAAC3Nza key@test" in lines and f"  - {rsa}" in lines
    assert yaml.safe_load(vm_seed.user_data(d))["users"][0]["ssh_authorized_keys"] == [
        "ssh-ed25519 AAAAC3Nza key@test", rsa]


def test_qemu_command_line() -> None:
    run = Path("/run/vms/x")
    cmd = qemu.command(qemu.VmLaunch(
        name="x", run_dir=run, accel="kvm", vcpus=2, memory_bytes=512 * 1024 * 1024,
        kernel=Path("/i/vmlinuz"), initrd=Path("/i/initrd.img"), cmdline="console=ttyS0",
        disk=run / "disk.qcow2", seed=run / "seed.iso", tap="dyvx", mac="02:d7:0a:09:00:05"))
    pairs = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert cmd[0] == qemu.QEMU and cmd[-1] == "-daemonize"
    assert pairs["-smp"] == "2" and pairs["-m"] == "512M" and pairs["-cpu"] == "host"
    assert "accel=kvm" in pairs["-machine"]
    assert "ifname=dyvx" in cmd[cmd.index("-netdev") + 1]
    assert "mac=02:d7:0a:09:00:05" in cmd[cmd.index("-device") + 1]
    assert f"unix:{run}/qmp.sock,server=on,wait=off" in cmd
    chardevs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-chardev"]
    # the serial console: a socket for `dockyard console`, every byte also in serial.log
    assert (f"socket,id=serial0,path={run}/console.sock,server=on,wait=off,"
            f"logfile={run}/serial.log,logappend=on") in chardevs
    assert pairs["-serial"] == "chardev:serial0"
    # the guest agent's virtio-serial port, named as qemu-ga looks for it
    assert f"socket,id=qga0,path={run}/qga.sock,server=on,wait=off" in chardevs
    devices = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-device"]
    assert "virtio-serial-pci,id=vser0" in devices
    assert ("virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"
            in devices)
    assert str(run / "qemu.pid") in cmd


def test_accelerator_choices() -> None:
    assert qemu.accelerator("tcg") == "tcg"
    assert qemu.accelerator("none") == ""
    assert qemu.accelerator("auto") in ("kvm", "")
    with pytest.raises(ValueError, match="--vm-accel"):
        qemu.accelerator("xen")


def test_vm_images_catalogue(tmp_path: Path) -> None:
    good = tmp_path / "vm-a"
    good.mkdir()
    (good / "image.json").write_text(json.dumps({"cmdline": "console=ttyS0",
                                                 "min_memory_bytes": 128 << 20}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "image.json").write_text("{")
    (tmp_path / "empty").mkdir()
    images = VmImages(tmp_path)
    assert images.catalogue() == {"vm-a": 128 << 20}
    assert images.get("vm-a").kernel == good / "vmlinuz"
    with pytest.raises(NotFound):
        images.get("../etc")
    assert VmImages(tmp_path / "missing").catalogue() == {}


@pytest.mark.parametrize("version", [1, 2])
def test_vm_cgroup_made_limited_joined_and_removed(tmp_path: Path, version: int) -> None:
    """On a directory laid out like the cgroup root (v1: a memory hierarchy; v2: unified)."""
    root = tmp_path
    if version == 2:
        (root / "cgroup.controllers").write_text("cpu memory pids\n")
        (root / "cgroup.subtree_control").write_text("")
    path = vm_cgroup.directory("abc", str(root))
    assert path == root / ("memory" if version == 1 else "") / "dockyard-vms" / "abc"
    path.mkdir(parents=True)  # what the kernel would make: the cgroup's files
    if version == 2:
        (path.parent / "cgroup.subtree_control").write_text("")
    limit_file = "memory.limit_in_bytes" if version == 1 else "memory.max"
    (path / limit_file).write_text("max\n" if version == 2 else f"{2**63 - 4096}\n")
    (path / "cgroup.procs").write_text("")
    vm_cgroup.ensure("abc", 4242, 768 << 20, str(root))
    assert vm_cgroup.limit("abc", str(root)) == 768 << 20
    assert (path / "cgroup.procs").read_text() == "4242"
    if version == 2:
        assert (root / "cgroup.subtree_control").read_text() == "+memory"
    for name in (limit_file, "cgroup.procs"):  # rmdir of a real cgroup takes its files
        (path / name).unlink()
    if version == 2:
        (path.parent / "cgroup.subtree_control").unlink()
    vm_cgroup.remove("abc", str(root))
    assert not path.exists() and not path.parent.exists()  # the empty parent goes too
    vm_cgroup.remove("abc", str(root))  # idempotent
