"""The web console in a real browser (Debian's chromium driven by Playwright, one browser for
the module) against the session's real `dockyard up` (https, the cluster CA not installed in
the browser: its errors are ignored, the cookies still carry `Secure`). A stack (one busybox
service) and a build (a one-step Dockerfile from a git daemon on loopback) are made for their
pages.

Screenshots of each page at 1280×800 and 390 px wide are saved under
$DOCKYARD_ARTIFACTS/web (default: the temp dir's dockyard-artifacts/web)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import ssl
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tests.integration.dockyard_env import IMAGE, Dockyard
from tests.integration.gitserver import install_hook, serve_git
from tests.requirements import requires

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "web_vendor" / "axe.min.js"
LISTS = ("networks", "volumes", "images", "snapshots", "stacks", "builds", "events", "alerts")
ARTIFACTS = Path(os.environ.get("DOCKYARD_ARTIFACTS",
                                Path(tempfile.gettempdir()) / "dockyard-artifacts")) / "web"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TWO_OR_MORE = re.compile(r"^([2-9]|[1-9][0-9]+)$")
ECHOED_CURSOR_REPORT = re.compile(r"\^\[\[\d+;\d+R")

pytestmark = [requires(Path(CHROMIUM).exists(), "Debian's chromium", "scripts/setup.sh")]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser: Browser, problems: list[str]) -> Page:
    """A page of a new context (its own cookies); script errors and CSP refusals (the
    console's policy allows no inline script or style) are added to `problems`."""
    context = browser.new_context(ignore_https_errors=True, viewport=WIDE)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    return page


def _login(page: Page, dy: Dockyard, token: str, shoot: bool = False) -> None:
    _goto(page, f"{dy.url}/login")
    if shoot:
        _shoot(page, "login")
    page.get_by_label("Dockyard token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{dy.url}/")


def _goto(page: Page, url: str) -> Response | None:
    """page.goto, again (up to 5 times) when chromium dropped the load because the machine's
    network changed (ERR_NETWORK_CHANGED, or the load replaced by chrome's error page: other
    tests on the machine make and remove bridges and veths meanwhile)."""
    for _ in range(4):
        try:
            return page.goto(url)
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) and "chrome-error://" not in str(exc):
                raise
    return page.goto(url)


