"""The test PostgreSQL (scripts/postgres.sh, started by scripts/setup.sh): a fresh database
per test module, dropped afterwards. Tests skip only when PostgreSQL is not installed."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.requirements import missing

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"


def installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


def server_url() -> str:
    """The test role's URL; starts the cluster first (quick when it already runs)."""
    subprocess.run([str(SCRIPT), "start"], check=True, capture_output=True, timeout=300)
    return subprocess.run([str(SCRIPT), "url"], check=True, capture_output=True,
                          text=True).stdout.strip()


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """CREATE DATABASE dy_<prefix>_<random>; yields its postgresql:// URL; DROP … (FORCE)."""
    if not installed():
        missing("PostgreSQL", "scripts/setup.sh (apt package, scripts/postgres.sh)")
    base = server_url()
    name = f"dy_{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(base, name)


def _drop(base: str, name: str, tries: int = 10) -> None:
    """DROP … (FORCE), retried: a backend starting in the database at that moment (an
    autovacuum worker) can make one attempt fail."""
    for attempt in range(tries):
        try:
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                              .format(sql.Identifier(name)))
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == tries - 1:
                raise
            time.sleep(0.5)
