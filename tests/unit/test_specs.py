"""Spec validation: what users type is checked before anything is stored."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dockyard.model.instance import InstanceCreate, LimitsSpec, VolumeSpec
from dockyard.model.network import NetworkCreate
from dockyard.model.units import format_size, parse_size

GOOD = {"name": "web-1", "image": "dockyard/busybox:latest"}


@pytest.mark.parametrize("text,expected", [
    ("256M", 256 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("512MiB", 512 << 20),
    ("1048576", 1 << 20), (4096, 4096), ("64k", 64 << 10),
])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "12Q", "-5M", "1.2.3G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(64 << 20) == "64M"
    assert format_size(None) == "-"


@pytest.mark.parametrize("field,value,needle", [
    ("name", "Web", "lower-case"), ("name", "-web", "lower-case"), ("name", "a" * 64, "1-63"),
    ("name", "web_1", "lower-case"), ("hostname", "bad host", "DNS label"),
    ("hostname", "-x", "DNS label"), ("ip", "10.0.0.256", "IPv4"), ("ip", "::1", "IPv4"),
    ("image", "has space", "image"), ("image", "", "at least 1"),
    ("env", {"1X": "v"}, "environment"), ("env", {"K": "a\x00b"}, "NUL"),
    ("limits", {"memory": "abc"}, "size"), ("limits", {"memory": 0}, "more than 0"),
    ("limits", {"memory": "5M"}, "6M"), ("limits", {"cores": -1}, "greater than"),
    ("limits", {"pids": 0}, "greater than"), ("limits", {"cpus": 0}, "greater than"),
    ("limits", {"bogus": 1}, "Extra inputs"),
    ("volumes", [{"source": "v", "target": "rel"}], "absolute"),
    ("volumes", [{"source": "/a/../b", "target": "/x"}], ".."),
    ("volumes", [{"source": "v", "target": "/"}], "must not be '/'"),
    ("volumes", [{"source": "v", "target": "/a"}, {"source": "w", "target": "/a"}],
     "same target"),
    ("volumes", [{"source": "Bad Name", "target": "/a"}], "volume name"),
])
def test_instance_create_rejects(field: str, value: Any, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        InstanceCreate.model_validate({**GOOD, field: value})
    assert needle in str(info.value)


def test_instance_create_defaults() -> None:
    spec = InstanceCreate.model_validate(GOOD)
    assert spec.network == "default" and spec.limits.pids == 4096 and spec.limits.cores == 0
    assert spec.limits.memory is None
    assert LimitsSpec.model_validate({"memory": "64M"}).memory == 64 << 20


def test_volume_parse() -> None:
    assert VolumeSpec.parse("data:/srv:ro") == VolumeSpec(source="data", target="/srv",
                                                          read_only=True)
    assert VolumeSpec.parse("/host/p:/mnt").is_host_path
    with pytest.raises(ValueError):
        VolumeSpec.parse("just-one-part")


@pytest.mark.parametrize("body,needle", [
    ({"subnet": "10.0.0.0/33"}, "subnet"), ({"subnet": "10.0.0.1/24"}, "host bits"),
    ({"subnet": "10.0.0.0/30"}, "/29"), ({"subnet": "127.0.0.0/8"}, "usable"),
    ({"subnet": "10.0.0.0/24", "gateway": "10.0.0.x"}, "not an IPv4 address"),
    ({"subnet": "10.0.0.0/24", "dns": ["x"]}, "dns"),
])
def test_network_create_rejects(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        NetworkCreate.model_validate({"name": "n", **body})
    assert needle in str(info.value)


@pytest.mark.parametrize("gateway", ["10.0.1.1", "10.0.0.0", "10.0.0.255"])
def test_network_gateway_outside_the_hosts_is_a_conflict(gateway: str) -> None:
    spec = NetworkCreate(name="n", subnet="10.0.0.0/24", gateway=gateway)
    assert spec.gateway_problem() == f"gateway {gateway} is not a host address of 10.0.0.0/24"
    assert NetworkCreate(name="n", subnet="10.0.0.0/24", gateway="10.0.0.9"
                         ).gateway_problem() is None


def test_network_gateway_defaults_to_first_address() -> None:
    assert NetworkCreate(name="n", subnet="10.9.0.0/16").gateway == "10.9.0.1"
