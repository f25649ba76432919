"""Wakes long-polls (agent watches, `?wait=true`) when the store changed.

Writers run in FastAPI's thread pool and call `bump()` after their commit; waiters run on the
event loop. A waiter takes `token()` *before* reading the store and then `wait(token)`, so a
change committed between its read and its wait is never missed.

A change that concerns one instance is announced with its id (`bump(instance_id)`): it wakes
the global waiters (watches, `events --follow`) and the waiters keyed on that instance
(`?wait=true`, `token(key)`), not the waiters of every other instance: in a burst of N launches
each waiter would otherwise re-read its operation on each of the other N instances' changes.
`bump()` without a key wakes everybody, keyed or not.

With several servers on one PostgreSQL, `bump()` also announces the change to the other
servers, and their announcements wake this server's waiters (`store.changes`: LISTEN/NOTIFY
on the event loop). With SQLite there is one server and nothing crosses processes.

On shutdown `close_waiters()` (called as soon as the server starts to stop, before uvicorn waits
for open connections) ends every wait at once and for good: a long poll sees `closing` and
answers what it has, so shutdown never waits for a held request's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from dockyard.store.changes import ChangeChannel


class Notifier:
    def __init__(self, channel: ChangeChannel | None = None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._channel = channel
        self._outgoing: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # one event per key while somebody waits on it (the waiters hold the references)
        self._keyed: weakref.WeakValueDictionary[str, asyncio.Event] = \
            weakref.WeakValueDictionary()
        self._closing: asyncio.Event | None = None

    @property
    def closing(self) -> bool:
        """The server is stopping: long polls answer now instead of waiting again."""
        return self._closing is not None and self._closing.is_set()

    def close_waiters(self) -> None:
        """On the event loop: wake every waiter now and every later one at once."""
        if self._closing is not None:
            self._closing.set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the event loop at start-up; starts LISTEN/NOTIFY when configured."""
        self._loop = loop
        self._event = asyncio.Event()
        self._closing = asyncio.Event()
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

    def token(self, key: str | None = None) -> asyncio.Event:
        """Take it before reading the store; `key`: wake only on changes of that key (and
        on changes announced without a key)."""
        assert self._event is not None, "notifier not bound to the event loop"
        if key is None:
            return self._event
        event = self._keyed.get(key)
        if event is None:
            event = self._keyed[key] = asyncio.Event()
        return event

    def bump(self, *keys: str) -> None:
        """Thread-safe: wake the current waiters (all of them, or the global ones and those
        of `keys`), here and on the other servers (who wake all of theirs)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._changed_here, keys)

    def _changed_here(self, keys: tuple[str, ...] = ()) -> None:
        self._fire(keys)
        if self._outgoing is not None:
            self._outgoing.set()

    def _fire(self, keys: tuple[str, ...] = ()) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()
        for key in keys or list(self._keyed):
            event = self._keyed.pop(key, None)
            if event is not None:
                event.set()

    async def wait(self, token: asyncio.Event, timeout: float) -> None:
        """Until `token` is set, `timeout` passed or the server is stopping."""
        if self._closing is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(token.wait(), timeout)
            return
        waiters = [asyncio.ensure_future(token.wait()),
                   asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
