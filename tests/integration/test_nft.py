"""libnftables in-process (adapters/nft.py) against the `nft` binary, on the real kernel."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from dockyard.adapters import nft
from dockyard.errors import BackendError


@pytest.fixture
def table() -> Iterator[str]:
    name = f"dytest{secrets.token_hex(3)}"
    yield name
    subprocess.run(["nft", "delete", "table", "bridge", name], capture_output=True, check=False)


@pytest.mark.parametrize("use_library", [True, False], ids=["libnftables", "nft-binary"])
def test_a_script_applies_as_one_transaction_and_lists(table: str, use_library: bool) -> None:
    nft.run(f"add table bridge {table}\nadd chain bridge {table} c1\n"
            f"add rule bridge {table} c1 ether saddr != 02:00:00:00:00:01 drop\n", "test",
            use_library=use_library)
    listed = nft.run(f"list table bridge {table}\n", "test", use_library=use_library)
    assert "ether saddr != 02:00:00:00:00:01 drop" in listed
    assert "02:00:00:00:00:01" in subprocess.run(["nft", "list", "table", "bridge", table],
                                                 capture_output=True, text=True).stdout
    # a failing line undoes the whole script: c2 must not exist afterwards
    with pytest.raises(BackendError, match="nft:"):
        nft.run(f"add chain bridge {table} c2\nadd rule bridge {table} c2 bogus thing\n",
                "test", use_library=use_library)
    # (the chain's own line: the random table name may hold "c2" too)
    listed = nft.run(f"list table bridge {table}\n", "test", use_library=use_library)
    assert "chain c2 " not in listed
