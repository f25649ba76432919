"""`dockyard up` (server + agent as two processes over loopback HTTPS with the cluster CA in
HOME/tls, or plain HTTP with `--no-tls`), `server`, `agent`.

The server, agent, store and TLS code is imported inside the commands that run it, so that the
rest of the CLI starts without it (tests/unit/test_cli_startup.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli.config import config_path, read_config, write_config
from dockyard.cli.hosts import parse_labels
from dockyard.cli.output import console, err_console
from dockyard.cli.supervise import Child, StopRequest, stop_all, supervise
from dockyard.client import ApiClient
from dockyard.config import (
    DEFAULT_LISTEN,
    DEFAULT_SUBNET,
    AgentSettings,
    ServerSettings,
    env_home,
    split_listen,
)
from dockyard.errors import BackendError, Conflict, DockyardError, NotFound
from dockyard.model.units import parse_size

if TYPE_CHECKING:
    from dockyard.store.db import Database

HomeOpt = Annotated[Path, typer.Option(help="state directory [env DOCKYARD_HOME]",
                                       default_factory=env_home)]
LOCAL_HOST = "local"


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def server(home: HomeOpt, listen: str = typer.Option(DEFAULT_LISTEN, help="HOST:PORT"),
           database_url: str | None = typer.Option(
               None, "--db", "--database-url",
               help="database URL: postgresql://USER:PW@HOST/DB (several servers may share "
               "one) or a SQLAlchemy URL; default SQLite in HOME"),
           heartbeat_timeout: float = typer.Option(30.0, help="seconds without heartbeat → down"),
           inventory_interval: float = typer.Option(60.0, help="seconds between the agents' "
                                                    "inventory checks (posted when changed)"),
           host_path_root: str = typer.Option("", help="allowed root of host-path volumes"),
           alert_interval: float = typer.Option(10.0, help="seconds between alert passes"),
           rss_for: float = typer.Option(60.0, help="builtin memory alert: seconds rss stays "
                                         ">= 90 % of the limit"),
           load_for: float = typer.Option(300.0, help="builtin load alert: seconds CPU demand "
                                          "stays >= the instance's cores"),
           webhook_retry_base: float = typer.Option(5.0, help="first webhook retry delay "
                                                    "(doubles per attempt)"),
           registry: str | None = typer.Option(None, help="URL of an outside image registry "
                                               "that engines use directly, without Dockyard's "
                                               "credentials (default: the server runs one in "
                                               "HOME/registry and serves it at /v2/ behind "
                                               "its tokens)"),
           registry_address: str = typer.Option("", help="HOST:PORT at which the hosts' "
                                                "engines reach this server's /v2/ (default: "
                                                "--listen)"),
           tls: bool = typer.Option(True, "--tls/--no-tls", help="serve HTTPS with the "
                                    "cluster CA in HOME/tls (created when missing; agents "
                                    "get --ca HOME/tls/ca.pem); --no-tls: plain HTTP, for a "
                                    "TLS proxy in front"),
           rate_limit: float = typer.Option(0.0, help="calls a second per API token before "
                                            "429 + Retry-After (0: no limit; the agent feed "
                                            "and /v2/ never limited)"),
           rate_burst: int = typer.Option(200, help="calls a token may make at once"),
           build_host_parallel: int = typer.Option(2, min=1, help="builds one host runs at "
                                                   "once (more wait, queued)"),
           build_memory: str = typer.Option("2G", help="memory of a build's steps (a "
                                            "repository may ask for less)"),
           build_cpus: float = typer.Option(2.0, min=0.01, help="CPUs of a build's steps "
                                            "(CFS quota; a repository may ask for less)"),
           verbose: bool = False) -> None:
    """Run the API server in the foreground."""
    from dockyard.server.app import run_server
    _logging(verbose)
    run_server(ServerSettings(home=home, listen=listen, database_url=database_url,
                              heartbeat_timeout=heartbeat_timeout,
                              heartbeat_interval=inventory_interval,
                              host_path_root=host_path_root, alert_interval=alert_interval,
                              rss_for=rss_for, load_for=load_for,
                              webhook_retry_base=webhook_retry_base,
                              registry_url=registry or "",
                              registry_managed=registry is None,
                              registry_address=registry_address,
                              tls_dir=home / "tls" if tls else None,
                              rate_limit=rate_limit, rate_burst=rate_burst,
                              build_host_parallel=build_host_parallel,
                              build_memory=parse_size(build_memory), build_cpus=build_cpus))


def agent(server_url: str = typer.Option(..., "--server", help="server URL"),
          token: str = typer.Option(..., envvar="DOCKYARD_TOKEN", help="host token"),
          name: str = typer.Option(os.uname().nodename, help="host name"),
          home: Path = typer.Option(Path("/var/lib/dockyard/agent"), help="agent state dir"),
          api_listen: str = typer.Option("127.0.0.1:0", help="agent API HOST:PORT"),
          docker_url: str | None = typer.Option(None, envvar="DOCKER_HOST"),
          cores: str | None = typer.Option(None, help="cores to offer, e.g. 0-3"),
          reserved_cores: str = typer.Option("", help="cores kept for the system, e.g. 0 "
                                             "(never exclusive, never in the shared pool)"),
          memory: str | None = typer.Option(None, help="memory to offer, e.g. 8G"),
          resync_interval: float = typer.Option(60.0, help="seconds between full resyncs"),
          collector_interval: float = typer.Option(10.0, help="seconds between stats "
                                                   "samples"),
          label: list[str] = typer.Option([], help="host label k=v (repeatable); labels "
                                          "given at `host add` win"),
          uplink: str | None = typer.Option(None, help="NIC that trunks networks to other "
                                            "hosts (VLAN-tagged, through Open vSwitch)"),
          ovs_db: str | None = typer.Option(None, help="ovsdb-server socket (default: the "
                                            "system's), e.g. unix:/run/openvswitch/db.sock"),
          image_budget: str | None = typer.Option(None, help="disk for images on this host, "
                                                  "e.g. 20G: unused images beyond it are "
                                                  "removed, oldest first (default: no GC)"),
          ca: Path | None = typer.Option(None, envvar="DOCKYARD_CA", help="the cluster CA "
                                         "(ca.pem, as `dockyard host add` prints it) of an "
                                         "https server: trust it, and serve the agent API "
                                         "over https with a certificate the server signs"),
          vm_images: Path = typer.Option(Path("/var/lib/dockyard/vm-images"),
                                         envvar="DOCKYARD_VM_IMAGES", help="directory of the "
                                         "VM images (scripts/vm-image.sh builds one)"),
          vm_accel: str = typer.Option("auto", envvar="DOCKYARD_VM_ACCEL", help="VM instances "
                                       "through: auto (KVM when usable, else no VMs), kvm, "
                                       "tcg (QEMU's emulation: slow, for test hosts), none"),
          entrance: str | None = typer.Option(None, help="HOST:PORT where this host runs "
                                              "the HTTP entrance of stacks (HAProxy), e.g. "
                                              "0.0.0.0:8080 (default: not an entrance host)"),
          verbose: bool = False) -> None:
    """Run a host agent in the foreground (`dockyard host add NAME` prints the token)."""
    from dockyard.agent.runtime import run_agent
    from dockyard.scheduler.cpusets import parse_cpuset
    _logging(verbose)
    _check_trust(server_url, ca)
    run_agent(AgentSettings(server=server_url, token=token, name=name, home=home,
                            api_listen=api_listen, docker_url=docker_url,
                            cores=parse_cpuset(cores) if cores else None,
                            reserved_cores=parse_cpuset(reserved_cores) if reserved_cores
                            else [],
                            memory_bytes=parse_size(memory) if memory else None,
                            resync_interval=resync_interval,
                            collector_interval=collector_interval,
                            labels=parse_labels(label), uplink=uplink, ovs_db=ovs_db, ca=ca,
                            image_budget=parse_size(image_budget) if image_budget else None,
                            vm_images=vm_images, vm_accel=vm_accel, entrance=entrance))


def _check_trust(server_url: str, ca: Path | None) -> None:
    """An https server whose CA the agent was not given: say so at once rather than retry
    the registration forever (an unreachable server is waited for as before)."""
    if ca is not None or not server_url.startswith("https://"):
        return
    from dockyard.client import trusted_by_system
    try:
        trusted = trusted_by_system(server_url)
    except BackendError:
        return
    if not trusted:
        raise typer.BadParameter(f"{server_url} has a certificate from an unknown CA: give "
                                 "--ca with the cluster CA (`dockyard host add` prints it)",
                                 param_hint="--ca")


def _admin_token(db: Database, project_id: str, url: str, ca: Path | None = None) -> str:
    """Reuse the configured admin token when it is this server's, else mint one."""
    from dockyard.server.bootstrap import mint_admin_token
    from dockyard.store import tokens
    cfg = read_config()
    if cfg.get("url") == url and cfg.get("token") and cfg.get("ca") == (str(ca) if ca else None):
        with db.session() as sess:
            row = tokens.lookup(sess, cfg["token"])
            if row is not None and row.role == "admin":  # not a member's after `login`
                return cfg["token"]
    token = mint_admin_token(db, project_id)
    write_config(url, token, ca=ca)
    return token


