"""The web console's security paths on the real app (httpx's ASGI transport, a SQLite store, no
lifespan): login and its cookie, CSRF on every POST, session expiry, logout and revocation,
a member's 403 on admin pages and 404 on another project's instance, refusals in words."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest

from dockyard.config import ServerSettings
from dockyard.model.instance import InstanceCreate
from dockyard.model.stats import InstanceSample
from dockyard.server.app import create_app
from dockyard.server.bootstrap import init_store, mint_admin_token
from dockyard.server.context import ServerContext
from dockyard.store import events, projects, tokens
from dockyard.store import instances as instance_rows
from dockyard.store.tables import HostRow, InstanceRow, NetworkRow
from dockyard.web import instances as web_instances
from dockyard.web import session as sessions
from dockyard.web.base import Posted, Visit
from dockyard.web.charts import POINTS, series
from tests.unit.asgi import AppClient

FORM = {"content-type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    client: AppClient
    ctx: ServerContext
    admin: str  # tokens
    member: str  # of project `other`
    key: bytes

    def login(self, token: str, base: str = "http://app") -> str:
        """The session cookie's value after logging in with `token`."""
        reply = self.client.get("/login")
        nonce = reply.cookies[sessions.LOGIN_COOKIE]
        reply = self.client.request(
            "POST", f"{base}/login", headers={**FORM, "cookie": f"dy_login={nonce}"},
            data={"token": token, "csrf_token": CSRF.findall(reply.text)[0]})
        assert reply.status_code == 303, reply.text
        return reply.cookies[sessions.COOKIE]

    def get(self, path: str, cookie: str, **headers: str) -> httpx.Response:
        return self.client.get(path, headers={"cookie": f"dy_session={cookie}", **headers})

    def post(self, path: str, cookie: str, data: dict[str, str]) -> httpx.Response:
        return self.client.post(path, data=data,
                                headers={**FORM, "cookie": f"dy_session={cookie}"})

    def csrf(self, cookie: str, page: str = "/instances") -> str:
        return CSRF.findall(self.get(page, cookie).text)[0]

    def instance(self) -> InstanceRow:
        with self.ctx.db.session() as sess:
            row = sess.get(InstanceRow, "i1")
            assert row is not None
            sess.expunge(row)
            return row


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    home = tmp_path_factory.mktemp("web") / "home"
    app = create_app(ServerSettings(home=home, registry_url="http://127.0.0.1:1"))
    ctx: ServerContext = app.state.ctx
    project = init_store(ctx.db)
    with ctx.db.session() as sess:
        sess.add(HostRow(id="a", name="a", inventory={"cores": [0, 1], "memory_bytes": 1 << 30}))
        sess.add(NetworkRow(id="n1", name="n1", project_id=project, subnet="10.0.0.0/24",
                            gateway="10.0.0.1", bridge="dybn1"))
        sess.flush()
        sess.add(InstanceRow(id="i1", name="web", project_id=project, host_id="a",
                             network_id="n1", image="img", hostname="web", ip="10.0.0.2",
                             mac="02:00:00:00:00:02", state="running",
                             desired_state="running", generation=1))
        sess.add(InstanceRow(id="i2", name="zeta", project_id=project, host_id=None,
                             network_id="n1", image="img", hostname="zeta", ip="10.0.0.3",
                             mac="02:00:00:00:00:03", state="stopped",
                             desired_state="stopped", generation=1))
        other = projects.create(sess, "other")
        member = tokens.mint(sess, "member", project_id=other.id, description="member")
    yield Console(AppClient(app), ctx, mint_admin_token(ctx.db, project), member,
                  app.state.web_key)
    ctx.db.close()


@pytest.fixture
def console(server: Console) -> Console:
    """The module's server with instance `web` running and host `a` open again."""
    with server.ctx.db.session() as sess:
        row, host = sess.get(InstanceRow, "i1"), sess.get(HostRow, "a")
        assert row is not None and host is not None
        row.state, row.desired_state, host.draining = "running", "running", False
    return server


# ------------------------------------------------------------------------- login, cookie


