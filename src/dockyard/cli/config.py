"""Where the CLI finds the server: DOCKYARD_URL / DOCKYARD_TOKEN / DOCKYARD_CA, else the config
file (`$DOCKYARD_CONFIG`, default `~/.config/dockyard/config.json`, mode 0600; `ca` is the
cluster CA an https server's certificate is checked against)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import InvalidRequest

if TYPE_CHECKING:
    from dockyard.client import ApiClient


def config_path() -> Path:
    env = os.environ.get("DOCKYARD_CONFIG")
    return Path(env) if env else Path.home() / ".config" / "dockyard" / "config.json"


def write_config(url: str, token: str, path: Path | None = None, ca: Path | None = None) -> Path:
    """`ca`: the cluster CA of an https server, kept as the config's `ca` field."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token, **({"ca": str(ca)} if ca else {})}, fh)
    os.replace(tmp, path)
    return path


def read_config(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidRequest(f"config file {path} is not valid JSON: {exc}") from exc
    return {k: str(v) for k, v in data.items()}


def server(cfg: dict[str, str] | None = None) -> tuple[str, str]:
    """The server's URL (no trailing slash) and token: the environment's, else the config
    file's (`cfg`, read when not given)."""
    cfg = read_config() if cfg is None else cfg
    url = os.environ.get("DOCKYARD_URL") or cfg.get("url")
    token = os.environ.get("DOCKYARD_TOKEN") or cfg.get("token")
    if not url or not token:
        raise InvalidRequest(f"no Dockyard server configured: run `dockyard up`, or set "
                             f"DOCKYARD_URL and DOCKYARD_TOKEN (config: {config_path()})")
    return url.rstrip("/"), token


def client(timeout: float = 130.0) -> ApiClient:
    """The API client of a command: over the CLI's stdlib transport (`transport.py`), or
    httpx's when the environment names a proxy (httpx honours it)."""
    from dockyard.cli.transport import StdlibTransport, proxy_configured
    from dockyard.client import ApiClient
    cfg = read_config()
    url, token = server(cfg)
    ca = ca_path(cfg)
    transport = None if proxy_configured() else StdlibTransport(url, token, timeout, ca)
    return ApiClient(url, token, timeout=timeout, ca=ca, transport=transport)


def ca_path(cfg: dict[str, str]) -> str | None:
    """The CA the CLI trusts for Dockyard: DOCKYARD_CA, else the config's `ca`."""
    return os.environ.get("DOCKYARD_CA") or cfg.get("ca") or None
