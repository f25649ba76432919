"""`dockyard`: the command line. Errors print one clear line on stderr and exit non-zero."""

from __future__ import annotations

import sys

import typer

from dockyard.cli import doctor, instances, up
from dockyard.cli import stats as stats_cli
from dockyard.cli.alerts import alert_app, alerts, webhook_app
from dockyard.cli.audit import audit
from dockyard.cli.backup import backup, restore
from dockyard.cli.devcluster import dev_cluster_app
from dockyard.cli.groups import host_app, network_app, volume_app
from dockyard.cli.images import image_app
from dockyard.cli.output import err_console
from dockyard.cli.snapshots import evacuate, migrate, rebuild, snapshot_app
from dockyard.cli.tenants import login, project_app, quota_app, token_app
from dockyard.errors import DockyardError

app = typer.Typer(help="Dockyard: a private container cloud of VM-like machine containers.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

app.command("up")(up.up)
app.command("server")(up.server)
app.command("agent")(up.agent)
app.command("reset")(up.reset)
app.command("launch")(instances.launch)
app.command("list")(instances.list_)
app.command("show")(instances.show)
app.command("start")(instances.start)
app.command("stop")(instances.stop)
app.command("restart")(instances.restart)
app.command("delete")(instances.delete)
app.command("resize")(instances.resize)
app.command("migrate")(migrate)
app.command("rebuild")(rebuild)
app.command("evacuate")(evacuate)
app.command("exec", context_settings={"allow_interspersed_args": False})(instances.exec_)
app.command("logs")(instances.logs)
app.command("events")(instances.events)
app.command("alerts")(alerts)
app.command("stats")(stats_cli.stats)
app.command("top")(stats_cli.top)
app.command("doctor")(doctor.doctor)
app.command("audit")(audit)
app.command("backup")(backup)
app.command("restore")(restore)
app.command("login")(login)
app.add_typer(host_app, name="host")
app.add_typer(network_app, name="network")
app.add_typer(volume_app, name="volume")
app.add_typer(alert_app, name="alert")
app.add_typer(webhook_app, name="webhook")
app.add_typer(image_app, name="image")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(project_app, name="project")
app.add_typer(token_app, name="token")
app.add_typer(quota_app, name="quota")
app.add_typer(dev_cluster_app, name="dev-cluster")


def main() -> None:
    try:
        app()
    except DockyardError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True,
                          soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
