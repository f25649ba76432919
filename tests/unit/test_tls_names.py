"""Cluster CA helpers: fingerprints as `openssl x509 -fingerprint -sha256` shows them, and the
names a wildcard-listening server's certificate carries."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dockyard import tls


def test_fingerprint_is_the_sha256_of_the_der(tmp_path: Path) -> None:
    files = tls.TlsFiles(tmp_path)
    tls.ensure_ca(files)
    pem = files.ca.read_text()
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    want = hashlib.sha256(der).hexdigest()
    got = tls.fingerprint(pem)
    assert got.replace(":", "").lower() == want and got.count(":") == 31
    assert tls.same_fingerprint(got, f"sha256:{want.upper()}")
    assert not tls.same_fingerprint(got, "00" * 32)


def test_a_wildcard_listen_names_this_machine_not_the_wildcard() -> None:
    names = tls.server_names("0.0.0.0")
    assert "0.0.0.0" not in names and "localhost" in names and "127.0.0.1" in names
    assert tls.server_names("10.1.2.3")[0] == "10.1.2.3"
