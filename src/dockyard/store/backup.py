"""Backup and restore of the store.

SQLite: the sqlite3 online backup API copies a consistent snapshot page by page while the
server keeps running (readers and writers of the live database are not stopped; the copy is
of one moment). PostgreSQL: `pg_dump --format=custom` / `pg_restore`, run against the URL.

A backup file says what it is by its first bytes (SQLite's `SQLite format 3`, pg_dump's
`PGDMP`); restoring one engine's backup into the other is refused. Restore refuses a target
that already holds tables unless `force` (then SQLite's pages are overwritten in one backup
step, PostgreSQL's objects are dropped first with `--clean --if-exists`); stop the servers
before a forced restore.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from dockyard.errors import BackendError, Conflict, InvalidRequest
from dockyard.store.db import is_postgres, libpq_url

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


def _pg_tool(name: str) -> str:
    """The newest installed version of a PostgreSQL client tool (dumps must be taken by a
    pg_dump at least as new as the server)."""
    bins = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                  key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    found = str(bins[-1]) if bins else shutil.which(name)
    if not found:
        raise BackendError(f"{name} is not installed (apt-get install postgresql-client)")
    return found


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackendError(f"{Path(cmd[0]).name} failed: {proc.stderr.strip()[-2000:]}")


def sqlite_path(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise InvalidRequest(f"not a SQLite file URL: {url}")
    return Path(parsed.database)


def backup(url: str, dest: Path) -> None:
    """Write a consistent copy of the store at `url` to `dest` (replaced atomically)."""
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    if is_postgres(url):
        _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(tmp),
              "--dbname", libpq_url(url)])
    else:
        src_path = sqlite_path(url)
        if not src_path.exists():
            raise InvalidRequest(f"no database at {src_path}")
        src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    os.replace(tmp, dest)


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise InvalidRequest(f"no backup file at {path}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise InvalidRequest(f"{path} is neither a SQLite nor a pg_dump (custom format) backup")


def tables_in(url: str) -> int:
    """How many tables the target store already has (0: empty or absent)."""
    if is_postgres(url):
        with psycopg.connect(libpq_url(url)) as conn:
            row = conn.execute("SELECT count(*) FROM information_schema.tables "
                               "WHERE table_schema = 'public'").fetchone()
        return int(row[0]) if row else 0
    path = sqlite_path(url)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                           "AND name NOT LIKE 'sqlite_%'").fetchone()
    return int(row[0])


def restore(src: Path, url: str, force: bool = False) -> None:
    kind = _kind(src)
    target = "postgresql" if is_postgres(url) else "sqlite"
    if kind != target:
        raise InvalidRequest(f"{src} is a {kind} backup; the target store is {target}")
    if tables_in(url) and not force:
        raise Conflict("the target store is not empty; restore with --force to overwrite it "
                       "(stop the servers first)")
    if kind == "postgresql":
        _run([_pg_tool("pg_restore"), "--no-owner", "--clean", "--if-exists",
              "--single-transaction", "--dbname", libpq_url(url), str(src)])
        return
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    dest = sqlite3.connect(path, timeout=30)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
