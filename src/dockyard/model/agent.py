"""The server ⇄ agent protocol: registration, heartbeat, watch of desired state, reports.

The agent watches with `GET /v1/agent/watch?since=REV` (long poll): the server answers at once
when the host's desired state changed after REV, else after the poll timeout with no changes.
`full=true` asks for the whole desired state (a resync): at once with `since=0`, else held like
any watch. The watch is the heartbeat: every watch request (arrival and answer) refreshes the
host's `last_heartbeat`, so an idle agent costs one request per poll timeout. The agent
reports what it observes per instance.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from dockyard.model.health import HealthcheckSpec, HealthState
from dockyard.model.host import HostInventory
from dockyard.model.instance import DesiredState, InstanceType, Limits, VolumeSpec


class Registration(BaseModel):
    name: str
    api_url: str
    api_secret: str
    inventory: HostInventory
    labels: dict[str, str] = Field(default_factory=dict, description="merged into the host's "
                                   "labels; those given at `host add` win")
    csr: str = Field("", description="PEM certificate request for the agent API's TLS "
                     "certificate (TLS clusters; the server signs it for api_url's host)")


class RegistrationReply(BaseModel):
    host_id: str
    cluster: str
    heartbeat_interval: float = Field(description="seconds between inventory checks; the "
                                      "inventory is posted when it changed")
    host_path_root: str
    registry: str = Field("", description="HOST:PORT of the cluster's image registry "
                          "(\"\": none)")
    registry_login: bool = Field(False, description="the registry is the server's own /v2/: "
                                 "pull and push with the host token as the password")
    watch_timeout: float = Field(25.0, description="the server holds an idle watch this long; "
                                 "each watch request counts as a heartbeat")
    certificate: str = Field("", description="PEM certificate signed by the cluster CA for the "
                             "registration's csr (\"\": none asked)")


class Heartbeat(BaseModel):
    inventory: HostInventory


class Peer(BaseModel):
    """An instance of a network, for the other instances' /etc/hosts."""

    ip: str
    hostname: str
    name: str
    stack: str | None = Field(None, description="the id of the stack it is a replica of")
    service: str | None = Field(None, description="its service: a name in its stack's hosts")


class DesiredNetwork(BaseModel):
    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    mode: str = "bridge"  # bridge | ovs (model.network.NetworkMode)
    vlan: int | None = Field(None, description="tag on the uplink trunk / OVS ports")
    nat: bool = False
    peers: list[Peer] = Field(default_factory=list,
                              description="the network's instances (names resolve through "
                                          "/etc/hosts); in a delta reply (`peers_delta`) "
                                          "only those added or changed")
    peers_gone: list[str] = Field(default_factory=list, description="delta replies: the "
                                  "addresses of the instances gone from the network")


class DesiredInstance(BaseModel):
    id: str
    name: str
    project: str
    generation: int
    desired_state: DesiredState
    restart_serial: int
    image: str
    hostname: str
    network: DesiredNetwork
    ip: str
    prefixlen: int
    mac: str
    dns: list[str]
    limits: Limits
    volumes: list[VolumeSpec]
    env: dict[str, str]
    lxcfs: bool = True
    ssh_keys: list[str] = Field(default_factory=list)
    cap_add: list[str] = Field(default_factory=list, description="extra capabilities an "
                               "admin granted (ALL: every one this host has)")
    no_new_privileges: bool = Field(True, description="security_opt no-new-privileges (every "
                                    "member's instance)")
    revision: int
    healthcheck: HealthcheckSpec | None = Field(None, description="dockerd runs it (a "
                                                "HEALTHCHECK of the container)")
    command: list[str] | None = Field(None, description="None: the image's CMD")
    entrypoint: list[str] | None = Field(None, description="None: the image's entrypoint")
    creating: bool = Field(False, description="the first create has not succeeded yet: a "
                           "failure rolls back and removes the instance")
    type: InstanceType = InstanceType.container
    disk_bytes: int | None = Field(None, description="a VM's disk size (None: the image's); "
                                      "a container's layer filesystem (None: unsized)")


class WatchReply(BaseModel):
    revision: int
    full: bool = Field(description="true when `instances` is the whole desired state")
    instances: list[DesiredInstance]
    networks: list[DesiredNetwork]
    peers_token: str = Field("", description="the peer state `networks` bring the agent to: "
                             "sent back as `peers=` on the next watch (\"\": the agent sent "
                             "none, and every peer list is whole, in instances too)")
    peers_delta: bool = Field(False, description="the networks' peers are the changes since "
                              "the agent's `peers=` token (else whole lists); the instances' "
                              "own network then carries no peers")


class ObservedState(BaseModel):
    """What the agent saw after a sync of one instance."""

    state: str  # running | stopped | error | deleted | creating
    container_id: str | None = None
    message: str | None = None
    generation: int
    restart_serial: int = 0
    revision: int = 0  # the desired-state revision this observation reflects
    failed_create: bool = False
    health: HealthState = HealthState.none  # dockerd's State.Health.Status of the container


class AgentEvent(BaseModel):
    """Something the agent saw that is not a state (an OOM kill, an orphan)."""

    kind: str
    message: str
    instance_id: str | None = None
