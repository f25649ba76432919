"""The local Docker engine's trust for a registry: `/etc/docker/certs.d/HOST:PORT/ca.crt`.

dockerd reads that directory at every pull and push (no restart), so a host whose engine
pulls from the server's `/v2/` over https trusts the cluster CA once the agent wrote it.
Registries on loopback need nothing: dockerd counts 127.0.0.0/8 as an insecure registry and
speaks TLS to it without checking the certificate (its default `--insecure-registry`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

CERTS_DIR = Path("/etc/docker/certs.d")


def needs_ca(registry: str) -> bool:
    """False for a loopback HOST:PORT (dockerd's built-in insecure range)."""
    host = registry.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def trust_registry_ca(registry: str, ca_pem: bytes, certs_dir: Path = CERTS_DIR) -> bool:
    """Write the CA for `registry` when missing or different; True when it was written."""
    path = certs_dir / registry / "ca.crt"
    if path.exists() and path.read_bytes() == ca_pem:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("ca.crt.tmp")
    tmp.write_bytes(ca_pem)
    os.replace(tmp, path)
    return True
