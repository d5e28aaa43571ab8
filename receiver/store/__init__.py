"""Storage: SQLAlchemy models and engine, lifecycle (every state), Alembic migrations."""