def _accessible(page: Page, name: str) -> None:
    """axe-core (vendored, see web_vendor/README.md) finds no serious or critical violation
    on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluate: the page's CSP stays as it is
    found = page.evaluate("""() => axe.run(document, {resultTypes: ['violations']})
        .then(r => r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
             v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')))""")
    assert found == [], f"{name}: {found}"


def _shoot(page: Page, name: str) -> None:
    """The page at both sizes, full height; at neither does the page scroll sideways (wide
    tables scroll in their own box), nor has it a serious accessibility violation."""
    _accessible(page, name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("1280", WIDE), ("390", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{name} is {width} px wide at {label}"
    page.set_viewport_size(WIDE)


def _state_is(page: Page, state: str, timeout: float = 60.0) -> None:
    """The polled state badge shows `state` (htmx swaps it; the page is not reloaded)."""
    badge = page.locator("#instance-live dd .state").first
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if badge.count() and badge.inner_text() == state:
            return
        page.wait_for_timeout(200)  # a poll of the page's DOM, not a wait for the server
    raise AssertionError(f"the page still shows {badge.inner_text()!r}, not {state!r}")


def _member(dy: Dockyard) -> str:
    name = f"webp{secrets.token_hex(3)}"
    with dy.api() as api:
        api.post("/v1/projects", {"name": name})
        return str(api.post("/v1/tokens", {"project": name, "role": "member",
                                           "description": "console test"})["token"])


def _terminal(page: Page, dy: Dockyard, name: str) -> None:
    """The instance's terminal: a typed command's answer read in xterm's rows, the shell's
    exit code under it; a websocket with the session's cookie but another site's Origin, or
    with no cookie, is refused."""
    page.get_by_role("link", name="Terminal").click()
    page.wait_for_url(f"{dy.url}/instances/{name}/terminal")
    status = page.locator("#terminal-status")
    expect(status).to_have_attribute("data-state", "open")
    page.locator("#terminal .xterm-helper-textarea").focus()
    page.keyboard.type("hostname; echo answer-$((6*7))\n")
    rows = page.locator("#terminal .xterm-rows")
    expect(rows).to_contain_text("answer-42")
    with dy.api() as api:
        hostname = api.get(f"/v1/instances/{name}")["hostname"]
    # the output is the two words before the prompt: "answer-42" is only there (the typed
    # line says answer-$((6*7)), and the tty may echo it before sh's banner too). busybox
    # sh asks the terminal where its cursor is (ESC[6n); a reply that comes while the
    # command runs is echoed by the tty as ^[[ROW;COLR among the output: not output
    words = ECHOED_CURSOR_REPORT.sub("", rows.inner_text()).split()
    at = words.index("answer-42")
    assert words[at - 1:at + 1] == [hostname, "answer-42"]
    _shoot(page, "terminal")
    page.keyboard.type("exit 3\n")
    expect(status).to_have_attribute("data-state", "exited")
    expect(status).to_have_text("The shell exited with code 3.")

    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "dy_session")
    ws_url = f"{dy.url.replace('http', 'ws', 1)}/instances/{name}/terminal/ws"
    ssl_context = dy.verify if isinstance(dy.verify, ssl.SSLContext) else None
    for headers in ({"Cookie": f"dy_session={cookie}", "Origin": "https://elsewhere.example"},
                    {"Cookie": f"dy_session={cookie}"}):
        assert _ws_first(ws_url, ssl_context, headers) == (403, None)
    refusal, frame = _ws_first(ws_url, ssl_context, {"Origin": dy.url})
    assert refusal is None and frame is not None
    assert frame["status"] == 401 and "log in" in frame["error"]["message"]
    page.go_back()


def _ws_first(url: str, ssl_context: ssl.SSLContext | None,
              headers: dict[str, str]) -> tuple[int | None, dict[str, Any] | None]:
    """One websocket handshake with `headers`: (the refusal's HTTP status, None), or (None,
    the first frame, JSON). websockets' asyncio client, in a thread of its own (Playwright's
    sync API owns this one's loop): its threaded sync client reads and writes the TLS socket
    from two threads, and a refusal answered and closed at once failed ~1 in 200 handshakes
    with "no close frame received or sent" or a 10 s timeout (a CI run of this test did)."""
    async def attempt() -> tuple[int | None, dict[str, Any] | None]:
        try:
            async with ws_connect(url, ssl=ssl_context, additional_headers=headers,
                                  open_timeout=10) as conn:
                return None, json.loads(await asyncio.wait_for(conn.recv(), 10))
        except InvalidStatus as refused:
            return refused.response.status_code, None
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, attempt()).result()


def _events_and_logs(page: Page, dy: Dockyard, name: str) -> None:
    """The instance page lists its launch and start among its events, and its followed logs panel
    shows lines the instance printed (written to its PID 1's stdout, which is what docker
    keeps as the log), an HTML one as text."""
    with dy.api() as api:
        host = api.get(f"/v1/instances/{name}")["host"]
        listed = page.locator("#instance-live ol.events")
        expect(listed).to_contain_text(f"created placed on {host}")
        expect(listed).to_contain_text("state creating -> running")  # its start, polled
        line = f"<script>document.title = 'injected'</script> log-{name}"
        api.post(f"/v1/instances/{name}/exec",
                 {"command": ["sh", "-c", f'echo "{line}" > /proc/1/fd/1']})
    panel = page.locator("#instance-logs")
    expect(panel.locator("pre")).to_contain_text(line, timeout=20_000)  # polled, followed
    assert panel.locator("script").count() == 0
    assert "&lt;script&gt;document.title" in panel.inner_html()
    assert page.title() != "injected"


def _snapshot_and_migrate(page: Page, dy: Dockyard, name: str) -> None:
    """A snapshot made from the instance page is in `dockyard snapshot list`; a migration
    to a host that does not exist is refused in words (the API's 404), nothing moved."""
    snap = f"{name}-page"
    page.get_by_label("Snapshot name").fill(snap)
    page.get_by_role("button", name="Snapshot").click()
    page.wait_for_url(f"{dy.url}/snapshots?q={snap}", timeout=120_000)  # once it is pushed
    expect(page.locator("table")).to_contain_text(snap)
    assert snap in dy.ok("snapshot", "list", name).out.split()
    with dy.api() as api:
        api.delete(f"/v1/snapshots/{snap}")
        host = api.get(f"/v1/instances/{name}")["host"]
    _goto(page, f"{dy.url}/instances/{name}")
    page.get_by_label("Target host").fill("nohost")
    with page.expect_response(f"{dy.url}/instances/{name}/migrate") as answer:
        page.get_by_role("button", name="Migrate").click()
    assert answer.value.status == 404
    expect(page.locator(".error")).to_contain_text("host 'nohost' not found")
    with dy.api() as api:
        assert api.get(f"/v1/instances/{name}")["host"] == host
    _goto(page, f"{dy.url}/instances/{name}")


MEMORY_POINTS = """() => { const p = document.querySelector('#chart-memory').plot;
    return p ? {time: p.data[0], rss: p.data[1], cache: p.data[2]} : null; }"""


def _memory_chart_after_write(page: Page, dy: Dockyard, name: str) -> None:
    """The memory chart, read from the data uPlot draws (`plot.data`: time, rss, cache,
    limit): it has points, and 24 MiB written into the instance's /dev/shm (tmpfs: memory
    the cgroup counts as its cache) show up in a later point, the chart being refreshed in
    place (it reads /instances/NAME/stats every 5 s; the collector samples every second)."""
    deadline = time.monotonic() + 20
    while not (before := page.evaluate(MEMORY_POINTS)) or len(before["time"]) < 2:
        assert time.monotonic() < deadline, f"the memory chart has no points: {before}"
        page.wait_for_timeout(200)  # a poll of the page's DOM
    assert any(v is not None and v > 0 for v in before["rss"]), before
    peak = max((v or 0) + (c or 0) for v, c in zip(before["rss"], before["cache"],
                                                     strict=True))
    with dy.api() as api:
        done = api.post(f"/v1/instances/{name}/exec", {"command": [
            "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=24"]})
    assert done["exit_code"] == 0, done
    written = 24 << 20
    deadline = time.monotonic() + 30
    while True:
        now = page.evaluate(MEMORY_POINTS)
        later = [(t, (r or 0) + (c or 0)) for t, r, c in zip(now["time"], now["rss"],
                                                              now["cache"], strict=True)
                 if t > before["time"][-1]]
        if any(used >= peak + written * 0.9 for _, used in later):
            return
        assert time.monotonic() < deadline, \
            f"no point after the write shows it (peak {peak} before): {later}"
        page.wait_for_timeout(200)


def _launch_with_options(page: Page, dy: Dockyard, name: str) -> None:
    """The launch form with some of the CLI's other options: a bad value is the API's 422 in
    words with nothing made; `explain` shows the placement table `dockyard launch --explain`
    gives; then the launch, its options read back from the API."""
    _goto(page, f"{dy.url}/instances")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Image", exact=True).fill("dockyard/busybox")
    page.get_by_label("Memory", exact=True).fill("64M")
    page.get_by_label("CPU weight (shares)").fill("300")
    page.get_by_label("Pids").fill("512")
    page.get_by_label("Disk read bytes/s").fill("20M")
    page.get_by_label("Disk write ops/s").fill("400")
    page.get_by_label("Network rate in (ingress)").fill("5kbit")  # under the 8 kbit floor
    page.get_by_label("Volumes (SRC:DST[:ro] a line)").fill(f"{name}-data:/data")
    page.get_by_label("Environment (KEY=VALUE a line)").fill("WEB_TEST=from the form")
    page.get_by_label("lxcfs (own /proc view)").uncheck()
    with page.expect_response(f"{dy.url}/instances") as answer:
        page.get_by_role("button", name="Launch").click()
    assert answer.value.status == 422
    expect(page.locator("p.error")).to_contain_text("limits.ingress")
    expect(page.get_by_label("Disk read bytes/s")).to_have_value("20M")  # kept as typed
    assert dy.cli("show", name).code != 0  # nothing made

    page.get_by_label("Network rate in (ingress)").fill("50mbit")
    page.get_by_label("Only explain the placement").check()
    page.get_by_role("button", name="Launch").click()
    cli = dy.ok("launch", IMAGE, name, "--memory", "64M", "--cpu-weight", "300", "--pids",
                "512", "--read-bps", "20M", "--write-iops", "400", "--ingress", "50mbit",
                "-v", f"{name}-data:/data", "--no-lxcfs", "--explain", "--json").json()
    rows = page.locator("#placement")
    expect(rows.locator("caption")).to_have_text(
        f"Placement: {cli['chosen'] or cli['message']}")
    shown = [[c.strip() for c in r.locator("td").all_inner_texts()[:2]]
             for r in rows.locator("tbody tr").all()]
    assert shown == [[h["host"], h["verdict"]] for h in cli["hosts"]]
    assert dy.cli("show", name).code != 0  # explained only
    _shoot(page, "launch-explain")

    page.get_by_label("Only explain the placement").uncheck()
    page.get_by_role("button", name="Launch").click()
    page.wait_for_url(f"{dy.url}/instances/{name}")
    with dy.api() as api:
        made = api.get(f"/v1/instances/{name}")
    limits = made["limits"]
    assert (limits["memory_bytes"], limits["cpu_weight"], limits["pids"], limits["read_bps"],
            limits["write_iops"], limits["ingress_bps"]) == (
        64 << 20, 300, 512, 20 << 20, 400, 50_000_000)
    assert made["volumes"] == [{"source": f"{name}-data", "target": "/data",
                                "read_only": False}]
    assert made["env"]["WEB_TEST"] == "from the form" and made["lxcfs"] is False


def test_console_launch_watch_resize_stop_delete_and_refusals(dy: Dockyard,
                                                              browser: Browser) -> None:
    problems: list[str] = []
    page = _page(browser, problems)
    _login(page, dy, dy.token(), shoot=True)
    _shoot(page, "overview")
    for path in ("hosts", "projects", *LISTS):
        reply = _goto(page, f"{dy.url}/{path}")
        assert reply is not None and reply.status == 200, path
        _shoot(page, path)
    _goto(page, f"{dy.url}/logout")
    _shoot(page, "logout")

    name = f"webc{secrets.token_hex(3)}"
    _launch_with_options(page, dy, name)
    page.evaluate("window.notReloaded = true")
    _state_is(page, "running")
    assert page.evaluate("window.notReloaded === true")  # htmx changed the state in place
    _events_and_logs(page, dy, name)
    _shoot(page, "instance")
    _terminal(page, dy, name)
    _snapshot_and_migrate(page, dy, name)

    _goto(page, f"{dy.url}/instances")
    expect(page.locator(f'tr[data-name="{name}"] .state')).to_have_text("running")
    _shoot(page, "instances")

    # a forged POST from the logged-in page itself (same site, so the cookie goes along):
    # without the csrf_token field it is refused and nothing stops
    status = page.evaluate(
        """(name) => fetch('/instances/' + name + '/stop', {method: 'POST',
             headers: {'content-type': 'application/x-www-form-urlencoded'}, body: 'x=1'})
             .then(r => r.status)""", name)
    assert status == 403
    with dy.api() as api:
        assert api.get(f"/v1/instances/{name}")["desired_state"] == "running"

    member = _page(browser, problems)
    _login(member, dy, _member(dy))
    reply = _goto(member, f"{dy.url}/instances/{name}")
    assert reply is not None and reply.status == 404
    expect(member.locator(".error")).to_contain_text("not found")
    reply = _goto(member, f"{dy.url}/projects")
    assert reply is not None and reply.status == 403
    expect(member.locator(".error")).to_contain_text("only an admin")
    assert member.locator("nav a", has_text="Projects").count() == 0
    member.context.close()

    _goto(page, f"{dy.url}/instances/{name}")  # the charts: the samples stored since launch
    _memory_chart_after_write(page, dy, name)
    for chart in ("#chart-memory", "#chart-cpu", "#chart-net", "#chart-disk"):  # 2 or more
        expect(page.locator(chart)).to_have_attribute("data-points", TWO_OR_MORE,
                                                      timeout=20_000)
    assert page.evaluate("document.querySelector('#chart-memory').plot.data[1]"
                         ".some(v => v > 0)")  # rss points
    for chart in ("#chart-net", "#chart-disk"):  # rates of both counters, 0 or more
        assert page.evaluate(f"[1, 2].every(i => document.querySelector('{chart}').plot"
                             ".data[i].some(v => v !== null && v >= 0))"), chart
    assert page.locator("#chart-memory canvas").count() == 1
    _shoot(page, "instance-charts")
    page.get_by_label("New memory limit").fill("96M")
    page.get_by_role("button", name="Resize").click()
    expect(page.locator("#memory-limit")).to_have_text("96M")
    with dy.api() as api:
        assert api.get(f"/v1/instances/{name}")["limits"]["memory_bytes"] == 96 << 20

    page.get_by_role("button", name="Stop").click()
    _state_is(page, "stopped")
    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("heading")).to_have_text(f"Delete {name}?")
    _shoot(page, "delete-confirm")
    page.get_by_role("button", name=f"Delete {name}").click()
    page.wait_for_url(f"{dy.url}/instances")
    expect(page.locator(f'tr[data-name="{name}"]')).to_have_count(0, timeout=60_000)
    with dy.api() as api:
        api.delete(f"/v1/volumes/{name}-data")  # the launch form's named volume
    page.context.close()
    assert problems == []


