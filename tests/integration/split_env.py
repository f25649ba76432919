"""Dockyard with the server and the agent as separately controlled processes (each can be
killed, restarted or run with a fault point armed), optionally on its own dockerd, optionally
on PostgreSQL with a second server process on the same database."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.cli.config import write_config
from dockyard.client import ApiClient
from dockyard.server.bootstrap import init_store, mint_admin_token, mint_host_token
from dockyard.store.db import Database, libpq_url
from tests.integration.dockyard_env import Dockyard, free_port, free_subnet

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SplitDockyard(Dockyard):
    docker_url: str | None = None
    server: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    host_token: str = ""
    image: str = "dockyard/busybox:latest"
    database_url: str | None = None  # postgresql://…; None = SQLite in the home
    port2: int = 0
    server2: subprocess.Popen[bytes] | None = None  # start_second_server(): same database
    server_args: list[str] = field(default_factory=list)  # e.g. shorter alert durations
    agent_args: list[str] = field(default_factory=list)

    def bootstrap(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        db = Database(self.database_url or f"sqlite:///{self.home / 'dockyard.db'}")
        project = init_store(db)
        write_config(self.url, mint_admin_token(db, project),
                     self.root / ".config" / "dockyard" / "config.json", ca=self.ca)
        self.host_token = mint_host_token(db, "local")
        db.close()
        self.cluster = self.db_query("SELECT value FROM meta WHERE key='cluster'")[0][0]

    def _spawn(self, name: str, args: list[str], fault: str | None,
               extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        prefix = [sys.executable, "-m", "dockyard"]
        if fault:
            prefix = [sys.executable, "-m", "tests.faultrun", fault, str(self.marker), "--"]
        with open(self.root / f"{name}.log", "ab") as log:
            return subprocess.Popen([*prefix, *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=ROOT,
                                    env={**self.env(), **(extra_env or {})})

    @property
    def marker(self) -> Path:
        return self.root / "faults-hit"

    def _server_args(self, port: int) -> list[str]:
        args = ["server", "--home", str(self.home), "--listen", f"127.0.0.1:{port}",
                "--heartbeat-timeout", "30", "--tls" if self.tls else "--no-tls",
                *self.server_args]
        return [*args, "--db", self.database_url] if self.database_url else args

    def _wait_healthy(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        for _ in range(200):
            try:  # the server makes the CA (home/tls) as it starts
                with ApiClient(url, "x", timeout=5, ca=self.ca) as api:
                    api.get("/healthz")
                return
            except Exception:
                assert proc.poll() is None, self.log_tail()
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def start_server(self, fault: str | None = None) -> None:
        self.server = self._spawn("server", self._server_args(self.port), fault)
        self._wait_healthy(self.url, self.server)

    @property
    def url2(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port2}"

    def start_second_server(self) -> None:
        """Another `dockyard server` on the same PostgreSQL database, at `url2`."""
        assert self.database_url, "two servers share one PostgreSQL database"
        self.port2 = self.port2 or free_port()
        self.server2 = self._spawn("server2", self._server_args(self.port2), None)
        self._wait_healthy(self.url2, self.server2)

    def start_agent(self, fault: str | None = None, wait: bool = True) -> None:
        args = ["agent", "--server", self.url, "--name", "local", "--home",
                str(self.home / "agent"), "--resync-interval", "5", *self.agent_args]
        if self.ca is not None:
            args += ["--ca", str(self.ca)]
        if self.docker_url:
            args += ["--docker-url", self.docker_url]
        self.agent = self._spawn("agent", args, fault, {"DOCKYARD_TOKEN": self.host_token})
        if wait:
            with self.api() as api:
                for _ in range(200):
                    host = next((h for h in api.get("/v1/hosts")["items"]
                                 if h["name"] == "local"), None)
                    if host and host["state"] == "up" and self.agent.poll() is None:
                        registered = self.db_query(
                            "SELECT api_url FROM hosts WHERE name='local'")[0][0]
                        if registered and self._agent_answers(registered):
                            return
                    assert self.agent.poll() is None, self.log_tail()
                    time.sleep(0.05)
            raise RuntimeError("agent did not register")

    def _agent_answers(self, url: str) -> bool:
        try:
            with ApiClient(url, "x", timeout=2, ca=self.ca) as api:
                api.get("/healthz")
            return True
        except Exception:
            return False

    def start(self, timeout: float = 60.0) -> None:
        self.bootstrap()
        self.start_server()
        self.start_agent()
        with self.api() as api:
            net = api.post("/v1/networks", {"name": "default", "subnet": self.subnet})
        self.bridges.add(net["bridge"])
        self.proc = self.server  # the leak check runs while the server is up

    @staticmethod
    def _end(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        self._end(self.agent, sig)

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        self._end(self.server, sig)

    def stop(self) -> None:
        self.stop_agent()
        self.stop_server()
        self._end(self.server2, signal.SIGTERM)
        self.proc = None

    def restart_server(self) -> None:
        self.stop_server()
        self.start_server()
        self.proc = self.server

    def log_tail(self) -> str:
        parts = []
        for name in ("server.log", "server2.log", "agent.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def db_query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.database_url:
            return super().db_query(sql, *params)
        import psycopg
        with psycopg.connect(libpq_url(self.database_url)) as conn:
            return list(conn.execute(sql.replace("?", "%s"), params))  # type: ignore[arg-type]

    def docker_client(self):  # type: ignore[no-untyped-def]
        import docker
        return docker.DockerClient(base_url=self.docker_url) if self.docker_url \
            else docker.from_env()

    def containers(self) -> list:  # type: ignore[type-arg]
        client = self.docker_client()
        try:
            return list(client.containers.list(
                all=True, filters={"label": f"dockyard.cluster={self.cluster}"}))
        finally:
            client.close()


def make_split(docker_url: str | None = None) -> SplitDockyard:
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="dockyard-split-"))
    return SplitDockyard(root=root, port=free_port(), subnet=free_subnet(),
                         docker_url=docker_url)
