"""Per-token rate limits: a token bucket per bearer token, in this server process's memory.

Each bucket holds up to `ServerSettings.rate_burst` calls and refills at `rate_limit` calls a
second; a call that finds its bucket empty is answered at once with 429, `Retry-After` (whole
seconds until one call fits) and the error shape, before any other work: no token lookup, no
body read, no audit row (the middleware sits outside the audit one), so a hammering client
costs the server little and the other tokens' calls go on. Calls without a token are counted
per client address. Not limited: the agents' feed (`/v1/agent/`: a host's resync is many
reports by design) and the registry (`/v2/`: a pull is many blob requests).

Several server processes keep their own buckets (a client spread over N servers gets N times
the rate). Buckets that have refilled are dropped when the table grows past MAX_BUCKETS, so
its size is bounded by the clients active in the last `rate_burst / rate_limit` seconds.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

UNLIMITED = ("/v1/agent/", "/v2/")
MAX_BUCKETS = 10_000


class TokenBuckets:
    """Thread-safe; `take(key)` → 0.0 (allowed) or the seconds until a call fits."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, float(max(burst, 1)), clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0

    def _prune(self, now: float) -> None:
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


def _key(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return "t:" + bytes(value).decode("latin-1")
    client = scope.get("client")
    return f"a:{client[0] if client else '?'}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, buckets: TokenBuckets) -> None:
        self.app = app
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNLIMITED):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(_key(scope))
        if not wait:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        body = json.dumps({"error": {"code": "rate_limited", "message":
                                     f"too many calls with this token; retry in {retry} s"}})
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"),
                                (b"retry-after", str(retry).encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})