def test_login_sets_a_strict_httponly_session_cookie(console: Console) -> None:
    reply = console.client.get("/login")
    nonce = reply.cookies[sessions.LOGIN_COOKIE]
    reply = console.client.post("/login", headers={**FORM, "cookie": f"dy_login={nonce}"},
                                data={"token": console.admin,
                                      "csrf_token": CSRF.findall(reply.text)[0]})
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    cookie = next(v for v in reply.headers.get_list("set-cookie") if v.startswith("dy_session="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain http (--no-tls): a Secure cookie would never return
    assert console.admin not in cookie  # the token itself never travels in the cookie


def test_the_session_cookie_is_secure_under_tls(console: Console) -> None:
    reply = console.client.get("https://app/login")
    reply = console.client.request(
        "POST", "https://app/login",
        headers={**FORM, "cookie": f"dy_login={reply.cookies[sessions.LOGIN_COOKIE]}"},
        data={"token": console.admin, "csrf_token": CSRF.findall(reply.text)[0]})
    cookie = next(v for v in reply.headers.get_list("set-cookie") if v.startswith("dy_session="))
    assert "secure" in {f.strip().lower() for f in cookie.split(";")}


def test_a_wrong_token_is_refused_in_words_without_a_session(console: Console) -> None:
    reply = console.client.get("/login")
    reply = console.client.post(
        "/login", headers={**FORM, "cookie": f"dy_login={reply.cookies['dy_login']}"},
        data={"token": "dy_nope", "csrf_token": CSRF.findall(reply.text)[0]})
    assert reply.status_code == 401
    assert "this token is not valid" in reply.text and "Traceback" not in reply.text
    assert sessions.COOKIE not in reply.cookies


def test_the_login_form_needs_its_csrf_value(console: Console) -> None:
    reply = console.client.post("/login", headers=FORM, data={"token": console.admin})
    assert reply.status_code == 403
    assert sessions.COOKIE not in reply.cookies


def test_pages_send_a_visitor_without_session_to_login(console: Console) -> None:
    reply = console.client.get("/instances/web")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=/instances/web"
    polled = console.client.get("/instances?part=rows", headers={"hx-request": "true"})
    assert polled.status_code == 204 and polled.headers["hx-redirect"].startswith("/login")


# ------------------------------------------------------------------------------ CSRF


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(console: Console) -> None:
    cookie = console.login(console.admin)
    for data in ({}, {"csrf_token": "forged"}):
        reply = console.post("/instances/web/stop", cookie, data)
        assert reply.status_code == 403, reply.text
        assert "csrf_token" in reply.text
    assert console.instance().desired_state == "running"
    reply = console.post("/instances/web/stop", cookie, {"csrf_token": console.csrf(cookie)})
    assert reply.status_code == 303
    assert console.instance().desired_state == "stopped"


def test_one_sessions_csrf_token_does_not_serve_another(console: Console) -> None:
    mine, theirs = console.login(console.admin), console.login(console.admin)
    reply = console.post("/instances/web/stop", mine, {"csrf_token": console.csrf(theirs)})
    assert reply.status_code == 403
    assert console.instance().desired_state == "running"


# ---------------------------------------------------------------- expiry, logout, revoke


def test_a_session_past_its_expiry_is_sent_to_login(console: Console) -> None:
    session = sessions.unseal(console.key, console.login(console.admin), sessions.now())
    assert session is not None
    old = replace(session, issued=session.issued - sessions.TTL - 1,
                  expires=session.expires - sessions.TTL - 1)
    assert console.get("/", sessions.seal(console.key, old)).status_code == 303
    assert console.get("/", sessions.seal(console.key, session)).status_code == 200


def test_a_tampered_session_is_not_accepted(console: Console) -> None:
    session = sessions.unseal(console.key, console.login(console.member), sessions.now())
    assert session is not None
    assert console.get("/", sessions.seal(console.key, session)).status_code == 200
    assert console.get("/", sessions.seal(b"another key", session)).status_code == 303
    payload, _, mac = sessions.seal(console.key, session).partition(".")
    assert console.get("/", f"{payload}x.{mac}").status_code == 303


def test_logout_ends_the_session_even_if_its_cookie_is_kept(console: Console) -> None:
    cookie = console.login(console.admin)
    assert console.get("/", cookie).status_code == 200
    reply = console.post("/logout", cookie, {"csrf_token": console.csrf(cookie)})
    assert reply.status_code == 303 and reply.headers["location"] == "/login"
    assert console.get("/", cookie).status_code == 303
    assert console.get("/", console.login(console.admin)).status_code == 200  # a new login


def test_a_revoked_token_ends_its_sessions(console: Console) -> None:
    with console.ctx.db.session() as sess:
        member = tokens.mint(sess, "member", project_id=projects.ids_by_name(sess)["other"])
    cookie = console.login(member)
    assert console.get("/instances", cookie).status_code == 200
    with console.ctx.db.session() as sess:
        row = tokens.lookup(sess, member)
        assert row is not None
        tokens.revoke(sess, row.id)
    assert console.get("/instances", cookie).status_code == 303


# ----------------------------------------------------------------------- roles, projects


def test_a_member_gets_403_on_admin_pages_and_actions(console: Console) -> None:
    cookie = console.login(console.member)
    reply = console.get("/projects", cookie)
    assert reply.status_code == 403 and "only an admin" in reply.text
    csrf = console.csrf(cookie)
    assert console.post("/hosts/a/drain", cookie, {"csrf_token": csrf}).status_code == 403
    assert console.post("/project", cookie, {"csrf_token": csrf,
                                             "project": "default"}).status_code == 403
    with console.ctx.db.session() as sess:
        host = sess.get(HostRow, "a")
        assert host is not None and not host.draining
    admin = console.login(console.admin)
    assert console.get("/projects", admin).status_code == 200
    assert console.post("/hosts/a/drain", admin,
                        {"csrf_token": console.csrf(admin)}).status_code == 303


def test_another_projects_instance_is_not_found(console: Console) -> None:
    member = console.login(console.member)
    reply = console.get("/instances/web", member)
    assert reply.status_code == 404 and "not found" in reply.text
    assert "web" not in console.get("/instances?part=rows", member).text
    reply = console.post("/instances/web/stop", member, {"csrf_token": console.csrf(member)})
    assert reply.status_code == 404
    assert console.instance().desired_state == "running"
    admin = console.login(console.admin)
    assert console.get("/instances/web", admin).status_code == 200
    assert 'data-name="web"' in console.get("/instances?part=rows", admin).text


def test_an_admin_may_act_in_another_project(console: Console) -> None:
    admin = console.login(console.admin)
    reply = console.post("/project", admin, {"csrf_token": console.csrf(admin),
                                             "project": "other"})
    assert reply.status_code == 303
    switched = reply.cookies[sessions.COOKIE]
    assert console.get("/instances/web", switched).status_code == 404
    assert '<strong id="project">other</strong>' in console.get("/instances", switched).text


# ---------------------------------------------------------------------- refusals in words


def test_a_bad_launch_form_is_answered_in_words(console: Console) -> None:
    cookie = console.login(console.admin)
    reply = console.post("/instances", cookie, {"csrf_token": console.csrf(cookie),
                                                "name": "db", "image": "img",
                                                "memory": "lots"})
    assert reply.status_code == 422
    assert "limits.memory" in reply.text and "Traceback" not in reply.text
    assert 'value="db"' in reply.text  # the form keeps what was typed


SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"


def test_the_launch_form_takes_the_clis_options() -> None:
    form = {"name": "db", "image": "img", "type": "container", "network": "n1",
            "ip": "10.0.0.9", "hostname": "dbhost", "cores": "1", "cpus": "0.5",
            "cpu_weight": "200", "memory": "64M", "pids": "300", "disk": "2G",
            "read_bps": "10M", "write_bps": "5M", "read_iops": "100", "write_iops": "50",
            "ingress": "50mbit", "egress": "20mbit",
            "volumes": "data:/data\r\n/srv/x:/x:ro\n", "env": "A=1\nB=two=2",
            "ssh_keys": f"{SSH_KEY}\n",
            "host": "a", "cap_add": "NET_ADMIN, SYS_PTRACE", "constraints": "zone=a\nssd=yes",
            "anti_affinity": "dbs", "strategy": "pack"}
    spec = web_instances.launch_spec(Posted(cast(Visit, None), form))
    assert spec == InstanceCreate.model_validate({
        "name": "db", "image": "img", "type": "container", "network": "n1",
        "ip": "10.0.0.9", "hostname": "dbhost", "lxcfs": False,
        "limits": {"cores": 1, "cpus": 0.5, "cpu_weight": 200, "memory": "64M", "pids": 300,
                   "read_bps": "10M", "write_bps": "5M", "read_iops": 100, "write_iops": 50,
                   "ingress": "50mbit", "egress": "20mbit"},
        "disk": "2G", "volumes": [{"source": "data", "target": "/data"},
                                  {"source": "/srv/x", "target": "/x", "read_only": True}],
        "env": {"A": "1", "B": "two=2"}, "ssh_keys": [SSH_KEY],
        "host": "a", "cap_add": ["NET_ADMIN", "SYS_PTRACE"],
        "constraints": {"zone": "a", "ssd": "yes"}, "anti_affinity": "dbs",
        "strategy": "pack"})
    assert spec.limits.ingress == 50_000_000 and spec.limits.read_bps == 10 << 20
    plain = web_instances.launch_spec(Posted(cast(Visit, None), {
        "name": "db", "image": "img", "lxcfs": "on"}))
    assert plain == InstanceCreate.model_validate({"name": "db", "image": "img"})


@pytest.mark.parametrize(("field", "value", "words"), [
    ("volumes", "data", "'data' is not SRC:DST or SRC:DST:ro"),
    ("constraints", "zone", "constraints: 'zone' is not KEY=VALUE"),
    ("ingress", "5kbit", "limits.ingress"),
    ("write_iops", "-1", "limits.write_iops"),
    ("cpu_weight", "1", "limits.cpu_weight"),
    ("type", "box", "type"),
])
def test_a_bad_launch_option_is_refused_in_words_creating_nothing(
        console: Console, field: str, value: str, words: str) -> None:
    cookie = console.login(console.admin)
    reply = console.post("/instances", cookie, {"csrf_token": console.csrf(cookie),
                                                "name": "bad", "image": "img", field: value})
    assert reply.status_code == 422, reply.text
    assert words in html.unescape(reply.text) and "Traceback" not in reply.text
    assert f'name="{field}"' in reply.text
    with console.ctx.db.session() as sess:
        assert not instance_rows.name_taken(sess, projects.ids_by_name(sess)["default"], "bad")


def test_a_refused_action_is_shown_in_words(console: Console) -> None:
    cookie = console.login(console.admin)
    csrf = console.csrf(cookie)
    reply = console.post("/instances/web/delete", cookie, {"csrf_token": csrf,
                                                           "confirm": "yes"})
    assert reply.status_code == 409
    assert "is running; stop it first" in reply.text
    assert reply.headers["content-type"].startswith("text/html")


def test_delete_asks_for_confirmation_first(console: Console) -> None:
    cookie = console.login(console.admin)
    reply = console.post("/instances/web/delete", cookie, {"csrf_token": console.csrf(cookie)})
    assert reply.status_code == 200 and 'name="confirm" value="yes"' in reply.text
    assert console.instance().desired_state == "running"


# ------------------------------------------------------------------------------- audit


def test_console_posts_are_in_the_audit_log_refused_ones_too(console: Console) -> None:
    cookie = console.login(console.admin)
    console.post("/instances/web/stop", cookie, {})
    console.post("/instances/web/stop", cookie, {"csrf_token": console.csrf(cookie)})
    reply = console.client.get("/v1/audit?limit=1000",
                               headers={"Authorization": f"Bearer {console.admin}"})
    rows = [(r["method"], r["path"], r["status"], r["role"], r["target"])
            for r in reply.json()["items"] if r["path"] == "/instances/web/stop"]
    assert rows[-2:] == [("POST", "/instances/web/stop", 403, "admin", "web"),
                         ("POST", "/instances/web/stop", 303, "admin", "web")]
    logins = [r for r in reply.json()["items"] if r["path"] == "/login"]
    assert logins and logins[-1]["status"] == 303 and logins[-1]["role"] == "admin"
    assert all(console.admin not in str(r) for r in reply.json()["items"])


# ------------------------------------------------------------------------------ charts


def _sample(seconds: float, cpu: float | None, rss: int | None) -> InstanceSample:
    return InstanceSample(instance_id="i1", time=T0 + timedelta(seconds=seconds),
                          cpu_seconds=cpu, memory_rss_bytes=rss, memory_cache_bytes=None,
                          memory_limit_bytes=1000)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("samples", "cpu", "rss"), [
    # CPU is the counter's rate between samples: 2 s of CPU in 4 s of time is 0.5 core
    ([_sample(0, 10, 100), _sample(4, 12, 300)], [None, 0.5], [100.0, 300.0]),
    # a counter that drops (the instance restarted) gives no CPU point, not a negative one
    ([_sample(0, 10, 100), _sample(4, 1, 100)], [None, None], [100.0, 100.0]),
    # two samples in one bucket: their mean
    ([_sample(0, 0, 100), _sample(1, 1, 300)], [1.0], [200.0]),
    # a sample without memory leaves that bucket's rss empty
    ([_sample(0, 0, None), _sample(4, 4, None)], [None, 1.0], [None, None]),
])
def test_chart_series(samples: list[InstanceSample], cpu: list[float | None],
                      rss: list[float | None]) -> None:
    out = series(samples, T0, T0 + timedelta(seconds=8), points=4)  # buckets of 2 s
    assert out["cpu"] == cpu and out["rss"] == rss
    assert out["limit"] == [1000.0] * len(rss)
    assert out["time"] == sorted(out["time"]) and len(out["time"]) == len(rss)


def _io(seconds: float, rx: int, tx: int, read: int | None, write: int) -> InstanceSample:
    return InstanceSample(instance_id="i1", time=T0 + timedelta(seconds=seconds),
                          net_rx_bytes=rx, net_tx_bytes=tx, blkio_read_bytes=read,
                          blkio_write_bytes=write)


def test_network_and_disk_series_are_rates_of_their_counters() -> None:
    samples = [_io(0, 1000, 0, 0, 4096), _io(4, 3000, 400, None, 4096),
               _io(8, 10, 800, None, 8192)]  # rx drops at 8 s: the container was made anew
    out = series(samples, T0, T0 + timedelta(seconds=12), points=3)  # buckets of 4 s
    assert out["rx"] == [None, 500.0, None]  # bytes a second; no point across the drop
    assert out["tx"] == [None, 100.0, 100.0]
    assert out["read"] == [None, None, None]  # not sampled: no point, not 0
    assert out["write"] == [None, 0.0, 1024.0]
    assert out["cpu"] == [None, None, None] and out["rss"] == [None, None, None]


def test_a_young_instance_gets_a_point_per_sample_in_a_long_window() -> None:
    young = [_sample(s, s, 100) for s in range(3000, 3010)]  # 10 s of a 1-hour window
    out = series(young, T0, T0 + timedelta(seconds=3010))
    assert len(out["time"]) == 10 and out["cpu"][1:] == [1.0] * 9


def test_a_week_of_samples_is_at_most_the_charts_buckets() -> None:
    week = [_sample(s, s / 10, 100) for s in range(0, 7 * 86400, 60)]
    out = series(week, T0, T0 + timedelta(days=7))
    assert len(out["time"]) == POINTS
    assert all(abs(v - 0.1) < 1e-9 for v in out["cpu"] if v is not None)


def test_chart_data_is_scoped_like_the_api(console: Console) -> None:
    admin, member = console.login(console.admin), console.login(console.member)
    reply = console.get("/instances/web/stats?range=24h", admin)
    assert reply.status_code == 200 and set(reply.json()) == {
        "time", "cpu", "rss", "cache", "limit", "rx", "tx", "read", "write"}
    assert console.get("/instances/web/stats", member).status_code == 404
    reply = console.get("/instances/web/stats?range=1y", admin)
    assert reply.status_code == 422 and "one of 1h, 24h, 7d" in reply.text


# -------------------------------------------------------------------- overview, pages


def test_the_overview_counts_states_as_the_api_shows_them(console: Console) -> None:
    # host a never sent a heartbeat: its instance shows `unknown`, as in GET /v1/instances
    admin = console.login(console.admin)
    page = console.get("/", admin).text
    assert '<span class="state state-unknown">unknown</span> 1' in page
    assert '<span class="state state-stopped">stopped</span> 1' in page
    assert "state-running" not in page
    member = console.get("/", console.login(console.member)).text
    assert "No instances." in member and "state-stopped" not in member


def test_the_instance_list_pages_by_name(console: Console,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_instances, "PAGE", 1)
    admin = console.login(console.admin)
    first = console.get("/instances", admin).text
    assert 'data-name="web"' in first and 'data-name="zeta"' not in first
    assert 'href="/instances?page=2"' in first
    second = console.get("/instances?page=2", admin).text
    assert 'data-name="zeta"' in second and 'data-name="web"' not in second
    assert 'hx-get="/instances?part=rows&amp;page=2"' in second  # the poll keeps its page


def _names_listed(page: str) -> list[str]:
    return re.findall(r'<tr data-name="([^"]+)"', page)


def test_the_instance_list_filters_and_sorts(console: Console) -> None:
    admin = console.login(console.admin)
    assert _names_listed(console.get("/instances", admin).text) == ["web", "zeta"]
    assert _names_listed(console.get("/instances?sort=Name&desc=1", admin).text) == [
        "zeta", "web"]
    assert _names_listed(console.get("/instances?sort=IP&desc=1", admin).text) == [
        "zeta", "web"]  # 10.0.0.3 after 10.0.0.2
    # state as shown: host a never sent a heartbeat, so web is `unknown`, zeta `stopped`
    assert _names_listed(console.get("/instances?sort=State", admin).text) == ["zeta", "web"]
    page = console.get("/instances?q=STOPPED", admin).text  # any case, the shown state
    assert _names_listed(page) == ["zeta"] and "1 match" in page
    assert 'hx-get="/instances?part=rows&amp;q=STOPPED"' in page  # the poll keeps the filter
    assert _names_listed(console.get("/instances?q=10.0.0.2+img", admin).text) == ["web"]
    assert _names_listed(console.get("/instances?q=nothing", admin).text) == []
    for bad in ("sort=cpuset", "page=0", "per=5000", "q=" + "x" * 201):
        reply = console.get(f"/instances?{bad}", admin)
        assert reply.status_code == 422, bad
        assert 'class="error"' in reply.text


def test_a_member_cannot_use_admin_powers_in_the_launch_form(console: Console) -> None:
    member = console.login(console.member)
    reply = console.post("/instances", member, {"csrf_token": console.csrf(member),
                                                "name": "db", "image": "img", "host": "a"})
    assert reply.status_code == 403 and "admin" in reply.text
    with console.ctx.db.session() as sess:
        assert not instance_rows.name_taken(sess, projects.ids_by_name(sess)["other"], "db")


def test_a_form_that_is_not_one_is_refused(console: Console) -> None:
    cookie = console.login(console.admin)
    big = {"csrf_token": console.csrf(cookie), "name": "x" * (70 * 1024)}
    assert console.post("/instances", cookie, big).status_code == 400
    reply = console.client.post("/instances/web/stop", json={"csrf_token": "x"},
                                headers={"cookie": f"dy_session={cookie}"})
    assert reply.status_code == 400 and "application/x-www-form-urlencoded" in reply.text
    assert console.instance().desired_state == "running"


# ---------------------------------------------------------------------- the terminal


def _terminal_socket(console: Console, name: str, headers: dict[str, str]) -> list[Any]:
    """What the app sends on a websocket handshake to /instances/NAME/terminal/ws (the
    client then hangs up): the ASGI messages, in order."""
    sent: list[Any] = []
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = f"/instances/{name}/terminal/ws"
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": path,
             "raw_path": path.encode(), "query_string": b"cols=80&rows=24", "root_path": "",
             "headers": [(k.lower().encode(), v.encode())
                         for k, v in {"host": "app", **headers}.items()],
             "client": ("127.0.0.1", 1), "server": ("app", 80), "subprotocols": []}
    asyncio.run(console.client.app(scope, receive, send))
    return sent


