"""Bad input: a clear 4xx (CLI: non-zero exit, one line on stderr) and nothing created."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from typing import Any

import httpx
import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard


def state(dy: Dockyard) -> tuple[Any, ...]:
    return (dy.db_query("SELECT id FROM instances"), dy.db_query("SELECT * FROM ip_allocations"),
            dy.db_query("SELECT * FROM core_allocations"), dy.db_query("SELECT id FROM networks"),
            sorted(c.id for c in dy.containers()))


def subnet_ip(dy: Dockyard, host: int) -> str:
    net = ipaddress.IPv4Network(dy.subnet)
    return str(net.network_address + host)


@pytest.fixture(scope="module")
def occupant(dy: Dockyard) -> Any:
    inst = dy.ok("launch", IMAGE, "occupant", "--json").json()
    yield inst
    dy.cli("delete", "occupant", "--force")


def host_route_not_ours(dy: Dockyard) -> str:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        dst = line.split()[0]
        if dst != "default" and "/" in dst and not any(b in line for b in dy.bridges):
            return dst
    pytest.fail("this machine has no non-default route to test overlap against")


LAUNCH_CASES = [
    # (case id, extra args, expected status words in the error)
    ("bad-name", ["Bad_Name"], "name"),
    ("name-leading-dash", ["x-"], "name"),
    ("unknown-image", ["nosuch", "--image-override", "nosuch/image:1"], "image"),
    ("unknown-network", ["n1", "--network", "nosuchnet"], "network"),
    ("memory-abc", ["n2", "--memory", "abc"], "size"),
    ("memory-zero", ["n3", "--memory", "0"], "more than 0"),
    ("memory-below-floor", ["n4", "--memory", "1M"], "6M"),
    ("memory-above-host", ["n5", "--memory", "100T"], "memory"),
    ("all-cores", ["n6", "--cores", "64"], "core"),
    ("ip-outside", ["n7", "--ip", "192.0.2.10"], "outside"),
    ("ip-bad", ["n8", "--ip", "10.1.2.300"], "IPv4"),
    ("hostname-bad", ["n9", "--hostname", "bad_host!"], "DNS label"),
    ("volume-relative", ["n10", "-v", "vol:relative/path"], "absolute"),
    ("volume-dotdot-host", ["n11", "-v", "/tmp/../etc:/mnt"], ".."),
    ("volume-outside-root", ["n12", "-v", "/etc:/mnt"], "allowed root"),
    ("env-bad", ["n13", "-e", "1BAD=x"], "environment"),
]


@pytest.mark.parametrize("case,args,words", LAUNCH_CASES, ids=[c[0] for c in LAUNCH_CASES])
def test_launch_bad_input(dy: Dockyard, occupant: Any, case: str, args: list[str],
                          words: str) -> None:
    image = IMAGE
    if "--image-override" in args:
        image = args[args.index("--image-override") + 1]
        args = args[:args.index("--image-override")]
    before = state(dy)
    result = dy.cli("launch", image, *args)
    assert result.code != 0
    assert result.err.startswith("error:"), result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert words.lower() in result.err.lower(), result.err
    assert state(dy) == before


def test_duplicate_name_and_ip_in_use(dy: Dockyard, occupant: Any) -> None:
    before = state(dy)
    dup = dy.cli("launch", IMAGE, "occupant")
    assert dup.code != 0 and "already exists" in dup.err
    taken = dy.cli("launch", IMAGE, "other", "--ip", occupant["ip"])
    assert taken.code != 0 and "in use" in taken.err
    for host, word in ((0, "network address"), (1, "gateway"), (255, "broadcast")):
        result = dy.cli("launch", IMAGE, "other", "--ip", subnet_ip(dy, host))
        assert result.code != 0 and word in result.err, result.err
    assert state(dy) == before


def test_unknown_instance_verbs(dy: Dockyard) -> None:
    for verb in (["exec", "ghost", "--", "true"], ["stop", "ghost"], ["start", "ghost"],
                 ["delete", "ghost"], ["show", "ghost"], ["logs", "ghost"],
                 ["restart", "ghost"]):
        result = dy.cli(*verb)
        assert result.code != 0, verb
        assert "not found" in result.err, (verb, result.err)


def test_network_bad_input(dy: Dockyard, occupant: Any) -> None:
    before = state(dy)
    cases = [
        (["net-a", "--subnet", host_route_not_ours(dy)], "overlaps"),
        (["net-b", "--subnet", dy.subnet], "overlaps"),
        (["net-c", "--subnet", "10.250.0.0/33"], "subnet"),
        (["net-d", "--subnet", "10.250.0.1/24"], "subnet"),
        (["net-e", "--subnet", "10.250.0.0/24", "--gateway", "10.251.0.1"], "gateway"),
        (["Bad_Net", "--subnet", "10.250.0.0/24"], "name"),
        (["default", "--subnet", "10.250.0.0/24"], "already exists"),
    ]
    for args, word in cases:
        result = dy.cli("network", "create", *args)
        assert result.code != 0, args
        assert word in result.err, (args, result.err)
    busy = dy.cli("network", "delete", "default")  # the occupant runs on it
    assert busy.code != 0
    assert re.search(r"network default is used by [1-9]\d* instance", busy.err), busy.err
    assert state(dy) == before


def test_network_create_use_delete(dy: Dockyard) -> None:
    third = int(ipaddress.IPv4Network(dy.subnet).network_address.packed[2])
    subnet = f"10.245.{third}.0/28"
    net = dy.ok("network", "create", "side", "--subnet", subnet, "--json").json()
    dy.bridges.add(net["bridge"])
    try:
        inst = dy.ok("launch", IMAGE, "sider", "--network", "side", "--json").json()
        assert ipaddress.IPv4Address(inst["ip"]) in ipaddress.IPv4Network(subnet)
        busy = dy.cli("network", "delete", "side")
        assert busy.code != 0 and "used by 1" in busy.err
        dy.ok("delete", "sider", "--force")
        dy.ok("network", "delete", "side")
        assert dy.cli("network", "show", "side").code != 0
    finally:
        dy.cli("delete", "sider", "--force")
        dy.cli("network", "delete", "side")


def test_api_errors_have_one_shape(dy: Dockyard) -> None:
    url = dy.url
    headers = {"Authorization": f"Bearer {dy.token()}"}
    with httpx.Client(base_url=url, timeout=30, verify=dy.verify) as http:
        cases = [
            (http.get("/v1/instances"), 401),
            (http.get("/v1/instances", headers={"Authorization": "Bearer nope"}), 401),
            (http.post("/v1/instances", content=b"{not json", headers={
                **headers, "Content-Type": "application/json"}), 400),
            (http.post("/v1/instances", json=[1, 2], headers=headers), 400),
            (http.post("/v1/instances", json={"name": "x"}, headers=headers), 422),
            (http.post("/v1/instances", json={"name": "x", "image": IMAGE,
                                              "limits": {"pids": -1}}, headers=headers), 422),
            (http.get("/v1/instances/ghost", headers=headers), 404),
            (http.get("/v1/nosuchroute", headers=headers), 404),
            (http.post("/v1/agent/heartbeat", json={}, headers=headers), 403),
        ]
        for resp, status in cases:
            assert resp.status_code == status, (resp.request.url, resp.text)
            body = resp.json()
            assert set(body) == {"error"}, body
            assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
        assert http.get("/healthz").json() == {"status": "ok"}
        assert "/v1/instances" in http.get("/openapi.json").json()["paths"]
