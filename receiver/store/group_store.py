"""The notification group's row: its latest state, never moved back by an older one."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from receiver.store.engine import execute_compiled
from receiver.store.models import AlertGroup

__all__ = ["GROUP_COLUMNS", "group_insert", "group_params", "group_upsert", "upsert_group"]

GROUP_COLUMNS = ("key_hash", "group_key", "receiver", "group_labels", "external_url",
                 "firing", "resolved", "summary", "first_seen", "last_seen")


def upsert_group(session: Session, values: dict[str, Any]) -> int | None:
    """Store the group's state (`values`: GROUP_COLUMNS); its id, or None when the group
    already holds a newer state (a deferred notification filed after a later one)."""
    dialect = session.get_bind().dialect.name
    group_id = execute_compiled(session, group_upsert(dialect),
                                group_params(values, dialect)).scalar()
    return None if group_id is None else int(group_id)


def group_params(values: dict[str, Any], dialect: str, prefix: str = "") -> dict[str, Any]:
    """The statement's parameters: execute_compiled's driver path takes JSON as text."""
    if dialect == "postgresql":
        values = {**values, "group_labels": json.dumps(values["group_labels"]),
                  "summary": json.dumps(values["summary"])}
    return {prefix + name: values[name] for name in GROUP_COLUMNS}


@functools.lru_cache(maxsize=8)
def group_upsert(dialect: str) -> Any:
    """Built once per dialect, values bound at execution: building it per request (the
    `excluded` alias, a new cache key) was a third of its cost."""
    return group_insert(dialect)


def group_insert(dialect: str, prefix: str = "", after: Any = None) -> Any:
    """The upsert, its values bound as `prefix` + column name. `after`: a data-modifying
    CTE of the same statement whose rows must all be written (so locked) before the
    group's row is, the order separate statements keep: a group's row taken between two
    incidents deadlocked against a notification of the same group holding one of them."""
    table: Table = AlertGroup.__table__  # type: ignore[assignment]
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    values = {name: bindparam(prefix + name, type_=table.c[name].type)
              for name in GROUP_COLUMNS}
    if after is None:
        insert = insert.values(values)
    else:
        # An InitPlan: PostgreSQL reads all of `after` before the first group row.
        written = select(func.count()).select_from(after).scalar_subquery() >= 0
        insert = insert.from_select(list(values), select(*values.values()).where(written))
    return insert.on_conflict_do_update(
        index_elements=["key_hash"],
        set_={k: insert.excluded[k] for k in ("group_labels", "external_url", "firing",
                                              "resolved", "summary", "last_seen")},
        where=table.c.last_seen <= insert.excluded.last_seen,
    ).returning(table.c.id)
