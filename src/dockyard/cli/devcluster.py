"""`dockyard dev-cluster up|down|status|cut-uplink|restore-uplink`."""

from __future__ import annotations

from operator import methodcaller
from pathlib import Path
from typing import Annotated

import typer

from dockyard.cli.config import config_path, write_config
from dockyard.cli.output import console, table

dev_cluster_app = typer.Typer(help="A real cluster on this machine: N simulated hosts, each "
                              "with its own netns, dockerd, OVS and agent.",
                              no_args_is_help=True)
HomeOpt = Annotated[Path, typer.Option(help="state directory of the dev-cluster")]
DEFAULT_HOME = Path("/var/lib/dockyard/dev-cluster")


@dev_cluster_app.command("up")
def up(hosts: Annotated[int, typer.Option(min=1, max=50, help="number of hosts")] = 3,
       home: HomeOpt = DEFAULT_HOME,
       listen: Annotated[str | None, typer.Option(help="server HOST:PORT (default: "
                                                  "10.239.<k>.1:7070, the management "
                                                  "bridge)")] = None,
       heartbeat_timeout: Annotated[float, typer.Option(help="seconds without heartbeat → "
                                                        "host down")] = 30.0,
       resync_interval: Annotated[float, typer.Option(help="agent full-resync period")]
       = 60.0,
       criu: Annotated[bool, typer.Option("--criu", help="hosts' dockerd --experimental with "
                                          "scripts/criu-wrapper as their criu (live "
                                          "migration)")] = False,
       entrance: Annotated[int | None, typer.Option(
           min=1, max=65535, help="host1 runs the HTTP entrance of stacks (HAProxy) on this "
           "port of its management address (10.239.<k>.11)")] = None) -> None:
    """Start the cluster (returns once every host is up) and point the CLI at it."""
    if listen is not None:
        _refuse_unreachable(listen)
    from dockyard.devcluster import cluster
    st, token = cluster.up(hosts, home.resolve(), listen, heartbeat_timeout, resync_interval,
                           criu, entrance)
    write_config(st.url, token)
    console.print(f"[green]dev-cluster up[/green]: {len(st.hosts)} hosts, server {st.url}"
                  f"{' (criu: ' + st.criu + ')' if st.criu else ''}"
                  f"{', entrance ' + st.entrance + ' on host1' if st.entrance else ''}\n"
                  f"  CLI config: {config_path()}\n  state: {home.resolve()}")


def _refuse_unreachable(listen: str) -> None:
    """The simulated hosts live in their own network namespaces: this machine's loopback is
    not theirs, and an unspecified address (0.0.0.0) is no address to reach. Refused before
    anything is made, not at the first host's `docker login`."""
    import ipaddress

    host = listen.rpartition(":")[0].strip("[]") or listen
    if host.lower() == "localhost":
        unreachable = True
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: the hosts resolve it as they can
        unreachable = address.is_loopback or address.is_unspecified
    if unreachable:
        raise typer.BadParameter(
            f"{listen}: the simulated hosts live in their own network namespaces and cannot "
            "reach this machine's loopback (nor an unspecified address); leave --listen out "
            "(the server then listens on the management bridge, 10.239.<k>.1:7070, which "
            "every host and this machine reach) or give an address the hosts can route to",
            param_hint="--listen")


@dev_cluster_app.command("down")
def down(home: HomeOpt = DEFAULT_HOME) -> None:
    """Remove everything the dev-cluster made (containers, daemons, netns, links, dirs)."""
    from dockyard.devcluster import cluster
    if cluster.down(home.resolve()):
        console.print("dev-cluster removed")
    else:
        console.print(f"no dev-cluster in {home}")


@dev_cluster_app.command("status")
def status(home: HomeOpt = DEFAULT_HOME) -> None:
    """Each simulated host: netns, management address, uplink, processes."""
    from dockyard.devcluster import cluster
    rows = cluster.status(home.resolve())
    keys = list(rows[0]) if rows else ["host"]
    table(rows, [(key.upper(), methodcaller("get", key, "")) for key in keys], "no hosts")


@dev_cluster_app.command("cut-uplink")
def cut_uplink(host: str, home: HomeOpt = DEFAULT_HOME) -> None:
    """Take HOST's uplink down at the fabric: its instances lose every other host."""
    from dockyard.devcluster import cluster
    cluster.set_uplink(home.resolve(), host, False)
    console.print(f"{host}: uplink cut")


@dev_cluster_app.command("restore-uplink")
def restore_uplink(host: str, home: HomeOpt = DEFAULT_HOME) -> None:
    """Bring HOST's uplink back up."""
    from dockyard.devcluster import cluster
    cluster.set_uplink(home.resolve(), host, True)
    console.print(f"{host}: uplink restored")
