"""Wakes long-polls (agent watches, `?wait=true`) when the store changed.

Writers run in FastAPI's thread pool and call `bump()` after their commit; waiters run on the
event loop. A waiter takes `token()` *before* reading the store and then `wait(token)`, so a
change committed between its read and its wait is never missed.

With several servers on one PostgreSQL, `bump()` also announces the change to the other
servers, and their announcements wake this server's waiters (`store.changes`: LISTEN/NOTIFY
on the event loop). With SQLite there is one server and nothing crosses processes.
"""

from __future__ import annotations

import asyncio
import contextlib

from dockyard.store.changes import ChangeChannel


class Notifier:
    def __init__(self, channel: ChangeChannel | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._channel = channel
        self._outgoing: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the event loop at start-up; starts LISTEN/NOTIFY when configured."""
        self._loop = loop
        self._event = asyncio.Event()
        if self._channel is not None:
            self._outgoing = asyncio.Event()
            self._tasks = [loop.create_task(self._channel.listen(self._fire)),
                           loop.create_task(self._channel.publish(self._outgoing))]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def token(self) -> asyncio.Event:
        assert self._event is not None, "notifier not bound to the event loop"
        return self._event

    def bump(self) -> None:
        """Thread-safe: wake every current waiter, here and on the other servers."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._changed_here)

    def _changed_here(self) -> None:
        self._fire()
        if self._outgoing is not None:
            self._outgoing.set()

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    @staticmethod
    async def wait(token: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(token.wait(), timeout)