STACK = f"""
services:
  web:
    image: {IMAGE}
    deploy:
      replicas: 1
      resources: {{limits: {{memory: 32M}}}}
"""


def test_console_stack_and_build_pages(dy: Dockyard, browser: Browser,
                                       tmp_path: Path) -> None:
    """/builds/{id}: a real build's state and log lines, followed in place while it runs;
    /stacks/{name}: a real stack's services (running / replicas), replicas with their state
    and health, its history, and a rollback from the page (the API's next version); a member
    of another project is answered 404 for both."""
    problems: list[str] = []
    page = _page(browser, problems)
    _login(page, dy, dy.token())
    stack, repo = f"webs{secrets.token_hex(3)}", f"webr{secrets.token_hex(3)}"
    with serve_git(tmp_path / "git") as git:
        dy.ok("image", "push", IMAGE)  # the build's base image, into the cluster registry
        added = dy.ok("repo", "add", repo, "--url", git.url, "--json").json()
        install_hook(git, dy, added["id"], added["webhook_secret"])
        try:
            commit = git.push(f"FROM {dy.registry}/{IMAGE}\nCOPY version.txt /version.txt\n"
                              "RUN echo built-in-the-console-test > /built\n", "web v1")
            build = _build_of(dy, repo, commit)
            built = _page(browser, problems)
            _login(built, dy, dy.token())
            _goto(built, f"{dy.url}/builds/{build}")  # followed while the stack is checked
            built.evaluate("window.notReloaded = true")
            _stack_page(page, dy, tmp_path, stack)
            expect(built.locator("#build-state .state")).to_have_text("succeeded",
                                                                      timeout=120_000)
            log = built.locator("#build-log")
            expect(log).to_contain_text("Step 3/3 : RUN echo built-in-the-console-test")
            expect(built.locator("#build-log-poll")).to_have_attribute("data-finished", "yes")
            with dy.api() as api:
                done = api.get(f"/v1/builds/{build}")
            facts = built.locator("#build-facts")  # refreshed by the poll as well
            expect(facts).to_contain_text(f"{done['image']} · {done['digest']}")
            expect(facts).to_contain_text(f"took {done['duration']:.0f} s")
            expect(built.locator("h2#log")).to_have_text("Log")  # no longer followed
            assert built.evaluate("window.notReloaded === true")
            shown = dy.ok("build", "logs", build).out.split("\n")[:-1]  # a line a "\n"
            lines = built.locator("#build-log span[data-line]")
            expect(lines).to_have_count(len(shown))  # each line once, none lost or doubled
            assert lines.evaluate_all("els => els.map(e => Number(e.dataset.line))") == \
                list(range(1, len(shown) + 1))
            assert [" ".join(t.split()) for t in lines.all_inner_texts()] == \
                [" ".join(t.split()) for t in shown]
            expect(built.locator("h1")).to_contain_text(f"Build {build} of {repo}")
            _shoot(built, "build")
            built.context.close()

            member = _page(browser, problems)
            _login(member, dy, _member(dy))
            for path in (f"stacks/{stack}", f"builds/{build}"):
                reply = _goto(member, f"{dy.url}/{path}")
                assert reply is not None and reply.status == 404, path
                expect(member.locator(".error")).to_contain_text("not found")
            member.context.close()
        finally:
            dy.cli("stack", "rm", stack)
            dy.cli("repo", "rm", repo)
            client = docker.from_env()  # the base image's local tag `image push` made
            try:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(f"{dy.registry}/{IMAGE}")
            finally:
                client.close()
    page.context.close()
    assert problems == []


