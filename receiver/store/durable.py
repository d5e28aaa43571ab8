"""Writes a run cannot afford to lose: retried with backoff while the database is away.

Each write passed here must be idempotent (a compare-and-set, or an insert that does
nothing on conflict): a commit whose answer was lost may be retried after it happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from receiver.domain.errors import DatabaseUnavailable
from receiver.store.engine import Database

__all__ = ["write_durably"]

log = logging.getLogger("autofix.db")
T = TypeVar("T")
_FIRST_DELAY_S = 0.25
_MAX_DELAY_S = 5.0


def write_durably(database: Database, operation: str, write: Callable[[Session], T],
                  budget_s: float, **log_fields: object) -> T:
    """Run `write` in one transaction, retrying DatabaseUnavailable for up to `budget_s`."""
    deadline = time.monotonic() + budget_s
    delay, failures = _FIRST_DELAY_S, 0
    while True:
        try:
            with database.session(operation) as session:
                result = write(session)
        except DatabaseUnavailable:
            failures += 1
            if failures == 1:
                log.warning("database unavailable; retrying the write",
                            extra={"operation": operation, **log_fields})
            if time.monotonic() + delay > deadline:
                log.error("database unavailable; gave up the write",
                          extra={"operation": operation, "attempts": failures,
                                 **log_fields})
                raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY_S)
            continue
        if failures:
            log.warning("database back; write done", extra={
                "operation": operation, "attempts": failures + 1, **log_fields})
        return result
