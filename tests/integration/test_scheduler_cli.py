"""Scheduler through the CLI and API on the single-host Dockyard: `launch --explain`,
`--constraint`, `--anti-affinity`, `--host` (admin only)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import delete

from dockyard.store import tokens
from dockyard.store.db import Database
from dockyard.store.tables import TokenRow
from tests.integration.dockyard_env import IMAGE, Dockyard


def host_name(dy: Dockyard) -> str:
    return str(dy.db_query("SELECT name FROM hosts")[0][0])


def test_explain_fits_and_creates_nothing(dy: Dockyard) -> None:
    result = dy.ok("launch", IMAGE, "explained", "--explain")
    name = host_name(dy)
    assert f"would be placed on {name}" in result.out
    assert name in result.out and "fits" in result.out
    as_json = dy.ok("launch", IMAGE, "explained", "--explain", "--json").json()
    assert as_json["chosen"] == name
    assert [(h["host"], h["verdict"]) for h in as_json["hosts"]] == [(name, "fits")]
    assert 0.0 <= as_json["hosts"][0]["score"] <= 1.0
    assert dy.db_query("SELECT id FROM instances WHERE name='explained'") == []


def test_explain_names_the_rejecting_filter(dy: Dockyard) -> None:
    result = dy.cli("launch", IMAGE, "nowhere", "--explain", "--constraint", "zone=mars")
    assert result.code == 1
    assert "no valid host: 1 host: constraint zone=mars not met" in result.out
    assert "rejected" in result.out
    # a real launch says the same, as an error, and creates nothing
    failed = dy.cli("launch", IMAGE, "nowhere", "--constraint", "zone=mars")
    assert failed.code != 0
    assert "1 host: constraint zone=mars not met" in failed.err
    assert dy.db_query("SELECT id FROM instances WHERE name='nowhere'") == []


def test_anti_affinity_on_one_host(dy: Dockyard) -> None:
    dy.ok("launch", IMAGE, "aa1", "--anti-affinity", "web")
    try:
        assert dy.db_query("SELECT options FROM instances WHERE name='aa1'")[0][0].find(
            '"anti_affinity": "web"') >= 0
        second = dy.cli("launch", IMAGE, "aa2", "--anti-affinity", "web")
        assert second.code != 0
        assert "1 host: anti-affinity: group web already on host" in second.err
        dy.ok("launch", IMAGE, "aa3", "--anti-affinity", "db", "--no-wait")
        dy.ok("delete", "aa3", "--force")
    finally:
        dy.cli("delete", "aa1", "--force")


def test_host_pin(dy: Dockyard) -> None:
    name = host_name(dy)
    inst = dy.ok("launch", IMAGE, "pinned", "--host", name, "--strategy", "pack",
                 "--json").json()
    try:
        assert inst["host"] == name
    finally:
        dy.ok("delete", "pinned", "--force")
    missing = dy.cli("launch", IMAGE, "pinned2", "--host", "nosuch")
    assert missing.code != 0
    assert "host 'nosuch' not found" in missing.err


@pytest.fixture
def member_token(dy: Dockyard) -> Iterator[str]:
    db = Database(f"sqlite:///{dy.home / 'dockyard.db'}")
    project = dy.db_query("SELECT project_id FROM tokens WHERE role='admin'")[0][0]
    with db.session() as sess:
        token = tokens.mint(sess, "member", project_id=project, description="test member")
    yield token
    with db.session() as sess:
        sess.execute(delete(TokenRow).where(TokenRow.hash == tokens.hash_token(token)))
    db.engine.dispose()


def test_host_pin_is_admin_only(dy: Dockyard, member_token: str) -> None:
    body = {"name": "memberpin", "image": IMAGE, "host": host_name(dy)}
    resp = httpx.post(f"{dy.url}/v1/instances", json=body, params={"explain": "true"},
                      headers={"Authorization": f"Bearer {member_token}"}, timeout=30,
                      verify=dy.verify)
    assert resp.status_code == 403, resp.text
    assert "admin" in resp.json()["error"]["message"]
    del body["host"]
    resp = httpx.post(f"{dy.url}/v1/instances", json=body, params={"explain": "true"},
                      headers={"Authorization": f"Bearer {member_token}"}, timeout=30,
                      verify=dy.verify)
    assert resp.status_code == 200, resp.text