def _build_of(dy: Dockyard, repo: str, commit: str) -> str:
    """The id of the build the push of `commit` queued (the webhook answered before)."""
    deadline = time.monotonic() + 30
    while True:
        found = [b["id"] for b in dy.ok("build", "ls", repo, "--json").json()["items"]
                 if b["commit"] == commit]
        if found:
            return str(found[0])
        assert time.monotonic() < deadline, f"no build of {commit}"
        time.sleep(0.2)


def _stack_page(page: Page, dy: Dockyard, tmp: Path, stack: str) -> None:
    """A stack deployed with 1 replica, then scaled to 2 (version 2), seen on its page;
    the rollback form there makes version 3 (back to 1 replica), as the API says."""
    compose = tmp / "compose.yaml"
    compose.write_text(STACK)
    dy.ok("stack", "deploy", stack, "-f", str(compose))
    dy.ok("stack", "scale", stack, "web=2")
    _goto(page, f"{dy.url}/stacks/{stack}")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#stack-status")).to_have_text("converged", timeout=30_000)
    expect(page.locator('tr[data-service="web"] td').nth(2)).to_have_text("2 / 2")
    replicas = [f"{stack}-web-1", f"{stack}-web-2"]
    ps = {r["name"]: r for r in dy.ok("stack", "ps", stack, "--json").json()["items"]}
    assert sorted(ps) == replicas
    for name in replicas:
        cells = page.locator(f'tr[data-name="{name}"] td')
        expect(cells.nth(2)).to_have_text("running")
        expect(cells.nth(3)).to_have_text(ps[name]["health"] or "")
        expect(cells.nth(4)).to_have_text(ps[name]["host"])
        expect(cells.nth(5)).to_have_text(ps[name]["ip"])
    assert page.evaluate("window.notReloaded === true")
    expect(page.locator('tr[data-version="2"]')).to_have_attribute("aria-current", "true")
    expect(page.locator('tr[data-version="2"] td').nth(1)).to_have_text("scale")
    expect(page.locator('tr[data-version="1"] td').nth(1)).to_have_text("deploy")
    _shoot(page, "stack")
    page.get_by_label("Service (empty: all)").select_option("")
    page.get_by_role("button", name="Roll back to the previous version").click()
    expect(page.locator('tr[data-version="3"]')).to_have_attribute("aria-current", "true")
    expect(page.locator('tr[data-version="3"] td').nth(1)).to_have_text("rollback to 1")
    expect(page.locator(f'tr[data-name="{replicas[1]}"]')).to_have_count(0, timeout=60_000)
    with dy.api() as api:
        shown = api.get(f"/v1/stacks/{stack}")
    assert shown["version"] == 3
    assert [(s["name"], s["replicas"]) for s in shown["services"]] == [("web", 1)]
