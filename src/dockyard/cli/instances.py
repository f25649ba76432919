"""Instance verbs: launch, list, show, start, stop, restart, delete, exec, logs, events."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.config import client
from dockyard.cli.events import event_line
from dockyard.cli.events import follow as follow_events
from dockyard.cli.output import console, details, fetch, listing, print_json, print_list, table
from dockyard.errors import DockyardError, InvalidRequest
from dockyard.model.units import format_rate, format_size

JsonOpt = Annotated[bool, typer.Option("--json", help="print the API's JSON")]


def _pairs(pairs: list[str], option: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidRequest(f"{option} {pair!r} must be KEY=VALUE")
        result[key] = value
    return result


def _env(pairs: list[str]) -> dict[str, str]:
    return _pairs(pairs, "-e")


class Strategy(StrEnum):
    spread = "spread"
    pack = "pack"


class Kind(StrEnum):
    container = "container"
    vm = "vm"


def _explain(body: dict[str, Any], as_json: bool) -> None:
    """`launch --explain`: each host's verdict, reason and score; exit 1 if none fits."""
    with client() as api:
        result = api.post("/v1/instances", body, explain="true")
    if as_json:
        print_json(result)
    else:
        table(result["hosts"], [
            ("HOST", lambda r: r["host"]), ("VERDICT", lambda r: r["verdict"]),
            ("REASON", lambda r: r["reason"] or ""),
            ("SCORE", lambda r: "" if r["score"] is None else f"{r['score']:.3f}")],
            "no hosts")
        console.print(result["message"] if result["chosen"] is None
                      else f"would be placed on {result['chosen']}", highlight=False,
                      markup=False, soft_wrap=True)
    if result["chosen"] is None:
        raise typer.Exit(1)


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise InvalidRequest(f"--ssh-key {path}: {exc.strerror}") from exc


def _volumes(specs: list[str]) -> list[dict[str, Any]]:
    if not specs:
        return []
    from pydantic import ValidationError  # pydantic only for a launch with -v

    from dockyard.model.instance import VolumeSpec
    try:
        return [VolumeSpec.parse(s).model_dump() for s in specs]
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"-v: {msg}") from exc
    except ValueError as exc:
        raise InvalidRequest(f"-v: {exc}") from exc


