"""A real git server for the build tests (issue #13): bare repositories served by `git daemon`
on loopback (its own process group, killed at the end), and a `post-receive` hook that sends
a signed Gitea-format push webhook to Dockyard for every updated ref."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.integration.dockyard_env import Dockyard, free_port

# An image serving its version.txt with busybox httpd on 8080 (the shell is PID 1 and leaves
# on SIGTERM at once), and a stack of two replicas of it behind the entrance, health-gated,
# rolled back by itself: what the delivery test and bench/push_deploy.py push and deploy.
SERVING = 'CMD ["sh", "-c", "trap \'exit 0\' TERM; httpd -f -p 8080 -h /www & wait"]\n'
SITE_COMPOSE = """
services:
  web:
    image: {image}
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, failure_action: rollback}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 1s
      retries: 3
    x-dockyard:
      http: {{host: {host}, port: 8080}}
"""

HOOK = r'''#!{python}
"""post-receive: a signed Gitea push webhook per updated ref (what Gitea sends)."""
import hashlib, hmac, json, ssl, subprocess, sys, urllib.error, urllib.request, uuid
conf = json.load(open({conf!r}))
for line in sys.stdin:
    before, after, ref = line.split()
    fmt = subprocess.run(["git", "log", "-1", "--format=%an%n%s", after], text=True,
                         capture_output=True).stdout.splitlines()
    body = json.dumps({{"ref": ref, "before": before, "after": after,
                       "head_commit": {{"id": after, "message": fmt[1],
                                       "author": {{"name": fmt[0]}}}}}}).encode()
    headers = {{"Content-Type": "application/json", "X-Gitea-Event": "push",
               "X-Gitea-Delivery": str(uuid.uuid4()),
               "X-Gitea-Signature": hmac.new(conf["secret"].encode(), body,
                                             hashlib.sha256).hexdigest()}}
    with open(conf["sent"], "w") as out:  # for the replay test
        json.dump({{"body": body.decode(), "headers": headers}}, out)
    request = urllib.request.Request(conf["url"], data=body, headers=headers, method="POST")
    context = ssl.create_default_context(cafile=conf["ca"])
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            print("dockyard:", reply.status, reply.read().decode())
    except urllib.error.HTTPError as exc:
        print("dockyard:", exc.code, exc.read().decode())
'''


@dataclass
class GitServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    work: Path

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/app.git"

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.test",
               "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.test"}
        return subprocess.run(["git", "-C", str(self.work), *args], check=True, text=True,
                              capture_output=True, env=env).stdout

    def push(self, dockerfile: str, message: str) -> str:
        """Commit `dockerfile` and push it to main; the commit's id."""
        (self.work / "Dockerfile").write_text(dockerfile)
        (self.work / "version.txt").write_text(message + "\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        out = subprocess.run(["git", "-C", str(self.work), "push", "origin", "main"],
                             capture_output=True, text=True, check=True)
        assert "dockyard: 200" in out.stderr, out.stderr  # the hook's output comes back here
        return self.git("rev-parse", "HEAD").strip()


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, "git daemon exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("git daemon did not listen")


@contextmanager
def serve_git(root: Path) -> Iterator[GitServer]:
    """A git daemon serving `root`/app.git (bare, branch main), with a work tree to push from."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "app.git")],
                   check=True)
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--export-all", "--enable=receive-pack",
                             "--listen=127.0.0.1", f"--port={port}", "--reuseaddr",
                             f"--base-path={root}", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_port(port, proc)
        work = root / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
        server = GitServer(root, port, proc, work)
        server.git("remote", "add", "origin", server.url)
        yield server
    finally:
        # the daemon and the children it forked per connection: its own process group
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def install_hook(server: GitServer, dy: Dockyard, repo_id: str, secret: str) -> Path:
    """The post-receive hook of app.git, signing its webhooks to `repo_id` of `dy` with
    `secret`; the file where it keeps what it sent last (body and headers)."""
    sent = server.root / "sent.json"
    conf = server.root / "hook.json"
    conf.write_text(json.dumps({"url": f"{dy.url}/v1/hooks/{repo_id}", "secret": secret,
                                "ca": str(dy.ca), "sent": str(sent)}))
    hook = server.root / "app.git" / "hooks" / "post-receive"
    hook.write_text(HOOK.format(python=sys.executable, conf=str(conf)))
    hook.chmod(0o755)
    return sent
