"""First-start set-up of a store: schema, cluster id, the `default` project, tokens."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import IntegrityError

from dockyard.store import meta, projects, tokens
from dockyard.store.db import Database

DEFAULT_PROJECT = "default"


def private_home(home: Path) -> None:
    """The server's home (store, TLS keys, registry data, snapshots) is this user's only:
    created 0700, an existing one set back to 0700 at every start."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)


def init_store(db: Database) -> str:
    """Migrate and ensure the default project; returns its id (idempotent). Servers starting
    together on one PostgreSQL may race on the first rows: the loser reads the winner's."""
    db.migrate()
    try:
        return _ensure_defaults(db)
    except IntegrityError:
        return _ensure_defaults(db)


def _ensure_defaults(db: Database) -> str:
    with db.session() as sess:
        meta.cluster_id(sess)
        return projects.ensure(sess, DEFAULT_PROJECT).id


def mint_admin_token(db: Database, project_id: str, description: str = "admin") -> str:
    with db.session() as sess:
        return tokens.mint(sess, "admin", project_id=project_id, description=description)


def mint_host_token(db: Database, host_name: str) -> str:
    """A new token for the agent of `host_name`; earlier ones for that host stop working."""
    with db.session() as sess:
        tokens.revoke_host_tokens(sess, host_name)
        return tokens.mint(sess, "host", host_name=host_name, description=f"host {host_name}")
