"""Networks: an L2 segment with a subnet, a gateway on the host bridge, and no NAT."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field, field_validator, model_validator

from dockyard.model.instance import Strict
from dockyard.model.validators import IPV4_RE, NAME_SCHEMA, SUBNET_SCHEMA, Name


class NetworkMode(StrEnum):
    bridge = "bridge"  # a Linux bridge per host; spans hosts through the uplink trunk
    ovs = "ovs"  # an Open vSwitch port per instance, tagged with the network's VLAN


VLAN_MIN, VLAN_MAX = 2, 4094  # VLAN 1 is the default/untagged VLAN of every bridge port


class NetworkCreate(Strict):
    name: Name = Field(json_schema_extra=NAME_SCHEMA)
    subnet: str = Field(description="an IPv4 subnet /8 to /29, e.g. 10.240.0.0/16",
                        json_schema_extra=SUBNET_SCHEMA)
    gateway: str | None = Field(None, description="default: the first address of the "
                                "subnet; another one must be a host address of it (409)",
                                json_schema_extra={"pattern": IPV4_RE.pattern})
    dns: list[str] = Field(default_factory=list, max_length=8, json_schema_extra={
        "items": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}})
    mode: NetworkMode = NetworkMode.bridge
    vlan: int | None = Field(None, ge=VLAN_MIN, le=VLAN_MAX,
                             description="802.1Q tag on the uplink trunk (and of the OVS "
                             "ports); default: the server picks a free one")
    shared: bool = Field(False, description="every project may launch on it (read-only); "
                         "`default` is always shared")
    nat: bool = Field(False, description="masquerade traffic that leaves the host (a laptop "
                      "without a routed subnet); off by default: instances are routed")

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 subnet such as 10.240.0.0/16: {exc}") \
                from exc
        if net.prefixlen > 29 or net.prefixlen < 8:
            raise ValueError("subnet prefix must be between /8 and /29")
        if net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved:
            raise ValueError(f"{value} is not a usable unicast subnet")
        return str(net)

    @field_validator("dns")
    @classmethod
    def _dns(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_address(item)))
            except ValueError as exc:
                raise ValueError(f"dns server {item!r} is not an IP address") from exc
        return out

    @model_validator(mode="after")
    def _gateway(self) -> NetworkCreate:
        net = ipaddress.IPv4Network(self.subnet)
        if self.gateway is None:
            self.gateway = str(net.network_address + 1)
            return self
        try:
            gw = ipaddress.IPv4Address(self.gateway)
        except ValueError as exc:
            raise ValueError(f"gateway {self.gateway!r} is not an IPv4 address") from exc
        self.gateway = str(gw)
        return self

    def gateway_problem(self) -> str | None:
        """Why the gateway cannot serve the subnet (a conflict of two valid values, which no
        schema states: the server answers it 409)."""
        net, gw = ipaddress.IPv4Network(self.subnet), ipaddress.IPv4Address(self.gateway)
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            return f"gateway {gw} is not a host address of {net}"
        return None


class Network(BaseModel):
    id: str
    name: str
    project: str
    subnet: str
    gateway: str
    dns: list[str]
    mode: NetworkMode
    vlan: int | None = None
    shared: bool = False
    nat: bool = False
    bridge: str
    instances: int = 0
    created_at: datetime
