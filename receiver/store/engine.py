"""Engine and sessions, with the database's failures turned into DatabaseUnavailable."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Engine, create_engine, event, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker

from receiver.domain.errors import BadRequest, DatabaseUnavailable

__all__ = ["Database", "check_connection", "describe_connection_error", "execute_compiled"]

T = TypeVar("T")
# A pooled PostgreSQL connection idle at least this long is pinged before use.
PING_AFTER_IDLE_S = 1.0


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

    def transact(self, operation: str, work: Callable[[Session], T]) -> T:
        """`work` in one transaction, run again once if a statement of it failed on a
        connection the database had dropped (a restart or failover while the connection
        was in use, or since its last use within PING_AFTER_IDLE_S). The pool then
        replaces every connection older than that failure.

        Only a failure inside `work` is retried: nothing of it was committed. A connection
        lost during COMMIT leaves the outcome unknown, so that one is the sender's to
        retry (Alertmanager's retry is then counted as a duplicate)."""
        worked = False
        try:
            with self.session(operation) as session:
                result = work(session)
                worked = True
            return result
        except DatabaseUnavailable as error:
            cause = error.__cause__
            dropped = isinstance(cause, exc.DBAPIError) and cause.connection_invalidated
            if worked or not dropped:
                raise
        with self.session(operation) as session:
            return work(session)

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


def execute_compiled(session: Session, statement: Any,
                     params: dict[str, Any]) -> CursorResult[Any]:
    """`statement` (built once and kept, e.g. lru_cached) run with `params` in the
    session's transaction.

    On PostgreSQL it is compiled to the driver's SQL once per set of parameter names; each
    call then skips SQLAlchemy's per-statement work (cache key, bind processing, the ORM's
    execute path), which was most of a one-alert webhook's CPU. So `params` must be what
    psycopg2 takes: JSON already serialized, aware datetimes. Errors are still
    SQLAlchemy's (a dropped connection is still invalidated). Elsewhere (SQLite) it is a
    plain `session.execute`."""
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        result: CursorResult[Any] = session.execute(statement, params)  # type: ignore[assignment]
        return result
    sql, defaults = _driver_sql(statement, dialect, tuple(params))
    return session.connection().exec_driver_sql(sql, {**defaults, **params})


@functools.lru_cache(maxsize=64)
def _driver_sql(statement: Any, dialect: Dialect,
                keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    # The statement's own values (an UPDATE's `+ 1`, a status): plain str/int/None here.
    defaults = {k: v for k, v in compiled.construct_params(_check=False).items()
                if k not in keys}
    # Columns whose default SQLAlchemy computes in Python at execution: a constant one is
    # filled in here; any other would silently be NULL, so it must be passed.
    for col in (*compiled.insert_prefetch, *compiled.update_prefetch):
        if col.key in keys:
            continue
        if col.default is None or not col.default.is_scalar:
            raise TypeError(f"execute_compiled: pass a value for {col.key!r}")
        defaults[col.key] = col.default.arg
    return str(compiled), defaults


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
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_timeout=5,
                           connect_args={"connect_timeout": 2})

    # Ping a connection only when it sat idle in the pool (SQLAlchemy's pessimistic
    # disconnect recipe, made conditional): pinging every checkout cost a round trip per
    # webhook request. One busy enough to skip the ping and dropped in that second fails
    # its first statement; Database.transact runs the webhook's write again.
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool replaces it and checks out another
            raise exc.DisconnectionError("connection dropped while idle") from error

    return engine


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
