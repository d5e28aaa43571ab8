"""Engine and sessions, with the database's failures turned into DatabaseUnavailable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from ..errors import BadRequest, DatabaseUnavailable

__all__ = ["Database", "check_connection", "describe_connection_error"]


class Database:
    """Owns the engine; `session()` is one transaction, committed on success."""

    def __init__(self, url: str, on_error: Any = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._on_error = on_error  # a callable(operation) counting database errors

    @contextmanager
    def session(self, operation: str = "query") -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError) as error:
            session.rollback()
            if self._on_error is not None:
                self._on_error(operation)
            raise DatabaseUnavailable(f"database unavailable during {operation}") from error
        except exc.DataError as error:
            # The database refused a value (too long, out of range): the request's fault.
            session.rollback()
            raise BadRequest(f"a value cannot be stored: {error.orig}".splitlines()[0]) from error
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def scratch_session(self, operation: str = "peek") -> Iterator[Session]:
        """A transaction that is always rolled back: to ask "what would happen if"."""
        session = self._sessions()
        try:
            yield session
        except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError) as error:
            if self._on_error is not None:
                self._on_error(operation)
            raise DatabaseUnavailable(f"database unavailable during {operation}") from error
        finally:
            session.rollback()
            session.close()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except exc.SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers (API, Grafana exports) run beside the single writer.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # connect_timeout keeps the webhook's 503 fast while PostgreSQL is down.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         pool_timeout=5, connect_args={"connect_timeout": 2})


def check_connection(url: str) -> str | None:
    """None when the database answers; otherwise one line naming the setting and the fix."""
    try:
        engine = _make_engine(url)
    except (exc.ArgumentError, ImportError) as error:
        return f"AUTOFIX_DATABASE_URL: cannot use this URL: {error}".splitlines()[0]
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        return None
    except exc.SQLAlchemyError as error:
        return describe_connection_error(url, error)
    finally:
        engine.dispose()


_HINTS = (
    ("password authentication failed", "check the user name and password"),
    ("does not exist", "create it or fix the name"),
    ("connection refused", "check the host and port, and that PostgreSQL is running"),
    ("could not translate host name", "check the host name"),
    ("timeout expired", "check the host and port, and that PostgreSQL is reachable"),
    ("no such host", "check the host name"),
    ("unable to open database file", "the file's directory must exist and be writable"),
)


def describe_connection_error(url: str, error: BaseException) -> str:
    """One line: where autofix tried to connect (password hidden), why it failed, the fix."""
    from sqlalchemy.engine import make_url

    try:
        where = make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        where = "the configured URL"
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = lines[0] if lines else type(original).__name__
    reason = re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed: ', "",
                    reason)
    reason = re.sub(r"^FATAL:\s+", "", reason)
    hint = next((h for key, h in _HINTS if key in reason.lower()),
                "check AUTOFIX_DATABASE_URL")
    return f"AUTOFIX_DATABASE_URL: cannot connect to {where}: {reason}; {hint}"
