"""The live-migration preflight (model/live.py) and the /proc parsers it reads (adapters/criu.py),
table-driven: each row is one situation and the failure codes it must produce."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dockyard.adapters import criu
from dockyard.model import live
from dockyard.model.live import (
    CriuFacts,
    HostFacts,
    InstanceFacts,
    MountFact,
    MountPoint,
    SocketFact,
    evaluate,
    own_mount,
    summary,
)

AGENT = "/var/lib/dockyard/agent/instances"
LXCFS = "/var/lib/dockyard/lxcfs"
OWN = [
    MountFact(kind="bind", source=f"{AGENT}/i1/hosts", destination="/etc/hosts"),
    MountFact(kind="bind", source=f"{AGENT}/i1/resolv.conf", destination="/etc/resolv.conf"),
    MountFact(kind="bind", source=f"{AGENT}/i1/authorized_keys",
              destination="/etc/dockyard/authorized_keys"),
    MountFact(kind="bind", source=f"{LXCFS}/proc/meminfo", destination="/proc/meminfo"),
    MountFact(kind="volume", source="/var/lib/docker/volumes/dyv-x/_data",
              destination="/data"),
]


# an instance of the current layout as /proc/PID/mountinfo shows it (trimmed): the root is
# runc's slave, the lxcfs files are private binds named in the config
MOUNTINFO = "\n".join([
    "160 140 0:51 / / rw,relatime master:14 - overlay overlay rw,lowerdir=/l,upperdir=/u",
    "161 160 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw",
    "162 160 0:56 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755",
    "163 162 0:57 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620",
    "164 162 0:52 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw",
    "165 160 0:58 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro",
    "166 165 0:30 / /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory",
    "167 160 254:0 /var/lib/dy/agent/i1/hosts /etc/hosts ro,relatime - ext4 /dev/vda rw",
    "168 160 254:0 /var/lib/dy/agent/i1/resolv.conf /etc/resolv.conf ro - ext4 /dev/vda rw",
    "169 160 254:0 /var/lib/docker/containers/c/hostname /etc/hostname rw - ext4 /dev/vda rw",
    "170 161 0:42 /proc/meminfo /proc/meminfo ro,relatime - fuse.lxcfs lxcfs rw",
    "171 161 0:42 /proc/uptime /proc/uptime ro,relatime - fuse.lxcfs lxcfs rw",
    "172 160 254:0 /var/lib/docker/volumes/dyv-x/_data /data rw - ext4 /dev/vda rw",
    "173 161 0:4 /null /proc/kcore rw,nosuid - devtmpfs udev rw,size=10m",
])
LXCFS_BINDS = [MountFact(kind="bind", source=f"{LXCFS}/fs/proc/{f}",
                         destination=f"/proc/{f}", propagation="rprivate")
               for f in ("meminfo", "uptime")]
# the earlier layout: ROOT shared into the instance (rslave) with lxcfs propagated below it
LEGACY_MOUNTS = [*LXCFS_BINDS, MountFact(kind="bind", source=LXCFS, destination="/run/lxcfs",
                                         propagation="rslave")]
LEGACY_MOUNTINFO = MOUNTINFO + "\n" + "\n".join([
    "174 160 254:0 /var/lib/dockyard/lxcfs /run/lxcfs ro,relatime master:2 - ext4 /dev/vda rw",
    "175 174 0:42 / /run/lxcfs/fs rw,nosuid,nodev,relatime master:3 - fuse.lxcfs lxcfs rw"])


def host(name: str, **over: Any) -> HostFacts:
    base: dict[str, Any] = {
        "host": name, "criu": CriuFacts(path="/opt/criu", found=True, version="4.1.1",
                                        check_ok=True),
        "checkpoint": True, "docker_version": "20.10.24", "kernel": "6.18.44",
        "cpu_flags": ["avx2", "fpu", "sse4_2", "xsave"], "own_roots": [AGENT, LXCFS],
        "lxcfs": True}
    base.update(over)
    return HostFacts(**base)


def inst(**over: Any) -> InstanceFacts:
    base: dict[str, Any] = {"running": True, "pid": 100, "processes": 2, "mounts": OWN,
                            "sockets": [], "links": ["lo", "eth0"],
                            "devices": ["/dev/null", "/dev/pts/0", "/dev/urandom"]}
    base.update(over)
    return InstanceFacts(**base)


def tcp(state: str, kind: str = "tcp") -> SocketFact:
    return SocketFact(kind=kind, state=state, local="10.241.0.5:40000",
                      remote="10.241.0.6:22", pid=101, inode=7)


CASES: list[tuple[str, HostFacts, HostFacts, str | None, list[str]]] = [
    ("all good", host("h1", instance=inst()), host("h2"), None, []),
    ("listening socket and udp are fine",
     host("h1", instance=inst(sockets=[tcp("LISTEN"), tcp("CLOSE"),
                                       SocketFact(kind="udp", inode=3),
                                       SocketFact(kind="unix", inode=4),
                                       SocketFact(kind="netlink", inode=5)])),
     host("h2"), None, []),
    ("no criu on the target", host("h1", instance=inst()),
     host("h2", criu=CriuFacts(path="criu", found=False)), None, ["criu_missing"]),
    ("criu check fails on the source",
     host("h1", instance=inst(), criu=CriuFacts(path="criu", found=True, version="3.17.1",
                                                check_output="vdso: Unexpected rt vDSO")),
     host("h2"), None, ["criu_check_failed"]),
    ("dockerd without experimental", host("h1", instance=inst()),
     host("h2", checkpoint=False), None, ["no_checkpoint_support"]),
    ("other kernel", host("h1", instance=inst()), host("h2", kernel="6.1.0"), None,
     ["kernel_mismatch"]),
    ("target lacks avx2", host("h1", instance=inst()),
     host("h2", cpu_flags=["fpu", "sse4_2", "xsave"]), None, ["cpu_features_missing"]),
    ("target has more CPU features: fine", host("h1", instance=inst()),
     host("h2", cpu_flags=["avx2", "avx512f", "fpu", "sse4_2", "xsave"]), None, []),
    ("established TCP", host("h1", instance=inst(sockets=[tcp("ESTABLISHED")])), host("h2"),
     None, ["tcp_established"]),
    ("half-open TCP6", host("h1", instance=inst(sockets=[tcp("SYN_SENT", "tcp6")])),
     host("h2"), None, ["tcp_established"]),
    ("close-wait TCP", host("h1", instance=inst(sockets=[tcp("CLOSE_WAIT")])), host("h2"),
     None, ["tcp_established"]),
    ("a listening sshd and a UDP socket where the probe dump of inet sockets passed",
     host("h1", instance=inst(sockets=[tcp("LISTEN"), SocketFact(kind="udp", inode=6)]),
          criu=CriuFacts(path="criu", found=True, version="4.2.1", check_ok=True,
                         inet_sockets=True)),
     host("h2"), None, []),
    ("a listening sshd where criu's probe dump of inet sockets failed",
     host("h1", instance=inst(sockets=[tcp("LISTEN"), tcp("LISTEN", "tcp6")]),
          criu=CriuFacts(path="criu", found=True, version="4.1.1", check_ok=True,
                         inet_sockets=False,
                         inet_sockets_error="Can't get 1:16 opt")),
     host("h2"), None, ["criu_socket_options"]),
    ("unix and netlink sockets are fine where the kernel refuses it on inet sockets",
     host("h1", instance=inst(sockets=[SocketFact(kind="unix", inode=4),
                                       SocketFact(kind="netlink", inode=5)]),
          criu=CriuFacts(path="criu", found=True, version="4.1.1", check_ok=True,
                         inet_sockets=False,
                         inet_sockets_error="Can't get 1:16 opt")),
     host("h2"), None, []),
    ("unknown socket family", host("h1", instance=inst(
        sockets=[SocketFact(kind="unknown", inode=9, pid=5)])), host("h2"), None,
     ["unsupported_sockets"]),
    ("host path bind mount", host("h1", instance=inst(mounts=[*OWN, MountFact(
        kind="bind", source="/srv/data", destination="/data2")])), host("h2"), None,
     ["external_bind_mounts"]),
    ("a bind from the agent's dir onto another target is not ours",
     host("h1", instance=inst(mounts=[MountFact(kind="bind", source=f"{AGENT}/i1/hosts",
                                                destination="/etc/passwd")])),
     host("h2"), None, ["external_bind_mounts"]),
    ("lxcfs instance of the current layout",
     host("h1", instance=inst(mounts=[*OWN, *LXCFS_BINDS],
                              mountinfo=criu.parse_mountinfo(MOUNTINFO))), host("h2"), None,
     []),
    ("lxcfs instance, the target has no lxcfs",
     host("h1", instance=inst(mounts=[*OWN, *LXCFS_BINDS],
                              mountinfo=criu.parse_mountinfo(MOUNTINFO))),
     host("h2", lxcfs=False), None, ["lxcfs_missing"]),
    ("no lxcfs on the target is fine for a --no-lxcfs instance",
     host("h1", instance=inst(mountinfo=criu.parse_mountinfo(MOUNTINFO.replace(
         "fuse.lxcfs", "proc")))), host("h2", lxcfs=False), None, []),
    ("the earlier lxcfs layout: propagation, a propagated FUSE mount",
     host("h1", instance=inst(mounts=[*OWN, *LEGACY_MOUNTS],
                              mountinfo=criu.parse_mountinfo(LEGACY_MOUNTINFO))),
     host("h2"), None, ["propagated_mounts", "unsupported_mounts", "shared_mounts"]),
    ("a volume bind with propagation from the host",
     host("h1", instance=inst(mounts=[*OWN, MountFact(kind="volume", source="/vol/data",
                                                      destination="/data",
                                                      propagation="rslave")])),
     host("h2"), None, ["propagated_mounts"]),
    ("a mount made inside the instance (no config entry)",
     host("h1", instance=inst(mountinfo=[MountPoint(mount_point="/mnt/disk", fstype="ext4",
                                                    root="/")])),
     host("h2"), None, ["unsupported_mounts"]),
    ("a tmpfs made inside the instance is dumped by CRIU",
     host("h1", instance=inst(mountinfo=[MountPoint(mount_point="/scratch", fstype="tmpfs")])),
     host("h2"), None, []),
    ("a slave of an outside peer group",
     host("h1", instance=inst(mountinfo=[MountPoint(mount_point="/srv", fstype="tmpfs",
                                                    propagation=["master:9"])])),
     host("h2"), None, ["shared_mounts"]),
    ("a named volume's bind is a slave, but external: fine",
     host("h1", instance=inst(mountinfo=[MountPoint(mount_point="/data", fstype="ext4",
                                                    propagation=["master:6"])])),
     host("h2"), None, []),
    ("a slave of a peer group inside the instance is fine",
     host("h1", instance=inst(mountinfo=[
         MountPoint(mount_point="/a", fstype="tmpfs", propagation=["shared:4"]),
         MountPoint(mount_point="/b", fstype="tmpfs", propagation=["master:4"])])),
     host("h2"), None, []),
    ("an open /dev/kvm", host("h1", instance=inst(devices=["/dev/null", "/dev/kvm"])),
     host("h2"), None, ["open_devices"]),
    ("a link made inside the netns",
     host("h1", instance=inst(links=["lo", "eth0", "vxlan0"])), host("h2"), None,
     ["network_links"]),
    ("a container made with a Docker network sandbox",
     host("h1", instance=inst(sandbox=True)), host("h2"), None, ["docker_sandbox"]),
    ("instance not running", host("h1", instance=inst(running=False)), host("h2"), None,
     ["instance_not_running"]),
    ("no instance facts", host("h1"), host("h2"), None, ["instance_not_running"]),
    ("target full", host("h1", instance=inst()), host("h2"),
     "not enough memory (needs 2G, 1G free)", ["target_capacity"]),
    ("target agent unreachable", host("h1", instance=inst()),
     host("h2", error="agent unreachable", checkpoint=False,
          criu=CriuFacts(path="?")), None, ["host_facts_unavailable"]),
    ("everything wrong at once",
     host("h1", instance=inst(sockets=[tcp("ESTABLISHED")]), checkpoint=False),
     host("h2", criu=CriuFacts(path="criu"), kernel="5.10"), "no room",
     ["criu_missing", "no_checkpoint_support", "kernel_mismatch", "tcp_established",
      "target_capacity"]),
]


@pytest.mark.parametrize(("source", "target", "capacity", "codes"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preflight(source: HostFacts, target: HostFacts, capacity: str | None,
                   codes: list[str]) -> None:
    failures = evaluate(source, target, capacity)
    assert sorted(f.code for f in failures) == sorted(codes)
    for f in failures:
        assert f.fix and f.message and f.host in ("h1", "h2")
    if failures:
        assert all(code in summary(failures) for code in codes)


def test_every_reason_has_a_case_of_its_own() -> None:
    """Each failure code the preflight can give is the only one of some case above."""
    source = Path(live.__file__).read_text()
    codes = set(re.findall(r'code="([a-z_]+)"', source))
    alone = {c[4][0] for c in CASES if len(set(c[4])) == 1}
    assert codes and codes - alone == set(), codes - alone


def test_named_failure_says_which_host_and_what() -> None:
    failures = evaluate(host("h1", instance=inst(sockets=[tcp("ESTABLISHED")])),
                        host("h2", checkpoint=False), None)
    by_code = {f.code: f for f in failures}
    assert by_code["tcp_established"].host == "h1"
    assert "10.241.0.6:22" in by_code["tcp_established"].message
    assert by_code["no_checkpoint_support"].host == "h2"
    assert "--experimental" in by_code["no_checkpoint_support"].fix


@pytest.mark.parametrize(("mount", "own"), [
    (OWN[0], True), (OWN[3], True), (OWN[4], True),
    (MountFact(kind="bind", source="/srv", destination="/srv"), False),
    (MountFact(kind="bind", source=f"{AGENT}-evil/x", destination="/etc/hosts"), False),
    (MountFact(kind="tmpfs", source="", destination="/run"), True),
])
def test_own_mount(mount: MountFact, own: bool) -> None:
    assert own_mount(mount, [AGENT, LXCFS]) is own


TAIL = "00000000:00000000 00:00000000 00000000     0        0"
HEAD = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode")
TCP_TABLE = "\n".join([
    HEAD,
    f"   0: 00000000:0016 00000000:0000 0A {TAIL} 1152 1 0 100 0 0 10 0",
    f"   1: 0500F10A:9C40 0600F10A:0016 01 {TAIL} 2233 1 0 20 4 30 10 -1"])
V6_ANY = "0" * 32
TCP6_TABLE = "\n".join([
    HEAD,
    f"   0: {'0' * 24}01000000:1F90 {V6_ANY}:0000 0A {TAIL} 4455 1 0 100 0 0 10 0"])
UNIX_TABLE = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000025b5d617: 00000002 00000000 00010000 0001 01  6230 /run/app.sock
0000000025b5d618: 00000003 00000000 00000000 0001 03  6231
"""


