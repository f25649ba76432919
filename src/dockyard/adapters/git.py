"""git, for builds: a checkout of exactly one commit (or the tip of a ref) of a repository.

    fetch --depth 1 URL COMMIT|REF ─▶ checkout --detach FETCH_HEAD ─▶ commit, author, subject
    (a server that refuses a fetch by commit id: the ref fetched whole, the commit checked out)

Credentials never reach the command line: a token goes in as an `http.extraHeader` through
git's GIT_CONFIG_* environment, an ssh deploy key as a 0600 file named by GIT_SSH_COMMAND.
A `Git` can be stopped from another thread (time limit, cancel): its running git is killed.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import BackendError, InvalidRequest

__all__ = ["Checkout", "Git", "credential_env"]

TIMEOUT = 600.0


@dataclass(frozen=True)
class Checkout:
    commit: str
    author: str
    subject: str


def credential_env(credentials: str | None, keyfile: Path) -> dict[str, str]:
    """The environment that lets git authenticate with `credentials` (a token, or an ssh
    private key written to `keyfile`)."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true",
           "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"}
    if not credentials:
        return env
    if credentials.lstrip().startswith("-----BEGIN"):
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(credentials.strip() + "\n")
        env["GIT_SSH_COMMAND"] += f" -o IdentitiesOnly=yes -i {keyfile}"
        return env
    basic = base64.b64encode(f"x-access-token:{credentials.strip()}".encode()).decode()
    env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
    return env


class Git:
    def __init__(self, workdir: Path, env: dict[str, str],
                 on_line: Callable[[str], None]) -> None:
        self.workdir = workdir
        self._env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
                     **env}
        self._on_line = on_line
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    def _run(self, *args: str, echo: bool = True) -> tuple[int, str]:
        with self._lock:
            if self._stopped:
                raise BackendError("git: stopped")
            self._proc = subprocess.Popen(["git", *args], cwd=self.workdir, env=self._env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, errors="replace")
        out: list[str] = []
        with self._proc as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line.rstrip("\n"))
                if echo:
                    self._on_line(line.rstrip("\n"))
            code = proc.wait()
        if self._stopped:
            raise BackendError("git: stopped")
        return code, "\n".join(out)

    def _must(self, *args: str, echo: bool = True) -> str:
        code, out = self._run(*args, echo=echo)
        if code != 0:
            raise BackendError(f"git {args[0]} failed: {out.strip().splitlines()[-1:]}")
        return out

    def checkout(self, url: str, ref: str, commit: str | None) -> Checkout:
        """The repository at `commit` (when known) or at the tip of `ref`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._must("init", "-q", ".")
        code, out = self._run("fetch", "--depth", "1", "--no-tags", url, commit or ref)
        if code != 0 and commit:  # a server that refuses fetching by id: the ref, whole
            code, out = self._run("fetch", "--no-tags", url, ref)
            if code == 0:
                code, out = self._run("checkout", "-q", "--detach", commit)
        elif code == 0:
            self._must("checkout", "-q", "--detach", "FETCH_HEAD")
        if code != 0:
            tail = out.strip().splitlines()[-1] if out.strip() else f"exit {code}"
            raise InvalidRequest(f"cannot clone {url} at {commit or ref}: {tail}")
        info = self._must("log", "-1", "--format=%H%n%an%n%s", echo=False).splitlines()
        return Checkout(commit=info[0], author=info[1] if len(info) > 1 else "",
                        subject=info[2] if len(info) > 2 else "")