class Stopped(Exception):
    """A stop (Ctrl-C, SIGTERM, SIGHUP) was requested while `up` was starting."""


def _wait_until(check: object, what: str, proc: subprocess.Popen[bytes], log: Path,
                timeout: float = 30.0, stop: StopRequest | None = None) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop.requested:
            raise Stopped
        if proc.poll() is not None:
            raise BackendError(f"{what} exited with {proc.returncode}; see {log}")
        try:
            if check():  # type: ignore[operator]
                return
        except (DockyardError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise BackendError(f"{what} did not become ready in {timeout:.0f}s; see {log}")


def _cluster_ca(home: Path, listen: str) -> Path:
    """HOME/tls: the cluster CA and the server's certificate, made before the server starts
    so the CLI config can name the CA."""
    from dockyard.tls import TlsFiles, ensure_ca, ensure_server_cert, server_names
    files = TlsFiles(home / "tls")
    ensure_ca(files)
    ensure_server_cert(files, server_names(split_listen(listen)[0]))
    return files.ca


def _record_restart(url: str, host_token: str, ca: Path | None, server: Child, child: Child,
                    reason: str, stop: StopRequest) -> None:
    """A host event for the restart (the agent's re-registration adds `host_up`). After a
    server restart, once it answers; a server that dies again is the supervisor's business.
    A client of its own, closed after: no idle connection for the server to wait on."""
    import httpx
    message = (f"dockyard up restarted the {child.name} ({reason}; restart "
               f"{child.restarts})")
    try:
        with ApiClient(url, host_token, timeout=10, ca=ca) as host_api:
            _post_restart(host_api, server, child, message, stop)
    except (DockyardError, httpx.HTTPError) as exc:
        err_console.print(f"cannot record the restart as a host event: {exc}")


def _post_restart(host_api: ApiClient, server: Child, child: Child, message: str,
                  stop: StopRequest) -> None:
    if child is server and server.proc is not None:
        _wait_until(lambda: host_api.get("/healthz"), "server", server.proc, server.log,
                    stop=stop)
    host_api.post("/v1/agent/events", {"kind": f"{child.name}_restarted", "message": message})


def _ensure_default_network(api: ApiClient, subnet: str) -> None:
    try:
        api.get("/v1/networks/default")
    except NotFound:
        api.post("/v1/networks", {"name": "default", "subnet": subnet})


def _subnet_taken(exc: Conflict, subnet: str, home: Path) -> Conflict:
    """The default subnet is routed to a bridge already: name the bridge, the home that made
    it when known (the default home is looked at), a free subnet and `dockyard reset`."""
    from dockyard import ipam
    from dockyard.adapters.netlink import list_routes
    from dockyard.cli.reset import home_using
    from dockyard.config import DEFAULT_HOME

    routes = list_routes()
    taken = [r for r in routes if r.dev and ipam.overlaps(r.dst, subnet)]
    if not taken:
        return exc
    bridge, dst = taken[0].dev, taken[0].dst
    others = [h for h in (env_home(), DEFAULT_HOME) if h.resolve() != home]
    other = home_using(str(bridge), others)
    free = next((f"10.{n}.0.0/16" for n in range(241, 255)
                 if not any(ipam.overlaps(r.dst, f"10.{n}.0.0/16") for r in routes)), None)
    owner = (f", the default network of the Dockyard home {other} (its bridge stays after "
             "that Dockyard stops)" if other else
             ", a network of another Dockyard home" if str(bridge).startswith("dyb") else "")
    hints = [f"start this home with `--subnet {free}`" if free else
             "start this home with `--subnet` and a free subnet"]
    if str(bridge).startswith("dyb"):
        hints.append("remove the other home's bridges, rules and instances with "
                     f"`dockyard reset --home {other or 'OTHER_HOME'}`")
    return Conflict(f"the default network's subnet {subnet} is taken on this machine by "
                    f"bridge {bridge} ({dst}{owner}): {', or '.join(hints)}")


def reset(home: HomeOpt, yes: bool = typer.Option(False, "--yes", "-y",
                                                  help="do not ask")) -> None:
    """Remove what a stopped Dockyard home left on this machine: its instances' containers,
    volumes, bridges with their forwarding and NAT rules, and the home directory.

    Asks first (--yes: does not). Refused while that home's Dockyard runs."""
    from dockyard.cli import reset as resetting

    state = resetting.read_home(home.resolve())
    if pids := resetting.home_processes(state.home):
        raise Conflict(f"the Dockyard of {state.home} is running (pid "
                       f"{', '.join(map(str, pids))}): stop it first (Ctrl-C of `dockyard up`)")
    console.print(f"dockyard reset of {state.home} removes:\n  "
                  + "\n  ".join(resetting.plan(state)), soft_wrap=True)
    if not yes:
        typer.confirm("Remove all of this?", abort=True)
    resetting.remove(state)
    console.print(f"{state.home} reset: nothing of it is left on this machine")


def up(home: HomeOpt, listen: str = typer.Option(DEFAULT_LISTEN, help="HOST:PORT"),
       subnet: str = typer.Option(DEFAULT_SUBNET, envvar="DOCKYARD_SUBNET",
                                  help="subnet of the default network"),
       heartbeat_timeout: float = typer.Option(30.0, help="seconds without heartbeat → down"),
       resync_interval: float = typer.Option(60.0, help="agent full-resync period"),
       alert_interval: float = typer.Option(10.0, help="seconds between alert passes"),
       rss_for: float = typer.Option(60.0, help="builtin memory alert duration (seconds)"),
       load_for: float = typer.Option(300.0, help="builtin load alert duration (seconds)"),
       collector_interval: float = typer.Option(10.0, help="agent stats sampling period"),
       docker_url: str | None = typer.Option(None, help="dockerd of this host (default: "
                                             "DOCKER_HOST or the local socket)"),
       registry: str | None = typer.Option(None, help="URL of an outside image registry "
                                           "(default: the server runs one at /v2/, behind "
                                           "its tokens)"),
       tls: bool = typer.Option(True, "--tls/--no-tls", help="HTTPS for the API and the "
                                "agent API with a cluster CA in HOME/tls (the CLI config "
                                "trusts it); --no-tls: plain HTTP"),
       entrance: str | None = typer.Option(None, help="HOST:PORT where this host runs the "
                                           "HTTP entrance of stacks (HAProxy), e.g. "
                                           "0.0.0.0:8080 (default: none)"),
       ) -> None:
    """Run Dockyard on this machine: server and agent (separate processes) in the foreground.

    Ctrl-C stops both; instances keep running."""
    from dockyard.client import ApiClient
    from dockyard.server.bootstrap import init_store, mint_host_token
    from dockyard.store.db import Database
    from dockyard.tls import fingerprint
    home = home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    url = f"{'https' if tls else 'http'}://{listen}"
    ca = _cluster_ca(home, listen) if tls else None
    db = Database(f"sqlite:///{home / 'dockyard.db'}")
    project_id = init_store(db)
    token = _admin_token(db, project_id, url, ca)
    host_token = mint_host_token(db, LOCAL_HOST)
    db.close()
    server_log, agent_log = home / "logs" / "server.log", home / "logs" / "agent.log"
    server_child = Child("server", ["server", "--home", str(home), "--listen", listen,
                                    "--heartbeat-timeout", str(heartbeat_timeout),
                                    "--alert-interval", str(alert_interval), "--rss-for",
                                    str(rss_for), "--load-for", str(load_for),
                                    *(["--registry", registry] if registry else []),
                                    "--tls" if tls else "--no-tls"], server_log)
    agent_child = Child("agent", ["agent", "--server", url, "--name", LOCAL_HOST, "--home",
                                  str(home / "agent"), "--resync-interval",
                                  str(resync_interval),
                                  "--collector-interval", str(collector_interval),
                                  *(["--ca", str(ca)] if ca else []),
                                  *(["--docker-url", docker_url] if docker_url else []),
                                  *(["--entrance", entrance] if entrance else [])],
                        agent_log, {"DOCKYARD_TOKEN": host_token})
    children = [agent_child, server_child]  # stopped in this order
    # Ctrl-C, SIGTERM, and SIGHUP (the terminal went away: the children are not in its
    # process group) are noted, and acted on here, never inside the handler (supervise.py).
    stop = StopRequest()
    stop.install()
    try:
        api = ApiClient(url, token, timeout=30, ca=ca)
        _wait_until(lambda: api.get("/healthz"), "server", server_child.spawn(), server_log,
                    stop=stop)
        _wait_until(lambda: api.get(f"/v1/hosts/{LOCAL_HOST}")["state"] == "up", "agent",
                    agent_child.spawn(), agent_log, stop=stop)
        try:
            _ensure_default_network(api, subnet)
        except Conflict as exc:
            raise _subnet_taken(exc, subnet, home) from exc
        console.print(f"[green]Dockyard is up[/green] at {url} (home {home})\n"
                      f"  CLI config: {config_path()}\n  logs: {server_log}, {agent_log}\n"
                      + (f"  cluster CA: {ca} (SHA-256 {fingerprint(ca.read_text())})\n"
                         if ca else "")
                      + ("" if registry else f"  registry: docker login {listen} "
                         "(any user name; the password is a token)\n")
                      + "  Ctrl-C stops server and agent; instances keep running. A server "
                      "or agent that dies is restarted.", soft_wrap=True)
        api.close()  # no idle keep-alive connection of ours for the server to wait on
        supervise(children, lambda text: err_console.print(text),
                  lambda child, reason: _record_restart(url, host_token, ca, server_child,
                                                        child, reason, stop), stop=stop)
    except Stopped:
        pass
    except DockyardError:
        stop_all(children)
        raise
    stop_all(children)
    raise typer.Exit(0)
