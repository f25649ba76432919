"""Per-token rate limits (issue 16, bad load): on the real app (ASGI transport, SQLite, no
lifespan), a token that hammers the API gets 429 with `Retry-After` and the error shape while
another token's calls still succeed; the agents' feed is not limited; the buckets refill."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import ServerSettings
from dockyard.server import ratelimit
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.server.ratelimit import TokenBuckets
from tests.unit.asgi import AppClient


def test_a_hammering_token_gets_429_while_another_token_goes_on(tmp_path: Path) -> None:
    app = create_app(ServerSettings(home=tmp_path / "home", registry_url="http://127.0.0.1:1",
                                    rate_limit=0.5, rate_burst=5))
    ctx = app.state.ctx
    project = init_store(ctx.db)
    loud, quiet = mint_admin_token(ctx.db, project), mint_admin_token(ctx.db, project)
    host = mint_host_token(ctx.db, "h1")
    client = AppClient(app)

    def get(token: str, path: str = "/v1/instances") -> int:
        return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code

    codes = [get(loud) for _ in range(12)]
    assert codes[:5] == [200] * 5  # the burst
    assert set(codes[5:]) == {429}
    refused = client.get("/v1/instances", headers={"Authorization": f"Bearer {loud}"})
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert [get(quiet) for _ in range(5)] == [200] * 5  # another token: its own bucket
    # a bad token hammering is limited too, before its lookup (its 401s stop)
    assert {get("nonsense") for _ in range(8)} == {401, 429}
    # the agent feed is never limited (a resync is many calls)
    beat = {"inventory": {"cores": [0], "memory_bytes": 1 << 30}}
    assert {client.post("/v1/agent/heartbeat", json=beat,
                        headers={"Authorization": f"Bearer {host}"}).status_code
            for _ in range(10)} == {404}  # refused (not registered), never 429
    ctx.db.close()


def test_buckets_refill_at_the_rate_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # one call back after 1/rate s
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0  # another key is unaffected
    now[0] += 10.0  # both refilled: dropped when the table must make room
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 2)
    assert buckets.take("c") == 0.0
    assert len(buckets) == 1
