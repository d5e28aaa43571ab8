"""Read a database the way an operator would: plain SQL on a fresh connection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text


def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()
