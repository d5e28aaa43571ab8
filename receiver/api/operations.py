"""What the OpenAPI document says of a view, declared on the view itself with
`@operation(...)` (below the route decorator, beside `@requires`); openapi.py walks the
app's url_map and reads it back with `operation_of`. The scope is not repeated here: the
document shows the one auth.py enforces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["Operation", "operation", "operation_of"]

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "autofix_operation"


@dataclass(frozen=True)
class Operation:
    summary: str
    ok: dict[str, tuple[str, type[BaseModel] | None]]  # status -> (text, body model)
    errors: dict[str, str] = field(default_factory=dict)  # status -> text (ErrorBody)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    database: bool = True  # may answer 503 while the database is down
    content_type: str = "application/json"
    description: str = ""


def operation(summary: str, ok: dict[str, tuple[str, type[BaseModel] | None]],
              errors: dict[str, str] | None = None, *, query: type[BaseModel] | None = None,
              body: type[BaseModel] | None = None, database: bool = True,
              content_type: str = "application/json",
              description: str = "") -> Callable[[F], F]:
    """Document the view: its summary, its answers, the query and body models it parses."""
    declared = Operation(summary, ok, errors or {}, query, body, database, content_type,
                         description)

    def mark(view: F) -> F:
        setattr(view, _ATTRIBUTE, declared)
        return view
    return mark


def operation_of(view: Callable[..., Any] | None) -> Operation | None:
    found: Operation | None = getattr(view, _ATTRIBUTE, None)
    return found
