"""The store: SQLAlchemy tables, Alembic migrations, repositories and the capacity ledger."""