def test_parse_tcp_tables() -> None:
    table = criu.parse_inet_table(TCP_TABLE, "tcp")
    assert table[1152].state == "LISTEN" and table[1152].local == "0.0.0.0:22"
    assert table[2233].state == "ESTABLISHED"
    assert (table[2233].local, table[2233].remote) == ("10.241.0.5:40000", "10.241.0.6:22")
    six = criu.parse_inet_table(TCP6_TABLE, "tcp6")
    assert six[4455].local == "[::1]:8080" and six[4455].state == "LISTEN"
    assert criu.parse_inet_table(TCP_TABLE, "udp")[2233].state == ""


def test_parse_mountinfo_keeps_propagation_and_escapes() -> None:
    points = criu.parse_mountinfo(LEGACY_MOUNTINFO + "\n180 160 0:9 / /mnt/a\\040b rw - tmpfs x rw"
                                  "\ngarbage")
    by_point = {p.mount_point: p for p in points}
    assert by_point["/"].propagation == ["master:14"] and by_point["/"].fstype == "overlay"
    assert by_point["/run/lxcfs/fs"].propagation == ["master:3"]
    assert by_point["/proc/meminfo"].root == "/proc/meminfo"
    assert by_point["/proc/meminfo"].fstype == "fuse.lxcfs"
    assert "/mnt/a b" in by_point and len(points) == 17


