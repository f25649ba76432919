"""What the agent API offers of a VM without a VM (agent/vm_access.py): the serial log read
and followed, the console session's byte stream, and exec requests a guest agent cannot
honour refused before any guest is asked."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from dockyard.agent import vm_access
from dockyard.agent.vm_access import SerialSession, VmAccess
from dockyard.errors import Conflict, InvalidRequest
from dockyard.model.instance import ExecRequest


def test_serial_log_tail_and_all(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"one\ntwo\nthree\n")
    assert b"".join(vm_access.serial_log(log, False, None, lambda: True)) == log.read_bytes()
    assert b"".join(vm_access.serial_log(log, False, 2, lambda: True)) == b"two\nthree\n"
    assert b"".join(vm_access.serial_log(log, False, 0, lambda: True)) == b""


def test_serial_log_follow_until_the_vm_is_gone(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm_access, "FOLLOW_POLL", 0.01)
    log = tmp_path / "serial.log"
    log.write_bytes(b"boot\n")
    alive = threading.Event()
    alive.set()
    chunks = vm_access.serial_log(log, True, 1, alive.is_set)
    assert next(chunks) == b"boot\n"

    def write_then_delete() -> None:
        with log.open("ab") as f:
            f.write(b"login: ")
        alive.clear()
    threading.Timer(0.05, write_then_delete).start()
    assert b"".join(chunks) == b"login: "  # and then it ended: the VM's directory went


def test_exec_in_a_vm_refuses_another_user_and_a_stopped_vm(tmp_path: Path) -> None:
    (tmp_path / "abc").mkdir()
    vms = VmAccess(tmp_path)
    assert vms.owns("abc") and not vms.owns("def") and not vms.owns("../abc")
    with pytest.raises(InvalidRequest, match="--user is not supported"):
        vms.exec("abc", ExecRequest(command=["id"], user="nobody"))
    with pytest.raises(Conflict, match="not running"):  # no qemu.pid: nothing to ask
        vms.exec("abc", ExecRequest(command=["id"]))
    with pytest.raises(Conflict, match="not running"):
        vms.console("abc")
    with pytest.raises(Conflict, match="no serial log"):
        vms.logs("abc", False, None)


def test_serial_session_is_bytes_both_ways_and_ends_at_the_clients_eof() -> None:
    ours, guest = socket.socketpair()
    session = SerialSession(ours)
    session.send(b"root\r")
    assert guest.recv(100) == b"root\r"
    guest.sendall(b"# ")
    assert session.recv() == b"# "
    session.resize(80, 24)  # a serial line has no size: nothing happens
    session.close_stdin()  # Ctrl-] at the client
    assert session.recv() == b""
    assert session.exit_code() == 0
    session.close()
    guest.close()
