"""Alembic environment: the URL comes from the caller (autofix db upgrade), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from receiver.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "autofix db upgrade sets sqlalchemy.url"

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
