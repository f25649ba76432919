"""Alembic environment: runs on the connection handed in by `dockyard.store.db.migrate`."""

from __future__ import annotations

from alembic import context

from dockyard.store.tables import Base

connection = context.config.attributes.get("connection")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=True)
context.run_migrations()
