"""The machine image `dockyard/machine:bookworm`, booted straight from the docker SDK.

The image is built once per machine (the session fixture skips the build when the tag exists;
the debootstrap tree is cached in /var/cache/dockyard/images). Every container here is named
`dytst-machine-<hex>` and removed in a finalizer, even when a test fails.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

from dockyard.adapters import machine_image
from dockyard.adapters.docker_engine import DockerEngine
from dockyard.adapters.machine_image import (
    INIT,
    MACHINE_TAG,
    build_machine_image,
    list_images,
)
from dockyard.cli.main import app
from dockyard.errors import BackendError, InvalidRequest
from tests.requirements import requires, requires_root

pytestmark = [
    pytest.mark.integration,
    requires_root(),
    requires(shutil.which("debootstrap") is not None, "debootstrap",
             "scripts/setup.sh (apt package)"),
]


@pytest.fixture(scope="module")
def sdk() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=60)
    yield client
    client.close()


def run_out(container: Any, *cmd: str) -> tuple[int, str]:
    code, out = container.exec_run(list(cmd), demux=False)
    return code, out.decode(errors="replace")


def wait_running(container: Any, programs: tuple[str, ...], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        _, status = run_out(container, "supervisorctl", "status")
        lines = {line.split()[0]: line for line in status.splitlines() if line.strip()}
        if all(p in lines and "RUNNING" in lines[p] for p in programs):
            return status
        time.sleep(0.25)
    raise AssertionError(f"{programs} not RUNNING after {timeout} s:\n{status}\n"
                         f"logs:\n{container.logs().decode(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A drop-in dir with program `sleeper`, and an ssh key pair whose public half goes in."""
    root = tmp_path_factory.mktemp("machine")
    (root / "supervisor.d").mkdir()
    (root / "supervisor.d" / "sleeper.conf").write_text(
        "[program:sleeper]\ncommand=/bin/sleep 1000\nautorestart=true\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dytst",
                    "-f", str(root / "id_ed25519")], check=True, timeout=30)
    shutil.copy(root / "id_ed25519.pub", root / "authorized_keys")
    return root


@pytest.fixture(scope="module")
def machine(sdk: docker.DockerClient, machine_image: str, host_dir: Path) -> Iterator[Any]:
    name = f"dytst-machine-{secrets.token_hex(4)}"
    try:
        container = sdk.containers.run(
            machine_image, name=name, detach=True, network_mode="none",
            labels={"dockyard.test": "machine-image"},
            volumes={str(host_dir / "supervisor.d"): {"bind": "/etc/dockyard/supervisor.d",
                                                      "mode": "ro"},
                     str(host_dir / "authorized_keys"): {"bind": "/etc/dockyard/authorized_keys",
                                                         "mode": "ro"}})
        wait_running(container, ("sshd", "sleeper"))
        yield container
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            sdk.containers.get(name).remove(force=True)


def test_image_carries_no_host_keys_and_starts_dockyard_init(
        sdk: docker.DockerClient, machine_image: str) -> None:
    image = sdk.images.get(machine_image)
    assert image.attrs["Config"]["Cmd"] == [INIT]
    assert MACHINE_TAG in image.tags
    created = sdk.containers.create(machine_image, name=f"dytst-machine-{secrets.token_hex(4)}",
                                    network_mode="none")
    try:  # never started: this is the image's own /etc/ssh
        stream, _ = created.get_archive("/etc/ssh")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            names = [Path(n).name for n in tar.getnames()]
    finally:
        created.remove(force=True)
    assert "sshd_config" in names
    assert not [n for n in names if n.startswith("ssh_host_")]


def test_pid1_is_supervisord_and_sshd_runs(machine: Any) -> None:
    _, cmdline = run_out(machine, "cat", "/proc/1/cmdline")
    assert "/usr/bin/supervisord" in cmdline.split("\0")
    code, pids = run_out(machine, "pgrep", "-x", "sshd")
    assert code == 0 and pids.split(), pids
    code, _ = run_out(machine, "test", "-f", "/etc/ssh/ssh_host_ed25519_key")
    assert code == 0
    code, _ = run_out(machine, "test", "-d", "/run/sshd")
    assert code == 0


def test_sshd_policy_is_keys_only(machine: Any) -> None:
    code, config = run_out(machine, "/usr/sbin/sshd", "-T")
    assert code == 0, config
    settings = set(config.splitlines())
    assert {"permitrootlogin without-password", "passwordauthentication no",
            "usedns no"} <= settings


