"""Admin-only power and anti-spoofing, for real: a member is refused capabilities, host paths
and host pinning (403, nothing created); members' instances run with no-new-privileges and
Docker's seccomp profile; a symlink out of the allowed root is refused; an instance that
changes its own IP or MAC never reaches its neighbour."""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from dockyard.adapters import antispoof
from dockyard.model.ids import host_veth_name
from dockyard.store import tokens
from dockyard.store.db import Database
from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.test_bad_input import state


def mint_member(dy: Dockyard) -> str:
    """A member token of the admin's project, minted straight into the store."""
    project_id = dy.db_query("SELECT project_id FROM tokens WHERE role='admin'")[0][0]
    db = Database(f"sqlite:///{dy.home / 'dockyard.db'}")
    try:
        with db.session() as sess:
            return tokens.mint(sess, "member", project_id=project_id, description="test")
    finally:
        db.engine.dispose()


@pytest.fixture(scope="module")
def member(dy: Dockyard) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dy.url, timeout=120, verify=dy.verify, headers={
            "Authorization": f"Bearer {mint_member(dy)}"}) as http:
        yield http


def inspect(container_id: str) -> dict[str, Any]:
    client = docker.from_env()
    try:
        return dict(client.api.inspect_container(container_id))
    finally:
        client.close()


def sh(dy: Dockyard, name: str, script: str) -> str:
    result = dy.cli("exec", name, "--", "sh", "-c", script)
    assert result.code == 0, f"{script}: {result.err}{result.out}"
    return result.out


def allowed_root(dy: Dockyard) -> Path:
    root = dy.home / "host-paths"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.parametrize("extra,words", [
    ({"cap_add": ["NET_ADMIN"]}, "only an admin may add capabilities"),
    ({"cap_add": ["ALL"]}, "only an admin may add capabilities"),
    ({"volumes": [{"source": "/srv/x", "target": "/mnt"}]}, "host-path"),
    ({"host": "anything"}, "pin an instance"),
])
def test_member_may_not_use_admin_powers(dy: Dockyard, member: httpx.Client,
                                         extra: dict[str, Any], words: str) -> None:
    before = state(dy)
    for explain in ("false", "true"):
        resp = member.post("/v1/instances", params={"explain": explain},
                           json={"name": "nope", "image": IMAGE, **extra})
        assert resp.status_code == 403, resp.text
        assert words in resp.json()["error"]["message"]
    assert state(dy) == before


