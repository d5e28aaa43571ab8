"""Alembic environment: the URL comes from the caller (autofix db upgrade), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from receiver.store.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("autofix db upgrade sets sqlalchemy.url")

# Any fixed key: every `autofix serve` migrates at startup, and replicas (a Swarm service
# with 2 of them) start at once. The lock makes the second wait, then find the schema at
# head, instead of racing the first on CREATE TABLE.
MIGRATION_LOCK_KEY = 0x6175746F666978   # "autofix"

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Released at commit, after the version row is written.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()
engine.dispose()
