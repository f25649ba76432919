"""The web console in a real browser (Debian's chromium driven by Playwright, one browser for
the module) against the session's real `dockyard up` (https, the cluster CA not installed in
the browser: its errors are ignored, the cookies still carry `Secure`).

Screenshots of each page at 1280×800 and 390 px wide are saved under
$DOCKYARD_ARTIFACTS/web (default: the temp dir's dockyard-artifacts/web)."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration.dockyard_env import Dockyard
from tests.requirements import requires

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("DOCKYARD_ARTIFACTS",
                                Path(tempfile.gettempdir()) / "dockyard-artifacts")) / "web"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TWO_OR_MORE = re.compile(r"^([2-9]|[1-9][0-9]+)$")

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


def _login(page: Page, dy: Dockyard, token: str) -> None:
    page.goto(f"{dy.url}/login")
    page.get_by_label("Dockyard token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{dy.url}/")


def _shoot(page: Page, name: str) -> None:
    """The page at both sizes, full height; at neither does the page scroll sideways (wide
    tables scroll in their own box)."""
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


def test_console_launch_watch_resize_stop_delete_and_refusals(dy: Dockyard,
                                                              browser: Browser) -> None:
    problems: list[str] = []
    page = _page(browser, problems)
    _login(page, dy, dy.token())
    _shoot(page, "overview")
    for path in ("hosts", "projects"):
        page.goto(f"{dy.url}/{path}")
        _shoot(page, path)

    name = f"webc{secrets.token_hex(3)}"
    page.goto(f"{dy.url}/instances")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Image").fill("dockyard/busybox")
    page.get_by_label("Memory", exact=True).fill("64M")
    page.get_by_role("button", name="Launch").click()
    page.wait_for_url(f"{dy.url}/instances/{name}")
    page.evaluate("window.notReloaded = true")
    _state_is(page, "running")
    assert page.evaluate("window.notReloaded === true")  # htmx changed the state in place
    _shoot(page, "instance")

    page.goto(f"{dy.url}/instances")
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
    reply = member.goto(f"{dy.url}/instances/{name}")
    assert reply is not None and reply.status == 404
    expect(member.locator(".error")).to_contain_text("not found")
    reply = member.goto(f"{dy.url}/projects")
    assert reply is not None and reply.status == 403
    expect(member.locator(".error")).to_contain_text("only an admin")
    assert member.locator("nav a", has_text="Projects").count() == 0
    member.context.close()

    page.goto(f"{dy.url}/instances/{name}")  # the charts: the samples stored since launch
    for chart in ("#chart-memory", "#chart-cpu"):  # 2 points or more
        expect(page.locator(chart)).to_have_attribute("data-points", TWO_OR_MORE,
                                                      timeout=20_000)
    assert page.evaluate("document.querySelector('#chart-memory').plot.data[1]"
                         ".some(v => v > 0)")  # rss points
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
    page.context.close()
    assert problems == []
