"""An instance that arrived on a host (a live move's restore): the host's switch drops its
cached flows only when the instance's network goes through it (agent/network.py `arrived`,
adapters/ovs.py `purge_flows`); a failed purge is logged, never fatal (the switch's own
revalidation follows within 0.5 s). The purge against a real ovs-vswitchd:
tests/integration/test_devcluster_plumbing.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.adapters import ovs
from dockyard.agent.network import LinuxHostNetwork
from dockyard.errors import BackendError
from tests.unit.test_reconciler import NET, desired


@pytest.fixture
def purges(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    calls: list[str | None] = []
    monkeypatch.setattr(ovs, "purge_flows", calls.append)
    return calls


@pytest.mark.parametrize(("uplink", "mode", "vlan", "purged"), [
    ("uplink0", "bridge", 1001, True),  # a bridge network trunked through the host's switch
    (None, "ovs", 1001, True),  # an ovs network: its instances are ports of the switch
    (None, "bridge", 1001, False),  # no uplink: the bridge reaches no switch
    ("uplink0", "bridge", None, False),  # no VLAN: not on the trunk
])
def test_a_purge_only_where_the_network_goes_through_the_switch(
        purges: list[str | None], uplink: str | None, mode: str, vlan: int | None,
        purged: bool) -> None:
    net = LinuxHostNetwork(uplink=uplink, ovs_db="unix:/run/h1/ovs/db.sock")
    net.arrived(desired(network=NET.model_copy(update={"mode": mode, "vlan": vlan})))
    assert purges == (["unix:/run/h1/ovs/db.sock"] if purged else [])


def test_a_failed_purge_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def refuse(db: str | None) -> None:
        raise BackendError("ovs-appctl: cannot connect")
    monkeypatch.setattr(ovs, "purge_flows", refuse)
    LinuxHostNetwork(uplink="uplink0").arrived(
        desired(network=NET.model_copy(update={"vlan": 1001})))
    assert "flows were not purged: ovs-appctl: cannot connect" in caplog.text


def test_the_control_socket_beside_the_database_else_the_systems(tmp_path: Path) -> None:
    db = f"unix:{tmp_path / 'db.sock'}"
    assert ovs.control(db) == "ovs-vswitchd"  # no ovs-vswitchd.ctl there (yet)
    (tmp_path / "ovs-vswitchd.ctl").touch()
    assert ovs.control(db) == str(tmp_path / "ovs-vswitchd.ctl")
    assert ovs.control(None) == "ovs-vswitchd"
    assert ovs.control("tcp:127.0.0.1:6640") == "ovs-vswitchd"
