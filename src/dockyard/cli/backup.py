"""`dockyard backup FILE` / `dockyard restore FILE`: the store (SQLite or PostgreSQL).

The store (SQLAlchemy, alembic) is imported inside the commands: every other command of the
CLI starts without it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dockyard.cli.output import console
from dockyard.config import env_home

HomeOpt = Annotated[Path, typer.Option(help="state directory whose SQLite store is meant "
                                       "[env DOCKYARD_HOME]", default_factory=env_home)]
DbOpt = Annotated[str | None, typer.Option("--db", "--database-url",
                                           help="postgresql://… (or a SQLAlchemy URL) "
                                           "instead of HOME's SQLite")]


def _url(home: Path, db: str | None) -> str:
    from dockyard.store.db import sqlite_url
    return db or sqlite_url(home.resolve())


def backup(file: Annotated[Path, typer.Argument(help="where to write the backup")],
           home: HomeOpt, db: DbOpt = None) -> None:
    """Copy the store to FILE; safe while the server runs (a consistent snapshot)."""
    from dockyard.store import backup as store_backup
    store_backup.backup(_url(home, db), file)
    console.print(f"backed up to {file}")


def restore(file: Annotated[Path, typer.Argument(help="a file `dockyard backup` wrote")],
            home: HomeOpt, db: DbOpt = None,
            force: Annotated[bool, typer.Option(help="overwrite a store that is not "
                                                "empty")] = False) -> None:
    """Load FILE into the store (an empty one, unless --force). Stop the servers first."""
    from dockyard.store import backup as store_backup
    store_backup.restore(file, _url(home, db), force=force)
    console.print(f"restored from {file}")