def test_parse_net_dev_and_this_process() -> None:
    text = ("Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\n")
    assert criu.parse_net_dev(text) == ["lo", "eth0"]
    import os
    assert "lo" in criu.links(os.getpid())
    with open("/dev/zero", "rb"):
        assert "/dev/zero" in criu.open_devices([os.getpid()])


def test_parse_unix_table() -> None:
    table = criu.parse_inode_table(UNIX_TABLE, "unix", 6)
    assert table[6230].local == "/run/app.sock" and table[6231].kind == "unix"


def test_sockets_of_this_process() -> None:
    """Our own process: a listening and a connected TCP socket, read back from /proc."""
    import os
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        facts = criu.sockets([os.getpid()], os.getpid())
        states = {s.state for s in facts if s.kind == "tcp"}
        assert {"LISTEN", "ESTABLISHED"} <= states
        assert all(s.pid == os.getpid() for s in facts)
    finally:
        for s in (accepted, client, server):
            s.close()


def test_cpu_flags_and_pids() -> None:
    import os
    assert criu.cpu_flags()  # this machine's /proc/cpuinfo has flags
    assert os.getpid() in criu.instance_pids(os.getpid())


def test_criu_facts_for_a_missing_binary() -> None:
    facts = criu.criu_facts("/nonexistent/criu")
    assert not facts.found and not facts.check_ok


