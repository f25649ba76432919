"""The agents' cheap path (issue 16): verified tokens cached until a revocation, and
heartbeats noted in memory and written in batches (`server/liveness.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dockyard.errors import Unauthorized
from dockyard.model.ids import new_id
from dockyard.server import auth
from dockyard.server.bootstrap import init_store
from dockyard.server.liveness import FLUSH_EVERY, Liveness, flush_interval, flusher
from dockyard.store import hosts, tokens
from dockyard.store.db import Database
from dockyard.store.events import latest
from dockyard.store.records import as_utc
from dockyard.store.tables import HostRow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'd.db'}")
    init_store(database)
    yield database
    database.close()


def _ctx(db: Database) -> Any:
    return cast(Any, SimpleNamespace(db=db))


def test_a_revoked_token_is_refused_at_once_though_it_was_cached(db: Database) -> None:
    with db.session() as sess:
        token = tokens.mint(sess, "host", host_name="h1")
        other = tokens.mint(sess, "host", host_name="h2")
    assert auth.token_caller(_ctx(db), token).host_name == "h1"
    assert auth.token_caller(_ctx(db), other).host_name == "h2"
    with db.session() as sess:
        tokens.revoke_host_tokens(sess, "h1")
    with pytest.raises(Unauthorized):
        auth.token_caller(_ctx(db), token)
    assert auth.token_caller(_ctx(db), other).host_name == "h2"  # read again, still valid


def test_a_cached_token_is_served_without_the_store(db: Database) -> None:
    with db.session() as sess:
        token = tokens.mint(sess, "host", host_name="h3")
    first = auth.token_caller(_ctx(db), token)
    closed = cast(Any, SimpleNamespace(db=None))  # any store access would raise
    assert auth.token_caller(closed, token) == first


def _host(db: Database, name: str, state: str, beat: datetime) -> None:
    with db.session() as sess:
        sess.add(HostRow(id=new_id(), name=name, version=0, draining=False, reserved_cores=[],
                         inventory={}, state=state, last_heartbeat=beat, api_url="",
                         api_secret=""))


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_noted_heartbeats_are_written_together_and_a_down_host_comes_back(
        db: Database) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    _host(db, "a", "up", old)
    _host(db, "b", "down", old)
    _host(db, "c", "up", old)
    clock = _Clock()
    live = Liveness(clock)
    assert live.due_now("a", 30.0)  # never heard here: the caller writes
    live.wrote("a")
    assert not live.due_now("a", 30.0)
    assert not live.note("a")  # a flush is not due yet: memory only
    assert not live.note("b")
    with db.read() as sess:
        assert as_utc(hosts.by_name(sess, "a").last_heartbeat) == as_utc(old)  # type: ignore[union-attr]
    clock.now += FLUSH_EVERY
    assert live.note("a")
    assert live.flush(db)  # b was stored down: it came back
    with db.read() as sess:
        rows = {n: hosts.by_name(sess, n) for n in "abc"}
        events = [(e.kind, e.host_name) for e in latest(sess, 50)]
    assert as_utc(rows["a"].last_heartbeat) > old  # type: ignore[union-attr]
    assert as_utc(rows["b"].last_heartbeat) > old and rows["b"].state == "up"  # type: ignore[union-attr]
    assert as_utc(rows["c"].last_heartbeat) == as_utc(old)  # type: ignore[union-attr]
    assert ("host_up", "b") in events and ("host_up", "a") not in events
    assert not live.flush(db)  # nothing pending
    clock.now += 16.0
    assert live.due_now("a", 30.0)  # silent for half the timeout: written at once


def test_an_inventory_is_known_only_as_written_and_for_a_while() -> None:
    clock = _Clock()
    live = Liveness(clock)
    inv = {"cores": [0, 1]}
    assert not live.inventory_known("a", inv)
    live.wrote("a", inv)
    assert live.inventory_known("a", {"cores": [0, 1]})
    assert not live.inventory_known("a", {"cores": [0]})
    clock.now += 61.0
    assert not live.inventory_known("a", inv)
    live.wrote("a", inv)
    live.forget("a")
    assert not live.inventory_known("a", inv)


def test_the_flusher_writes_a_note_that_no_later_call_would(db: Database) -> None:
    """The dev-cluster's false `down`: a host's watch ended just after another host's flush, so
    its note was not due, and no call of any host came after it. The server's flusher task
    writes it within its interval anyway (and says when a host came back)."""
    old = datetime.now(UTC) - timedelta(minutes=5)
    _host(db, "a", "up", old)
    _host(db, "b", "down", old)
    live = Liveness()
    live.flush(db)  # another host's call just flushed
    assert not live.note("a") and not live.note("b")  # not due: memory only
    came_back: list[bool] = []

    async def briefly() -> None:
        task = asyncio.create_task(flusher(live, db, 0.05, lambda: came_back.append(True)))
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(briefly())
    with db.read() as sess:
        rows = {n: hosts.by_name(sess, n) for n in "ab"}
    assert all(as_utc(r.last_heartbeat) > old for r in rows.values() if r)  # type: ignore[arg-type]
    assert rows["b"] is not None and rows["b"].state == "up" and came_back == [True]
    assert flush_interval(6.0) == 0.6 and flush_interval(30.0) == FLUSH_EVERY
