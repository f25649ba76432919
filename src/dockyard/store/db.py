"""Engine, sessions and migrations, on SQLite or PostgreSQL.

SQLite runs in WAL mode and every transaction starts with BEGIN IMMEDIATE: writers queue on
the database lock instead of failing to upgrade a read lock midway (SQLITE_BUSY), which is
what makes the ledger's check-then-insert safe across threads and processes. Read-only work
(`Database.read()`: token lookups, `?wait=true` polls, shows and lists) starts with a plain
BEGIN and reads a WAL snapshot next to the writer: a burst of 50 launches, each request
authenticating and each waiter re-reading its operation on every change, had queued every
read on the write lock, and SQLite's busy handler sleeps up to 100 ms a try.

The WAL is copied back into the database file by a thread of the `Database`
(`_Checkpointer`: PRAGMA wal_checkpoint(PASSIVE) every CHECKPOINT_EVERY seconds, which waits
for no reader or writer), not by whichever commit crossed SQLite's 1,000-page threshold: that
commit paid the copy and its fsync (~6 ms, one launch in ~125 on the placement benchmark, the
launches' p99). SQLite's own checkpoint stays as a backstop, at WAL_AUTOCHECKPOINT pages.

PostgreSQL (several servers on one database) runs READ COMMITTED, and the ledger stays safe
without a global lock: UNIQUE constraints refuse a second holder of an IP or core, the hosts'
version compare-and-set (`UPDATE … WHERE version = seen`) re-reads the newest row after waiting
for a concurrent writer, and the revision bump takes `SELECT … FOR UPDATE`. A serialization
failure or deadlock is raised as `RetryableConflict`. `Database.transact(work)` runs a unit of
work in a transaction of its own and runs it again, after a jittered backoff, when it lost such
a race: every request whose transaction writes only to the store goes through it (a delete, an
action, an agent's report: two writers that lock an instance row and the revision row in
opposite orders deadlock, and PostgreSQL aborts one of them). Migrations run under an advisory
lock, so servers starting together migrate once.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dockyard.errors import RetryableConflict
from dockyard.store.ledger import watch_capacity

MIGRATIONS = Path(__file__).parent / "migrations"
RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
MIGRATION_LOCK = 0x646F636B79617264  # pg_advisory_xact_lock key ("dockyard")
READ_ONLY = "dockyard_read_only"  # execution option: a read-only transaction
TRANSACT_ATTEMPTS = 8  # a lost race (deadlock, serialization failure) tried again this often
TRANSACT_BACKOFF = 0.005  # seconds, doubled per lost attempt up to TRANSACT_BACKOFF_MAX
TRANSACT_BACKOFF_MAX = 0.25
CHECKPOINT_EVERY = 0.5  # seconds between the checkpointer's passive checkpoints (SQLite)
WAL_AUTOCHECKPOINT = 16_000  # pages: SQLite checkpoints in the commit only past this backstop
SQLITE_POOL = 16  # SQLite connections kept open (cheap: a file handle each)
SQLITE_OVERFLOW = 48  # and opened above those while that many threads read at once

T = TypeVar("T")


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'dockyard.db'}"


def normalize_url(url: str) -> str:
    """`postgresql://…` and `postgres://…` use the psycopg (3) driver; others pass unchanged."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The URL for a plain psycopg connection (LISTEN/NOTIFY), without the driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def make_engine(url: str) -> Engine:
    if is_postgres(url):
        return create_engine(normalize_url(url), pool_pre_ping=True, pool_size=10,
                             max_overflow=20, isolation_level="READ COMMITTED")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    private_sqlite_files(url)
    # a connection for every thread that may read at once (anyio's 40 worker threads, the
    # watches' own, the checkpointer): with SQLAlchemy's default 5 + 10 the watch replies
    # of a burst queued for a connection, not for the database (WAL readers do not block)
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    pool = {} if in_memory else {"pool_size": SQLITE_POOL, "max_overflow": SQLITE_OVERFLOW}
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                           **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def private_sqlite_files(url: str) -> None:
    """The database file and its -wal/-shm readable and writable by this user only: created
    0600 before SQLite opens it (SQLite gives -wal and -shm the database file's mode), an
    existing one (and its -wal/-shm) set back to 0600. The store holds token hashes, agent
    secrets and every project's data."""
    name = make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if path.parent.is_dir():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            file.chmod(0o600)


class _Checkpointer(threading.Thread):
    """Passive WAL checkpoints of a SQLite file every CHECKPOINT_EVERY seconds, on a pooled
    connection in autocommit (no BEGIN: a checkpoint in a transaction does nothing), until
    `stop` or until the engine is gone (a `Database` dropped without `close`)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="dockyard-wal-checkpoint", daemon=True)
        self._engine = weakref.ref(engine)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(CHECKPOINT_EVERY):
            if not self._round():
                return

    def _round(self) -> bool:
        engine = self._engine()  # held for this round only: not while waiting
        return engine is not None and self.checkpoint(engine)

    @staticmethod
    def checkpoint(engine: Engine) -> bool:
        """One passive checkpoint; False when the database cannot be opened any more."""
        try:
            raw = engine.raw_connection()
        except OperationalError:
            return False  # its file is gone (a test's temporary directory)
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        except sqlite3.Error:
            pass  # busy or locked: the next round (or SQLite's backstop) copies those pages
        finally:
            raw.close()
        return True

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # one migrator at a time; the others then no-op
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _refuse_writes(sess: Session, _context: Any, _instances: Any) -> None:
    if sess.new or sess.dirty or sess.deleted:
        raise RuntimeError("a change in a read-only session (Database.read)")


def _retryable(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        watch_capacity(self._sessions)  # the capacity stamp: writers only
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                     expire_on_commit=False)
        event.listen(self._readers, "before_flush", _refuse_writes)  # once, for every reader
        self._checkpointer: _Checkpointer | None = None
        name = make_url(url).database if self.engine.dialect.name == "sqlite" else None
        if name and name != ":memory:" and not name.startswith("file:"):
            self._checkpointer = _Checkpointer(self.engine)
            self._checkpointer.start()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        try:
            with self._sessions() as sess, sess.begin():
                yield sess
        except OperationalError as exc:
            if not _retryable(exc):
                raise
            raise RetryableConflict("a concurrent change in the store interfered; retry") from exc

    def transact(self, work: Callable[[Session], T], attempts: int = TRANSACT_ATTEMPTS,
                 backoff: float = TRANSACT_BACKOFF) -> T:
        """`work(sess)` in a transaction of its own, run again from a fresh read when it loses
        a race to a concurrent writer (`RetryableConflict`: a deadlock or serialization failure,
        or one the work raises itself, like a version CAS), after a jittered backoff so that
        contenders that lost together do not collide again together. `work` must touch nothing
        but the store: it may run more than once. Any other error, and the last lost race, goes
        to the caller."""
        for attempt in range(attempts):
            try:
                with self.session() as sess:
                    return work(sess)
            except RetryableConflict:
                if attempt == attempts - 1:
                    raise
                time.sleep(random.uniform(0, min(TRANSACT_BACKOFF_MAX, backoff * 2 ** attempt)))
        raise AssertionError("unreachable")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (see the module docstring); a change made in it is a bug
        and raises instead of being written. Ended by a commit that writes nothing (a rollback
        would expire the rows it returns)."""
        with self._readers() as sess, sess.begin():
            yield sess

    def migrate(self) -> None:
        migrate(self.engine)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
