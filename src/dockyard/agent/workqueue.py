"""A keyed work queue (kubernetes client-go style): an id is processed by one worker at a time;
adding an id that is being processed marks it dirty so it runs once more afterwards; adding an
id that is already queued is a no-op. Serial per id, parallel across ids. `wait_idle` lets a
caller wait out a pass already running for an id (a copy removed from under it: runtime.py)."""

from __future__ import annotations

import threading
from collections import deque


class WorkQueue:
    def __init__(self) -> None:
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # workers wait here for ids
        self._idle = threading.Condition(lock)  # `wait_idle` here, apart: a worker's wake-up
        # (notify of one waiter) must never be taken by it
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def get(self) -> str | None:
        """Next id to work on (blocks); None once the queue is closed."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            key = self._queue.popleft()
            self._queued.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            self._idle.notify_all()
            if key in self._dirty:
                self._dirty.discard(key)
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def wait_idle(self, key: str, timeout: float) -> bool:
        """Until no worker is processing `key` (True), or `timeout` seconds passed (False).
        A pass that starts later is the caller's to keep from acting (runtime.py drops the
        id's desired state first, so that pass finds nothing to do)."""
        with self._idle:
            return self._idle.wait_for(lambda: key not in self._processing, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._processing)
