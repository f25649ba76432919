"""push → new version serving (issue #13): a git push to a real git server (`git daemon`, the
suite's post-receive hook sending a signed Gitea webhook) until the stacks' HTTP entrance
(HAProxy) answers the new version on every request, against the same steps typed by hand in
the same run (`git clone`, `docker build`, `docker push`, `dockyard stack deploy` of the new
image), rounds alternated.

Dockyard's parts come from its build's log followed live (`GET /v1/builds/ID/logs?follow`;
each line stamped on arrival: lines are stored in batches of ≤ 0.25 s, so a part is known to
about that): webhook → build start (push returned → first log line), clone, build (Dockerfile
steps), push (both tags), rollout (the build's `--deploy` until the entrance serves only the
new version: 10 answers in a row; from the last push's line). The push's own time (the
post-receive hook waits for the webhook's reply) is part of the total.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import DOCKYARD, ROOT, PrivateDockyard, free_port, pick_octets, stats

from dockyard.adapters import legs
from dockyard.adapters.processes import command_lines
from dockyard.agent.entrance import host_name, netns_name

sys.path.insert(0, str(ROOT))
from tests.integration.gitserver import (  # noqa: E402  (the suite's git server)
    SERVING,
    SITE_COMPOSE,
    install_hook,
    serve_git,
)

HOST = "push.example"
IMAGE = "dockyard/busybox:latest"
MARKS = (("clone", "cloning "), ("cloned", "checked out "), ("build", "Step 1/"),
         ("push", "pushing "), ("pushed", "pushed "))


class Site:
    """The private Dockyard (entrance on), its CLI, the git server and repository `site`."""

    def __init__(self, dy: PrivateDockyard, entrance: int, work: Path) -> None:
        self.dy, self.entrance, self.work = dy, entrance, work
        self.docker_config = work / "docker"  # `docker login` of the raw side, not the user's

    @property
    def registry(self) -> str:
        """HOST:PORT of the private Dockyard's registry (its own /v2/)."""
        return self.dy.url.split("://", 1)[1]

    def cli(self, *args: str) -> str:
        env = {**os.environ, "HOME": str(self.dy.dir)}
        env.pop("DOCKYARD_HOME", None)
        return subprocess.run([str(DOCKYARD), *args], env=env, check=True, text=True,
                              capture_output=True, timeout=300).stdout

    def serving(self) -> str:
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.entrance}/", headers={"Host": HOST},
                              timeout=2)
        except httpx.HTTPError:
            return ""
        return reply.text.strip() if reply.status_code == 200 else ""

    def until_serving(self, version: str, timeout: float = 180) -> float:
        """When the entrance answered `version` 10 times in a row (monotonic)."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < 10:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{version} not served after {timeout:g} s")
            streak = streak + 1 if self.serving() == version else 0
            if streak == 0:
                time.sleep(0.02)
        return time.monotonic()

    def deploy(self, image: str) -> None:
        compose = self.work / "compose.yaml"
        compose.write_text(SITE_COMPOSE.format(image=image, host=HOST))
        self.cli("stack", "deploy", "site", "-f", str(compose))


def _follow(site: Site, build_id: str, marks: dict[str, float]) -> None:
    """Stamp the first arrival of each MARKS line of the build's live log."""
    dy = site.dy
    with dy._client().stream("GET", f"/v1/builds/{build_id}/logs",
                             params={"follow": "true"}, timeout=300) as reply:
        marks.setdefault("first_line", time.monotonic())
        for line in reply.iter_lines():
            marks.setdefault("first_line", time.monotonic())
            for key, head in MARKS:
                if line.startswith(head):
                    marks.setdefault(key, time.monotonic())


