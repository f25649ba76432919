"""The registry CA file for the local engine: loopback needs none; writing is idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.adapters.docker_certs import needs_ca, trust_registry_ca


@pytest.mark.parametrize(("registry", "needed"), [
    ("127.0.0.1:7070", False), ("localhost:7070", False), ("[::1]:7070", False),
    ("10.0.0.5:7070", True), ("dockyard.example:7070", True),
])
def test_loopback_registries_need_no_ca(registry: str, needed: bool) -> None:
    assert needs_ca(registry) is needed


def test_trust_is_written_once(tmp_path: Path) -> None:
    assert trust_registry_ca("10.0.0.5:7070", b"PEM", tmp_path) is True
    assert (tmp_path / "10.0.0.5:7070" / "ca.crt").read_bytes() == b"PEM"
    assert trust_registry_ca("10.0.0.5:7070", b"PEM", tmp_path) is False
    assert trust_registry_ca("10.0.0.5:7070", b"NEW", tmp_path) is True
    assert [p.name for p in (tmp_path / "10.0.0.5:7070").iterdir()] == ["ca.crt"]
