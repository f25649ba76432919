"""A synchronous client for an ASGI app in unit tests (httpx's ASGITransport, one event loop
per request): starlette's TestClient warns about its httpx dependency, and warnings are
errors here. The app's lifespan does not run."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class AppClient:
    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.request(method, url, **kwargs)
        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)
