"""TLS, the default of `dockyard up`: the API over https with a cluster CA the CLI config
names, agents serving their API over https with a certificate the server signed at
registration, the server's agent proxy (exec, logs) and the console relay (wss) verifying it
against the CA; `host add` and `login` hand the CA on with its SHA-256 fingerprint; `--no-tls`
still serves plain HTTP."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from dockyard import tls
from tests.integration.dockyard_env import IMAGE, VENV_BIN, Dockyard, leaks, make_dockyard


def test_ca_and_server_certificate(dy: Dockyard) -> None:
    assert dy.tls, "the session Dockyard runs the default: TLS"
    files = dy.home / "tls"
    assert stat.S_IMODE((files / "ca-key.pem").stat().st_mode) == 0o600
    cfg = json.loads((dy.root / ".config/dockyard/config.json").read_text())
    assert cfg["url"].startswith("https://") and cfg["ca"] == str(files / "ca.pem")
    cert = x509.load_pem_x509_certificate((files / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not answered
        httpx.get(f"http://127.0.0.1:{dy.port}/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA refuses
        httpx.get(f"{dy.url}/healthz", timeout=5)
    ok = httpx.get(f"{dy.url}/healthz", verify=ssl.create_default_context(
        cafile=str(files / "ca.pem")), timeout=5)
    assert ok.status_code == 200
    # the CA is public: served without a token, with the fingerprint `up` printed
    ca = httpx.get(f"{dy.url}/v1/cluster/ca", verify=dy.verify, timeout=5).json()
    assert ca["pem"] == (files / "ca.pem").read_text()
    assert ca["fingerprint"] == tls.fingerprint(ca["pem"])
    log = (dy.root / "up.log").read_text()
    assert f"SHA-256 {ca['fingerprint']}" in log, log


def test_agent_serves_tls_signed_by_the_cluster_ca(dy: Dockyard) -> None:
    api_url = dy.db_query("SELECT api_url FROM hosts WHERE name='local'")[0][0]
    assert api_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(dy.home / "tls" / "ca.pem"))
    assert httpx.get(f"{api_url}/healthz", verify=context, timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api_url}/healthz", timeout=5)  # system trust store: not ours
    with pytest.raises(httpx.HTTPError):
        httpx.get(api_url.replace("https", "http", 1) + "/healthz", timeout=5)


def test_launch_exec_and_console_over_tls(dy: Dockyard) -> None:
    try:
        dy.ok("launch", IMAGE, "tls-box")
        assert "tls-box" in {i["name"] for i in dy.ok("list", "--json").json()["items"]}
        assert "hello" in dy.ok("exec", "tls-box", "--", "echo", "hello").out  # proxy, https
        proc = subprocess.run([str(VENV_BIN / "dockyard"), "exec", "-i", "tls-box", "--",
                               "sh"], input="echo over-wss\nexit 4\n", capture_output=True,
                              text=True, env=dy.env(), timeout=60)
        assert proc.returncode == 4, proc.stderr  # console: CLI → wss → server → wss → agent
        assert "over-wss" in proc.stdout
    finally:
        dy.cli("delete", "tls-box", "--force")
    deadline = time.monotonic() + 60
    while (found := leaks(dy)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == []


def test_host_add_prints_what_a_remote_agent_needs(dy: Dockyard) -> None:
    added = dy.ok("host", "add", "tls-h2")
    try:
        out = " ".join(added.out.split())
        token = next(w for w in out.split() if w.startswith("dy_"))
        fp = tls.fingerprint((dy.home / "tls" / "ca.pem").read_text())
        assert f"cluster CA: {dy.ca} (SHA-256 {fp})" in out
        assert f"dockyard agent --server {dy.url} --token {token} --name tls-h2 --ca {dy.ca}" \
            in out
    finally:
        dy.ok("host", "remove", "tls-h2")


def test_an_agent_without_the_ca_is_told_at_once(dy: Dockyard, tmp_path: Path) -> None:
    proc = subprocess.run([str(VENV_BIN / "dockyard"), "agent", "--server", dy.url, "--token",
                           "dy_nope", "--name", "no-ca", "--home", str(tmp_path)],
                          capture_output=True, text=True, env=dy.env(), timeout=60)
    assert proc.returncode != 0 and "--ca" in proc.stderr, proc.stderr


def _login(dy: Dockyard, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**dy.env(), "DOCKYARD_CONFIG": str(config)}
    return subprocess.run([str(VENV_BIN / "dockyard"), "login", dy.url, "--token",
                           dy.token(), *args], capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_login_trusts_the_cluster_ca_by_fingerprint(dy: Dockyard, tmp_path: Path) -> None:
    fp = tls.fingerprint((dy.home / "tls" / "ca.pem").read_text())
    refused = _login(dy, tmp_path / "no.json")  # no terminal to ask at: say what to pass
    assert refused.returncode != 0 and fp in refused.stderr and "--fingerprint" in \
        refused.stderr, refused.stderr
    assert not (tmp_path / "no.json").exists()
    wrong = _login(dy, tmp_path / "wrong.json", "--fingerprint", "AB" * 32)
    assert wrong.returncode != 0 and not (tmp_path / "wrong.json").exists()
    ok = _login(dy, tmp_path / "ok.json", "--fingerprint", fp.replace(":", "").lower())
    assert ok.returncode == 0, ok.stderr
    cfg = json.loads((tmp_path / "ok.json").read_text())
    assert Path(cfg["ca"]).read_text() == (dy.home / "tls" / "ca.pem").read_text()
    by_file = _login(dy, tmp_path / "file.json", "--ca", str(dy.ca))
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads((tmp_path / "file.json").read_text())["ca"] == str(dy.ca)


@pytest.fixture(scope="module")
def plain() -> Iterator[Dockyard]:
    env = make_dockyard()
    env.tls = False
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def test_no_tls_serves_plain_http(plain: Dockyard) -> None:
    assert httpx.get(f"http://127.0.0.1:{plain.port}/healthz", timeout=5).status_code == 200
    cfg = json.loads((plain.root / ".config/dockyard/config.json").read_text())
    assert cfg["url"].startswith("http://") and "ca" not in cfg
    api_url = plain.db_query("SELECT api_url FROM hosts WHERE name='local'")[0][0]
    assert api_url.startswith("http://")
    assert httpx.get(f"{plain.url}/v1/cluster/ca", timeout=5).status_code == 404
    added = plain.ok("host", "add", "plain-h2").out
    assert "dockyard agent --server http://" in added and "--ca" not in added
    plain.ok("host", "remove", "plain-h2")
