"""Storage: SQLAlchemy models, engine setup and Alembic migrations."""
