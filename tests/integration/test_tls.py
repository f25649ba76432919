"""`dockyard up --tls`: the API over https with a cluster CA the CLI config names, agents serving
their API over https with a certificate the server signed at registration, the server's agent
proxy (exec, logs) and the console relay (wss) verifying it against the CA."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509

from tests.integration.dockyard_env import IMAGE, VENV_BIN, Dockyard, leaks, make_dockyard


@pytest.fixture(scope="module")
def tdy() -> Iterator[Dockyard]:
    env = make_dockyard()
    env.tls = True
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def test_ca_and_server_certificate(tdy: Dockyard) -> None:
    tls = tdy.home / "tls"
    assert stat.S_IMODE((tls / "ca-key.pem").stat().st_mode) == 0o600
    cfg = json.loads((tdy.root / ".config/dockyard/config.json").read_text())
    assert cfg["url"].startswith("https://") and cfg["ca"] == str(tls / "ca.pem")
    cert = x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    with pytest.raises(httpx.HTTPError):  # plain HTTP is not answered
        httpx.get(f"http://127.0.0.1:{tdy.port}/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA refuses
        httpx.get(f"{tdy.url}/healthz", timeout=5)
    ok = httpx.get(f"{tdy.url}/healthz", verify=ssl.create_default_context(
        cafile=str(tls / "ca.pem")), timeout=5)
    assert ok.status_code == 200


def test_agent_serves_tls_signed_by_the_cluster_ca(tdy: Dockyard) -> None:
    api_url = tdy.db_query("SELECT api_url FROM hosts WHERE name='local'")[0][0]
    assert api_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(tdy.home / "tls" / "ca.pem"))
    assert httpx.get(f"{api_url}/healthz", verify=context, timeout=5).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api_url}/healthz", timeout=5)  # system trust store: not ours
    with pytest.raises(httpx.HTTPError):
        httpx.get(api_url.replace("https", "http", 1) + "/healthz", timeout=5)


def test_launch_exec_and_console_over_tls(tdy: Dockyard) -> None:
    try:
        tdy.ok("launch", IMAGE, "tls-box")
        assert tdy.ok("list", "--json").json()["items"][0]["name"] == "tls-box"
        assert "hello" in tdy.ok("exec", "tls-box", "--", "echo", "hello").out  # proxy, https
        proc = subprocess.run([str(VENV_BIN / "dockyard"), "exec", "-i", "tls-box", "--",
                               "sh"], input="echo over-wss\nexit 4\n", capture_output=True,
                              text=True, env=tdy.env(), timeout=60)
        assert proc.returncode == 4, proc.stderr  # console: CLI → wss → server → wss → agent
        assert "over-wss" in proc.stdout
        with tdy.api() as api:
            assert api.get("/v1/audit")["items"]
    finally:
        tdy.cli("delete", "tls-box", "--force")
    deadline = time.monotonic() + 60
    while (found := leaks(tdy)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == []
