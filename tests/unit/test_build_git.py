"""The git adapter of builds on a real local repository (file://, no network): a checkout at
exactly the commit asked for (not the branch tip), at the tip of a ref, a clear 422 for an
unknown commit or repository; credentials go through the environment, never the command
line (a token as an http.extraHeader, an ssh key as a 0600 file)."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import pytest

from dockyard.adapters.git import Git, credential_env
from dockyard.errors import InvalidRequest

ENV = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "a@x.test", "GIT_COMMITTER_NAME": "Ada",
       "GIT_COMMITTER_EMAIL": "a@x.test", "PATH": "/usr/bin:/bin"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, text=True,
                          capture_output=True, env=ENV).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[str, list[str]]:
    """A repository with two commits on main; its file:// URL and the commits, oldest first."""
    src = tmp_path / "origin"
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True)
    commits = []
    for n in (1, 2):
        (src / "v.txt").write_text(f"v{n}\n")
        _git(src, "add", "v.txt")
        _git(src, "commit", "-q", "-m", f"version {n}")
        commits.append(_git(src, "rev-parse", "HEAD"))
    return f"file://{src}", commits


def test_checkout_at_the_exact_commit_and_at_a_ref(tmp_path: Path,
                                                   origin: tuple[str, list[str]]) -> None:
    url, (first, second) = origin
    lines: list[str] = []
    old = Git(tmp_path / "a", credential_env(None, tmp_path / "k"), lines.append)
    got = old.checkout(url, "main", first)
    assert (got.commit, got.author, got.subject) == (first, "Ada", "version 1")
    assert (tmp_path / "a" / "v.txt").read_text() == "v1\n"
    tip = Git(tmp_path / "b", credential_env(None, tmp_path / "k"), lines.append)
    assert tip.checkout(url, "main", None).commit == second


def test_unknown_commit_or_repository_is_422(tmp_path: Path,
                                             origin: tuple[str, list[str]]) -> None:
    url, _ = origin
    with pytest.raises(InvalidRequest, match="cannot clone"):
        Git(tmp_path / "a", {}, lambda _: None).checkout(url, "main", "ab" * 20)
    with pytest.raises(InvalidRequest, match="cannot clone"):
        Git(tmp_path / "b", {}, lambda _: None).checkout(f"file://{tmp_path}/nope", "main",
                                                         None)


def test_credentials_go_through_the_environment(tmp_path: Path) -> None:
    token = credential_env("tok-123", tmp_path / "key")
    header = token["GIT_CONFIG_VALUE_0"]
    assert token["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert base64.b64decode(header.removeprefix("Authorization: Basic ")).endswith(b":tok-123")
    assert not (tmp_path / "key").exists()
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    ssh = credential_env(key, tmp_path / "key")
    assert f"-i {tmp_path / 'key'}" in ssh["GIT_SSH_COMMAND"]
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    assert (tmp_path / "key").read_text() == key
    assert credential_env(None, tmp_path / "other")["GIT_TERMINAL_PROMPT"] == "0"
