"""Cross-server change signal over PostgreSQL LISTEN/NOTIFY (channel `dockyard_changes`).

Several servers on one PostgreSQL each hold long polls (agent watches, `?wait=true`,
`events --follow`) that must wake when *any* server commits a change. Every server LISTENs on
one connection and wakes its own waiters on each notification; a server that committed a change
sends `pg_notify` on a second connection. Both run as asyncio tasks on the server's event loop.

Order: writers call `Notifier.bump()` only after their transaction committed, and the NOTIFY is
sent after that, so another server never wakes before the change is visible to it. A change
whose NOTIFY is lost (crash right after the commit, connection down) is still seen at the
waiters' next timeout, and after a reconnect every waiter is woken once to re-read. Bursts
coalesce: while one NOTIFY is being sent, further bumps make exactly one more.
The payload is the sender's origin id, so a server ignores its own notifications.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import psycopg

from dockyard.store.db import libpq_url

log = logging.getLogger(__name__)

CHANNEL = "dockyard_changes"
RECONNECT_DELAY = 1.0


class ChangeChannel:
    def __init__(self, url: str) -> None:
        self._conninfo = libpq_url(url)
        self.origin = uuid.uuid4().hex

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def listen(self, on_remote: Callable[[], None]) -> None:
        """Call `on_remote()` for every change another server announces (runs until
        cancelled; reconnects after errors)."""
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    on_remote()  # whatever changed while we were not listening
                    async for note in conn.notifies():
                        if note.payload != self.origin:
                            on_remote()
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN %s failed (%s); reconnecting", CHANNEL, exc)
                await asyncio.sleep(RECONNECT_DELAY)

    async def publish(self, pending: asyncio.Event) -> None:
        """Send one NOTIFY each time `pending` is set (runs until cancelled)."""
        conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        try:
            while True:
                await pending.wait()
                pending.clear()  # a bump from here on makes one more NOTIFY
                try:
                    if conn is None or conn.closed:
                        conn = await self._connect()
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.origin))
                except (psycopg.Error, OSError) as exc:
                    log.warning("NOTIFY %s failed (%s); retrying", CHANNEL, exc)
                    if conn is not None:
                        await conn.close()
                    conn = None
                    pending.set()
                    await asyncio.sleep(RECONNECT_DELAY)
        finally:
            if conn is not None:
                await conn.close()
