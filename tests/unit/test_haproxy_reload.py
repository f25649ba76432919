"""The entrance's HAProxy reload (adapters/haproxy.py `_reload`) when the master does nothing
with its first SIGUSR2 — as a master whose first worker has just forked does (2 of 150 reloads
right after a start, measured against Debian's haproxy): the reload asks again after
`RESIGNAL_AFTER` instead of waiting out its timeout and failing; a master that exits fails it
at once. The process table is faked at the module's seams (`os.kill`, `_process`, `workers`)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dockyard.adapters import haproxy
from dockyard.errors import BackendError

MASTER = 4242


class FakeMaster:
    """Workers {1}; a new worker (2) only once the `heeded`-th SIGUSR2 arrives."""

    def __init__(self, heeded: int, alive: bool = True) -> None:
        self.heeded, self.alive, self.signals = heeded, alive, 0

    def kill(self, pid: int, sig: int) -> None:
        assert (pid, sig) == (MASTER, signal.SIGUSR2)
        self.signals += 1

    def workers(self, _master: int) -> set[int]:
        return {1, 2} if self.signals >= self.heeded else {1}


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> haproxy.HAProxy:
    monkeypatch.setattr(haproxy, "RESIGNAL_AFTER", 0.05)
    return haproxy.HAProxy(tmp_path)


def _install(monkeypatch: pytest.MonkeyPatch, proxy: haproxy.HAProxy,
             master: FakeMaster) -> None:
    monkeypatch.setattr(haproxy.os, "kill", master.kill)
    monkeypatch.setattr(proxy, "workers", master.workers)
    monkeypatch.setattr(haproxy, "_process",
                        lambda pid: (1, ["haproxy"]) if master.alive else None)


@pytest.mark.parametrize("heeded", [1, 2])  # at once; only when signalled again
def test_a_reload_signals_until_the_master_heeds_it(monkeypatch: pytest.MonkeyPatch,
                                                    proxy: haproxy.HAProxy,
                                                    heeded: int) -> None:
    master = FakeMaster(heeded=heeded)
    _install(monkeypatch, proxy, master)
    proxy._reload(MASTER, timeout=5.0)
    assert master.signals == heeded


def test_a_master_that_exits_fails_the_reload_at_once(monkeypatch: pytest.MonkeyPatch,
                                                       proxy: haproxy.HAProxy) -> None:
    master = FakeMaster(heeded=99, alive=False)
    _install(monkeypatch, proxy, master)
    with pytest.raises(BackendError, match="exited during a reload"):
        proxy._reload(MASTER, timeout=5.0)
    assert master.signals == 1
