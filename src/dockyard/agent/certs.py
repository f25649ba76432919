"""The agent API's TLS certificate: in a TLS cluster (the agent was given the cluster CA) the
agent makes a key and a certificate request at each start, registers with it, and serves its
API over https with the certificate the server signed (the key never leaves this host)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard import tls
from dockyard.config import AgentSettings
from dockyard.errors import BackendError


@dataclass(frozen=True)
class AgentTls:
    key: tls.PrivateKey
    csr: str


def request(settings: AgentSettings) -> AgentTls | None:
    if settings.ca is None:
        return None
    key = tls.new_key()
    return AgentTls(key=key, csr=tls.make_csr(key, f"dockyard-agent-{settings.name}"))


def install(home: Path, pending: AgentTls, certificate: str) -> tuple[Path, Path]:
    """Write the signed certificate and its key (0600) under HOME/tls; (cert, key) paths."""
    if not certificate:
        raise BackendError("the server signed no certificate for this agent (is it a TLS "
                           "server?)")
    files = tls.TlsFiles(home / "tls")
    tls.write_file(files.key, tls.key_pem(pending.key), private=True)
    tls.write_file(files.cert, certificate.encode())
    return files.cert, files.key