@pytest.mark.parametrize("command", [["free", "-m"], ["nproc"], ["uptime"], ["top", "-bn1"],
                                     ["ps", "aux"], ["ip", "addr"], ["ping", "-c1", "-W2",
                                                                     "127.0.0.1"]])
def test_everyday_tools_run(machine: Any, command: list[str]) -> None:
    code, out = run_out(machine, *command)
    assert code == 0, out
    assert out.strip()


def test_drop_in_program_runs_under_supervisord(machine: Any) -> None:
    status = wait_running(machine, ("sleeper",))
    assert "sleeper" in status
    code, pids = run_out(machine, "pgrep", "-f", "^/bin/sleep 1000$")
    assert code == 0, pids


def test_authorized_key_installed_for_root(machine: Any, host_dir: Path) -> None:
    code, out = run_out(machine, "stat", "-c", "%a %U", "/root/.ssh", "/root/.ssh/authorized_keys")
    assert code == 0 and out.split("\n")[:2] == ["700 root", "600 root"], out
    _, keys = run_out(machine, "cat", "/root/.ssh/authorized_keys")
    assert keys.strip() == (host_dir / "authorized_keys").read_text().strip()


def test_ssh_as_root_with_the_key_from_the_host(machine: Any, host_dir: Path) -> None:
    """The host's ssh client in the container's network namespace, checking the host key the
    instance made at first boot (a wrong key would fail StrictHostKeyChecking)."""
    _, host_key = run_out(machine, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    known = host_dir / "known_hosts"
    known.write_text(f"127.0.0.1 {' '.join(host_key.split()[:2])}\n")
    machine.reload()
    pid = str(machine.attrs["State"]["Pid"])
    ssh = ["nsenter", "-t", pid, "-n", "ssh", "-i", str(host_dir / "id_ed25519"),
           "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={known}", "-o", "HostKeyAlgorithms=ssh-ed25519",
           "-o", "ConnectTimeout=10"]
    done = subprocess.run([*ssh, "root@127.0.0.1", "id -un; hostname"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "root"
    refused = subprocess.run([*ssh, "-o", "PubkeyAuthentication=no", "root@127.0.0.1", "true"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr


def test_restart_keeps_host_keys_and_does_not_repeat_keys(machine: Any) -> None:
    _, before = run_out(machine, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    machine.restart(timeout=10)
    wait_running(machine, ("sshd", "sleeper"))
    _, after = run_out(machine, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    assert after == before
    _, keys = run_out(machine, "cat", "/root/.ssh/authorized_keys")
    assert len(keys.strip().splitlines()) == 1


def test_cli_image_list_and_build(machine_image: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["image", "list", "--local", "--json"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.lstrip().startswith("[")
    engine = DockerEngine()
    try:
        assert any(i.id == machine_image and MACHINE_TAG in i.tags for i in list_images(engine))
    finally:
        engine.close()
    assert f'"{MACHINE_TAG}"' in listed.output
    again = runner.invoke(app, ["image", "build", "machine"])  # exists: nothing to do
    assert again.exit_code == 0, again.output
    assert machine_image[7:19] in again.output
    unknown = runner.invoke(app, ["image", "build", "windows"])
    assert isinstance(unknown.exception, InvalidRequest)
    assert "machine" in unknown.exception.message


def test_failing_step_reports_its_output_and_leaves_nothing(tmp_path: Path) -> None:
    """A broken cached tree: tar's complaint comes back in the BackendError; no image, no
    half-unpacked tree stays behind."""
    cached = f"{machine_image.SUITE}-{machine_image.base_key()}-rootfs.tar"  # this build's key
    (tmp_path / cached).write_bytes(b"not a tar file" * 100)
    tag = f"dytst/machine:{secrets.token_hex(4)}"
    engine = DockerEngine()
    try:
        with pytest.raises(BackendError) as failed:
            build_machine_image(engine, tmp_path, tag=tag)
        assert "tar" in failed.value.message and "exit 2" in failed.value.message
        assert "does not look like a tar archive" in failed.value.message
        assert not any(tag in i.tags for i in list_images(engine))
    finally:
        engine.close()
    assert [p.name for p in tmp_path.iterdir()] == [cached]
