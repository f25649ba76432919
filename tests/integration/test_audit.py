"""The audit log: mutating calls are recorded with caller, project, status and target; reads
and the agent feed's heartbeats are not; only an admin reads it."""

from __future__ import annotations

import pytest

from dockyard.errors import DockyardError
from tests.integration.dockyard_env import Dockyard


def test_mutating_calls_are_audited(dy: Dockyard) -> None:
    with dy.api() as api:
        before = api.list_all("/v1/audit", limit=1000)
        last = int(before[-1]["id"]) if before else 0
        api.post("/v1/volumes", {"name": "audit-vol"})
        with pytest.raises(DockyardError):
            api.post("/v1/volumes", {"name": "audit-vol"})  # 409
        api.get("/v1/volumes")
        api.delete("/v1/volumes/audit-vol")
        entries = [e for e in api.list_all("/v1/audit", limit=2, after=last)
                   if e["target"] == "audit-vol"]
    calls = [(e["method"], e["path"], e["status"]) for e in entries]
    assert calls == [("POST", "/v1/volumes", 201), ("POST", "/v1/volumes", 409),
                     ("DELETE", "/v1/volumes/audit-vol", 204)]
    assert all(e["role"] == "admin" and e["project"] == "default" and e["token_id"]
               for e in entries)
    out = dy.ok("audit", "--json").json()
    assert {e["id"] for e in entries} <= {e["id"] for e in out}
    assert not any(e["path"].startswith("/v1/agent/heartbeat") for e in out)
    assert "audit-vol" in dy.ok("audit").out


def test_anonymous_attempts_are_audited_and_only_admins_read(dy: Dockyard) -> None:
    from dockyard.client import ApiClient
    with ApiClient(dy.url, "dy_wrong", ca=dy.ca) as bad:
        with pytest.raises(DockyardError) as info:
            bad.post("/v1/networks", {"name": "nope", "subnet": "10.250.0.0/24"})
        assert info.value.status == 401
        with pytest.raises(DockyardError) as info:
            bad.get("/v1/audit")
        assert info.value.status == 401
    with dy.api() as api:
        entry = api.list_all("/v1/audit", limit=1000)[-1]
    assert (entry["role"], entry["status"], entry["target"]) == ("anonymous", 401, "nope")
