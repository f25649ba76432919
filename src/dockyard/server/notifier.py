"""Wakes long-polls (agent watches, `?wait=true`) when the store changed.

Writers run in FastAPI's thread pool and call `bump()` after their commit; waiters run on the
event loop. A waiter takes `token()` *before* reading the store and then `wait(token)`, so a
change committed between its read and its wait is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def token(self) -> asyncio.Event:
        assert self._event is not None, "notifier not bound to the event loop"
        return self._event

    def bump(self) -> None:
        """Thread-safe: wake every current waiter."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
        self._event = asyncio.Event()

    @staticmethod
    async def wait(token: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(token.wait(), timeout)