def test_the_terminal_socket_refuses_another_sites_origin(console: Console) -> None:
    cookie = {"cookie": f"dy_session={console.login(console.admin)}"}
    for origin in ({"origin": "http://elsewhere.example"}, {"origin": "https://app"}, {}):
        sent = _terminal_socket(console, "web", {**cookie, **origin})
        assert [m["type"] for m in sent] == ["websocket.close"], origin  # never accepted
        assert sent[0]["code"] == 1008


def _refusal(sent: list[Any]) -> dict[str, Any]:
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send",
                                         "websocket.close"]
    assert sent[2]["code"] == 1008
    frame: dict[str, Any] = json.loads(sent[1]["text"])
    return frame


def test_the_terminal_socket_needs_a_session_of_the_instances_project(
        console: Console) -> None:
    origin = {"origin": "http://app"}
    frame = _refusal(_terminal_socket(console, "web", origin))
    assert frame["status"] == 401 and "log in" in frame["error"]["message"]
    forged = {"cookie": "dy_session=e30.forged", **origin}
    assert _refusal(_terminal_socket(console, "web", forged))["status"] == 401
    member = {"cookie": f"dy_session={console.login(console.member)}", **origin}
    assert _refusal(_terminal_socket(console, "web", member))["status"] == 404
    assert console.get("/instances/web/terminal", member["cookie"][11:]).status_code == 404
    admin = {"cookie": f"dy_session={console.login(console.admin)}", **origin}
    frame = _refusal(_terminal_socket(console, "zeta", admin))  # stopped
    assert frame["status"] == 409 and "not running" in frame["error"]["message"]


