"""The cluster's certificate authority and the certificates it signs.

`dockyard up` and `dockyard server` (unless `--no-tls`) keep the CA in HOME/tls: `ca.pem`
(given to the CLI and to agents, which trust nothing else for Dockyard; `GET /v1/cluster/ca`
serves it with its SHA-256 fingerprint) and `ca-key.pem` (mode 0600, never leaves the
server's machine). The server's own certificate (`server.pem`, `server-key.pem`)
names the listen host, localhost and 127.0.0.1. Agents send a CSR at registration; the server
signs it for the agent's API address and name, and its agent proxy verifies agent
certificates against the same CA. Keys are EC P-256; certificates last `VALID_DAYS`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.errors import InvalidRequest

VALID_DAYS = 825
CA_DAYS = 3650
PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TlsFiles:
    """Where one process's TLS material lives."""
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def key(self) -> Path:
        return self.dir / "server-key.pem"


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dockyard"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def ensure_ca(files: TlsFiles, cluster: str = "") -> None:
    """Create the CA once; an existing one is kept (certificates signed by it stay valid)."""
    if files.ca.exists() and files.ca_key.exists():
        return
    key = new_key()
    now = datetime.now(UTC)
    subject = _name(f"Dockyard cluster CA {cluster}".strip())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    write_file(files.ca_key, key_pem(key), private=True)
    write_file(files.ca, cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(files: TlsFiles) -> tuple[x509.Certificate, PrivateKey]:
    cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def sign(files: TlsFiles, subject_key: ec.EllipticCurvePublicKey, common_name: str,
         names: list[str]) -> bytes:
    """A leaf certificate (server and client auth) for `names`, signed by the cluster CA."""
    ca_cert, ca_key = _load_ca(files)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name))
            .issuer_name(ca_cert.subject).public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=VALID_DAYS))
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def ensure_server_cert(files: TlsFiles, names: list[str]) -> None:
    """(Re)issue the server certificate when missing or when it does not name every one of
    `names` (e.g. the listen address changed)."""
    wanted = set(_san(names))
    if files.cert.exists() and files.key.exists():
        current = x509.load_pem_x509_certificate(files.cert.read_bytes())
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if wanted <= set(san):
            return
    key = new_key()
    write_file(files.key, key_pem(key), private=True)
    write_file(files.cert, sign(files, key.public_key(), "dockyard-server", names))


def server_names(listen_host: str) -> list[str]:
    """What the server's certificate names: the listen host, this machine, loopback; for a
    wildcard listen (0.0.0.0) also this machine's full name and the addresses it resolves to,
    which is how other hosts reach it."""
    names = [listen_host, socket.gethostname(), "localhost", "127.0.0.1"]
    if listen_host in ("0.0.0.0", "::", ""):
        names.append(socket.getfqdn())
        with contextlib.suppress(OSError):
            names += socket.gethostbyname_ex(socket.gethostname())[2]
    return [n for n in names if n not in ("0.0.0.0", "::", "")]


def make_csr(key: PrivateKey, common_name: str) -> str:
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def sign_csr(files: TlsFiles, csr_pem: str, common_name: str, names: list[str]) -> str:
    """Sign an agent's CSR; the names come from the server (the registered API address and
    the host name), never from the request."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise InvalidRequest(f"csr: not a PEM certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise InvalidRequest("csr: the signature does not match its key")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise InvalidRequest("csr: the key must be an EC (P-256) key")
    return sign(files, public, common_name, names).decode()


def ca_pem(files: TlsFiles) -> str:
    return files.ca.read_text()


def fingerprint(pem: str | bytes) -> str:
    """SHA-256 of a certificate's DER form, as `AB:CD:…` (what `openssl x509 -fingerprint
    -sha256` and `lxc remote add` show)."""
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def same_fingerprint(a: str, b: str) -> bool:
    """Fingerprints compared without case, colons or a `sha256:` prefix."""
    def norm(value: str) -> str:
        return value.lower().removeprefix("sha256:").replace(":", "").strip()
    return norm(a) == norm(b)