def test_member_instance_is_confined(dy: Dockyard, member: httpx.Client) -> None:
    resp = member.post("/v1/instances", params={"wait": "true"},
                       json={"name": "plain", "image": IMAGE})
    assert resp.status_code == 201, resp.text
    try:
        host = inspect(resp.json()["container_id"])["HostConfig"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert not host["CapAdd"] and not host["Privileged"]
        status = sh(dy, "plain", "cat /proc/1/status")
        assert "NoNewPrivs:\t1" in status
        assert "Seccomp:\t2" in status  # Docker's default profile, filtering
        # no NET_ADMIN by default: the instance cannot change its own address
        assert dy.cli("exec", "plain", "--", "ip", "addr", "add", "10.9.9.9/32", "dev",
                      "eth0").code != 0
    finally:
        dy.cli("delete", "plain", "--force")


def test_admin_cap_add(dy: Dockyard) -> None:
    try:
        one = dy.ok("launch", IMAGE, "capped", "--cap-add", "net_admin,SYS_TIME",
                    "--json").json()
        assert one["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
        host = inspect(one["container_id"])["HostConfig"]
        assert sorted(host["CapAdd"]) == ["CAP_NET_ADMIN", "CAP_SYS_TIME"] or \
            sorted(host["CapAdd"]) == ["NET_ADMIN", "SYS_TIME"]
        assert not host["SecurityOpt"] or "seccomp=unconfined" not in host["SecurityOpt"]
        sh(dy, "capped", "ip link set eth0 mtu 1400")
        every = dy.ok("launch", IMAGE, "every", "--cap-add", "ALL", "--json").json()
        assert every["state"] == "running"
        host = inspect(every["container_id"])["HostConfig"]
        assert host["CapAdd"] == ["ALL"]
        with open("/proc/self/status") as fh:
            bounding = int(next(ln for ln in fh if ln.startswith("CapBnd:")).split()[1], 16)
        if not bounding >> 24 & 1:  # this machine lacks CAP_SYS_RESOURCE
            assert host["CapDrop"] == ["SYS_RESOURCE"]
        bad = dy.cli("launch", IMAGE, "badcap", "--cap-add", "SYS_EVERYTHING")
        assert bad.code != 0 and "capability" in bad.err
    finally:
        for name in ("capped", "every"):
            dy.cli("delete", name, "--force")


def test_symlink_escape_is_refused(dy: Dockyard) -> None:
    root = allowed_root(dy)
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "hello").write_text("hi\n")
    for name, target in (("etc-link", "/etc"), ("proc-link", "/proc"), ("up-link", "..")):
        link = root / name
        if not link.is_symlink():
            os.symlink(target, link)
    before = state(dy)
    for source in ("etc-link", "proc-link", "up-link", "etc-link/ssh"):
        result = dy.cli("launch", IMAGE, "escape", "-v", f"{root / source}:/mnt")
        assert result.code != 0
        assert "outside the allowed root" in result.err, result.err
    assert state(dy) == before
    try:  # a symlink that stays inside the root is fine, mounted by its resolved name
        os.symlink(root / "data", root / "inner-link")
        inst = dy.ok("launch", IMAGE, "inside", "-v", f"{root / 'inner-link'}:/mnt:ro",
                     "--json").json()
        mounts = inspect(inst["container_id"])["Mounts"]
        assert any(m["Source"] == str(root / "data") for m in mounts), mounts
        assert sh(dy, "inside", "cat /mnt/hello") == "hi\n"
    finally:
        dy.cli("delete", "inside", "--force")
        (root / "inner-link").unlink(missing_ok=True)


# ------------------------------------------------------------------------ anti-spoofing


def echoes(dy: Dockyard, name: str) -> int:
    """ICMP echo requests the instance's kernel received (its netns's /proc/net/snmp)."""
    lines = [ln.split() for ln in sh(dy, name, "cat /proc/net/snmp").splitlines()
             if ln.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


def tx_packets(dy: Dockyard, name: str) -> int:
    return int(sh(dy, name, "cat /sys/class/net/eth0/statistics/tx_packets"))


@pytest.fixture
def neighbours(dy: Dockyard) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    try:
        attacker = dy.ok("launch", IMAGE, "attacker", "--cap-add", "NET_ADMIN,NET_RAW",
                         "--json").json()
        victim = dy.ok("launch", IMAGE, "victim", "--json").json()
        yield attacker, victim
    finally:
        for name in ("attacker", "victim"):
            dy.cli("delete", name, "--force")


def free_ip(dy: Dockyard) -> str:
    used = {row[0] for row in dy.db_query("SELECT ip FROM ip_allocations")}
    for host in ipaddress.IPv4Network(dy.subnet).hosts():
        if str(host) not in used and int(host.packed[3]) > 200:
            return str(host)
    raise AssertionError("no free address in the test subnet")


def legit_ping(dy: Dockyard, victim: dict[str, Any]) -> None:
    seen = echoes(dy, "victim")
    sh(dy, "attacker", f"ping -c 2 -W 2 {victim['ip']}")
    assert echoes(dy, "victim") >= seen + 2


def test_spoofed_ip_never_reaches_the_neighbour(dy: Dockyard, neighbours: Any) -> None:
    attacker, victim = neighbours
    assert antispoof.ports() >= {host_veth_name(attacker["id"]), host_veth_name(victim["id"])}
    legit_ping(dy, victim)  # also fills the attacker's neighbour cache with the victim's MAC
    other = free_ip(dy)
    seen, sent = echoes(dy, "victim"), tx_packets(dy, "attacker")
    sh(dy, "attacker", f"ip addr add {other}/32 dev eth0; "
       f"ping -c 3 -W 1 -I {other} {victim['ip']}; "
       f"arping -c 2 -w 2 -I eth0 -s {other} {victim['ip']}; "
       f"ip addr del {other}/32 dev eth0; true")
    assert tx_packets(dy, "attacker") >= sent + 5  # the frames did leave the instance
    assert echoes(dy, "victim") == seen
    assert other not in sh(dy, "victim", "ip neigh show")  # the spoofed ARP never arrived
    legit_ping(dy, victim)


def test_spoofed_mac_never_reaches_the_neighbour(dy: Dockyard, neighbours: Any) -> None:
    attacker, victim = neighbours
    legit_ping(dy, victim)
    for _ in range(3):  # a resync re-plumbing the changed eth0 mid-way spoils one try
        seen, sent = echoes(dy, "victim"), tx_packets(dy, "attacker")
        out = sh(dy, "attacker", "cat /sys/class/net/eth0/ifindex; "
                 "ip link set eth0 address 02:aa:bb:cc:dd:ee; "
                 # a MAC change flushes the neighbour cache and ARP gets no answer (dropped
                 # too): pin the victim, so the three echo requests really leave
                 f"ip neigh replace {victim['ip']} lladdr {victim['mac']} dev eth0 "
                 "nud permanent; "
                 # busybox ping gives up after -W seconds without a reply: 3 s leaves a
                 # loaded machine time to send all three
                 f"ping -c 3 -i 0.3 -W 3 {victim['ip']}; cat /sys/class/net/eth0/address; "
                 f"ip link set eth0 address {attacker['mac']}; "
                 "cat /sys/class/net/eth0/ifindex; true")
        words = out.split()
        if words[0] == words[-1] and "02:aa:bb:cc:dd:ee" in words:
            break
        time.sleep(1)
    else:
        pytest.fail("the agent re-plumbed eth0 during every try")
    transmitted = int(re.search(r"(\d+) packets transmitted", out).group(1))  # type: ignore[union-attr]
    assert transmitted >= 1, out
    assert tx_packets(dy, "attacker") >= sent + transmitted, out  # the frames did leave
    assert echoes(dy, "victim") == seen
    legit_ping(dy, victim)


def test_rules_go_with_the_instance(dy: Dockyard) -> None:
    inst = dy.ok("launch", IMAGE, "brief", "--json").json()
    port = host_veth_name(inst["id"])
    assert port in antispoof.ports()
    dy.ok("stop", "brief")
    assert port not in antispoof.ports()
    dy.ok("start", "brief")
    assert port in antispoof.ports()
    dy.ok("delete", "brief", "--force")
    assert port not in antispoof.ports()