def test_the_terminal_page_allows_inline_styles_only_for_itself(console: Console) -> None:
    cookie = console.login(console.admin)
    page = console.get("/instances/web/terminal", cookie)
    assert page.status_code == 200 and 'data-src="/instances/web/terminal/ws"' in page.text
    policy = page.headers["content-security-policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "script-src" not in policy
    assert "unsafe-inline" not in console.get("/instances/web", cookie).headers[
        "content-security-policy"]


# ---------------------------------------------------------------------- list pages


def test_every_list_page_answers_and_scopes_like_the_api(console: Console) -> None:
    admin, member = console.login(console.admin), console.login(console.member)
    for path in ("/networks", "/volumes", "/snapshots", "/events", "/alerts", "/stacks",
                 "/builds"):
        for cookie in (admin, member):
            reply = console.get(path, cookie)
            assert reply.status_code == 200, (path, reply.text[-300:])
            assert 'role="search"' in reply.text  # every list filters
    # n1 is the default project's own network (not shared): the member's project does not
    # see it, as GET /v1/networks answers
    assert "10.0.0.0/24" in console.get("/networks", admin).text
    assert "10.0.0.0/24" not in console.get("/networks", member).text
    assert "10.0.0.0/24" not in console.get("/networks?q=nomatch", admin).text
    for path in ("/stacks/nothing", "/builds/nothing"):
        reply = console.get(path, member)
        assert reply.status_code == 404 and 'class="error"' in reply.text


def test_a_list_page_with_a_bad_sort_is_refused_in_words(console: Console) -> None:
    reply = console.get("/alerts?sort=Nothing", console.login(console.admin))
    assert reply.status_code == 422 and "one of Rule, State" in reply.text
    assert console.get("/alerts?sort=Kind", console.login(console.admin)).status_code == 200


def test_the_images_page_says_in_words_when_the_registry_is_unreachable(
        console: Console) -> None:
    reply = console.get("/images", console.login(console.admin))
    assert reply.status_code >= 500 and 'class="error"' in reply.text
    assert "Traceback" not in reply.text


# ------------------------------------------------------------------- events and logs


def test_the_instance_page_lists_the_instances_own_events(console: Console) -> None:
    admin = console.login(console.admin)
    reply = console.post("/instances/web/restart", admin, {"csrf_token": console.csrf(admin)})
    assert reply.status_code == 303
    with console.ctx.db.session() as sess:
        events.record(sess, sess.get(InstanceRow, "i2"), "marker", "an event of zeta")
    live = console.get("/instances/web?part=live", admin).text
    shown = live.split('<ol class="events">', 1)[1]
    assert "<strong>restart</strong> restart requested" in shown
    assert "an event of zeta" not in shown
    assert "an event of zeta" in console.get("/instances/zeta", admin).text


@dataclass
class FakeLogs:
    chunks: list[bytes]  # what the agent answers
    calls: list[dict[str, str]]  # the parameters of each call


@pytest.fixture
def logs_of_web(console: Console, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLogs]:
    """Instance web with a container whose agent answers the fake's chunks (the seam the
    /v1 logs handler calls: AgentProxy.stream_logs)."""
    fake = FakeLogs([], [])

    async def stream_logs(host: str, url: str, secret: str, instance_id: str,
                          params: dict[str, str]) -> Any:
        fake.calls.append({"instance": instance_id, **params})
        for chunk in fake.chunks:
            yield chunk

    monkeypatch.setattr(console.ctx.agents, "stream_logs", stream_logs)
    with console.ctx.db.session() as sess:
        row = sess.get(InstanceRow, "i1")
        assert row is not None
        row.container_id = "c1"
    yield fake
    with console.ctx.db.session() as sess:
        row = sess.get(InstanceRow, "i1")
        assert row is not None
        row.container_id = None


def test_the_logs_panel_shows_the_last_lines_escaped(console: Console,
                                                     logs_of_web: FakeLogs) -> None:
    logs_of_web.chunks.extend([b"hello from web\n<script>alert(1)</script>\n", b"b\xffad\n"])
    admin = console.login(console.admin)
    reply = console.get("/instances/web/logs?tail=50", admin, **{"hx-request": "true"})
    assert reply.status_code == 200
    assert "hello from web\n" in reply.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in reply.text
    assert "<script>" not in reply.text
    assert "b\ufffdad" in reply.text  # bytes that are not UTF-8 do not break the panel
    assert logs_of_web.calls == [
        {"instance": "i1", "follow": "false", "tail": "50"}]
    page = console.get("/instances/web", admin).text
    assert 'hx-get="/instances/web/logs?tail=200"' in page and "every 2s" in page


def test_the_logs_panel_keeps_the_newest_bytes_of_a_long_answer(
        console: Console, logs_of_web: FakeLogs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_instances, "LOG_BYTES", 64)
    logs_of_web.chunks.extend(f"line {n:04d}\n".encode() for n in range(1000))
    reply = console.get("/instances/web/logs", console.login(console.admin))
    assert "line 0999" in reply.text and "line 0990" not in reply.text


def test_the_logs_panel_says_a_refusal_in_words(console: Console) -> None:
    admin, member = console.login(console.admin), console.login(console.member)
    reply = console.get("/instances/web/logs", admin, **{"hx-request": "true"})
    assert reply.status_code == 409  # no container yet: the API's own refusal
    assert "instance web has no container yet" in reply.text and 'class="error"' in reply.text
    reply = console.get("/instances/web/logs", member)
    assert reply.status_code == 404 and "not found" in reply.text
    reply = console.get("/instances/web/logs?tail=0", admin)
    assert reply.status_code == 422 and "tail=" in reply.text


# ------------------------------------------------------------------- snapshot, migrate


@pytest.fixture
def host_a_up(console: Console) -> Iterator[Console]:
    """Host a up with an agent address (nothing answers there: the refusals tested come
    before any agent call)."""
    with console.ctx.db.session() as sess:
        host = sess.get(HostRow, "a")
        assert host is not None
        was = host.state, host.api_url
        host.state, host.api_url = "up", "http://127.0.0.1:1"
    yield console
    with console.ctx.db.session() as sess:
        host = sess.get(HostRow, "a")
        assert host is not None
        host.state, host.api_url = was


def test_the_instance_page_has_snapshot_and_migrate_forms(console: Console) -> None:
    admin = console.get("/instances/web", console.login(console.admin)).text
    assert 'action="/instances/web/snapshot"' in admin and 'name="tag"' in admin
    assert 'action="/instances/web/migrate"' in admin and 'name="host"' in admin
    with console.ctx.db.session() as sess:  # a member of web's project: no target host field
        member = tokens.mint(sess, "member", project_id=projects.ids_by_name(sess)["default"])
    page = console.get("/instances/web", console.login(member)).text
    assert 'action="/instances/web/migrate"' in page and 'name="host"' not in page


def test_a_snapshot_refused_by_the_api_is_said_in_words(console: Console) -> None:
    admin = console.login(console.admin)
    csrf = console.csrf(admin)
    reply = console.post("/instances/web/snapshot", admin, {"csrf_token": csrf,
                                                             "tag": "not a name!"})
    assert reply.status_code == 422 and "tag:" in reply.text and "Traceback" not in reply.text
    reply = console.post("/instances/web/snapshot", admin, {"csrf_token": csrf, "tag": "s1"})
    assert reply.status_code == 409 and "instance web: its host is not up" in reply.text
    assert console.post("/instances/web/snapshot", admin, {"tag": "s1"}).status_code == 403
    member = console.login(console.member)
    reply = console.post("/instances/web/snapshot", member, {"csrf_token": console.csrf(member)})
    assert reply.status_code == 404 and "not found" in reply.text


def test_a_migration_refused_by_the_api_is_said_in_words(host_a_up: Console) -> None:
    console = host_a_up
    admin = console.login(console.admin)
    csrf = console.csrf(admin)
    reply = console.post("/instances/web/migrate", admin, {"csrf_token": csrf,
                                                            "host": "nohost"})
    assert reply.status_code == 404 and "host &#39;nohost&#39; not found" in reply.text
    reply = console.post("/instances/web/migrate", admin, {"csrf_token": csrf, "host": "a"})
    assert reply.status_code == 409 and "already runs on a" in reply.text
    reply = console.post("/instances/zeta/migrate", admin, {"csrf_token": csrf})
    assert reply.status_code == 409 and "only a running instance migrates" in reply.text
    member = console.login(console.member)
    csrf = console.csrf(member)
    reply = console.post("/instances/web/migrate", member, {"csrf_token": csrf, "host": "a"})
    assert reply.status_code == 403 and "only an admin may choose the target host" in reply.text
    reply = console.post("/instances/web/migrate", member, {"csrf_token": csrf})
    assert reply.status_code == 404
    assert console.instance().options.get("migrating") is None  # nothing began
