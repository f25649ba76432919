"""`dockyard backup` / `restore` of the store: SQLite while the server runs (online backup
API), PostgreSQL with pg_dump/pg_restore; a non-empty target is refused without --force."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import psycopg

from dockyard.server.bootstrap import init_store
from dockyard.store.db import Database, libpq_url
from tests.integration.dockyard_env import VENV_BIN, Dockyard
from tests.postgres import fresh_database


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "dockyard"), *args], capture_output=True,
                          text=True, timeout=120)


def count(db: Path, table: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_sqlite_backup_while_running_and_restore(dy: Dockyard, tmp_path: Path) -> None:
    with dy.api() as api:
        api.post("/v1/volumes", {"name": "backup-vol"})
    try:
        file = tmp_path / "store.bak"
        result = cli("backup", str(file), "--home", str(dy.home))
        assert result.returncode == 0, result.stderr
        assert file.read_bytes().startswith(b"SQLite format 3")
        with sqlite3.connect(file) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT name FROM volumes WHERE name='backup-vol'").fetchone()
        # into a fresh home: accepted; again: refused (not empty) unless --force
        home = tmp_path / "restored"
        assert cli("restore", str(file), "--home", str(home)).returncode == 0
        assert count(home / "dockyard.db", "volumes") >= 1
        assert count(home / "dockyard.db", "audit_log") >= 1
        refused = cli("restore", str(file), "--home", str(home))
        assert refused.returncode == 1 and "not empty" in refused.stderr
        assert cli("restore", str(file), "--home", str(home), "--force").returncode == 0
        db = Database(f"sqlite:///{home / 'dockyard.db'}")
        try:
            init_store(db)  # a restored store migrates and opens like the original
        finally:
            db.close()
        bad = cli("restore", str(tmp_path / "missing"), "--home", str(home))
        assert bad.returncode == 1 and "no backup file" in bad.stderr
    finally:
        with dy.api() as api:
            api.delete("/v1/volumes/backup-vol")


def test_postgres_backup_and_restore(tmp_path: Path) -> None:
    with fresh_database("bk_src") as src, fresh_database("bk_dst") as dst:
        db = Database(src)
        try:
            init_store(db)
        finally:
            db.close()
        with psycopg.connect(libpq_url(src)) as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('backup-test', 'x')")
        file = tmp_path / "pg.bak"
        result = cli("backup", str(file), "--db", src)
        assert result.returncode == 0, result.stderr
        assert file.read_bytes().startswith(b"PGDMP")
        assert cli("restore", str(file), "--db", dst).returncode == 0, "empty target"
        with psycopg.connect(libpq_url(dst)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='backup-test'").fetchone()
        assert row == ("x",)
        refused = cli("restore", str(file), "--db", dst)
        assert refused.returncode == 1 and "not empty" in refused.stderr
        forced = cli("restore", str(file), "--db", dst, "--force")
        assert forced.returncode == 0, forced.stderr
        wrong = cli("restore", str(file), "--home", str(tmp_path / "h"))
        assert wrong.returncode == 1 and "postgresql backup" in wrong.stderr
