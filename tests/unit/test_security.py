"""Admin-only power and confinement: capability names, host paths, security options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from dockyard.agent.security import HostPolicy, confinement, resolve_host_path
from dockyard.errors import Forbidden, InvalidRequest
from dockyard.model.agent import DesiredInstance, DesiredNetwork
from dockyard.model.instance import InstanceCreate, Limits
from dockyard.model.validators import CAPABILITIES
from dockyard.server.powers import check_admin_powers


def spec(**fields: object) -> InstanceCreate:
    return InstanceCreate.model_validate({"name": "a", "image": "busybox", **fields})


def desired(cap_add: list[str], no_new_privileges: bool = True) -> DesiredInstance:
    net = DesiredNetwork(id="n", name="default", bridge="dybn", subnet="10.0.0.0/24",
                         gateway="10.0.0.1")
    return DesiredInstance(id="i", name="a", project="p", generation=1,
                           desired_state="running", restart_serial=0, image="busybox",
                           hostname="a", network=net, ip="10.0.0.5", prefixlen=24,
                           mac="02:00:0a:00:00:05", dns=[], limits=Limits(), volumes=[],
                           env={}, cap_add=cap_add, no_new_privileges=no_new_privileges,
                           revision=1)


@pytest.mark.parametrize("given,want", [
    (["net_admin", "CAP_NET_RAW"], ["NET_ADMIN", "NET_RAW"]),
    (["SYS_TIME", "SYS_TIME"], ["SYS_TIME"]),
    (["NET_ADMIN", "all"], ["ALL"]),
    ([], []),
])
def test_capabilities_are_normalized(given: list[str], want: list[str]) -> None:
    assert spec(cap_add=given).cap_add == want


@pytest.mark.parametrize("bad", ["NET_ADMIN;rm -rf /", "SYS_EVERYTHING", "", "x" * 10000,
                                 "NET ADMIN"])
def test_unknown_capabilities_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="capability"):
        spec(cap_add=[bad])


@pytest.mark.parametrize("source", ["/", "/proc", "/proc/1/root", "/sys/fs", "/dev/sda",
                                    "//", "/a/../proc", "/tmp/\x00x"])
def test_never_allowed_host_paths(source: str) -> None:
    with pytest.raises(ValidationError):
        spec(volumes=[{"source": source, "target": "/mnt"}])


@pytest.mark.parametrize("env", [{"A": "x\ny"}, {"A": "x\ry"}, {"A": "\x00"},
                                 {"A": "x" * 40000}, {"K" * 300: "x"}])
def test_env_values_must_be_one_line(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="environment"):
        spec(env=env)


@pytest.mark.parametrize("fields,message", [
    ({"cap_add": ["NET_ADMIN"]}, "capabilities"),
    ({"volumes": [{"source": "/srv/x", "target": "/mnt"}]}, "host-path"),
    ({"host": "h1"}, "pin"),
])
def test_members_may_not_use_admin_powers(fields: dict[str, object], message: str) -> None:
    with pytest.raises(Forbidden, match=message):
        check_admin_powers(spec(**fields), "member")
    check_admin_powers(spec(**fields), "admin")


def test_members_may_use_named_volumes() -> None:
    check_admin_powers(spec(volumes=[{"source": "data", "target": "/mnt"}]), "member")


def test_confinement() -> None:
    lacking = HostPolicy("", frozenset(CAPABILITIES) - {"SYS_RESOURCE"})
    member = confinement(desired([]), lacking)
    assert (member.cap_add, member.cap_drop) == ([], [])
    assert member.security_opt == ["no-new-privileges"]
    every = confinement(desired(["ALL"], no_new_privileges=False), lacking)
    assert (every.cap_add, every.cap_drop, every.security_opt) == (["ALL"], ["SYS_RESOURCE"],
                                                                   [])
    assert confinement(desired(["ALL"]), HostPolicy()).cap_drop == []
    with pytest.raises(InvalidRequest, match="SYS_RESOURCE"):
        confinement(desired(["SYS_RESOURCE"]), lacking)
    for conf in (member, every):
        assert not any("unconfined" in opt for opt in conf.security_opt)


def test_host_paths_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    os.symlink("/etc", root / "etc-link")
    os.symlink(root / "data", root / "inner-link")
    os.symlink("/proc", root / "proc-link")
    (tmp_path / "rootx").mkdir()
    assert resolve_host_path(str(root / "data"), str(root)) == str(root / "data")
    assert resolve_host_path(str(root / "inner-link"), str(root)) == str(root / "data")
    for escape in (root / "etc-link", root / "proc-link", root / "etc-link" / "passwd",
                   tmp_path / "rootx"):
        with pytest.raises(InvalidRequest, match="outside the allowed root"):
            resolve_host_path(str(escape), str(root))
    with pytest.raises(InvalidRequest, match="does not exist"):
        resolve_host_path(str(root / "missing"), str(root))
    with pytest.raises(InvalidRequest, match="no host-path"):
        resolve_host_path(str(root / "data"), "")
    with pytest.raises(InvalidRequest, match="never allowed"):
        resolve_host_path("/proc/1", "/proc")
