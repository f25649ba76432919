"""`dockyard doctor` against a real host: a removed FORWARD rule is reported with its fix,
and the doctor passes again once the rule is back."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest

from dockyard.errors import Conflict
from tests.integration.dockyard_env import CliResult, Dockyard

ATTEMPTS = 5  # the agent's 5 s full resync may restore the rule between delete and doctor


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True,
                          check=False)


def _rule(bridge: str) -> list[str]:
    return ["-i", bridge, "-o", bridge, "-j", "ACCEPT"]


def _forward_check(reports: list[dict[str, Any]], bridge: str) -> dict[str, Any]:
    [report] = reports
    [check] = [c for c in report["checks"] if c["name"] == f"forward {bridge}"]
    return check


def _doctor_without_rule(dy: Dockyard, bridge: str, *args: str) -> CliResult:
    """`dockyard doctor ARGS` right after deleting the rule, retried while the agent's resync
    wins the race and puts the rule back first."""
    for _ in range(ATTEMPTS):
        _iptables("-D", "DOCKER-USER", *_rule(bridge))
        result = dy.cli("doctor", *args)
        if result.code != 0:
            break
    return result


def _restore_one_copy(bridge: str) -> None:
    """Put the rule back (the agent may have done so too) and leave exactly one copy."""
    if _iptables("-C", "DOCKER-USER", *_rule(bridge)).returncode != 0:
        _iptables("-I", "DOCKER-USER", "1", *_rule(bridge))
    listing = _iptables("-S", "DOCKER-USER").stdout
    copies = sum(1 for line in listing.splitlines() if f"-i {bridge} -o {bridge} " in line)
    for _ in range(copies - 1):
        _iptables("-D", "DOCKER-USER", *_rule(bridge))


def test_doctor_reports_a_missing_forward_rule_with_its_fix(dy: Dockyard) -> None:
    bridge = dy.ok("network", "show", "default", "--json").json()["bridge"]
    host = dy.ok("host", "list", "--json").json()["items"][0]["name"]

    healthy = dy.cli("doctor", "--json")
    assert healthy.code == 0, healthy.err + healthy.out
    assert _forward_check(healthy.json(), bridge)["status"] == "ok"

    try:
        broken = _doctor_without_rule(dy, bridge, host, "--json")
        check = _forward_check(broken.json(), bridge)
        assert broken.code != 0 and check["status"] == "fail", check
        assert check["fix"] == f"iptables -w -I DOCKER-USER 1 -i {bridge} -o {bridge} -j ACCEPT"
        assert bridge in check["message"] and "DOCKER-USER" in check["message"]
        table = _doctor_without_rule(dy, bridge, host)
        assert table.code != 0 and "✗" in table.out and f"forward {bridge}" in table.out

        fix = shlex.split(check["fix"])
        assert fix[0] == "iptables"
        if _iptables("-C", "DOCKER-USER", *_rule(bridge)).returncode != 0:
            subprocess.run(fix, check=True, capture_output=True)  # the fix as printed
    finally:
        _restore_one_copy(bridge)

    fixed = dy.cli("doctor", "--json")
    assert fixed.code == 0, fixed.err + fixed.out
    assert _forward_check(fixed.json(), bridge)["status"] == "ok"
    assert "✓" in dy.ok("doctor").out


def test_doctor_of_a_host_whose_agent_never_came_is_a_conflict(dy: Dockyard) -> None:
    """409 naming what to do, not a 502 from an agent URL that is empty (found by
    schemathesis: `GET /v1/hosts/B/doctor` after it had added host B)."""
    with dy.api() as api:
        api.post("/v1/hosts", {"name": "noagent"})
        try:
            with pytest.raises(Conflict, match="has no agent yet"):
                api.get("/v1/hosts/noagent/doctor")
            result = dy.cli("doctor", "noagent")
            assert result.code != 0 and "has no agent yet" in result.err, result
        finally:
            api.delete("/v1/hosts/noagent")