def _new_build(site: Site, known: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = site.dy.get("/v1/builds?repo=site")["items"]
        fresh = [b["id"] for b in items if b["id"] not in known]
        if fresh:
            return str(fresh[0])
        time.sleep(0.02)
    raise RuntimeError("the push queued no build")


def _commit(site: Site, git: Any, version: str) -> None:
    (git.work / "Dockerfile").write_text(
        f"FROM {site.registry}/{IMAGE}\nRUN mkdir -p /www\nCOPY version.txt /www/index.html\n"
        + SERVING)
    (git.work / "version.txt").write_text(version + "\n")
    git.git("add", "-A")
    git.git("commit", "-q", "-m", version)


def dockyard_round(site: Site, git: Any, version: str) -> dict[str, float]:
    _commit(site, git, version)
    known = {b["id"] for b in site.dy.get("/v1/builds?repo=site")["items"]}
    t0 = time.monotonic()
    subprocess.run(["git", "-C", str(git.work), "push", "-q", "origin", "main"], check=True,
                   capture_output=True, timeout=120)
    pushed = time.monotonic()
    build_id = _new_build(site, known)
    marks: dict[str, float] = {}
    follower = threading.Thread(target=_follow, args=(site, build_id, marks), daemon=True)
    follower.start()
    served = site.until_serving(version)
    follower.join(timeout=60)
    build = site.dy.get(f"/v1/builds/{build_id}")
    if build["state"] != "succeeded":
        raise RuntimeError(f"build {build_id}: {build['state']} {build['error']}")
    return {"total": served - t0, "git_push": pushed - t0,
            "to_start": marks["first_line"] - pushed, "clone": marks["cloned"] - marks["clone"],
            "build": marks["push"] - marks["build"], "push": marks["pushed"] - marks["push"],
            "rollout": served - marks["pushed"]}


def raw_round(site: Site, git: Any, version: str, scratch: Path) -> dict[str, float]:
    """The same change typed by hand: clone, docker build, docker push, stack deploy."""
    _commit(site, git, version)
    subprocess.run(["git", "-C", str(git.work), "push", "-q", "origin", "main"], check=True,
                   capture_output=True, timeout=120)  # with the hook off: no build
    image = f"{site.registry}/default/site:{version}"
    env = {**os.environ, "DOCKER_CONFIG": str(site.docker_config), "DOCKER_BUILDKIT": "0"}
    checkout = scratch / version
    t0 = time.monotonic()
    subprocess.run(["git", "clone", "-q", git.url, str(checkout)], check=True, timeout=120)
    t1 = time.monotonic()
    subprocess.run(["docker", "build", "-q", "-t", image, str(checkout)], check=True, env=env,
                   capture_output=True, timeout=300)
    t2 = time.monotonic()
    subprocess.run(["docker", "push", "-q", image], check=True, env=env, capture_output=True,
                   timeout=300)
    t3 = time.monotonic()
    site.deploy(image)
    served = site.until_serving(version)
    subprocess.run(["docker", "rmi", image], env=env, capture_output=True, timeout=60)
    return {"total": served - t0, "clone": t1 - t0, "build": t2 - t1, "push": t3 - t2,
            "rollout": served - t3}


def bench_push_deploy(rounds: int, log: Callable[[str], None]) -> dict[str, Any]:

    entrance = free_port()
    dy = PrivateDockyard(pick_octets(1)[0], ["--entrance", f"127.0.0.1:{entrance}"])
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-push-"))
    site = Site(dy, entrance, work)
    samples: dict[str, list[dict[str, float]]] = {"dy": [], "raw": []}
    try:
        dy.start()
        site.cli("image", "push", IMAGE)
        site.docker_config.mkdir()
        subprocess.run(["docker", "login", site.registry, "-u", "bench", "--password-stdin"],
                       input=dy.token, text=True, check=True, capture_output=True,
                       env={**os.environ, "DOCKER_CONFIG": str(site.docker_config)})
        with serve_git(work / "git") as git:
            added = site.cli("repo", "add", "site", "--url", git.url, "--deploy", "site/web",
                             "--json")
            repo = json.loads(added)
            install_hook(git, _Hooked(dy), repo["id"], repo["webhook_secret"])  # type: ignore[arg-type]
            log("push→serving: warm-up (first build, first deploy)")
            _commit(site, git, "v0")
            subprocess.run(["git", "-C", str(git.work), "push", "-q", "origin", "main"],
                           check=True, capture_output=True, timeout=120)
            warm = _wait_build(site)
            site.deploy(warm)
            site.until_serving("v0")
            raw_repo_hook_off(git)
            for i in range(1, rounds + 1):
                for side in ("dy", "raw") if i % 2 else ("raw", "dy"):
                    version = f"{side}{i}"
                    if side == "dy":
                        raw_repo_hook_on(git)
                        samples["dy"].append(dockyard_round(site, git, version))
                        raw_repo_hook_off(git)
                    else:
                        samples["raw"].append(raw_round(site, git, version, work))
                    log(f"push→serving round {i} {side}: {samples[side][-1]['total']:.2f} s")
    finally:
        dy.stop()  # the agent leaves HAProxy running (by design, and restarts a stopped one)
        kill_entrance(dy.dir / "home" / "agent")
        shutil.rmtree(work, ignore_errors=True)
    dy_total = statistics.median(s["total"] for s in samples["dy"])
    raw_total = statistics.median(s["total"] for s in samples["raw"])
    return {"rounds": rounds, "dockyard": stats([s["total"] for s in samples["dy"]]),
            "raw": stats([s["total"] for s in samples["raw"]]), "ratio": dy_total / raw_total,
            "parts_dy": {k: statistics.median(s[k] for s in samples["dy"])
                         for k in samples["dy"][0]},
            "parts_raw": {k: statistics.median(s[k] for s in samples["raw"])
                          for k in samples["raw"][0]},
            "samples": samples}


def kill_entrance(agent_home: Path) -> None:
    """Kill, by PID, the HAProxy processes of this run's entrance (their command line names
    its private directory) once its agent is gone, and remove the entrance's namespace and
    the name it gave the host's."""
    entrance_dir = str(agent_home / "entrance")
    for pid, argv in command_lines():
        if argv[0].endswith("haproxy") and any(a.startswith(entrance_dir) for a in argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    legs.delete_netns(netns_name(agent_home))
    legs.delete_netns(host_name(agent_home))  # the name of the host's own namespace


class _Hooked:
    """What install_hook reads of a Dockyard: its URL and CA."""

    def __init__(self, dy: PrivateDockyard) -> None:
        self.url, self.ca = dy.url, dy.ca


def _hook_path(git: Any) -> Path:
    return Path(git.root) / "app.git" / "hooks" / "post-receive"


def raw_repo_hook_off(git: Any) -> None:
    """The raw side pushes too (its clone reads the new commit): no webhook then."""
    hook = _hook_path(git)
    if hook.exists():
        hook.rename(hook.with_suffix(".off"))


def raw_repo_hook_on(git: Any) -> None:
    off = _hook_path(git).with_suffix(".off")
    if off.exists():
        off.rename(_hook_path(git))


def _wait_build(site: Site, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = site.dy.get("/v1/builds?repo=site")["items"]
        if items and items[0]["state"] == "succeeded":
            return str(items[0]["image"])
        if items and items[0]["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"warm-up build {items[0]['state']}: {items[0]['error']}")
        time.sleep(0.2)
    raise RuntimeError("warm-up build did not finish")


def summary_row(r: dict[str, Any]) -> str:
    return (f"| push → new version serving (median of {r['rounds']}; webhook, build, push, "
            f"rolling update of 2 replicas behind the entrance) | "
            f"{r['dockyard']['median']:.2f} s | {r['raw']['median']:.2f} s (clone, docker "
            f"build, docker push, stack deploy by hand) | {r['ratio']:.2f} | - | measured |")


def report_lines(r: dict[str, Any]) -> list[str]:
    d, w = r["parts_dy"], r["parts_raw"]
    return ["", "## Push → serving", "", str(__doc__).split("\n\n")[0].replace("\n", " "), "",
            "| part (median s) | Dockyard | by hand |", "|---|---|---|",
            f"| git push (the hook waits for the webhook's reply) | {d['git_push']:.2f} | - |",
            f"| webhook → build start (first log line) | {d['to_start']:.2f} | - |",
            f"| clone | {d['clone']:.2f} | {w['clone']:.2f} |",
            f"| build | {d['build']:.2f} | {w['build']:.2f} |",
            f"| push | {d['push']:.2f} | {w['push']:.2f} |",
            f"| rollout until served (10 answers in a row) | {d['rollout']:.2f} | "
            f"{w['rollout']:.2f} |",
            f"| **total** | **{r['dockyard']['median']:.2f}** | **{r['raw']['median']:.2f}** |",
            "", "Rounds (s): Dockyard " + ", ".join(f"{s['total']:.2f}" for s in
                                                     r["samples"]["dy"])
            + "; by hand " + ", ".join(f"{s['total']:.2f}" for s in r["samples"]["raw"]) + "."]
