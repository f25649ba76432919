"""Hostile inputs at the API: each answers a clear 4xx in the one error shape, and nothing is
created (database rows and containers compared before and after, as test_bad_input does)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.test_bad_input import state

LONG = "a" * 10240
HOSTILE_STRINGS = ["a;rm -rf /", "$(reboot)", "`id`", "a|b", "a&&b", "a\nb", "a b", "../x",
                   "ñame", "名前", "a\u202eb", "\x00", "", LONG, "-rf", "a'\"b"]


@pytest.fixture(scope="module")
def http(dy: Dockyard) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dy.url, timeout=60, verify=dy.verify,
                      headers={"Authorization": f"Bearer {dy.token()}"}) as client:
        yield client


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "hostile", "image": IMAGE, **fields}


def volume(source: str, target: str = "/mnt") -> dict[str, Any]:
    return body(volumes=[{"source": source, "target": target}])


def specs(root: str) -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for i, text in enumerate(HOSTILE_STRINGS):
        cases += [(f"name-{i}", body(name=text)), (f"hostname-{i}", body(hostname=text)),
                  (f"network-{i}", body(network=text)), (f"image-{i}", body(image=text)),
                  (f"env-key-{i}", body(env={text: "x"})),
                  (f"cap-{i}", body(cap_add=[text])),
                  (f"group-{i}", body(anti_affinity=text))]
    cases += [
        ("env-newline", body(env={"A": "line1\nline2"})),
        ("env-cr", body(env={"A": "x\rGOTCHA=1"})),
        ("env-nul", body(env={"A": "x\x00y"})),
        ("env-huge", body(env={"A": "x" * 100_000})),
        ("vol-dotdot", volume(f"{root}/../../etc")),
        ("vol-dotdot-target", volume(f"{root}/x", "/mnt/../../etc")),
        ("vol-proc", volume("/proc")), ("vol-proc-self", volume("/proc/self/root")),
        ("vol-sys", volume("/sys")), ("vol-dev", volume("/dev/sda")),
        ("vol-root", volume("/")), ("vol-etc", volume("/etc")),
        ("vol-symlink-out", volume(f"{root}/hostile-link")),
        ("vol-nul", volume(f"{root}/a\x00b")), ("vol-long", volume(f"{root}/{LONG}")),
        ("vol-target-root", volume(f"{root}/x", "/")),
        ("vol-name-shell", volume("$(id)")),
        ("ssh-key-newline", body(ssh_keys=["ssh-ed25519 AAAA\nssh-rsa BBBB"])),
    ]
    numbers: list[tuple[str, Any]] = [
        ("cores", -1), ("cores", 10**20), ("cpus", -1.0), ("cpus", 1e308), ("cpus", "nan"),
        ("cpu_weight", -5), ("cpu_weight", 2**63), ("pids", -1), ("pids", 10**30),
        ("memory", -1), ("memory", "-5M"), ("memory", "99999999999999999999999T"),
        ("memory", 2**70), ("read_bps", "-1M"), ("read_iops", -1), ("write_iops", 10**40),
        ("ingress", "-5mbit"), ("egress", "1e400mbit"), ("cores", "many"),
    ]
    cases += [(f"limit-{key}-{value}", body(limits={key: value})) for key, value in numbers]
    cases += [("ip-huge", body(ip="10.0.0.99999")), ("ip-shell", body(ip="1.2.3.4;id")),
              ("many-volumes", body(volumes=[{"source": f"v{i}", "target": f"/m{i}"}
                                              for i in range(200)]))]
    return cases


def check(resp: httpx.Response) -> None:
    assert 400 <= resp.status_code < 500, (resp.request.url, resp.status_code, resp.text)
    error = resp.json()["error"]
    assert error["code"] and error["message"], resp.text


@pytest.fixture(scope="module")
def root(dy: Dockyard) -> str:
    path = dy.home / "host-paths"
    path.mkdir(parents=True, exist_ok=True)
    link = path / "hostile-link"
    if not link.is_symlink():
        os.symlink("/etc", link)
    return str(path)


def test_hostile_specs(dy: Dockyard, http: httpx.Client, root: str) -> None:
    before = state(dy)
    for case, spec in specs(root):
        resp = http.post("/v1/instances", json=spec)
        check(resp)
        assert resp.status_code != 404 or "network" in case, (case, resp.text)
    assert state(dy) == before


RAW_BODIES = [b"{", b"{not json", b"\xff\xfe\x00", b"null", b"[]", b'"x"', b"1e999999",
              b"[" * 100_000 + b"]" * 100_000, b'{"name": "a", "name": "b"', b"",
              b'{"name":"hostile","image":"' + IMAGE.encode() + b'","limits":{"pids":1e999}}']


def test_malformed_json(dy: Dockyard, http: httpx.Client) -> None:
    before = state(dy)
    for raw in RAW_BODIES:
        check(http.post("/v1/instances", content=raw,
                        headers={"Content-Type": "application/json"}))
    assert state(dy) == before


def test_wrong_content_types(dy: Dockyard, http: httpx.Client) -> None:
    before = state(dy)
    valid = b'{"name": "hostile", "image": "' + IMAGE.encode() + b'"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", "application/xml", ""):
        check(http.post("/v1/instances", content=valid,
                        headers={"Content-Type": content_type}))
    check(http.post("/v1/instances", data={"name": "hostile", "image": IMAGE}))
    check(http.post("/v1/networks", content=b"name=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"}))
    assert state(dy) == before


def test_hostile_refs_and_networks(dy: Dockyard, http: httpx.Client) -> None:
    before = state(dy)
    for text in ("a;rm -rf ~", "名前", LONG, "%00", "..", "$(id)"):
        ref = quote(text, safe="")
        check(http.get(f"/v1/instances/{ref}"))
        check(http.delete(f"/v1/instances/{ref}"))
        check(http.post("/v1/networks", json={"name": text, "subnet": "10.250.7.0/24"}))
    for subnet in ("10.250.7.0/-1", "10.250.7.0/99999", "0.0.0.0/0", "a;b", LONG):
        check(http.post("/v1/networks", json={"name": "hostile", "subnet": subnet}))
    check(http.get("/v1/instances", params={"limit": -1}))
    check(http.get("/v1/instances", params={"limit": 10**30}))
    assert state(dy) == before