def launch(
    image: Annotated[str, typer.Argument(help="image, e.g. dockyard/busybox:latest")],
    name: Annotated[str, typer.Argument(help="instance name (a DNS label)")],
    cores: Annotated[int, typer.Option(help="exclusive cores (cpuset)")] = 0,
    cpus: Annotated[float | None, typer.Option(help="CFS quota in CPUs, as docker")] = None,
    cpu_weight: Annotated[int | None, typer.Option(help="CPU shares")] = None,
    memory: Annotated[str | None, typer.Option(help="memory limit, e.g. 256M")] = None,
    pids: Annotated[int, typer.Option(help="process limit")] = 4096,
    read_bps: Annotated[str | None, typer.Option(help="disk read bytes/s, e.g. 10M")] = None,
    write_bps: Annotated[str | None, typer.Option(help="disk write bytes/s")] = None,
    read_iops: Annotated[int | None, typer.Option(help="disk read ops/s")] = None,
    write_iops: Annotated[int | None, typer.Option(help="disk write ops/s")] = None,
    ingress: Annotated[str | None, typer.Option(help="rate to the instance, e.g. 50mbit")] = None,
    egress: Annotated[str | None, typer.Option(help="rate from the instance")] = None,
    network: Annotated[str, typer.Option(help="network name")] = "default",
    ip: Annotated[str | None, typer.Option(help="fixed IPv4 address")] = None,
    hostname: Annotated[str | None, typer.Option(help="hostname (default: the name)")] = None,
    volume: Annotated[list[str], typer.Option("-v", "--volume", help="SRC:DST[:ro]")] = [],  # noqa: B006
    env: Annotated[list[str], typer.Option("-e", "--env", help="KEY=VALUE")] = [],  # noqa: B006
    lxcfs: Annotated[bool, typer.Option("--lxcfs/--no-lxcfs",
                                        help="the instance's own /proc view")] = True,
    ssh_key: Annotated[list[Path], typer.Option("--ssh-key", help="public key file for "
                                                "root (machine images)")] = [],  # noqa: B006
    host: Annotated[str | None, typer.Option(help="place on this host (admin)")] = None,
    kind: Annotated[Kind, typer.Option("--type", help="container, or vm: a QEMU/KVM virtual "
                                       "machine booted from a VM image of the host (its "
                                       "--memory is the guest's RAM, default 512M)")
                    ] = Kind.container,
    disk: Annotated[str | None, typer.Option(help="a VM's disk size, e.g. 10G (default: the "
                                             "image's); a container's disk size (`df /` "
                                             "shows it, ENOSPC past it)")] = None,
    cap_add: Annotated[list[str], typer.Option("--cap-add", help="extra capability, e.g. "
                                               "NET_ADMIN (repeatable or comma-separated; "
                                               "ALL: every one; admin)")] = [],  # noqa: B006
    constraint: Annotated[list[str], typer.Option(help="KEY=VALUE: only hosts with this "
                                                  "label (repeatable)")] = [],  # noqa: B006
    anti_affinity: Annotated[str | None, typer.Option(
        help="GROUP: never on a host that runs another instance of GROUP")] = None,
    strategy: Annotated[Strategy, typer.Option(help="spread: most headroom; pack: fullest "
                                               "host that fits")] = Strategy.spread,
    explain: Annotated[bool, typer.Option("--explain", help="show each host's verdict and "
                                          "score; create nothing")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until running")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Create and start an instance (`--explain`: only say where it would go, and why)."""
    limits = {key: value for key, value in (
        ("cores", cores), ("pids", pids), ("cpus", cpus), ("cpu_weight", cpu_weight),
        ("memory", memory), ("read_bps", read_bps), ("write_bps", write_bps),
        ("read_iops", read_iops), ("write_iops", write_iops), ("ingress", ingress),
        ("egress", egress)) if value is not None}
    body = {"name": name, "image": image, "network": network, "ip": ip, "hostname": hostname,
            "limits": limits, "volumes": _volumes(volume), "env": _env(env), "lxcfs": lxcfs,
            "ssh_keys": [_read_key(path) for path in ssh_key], "host": host,
            "cap_add": [cap for item in cap_add for cap in item.split(",") if cap],
            "constraints": _pairs(constraint, "--constraint"),
            "anti_affinity": anti_affinity, "strategy": strategy.value, "type": kind.value}
    if disk is not None:
        body["disk"] = disk
    if explain:
        _explain(body, as_json)
    else:
        _launch(body, wait, as_json)


def _launch(body: dict[str, Any], wait: bool, as_json: bool) -> None:
    """On a terminal a spinner while the server waits, and the name in green; to a pipe or a
    file the same line in plain text, without importing Rich (issue 18: start-up time)."""
    terminal = sys.stdout.isatty()
    with client() as api:
        if wait and not as_json and terminal:
            with console.status(f"launching {body['name']} …", spinner="dots"):
                inst = api.post("/v1/instances", body, wait="true")
        else:
            inst = api.post("/v1/instances", body, wait=str(wait).lower())
    if as_json:
        print_json(inst)
        return
    rest = f"{inst['state']} on {inst['host']} ip {inst['ip']} mac {inst['mac']}"
    if terminal:
        console.print(f"[green]{inst['name']}[/green] {rest}")
    else:
        print(f"{inst['name']} {rest}")


def list_(as_json: JsonOpt = False) -> None:
    """List instances."""
    print_list("/v1/instances", as_json, [
        ("NAME", lambda r: r["name"]), ("TYPE", lambda r: r.get("type", "")),
        ("STATE", lambda r: r["state"]),
        ("IP", lambda r: r["ip"]), ("HOST", lambda r: r["host"]),
        ("IMAGE", lambda r: r["image"]), ("CPUSET", lambda r: r["limits"]["cpuset"]),
        ("MEMORY", lambda r: format_size(r["limits"]["memory_bytes"]))],
        "no instances", limit=1000)


def show(name: str, as_json: JsonOpt = False) -> None:
    """Show one instance.

    Memory and pids are the instance's cgroup numbers. Inside, procps `free` and `uptime` and
    /proc/meminfo (lxcfs) agree with them; busybox `free` and `uptime` call sysinfo(2), which
    lxcfs cannot cover, and print the host's memory and uptime (see the README)."""
    inst = fetch(f"/v1/instances/{name}", as_json)
    if inst is None:
        return
    lim = inst["limits"]
    use = _usage(name) if inst["state"] == "running" else None
    details([("name", inst["name"]), ("id", inst["id"]), ("type", inst.get("type")),
             ("state", inst["state"]),
             ("health", inst.get("health", "none")), ("host", inst["host"]),
             ("image", inst["image"]), ("network", inst["network"]),
             ("ip", inst["ip"]), ("mac", inst["mac"]), ("hostname", inst["hostname"]),
             ("container", (inst["container_id"] or "")[:12]),
             ("generation", inst["generation"]),
             ("volumes", ", ".join(f"{v['source']}:{v['target']}" for v in inst["volumes"])),
             ("message", inst["message"])] + _limit_lines(lim, use))


def _usage(name: str) -> dict[str, Any] | None:
    try:
        with client() as api:
            return dict(api.get(f"/v1/instances/{name}/usage"))
    except DockyardError:
        return None


def _limit_lines(lim: dict[str, Any], use: dict[str, Any] | None) -> list[tuple[str, Any]]:
    use = use or {}
    mem = format_size(lim["memory_bytes"]) if lim["memory_bytes"] else "unlimited"
    if use:
        mem = (f"rss {format_size(use['memory_rss_bytes'])}, cache "
               f"{format_size(use['memory_cache_bytes'])}, limit {mem}"
               + (f", {use['oom_kills']} OOM kills" if use.get("oom_kills") else ""))
    pids = f"{use['pids_current']} / {lim['pids']}" if use else str(lim["pids"])
    io = ", ".join(f"{k} {format_size(lim[k]) if 'bps' in k else lim[k]}"
                   for k in ("read_bps", "write_bps", "read_iops", "write_iops") if lim[k])
    net = ", ".join(f"{k} {format_rate(lim[k + '_bps'])}" for k in ("ingress", "egress")
                    if lim[k + "_bps"])
    return [("cores", f"{lim['cores']} exclusive" if lim["cores"] else "shared pool"),
            ("cpuset", lim["cpuset"]), ("cpus", lim["cpus"]), ("cpu weight", lim["cpu_weight"]),
            ("memory", mem), ("pids", pids), ("disk io", io or "unlimited"),
            ("network", net or "unlimited")]


def resize(
    name: str,
    memory: Annotated[str | None, typer.Option(help="e.g. 512M")] = None,
    cores: Annotated[int | None, typer.Option(help="exclusive cores")] = None,
    cpus: Annotated[float | None, typer.Option(help="CFS quota in CPUs (0: none)")] = None,
    cpu_weight: Annotated[int | None, typer.Option(help="CPU shares")] = None,
    pids: Annotated[int | None, typer.Option(help="process limit")] = None,
    read_bps: Annotated[str | None, typer.Option(help="disk read bytes/s (0: none)")] = None,
    write_bps: Annotated[str | None, typer.Option(help="disk write bytes/s (0: none)")] = None,
    read_iops: Annotated[int | None, typer.Option(help="disk read ops/s (0: none)")] = None,
    write_iops: Annotated[int | None, typer.Option(help="disk write ops/s (0: none)")] = None,
    ingress: Annotated[str | None, typer.Option(help="rate to the instance (0: none)")] = None,
    egress: Annotated[str | None, typer.Option(help="rate from the instance (0: none)")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Change limits live (same PID); a resize that does not fit changes nothing."""
    given = {k: v for k, v in (("memory", memory), ("cores", cores), ("cpus", cpus),
                               ("cpu_weight", cpu_weight), ("pids", pids),
                               ("read_bps", read_bps), ("write_bps", write_bps),
                               ("read_iops", read_iops), ("write_iops", write_iops),
                               ("ingress", ingress), ("egress", egress)) if v is not None}
    if not given:
        raise InvalidRequest("resize needs at least one limit, e.g. --memory 512M")
    with client() as api:
        inst = api.request("PATCH", f"/v1/instances/{name}", json={"limits": given},
                           params={"wait": str(wait).lower()})
    if as_json:
        print_json(inst)
    else:
        console.print(f"{inst['name']} resized: cpuset {inst['limits']['cpuset']}, memory "
                      f"{format_size(inst['limits']['memory_bytes'])}, pids "
                      f"{inst['limits']['pids']}")


def _action(name: str, action: str, wait: bool, as_json: bool) -> None:
    with client() as api:
        inst = api.post(f"/v1/instances/{name}/actions/{action}", wait=str(wait).lower())
    if as_json:
        print_json(inst)
    else:
        console.print(f"{inst['name']} {inst['state']}")


def start(name: str, wait: bool = typer.Option(True, "--wait/--no-wait"),
          as_json: JsonOpt = False) -> None:
    """Start a stopped instance (same IP and MAC)."""
    _action(name, "start", wait, as_json)


def stop(name: str, wait: bool = typer.Option(True, "--wait/--no-wait"),
         as_json: JsonOpt = False) -> None:
    """Stop an instance."""
    _action(name, "stop", wait, as_json)


def restart(name: str, wait: bool = typer.Option(True, "--wait/--no-wait"),
            as_json: JsonOpt = False) -> None:
    """Restart an instance (same IP and MAC)."""
    _action(name, "restart", wait, as_json)


def delete(name: str, force: bool = typer.Option(False, "--force", "-f",
                                                 help="delete even if running"),
           wait: bool = typer.Option(True, "--wait/--no-wait")) -> None:
    """Delete an instance, its veth, its IP reservation and its cores."""
    with client() as api:
        api.delete(f"/v1/instances/{name}", force=str(force).lower(), wait=str(wait).lower())
    console.print(f"{name} deleted" if wait else f"{name} deleting")


def exec_(name: str, command: Annotated[list[str], typer.Argument(help="-- CMD …")],
          workdir: str | None = typer.Option(None, "--workdir", "-w"),
          user: str | None = typer.Option(None, "--user", "-u"),
          env: list[str] = typer.Option([], "-e", "--env", help="KEY=VALUE"),  # noqa: B008
          interactive: bool = typer.Option(False, "--interactive", "-i",
                                           help="attach stdin (over a websocket)"),
          tty: bool = typer.Option(False, "--tty", "-t", help="allocate a terminal")) -> None:
    """Run a command in an instance; its output and exit code are passed back.

    `-it` attaches this terminal like a VM console: `dockyard exec -it NAME -- sh`."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidRequest("exec needs a command: dockyard exec NAME -- CMD …")
    if interactive or tty:
        from dockyard.cli.console import run_console  # websockets: only for -i / -t
        raise typer.Exit(run_console(name, command, _env(env), workdir, user, interactive, tty))
    with client(timeout=3700) as api:
        result = api.post(f"/v1/instances/{name}/exec",
                          {"command": command, "env": _env(env), "workdir": workdir,
                           "user": user})
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    sys.stdout.flush()
    raise typer.Exit(result["exit_code"])


def serial_console(name: str) -> None:
    """Attach to a VM's serial console (ttyS0; its output is what `dockyard logs` shows).
    Leave with Ctrl-]. Containers have none: use `dockyard exec -it NAME -- sh`."""
    from dockyard.cli.console import run_serial  # websockets: only for the console
    raise typer.Exit(run_serial(name))


def logs(name: str, follow: bool = typer.Option(False, "--follow", "-f"),
         tail: str = typer.Option("all", "--tail", help="lines from the end")) -> None:
    """Print an instance's console output (of a VM: its serial console's log)."""
    with client(timeout=3700) as api:
        for chunk in api.stream(f"/v1/instances/{name}/logs", follow=str(follow).lower(),
                                tail=tail):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


def events(name: Annotated[str | None, typer.Argument()] = None,
           as_json: JsonOpt = False,
           follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new "
                                                "events as they happen (JSON lines with "
                                                "--json)")] = False) -> None:
    """Events of one instance, or of the whole cluster (instances and hosts)."""
    path = f"/v1/instances/{name}/events" if name else "/v1/events"
    with client() as api:
        items = listing(api, path, as_json and not follow, limit=1000)
        if items is None:
            return
        if follow:
            last = max((int(e["id"]) for e in items), default=0)
            for event in items if not as_json else []:
                console.print(event_line(event), highlight=False, markup=False,
                              soft_wrap=True)
            follow_events(api, name, last, as_json)
            return
    table(items, [("TIME", lambda r: r["time"][:19].replace("T", " ")),
                  ("INSTANCE", lambda r: r["instance_name"]), ("HOST", lambda r: r["host"]),
                  ("KIND", lambda r: r["kind"]), ("MESSAGE", lambda r: r["message"])],
          "no events")
