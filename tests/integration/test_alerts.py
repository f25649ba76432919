"""Events and alerts end to end, on a split cluster with short durations (alert pass 1 s,
memory rule 2 s, heartbeat timeout 5 s, webhook retry after 1 s, a sample every second):
a memory hog is OOM-killed (event, counter, `events --follow`, alert, webhook retried after a
500 and notified once); a pids storm fires the pids alert; a stopped agent fires host-down."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from dockyard.client import ApiClient
from tests.integration.dockyard_env import IMAGE, VENV_BIN
from tests.integration.split_env import SplitDockyard, make_split


class Receiver:
    """A webhook receiver on 127.0.0.1: answers `answers` in turn (then 200), keeps bodies."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.bodies: list[Any] = []
        self.codes: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                code = receiver.answers.pop(0) if receiver.answers else 200
                receiver.bodies.append(json.loads(body))
                receiver.codes.append(code)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def split() -> Iterator[SplitDockyard]:
    env = make_split()
    env.server_args = ["--heartbeat-timeout", "5", "--alert-interval", "1", "--rss-for", "2",
                       "--webhook-retry-base", "1"]
    env.agent_args = ["--collector-interval", "1"]
    try:
        env.start()
        yield env
    finally:
        env.cleanup()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def alerts(env: SplitDockyard, state: str = "all") -> list[dict[str, Any]]:
    return list(env.ok("alerts", *(["--all"] if state == "all" else []), "--json")
                .json()["items"])


def find_alert(env: SplitDockyard, kind: str, subject: str,
               state: str = "firing") -> dict[str, Any] | None:
    return next((a for a in alerts(env) if a["kind"] == kind
                 and a["subject_name"] == subject and a["state"] == state), None)


class Follower:
    """`dockyard events --follow --json` in the background; its lines land in `seen`."""

    def __init__(self, env: SplitDockyard) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dockyard"), "events", "--follow", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env.env())
        self.seen: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seen.append(json.loads(line))

    def until_following(self, env: SplitDockyard) -> None:
        """Until the follower prints events recorded now (`events --follow` prints only those
        newer than its start): a host event, posted as the agent posts them, until it shows."""
        def marked() -> bool:
            with ApiClient(env.url, env.host_token, timeout=30, ca=env.ca) as feed:
                feed.post("/v1/agent/events", {"kind": "test_marker",
                                               "message": "is `events --follow` reading?"})
            return any(e["kind"] == "test_marker" for e in self.seen)
        wait_for("`events --follow` to print new events", marked)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_memory_hog_oom_event_alert_and_webhook_retry(split: SplitDockyard) -> None:
    receiver = Receiver([500])
    hook = split.ok("webhook", "add", receiver.url, "--json").json()
    split.ok("launch", IMAGE, "hog", "--memory", "32M")
    follow = Follower(split)
    try:
        follow.until_following(split)
        hog = split.cli("exec", "hog", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=96M",
                        "count=1")
        assert hog.code != 0
        event = wait_for("the oom event in `events --follow`", lambda: next(
            (e for e in follow.seen if e["kind"] == "oom" and e["instance_name"] == "hog"), None),
            timeout=20)
        assert "OOM" in event["message"]
        with split.api() as api:
            assert (api.get("/v1/instances/hog/usage")["oom_kills"] or 0) >= 1  # the counter
        alert = wait_for("the oom alert", lambda: find_alert(split, "oom", "hog"))
        assert alert["value"] >= 1

        def delivered() -> list[tuple[int, dict[str, Any]]]:
            # (not strict: the handler appends a body, then its code, from its own thread)
            return [(code, body) for code, body in zip(receiver.codes, receiver.bodies,
                                                      strict=False)
                    if body["alert"]["id"] == alert["id"] and code == 200]
        wait_for("the webhook delivery after a retry", delivered, timeout=30)
        time.sleep(3)  # more passes: the firing state must not be notified again
        mine = [(c, b) for c, b in zip(receiver.codes, receiver.bodies, strict=False)
                if b["alert"]["id"] == alert["id"]]
        assert [c for c, _ in mine] == [500, 200]
        assert mine[1][1]["status"] == "firing" and "[FIRING] oom" in mine[1][1]["text"]
        rows = split.db_query("SELECT state, attempts FROM deliveries WHERE alert_id=? AND "
                              "webhook_id=?", alert["id"], hook["id"])
        assert rows == [("sent", 2)]
        hooks = split.ok("webhook", "list", "--json").json()["items"]
        assert any(h["id"] == hook["id"] and h["delivered"] >= 1 for h in hooks)
    finally:
        follow.close()
        split.cli("delete", "hog", "--force")
        split.cli("webhook", "delete", hook["id"])
        receiver.close()


def test_pids_storm_fires_pids_alert(split: SplitDockyard) -> None:
    receiver = Receiver([])
    hook = split.ok("webhook", "add", receiver.url, "--format", "slack", "--json").json()
    split.ok("launch", IMAGE, "storm", "--pids", "64")
    try:
        split.cli("exec", "storm", "--", "sh", "-c",
                  "for i in $(seq 70); do sleep 30 & done 2>/dev/null; echo started")
        alert = wait_for("the pids alert", lambda: find_alert(split, "pids_ratio", "storm"),
                         timeout=20)
        assert alert["value"] >= 0.9 and alert["rule"] == "pids"
        wait_for("a slack-shaped notification", lambda: any(
            set(b) == {"text"} and "pids" in b["text"] and "storm" in b["text"]
            for b in receiver.bodies))
    finally:
        split.cli("delete", "storm", "--force")
        split.cli("webhook", "delete", hook["id"])
        receiver.close()
    wait_for("the pids alert to resolve once the instance is gone",
             lambda: find_alert(split, "pids_ratio", "storm", "resolved"), timeout=15)


def test_stopped_agent_fires_host_down(split: SplitDockyard) -> None:
    split.stop_agent()
    try:
        wait_for("the host-down alert", lambda: find_alert(split, "host_down", "local"),
                 timeout=20)
        events = split.ok("events", "--json").json()["items"]
        assert any(e["kind"] == "host_down" and e["host"] == "local" for e in events)
        assert any(a["kind"] == "host_down" for a in alerts(split, "firing"))
    finally:
        split.start_agent()
    wait_for("the host-down alert to resolve",
             lambda: find_alert(split, "host_down", "local", "resolved"), timeout=15)
    events = split.ok("events", "--json").json()["items"]
    assert any(e["kind"] == "host_up" for e in events)
    assert not any(a["kind"] == "host_down" for a in alerts(split, "firing"))