def test_criu_socket_options_names_the_sockets_and_the_probes_error() -> None:
    failing = CriuFacts(path="criu", found=True, version="4.1.1", check_ok=True,
                        inet_sockets=False, inet_sockets_error="Can't get 1:16 opt")
    failures = evaluate(host("h1", instance=inst(sockets=[tcp("LISTEN")]), criu=failing),
                        host("h2"), None)
    (failure,) = failures
    assert failure.code == "criu_socket_options" and failure.host == "h1"
    assert "Can't get 1:16 opt" in failure.message and "4.1.1" in failure.message
    assert "tcp 10.241.0.5:40000 LISTEN (pid 101)" in failure.message


def test_criu_log_errors_read_the_log_runc_names(tmp_path: Path) -> None:
    """runc says only "type NOTIFY errno 0"; the agent's error carries the log's own lines."""
    log = tmp_path / "criu-dump.log"
    log.write_text("(00.01) Dumping pid 1\n"
                   "(00.02) Error (criu/files-reg.c:1799): Can't lookup mount=1234\n"
                   "(00.03) Warn  (criu/x.c:1): nothing\n")
    message = (f"checkpoint dy-x: Cannot checkpoint container: criu failed: type NOTIFY "
               f"errno 0 path= {log}: unknown")
    assert criu.log_errors(message) == "(00.02) Error (criu/files-reg.c:1799): Can't lookup " \
        "mount=1234"
    assert criu.log_errors(f"criu failed\nlog file: {log}").startswith("(00.02) Error")
    assert criu.log_errors("criu failed: type NOTIFY errno 0") == ""
    assert criu.log_errors(f"path= {tmp_path}/gone/criu-dump.log: unknown") == ""
