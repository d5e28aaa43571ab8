"""Helpers every view uses: the app's services, JSON bodies, query models."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Request, current_app
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import ClientDisconnected

from receiver.domain.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from receiver.engine.services import Services

__all__ = ["MAX_ID", "json_body", "parse_id", "parse_model", "services", "to_utc",
           "validation_message"]

M = TypeVar("M", bound=BaseModel)
# Ids are 64-bit signed in every backend (SQLite refuses larger ints with OverflowError).
MAX_ID = 2**63 - 1
_ID = re.compile(r"^[0-9]{1,19}$")


def services() -> Services:
    found: Services = current_app.extensions["autofix"]
    return found


def json_body(request: Request, max_bytes: int) -> Any:
    """The request's JSON, or a clear error, never a stack trace: 415 for a Content-Type
    that is not JSON, 413 for a body over the limit, 400 for a body that is not valid
    UTF-8 JSON (syntax, encoding, nesting, NaN/Infinity, numbers out of range)."""
    return json_body_and_text(request, max_bytes)[0]


def json_body_and_text(request: Request, max_bytes: int) -> tuple[Any, str]:
    """json_body's value, and the text it was parsed from."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body of {request.content_length} bytes is over the limit "
                              f"of {max_bytes}")
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got "
                                   f"{mimetype or 'none'!r}")
    try:
        raw = request.stream.read(max_bytes + 1)
    except (TimeoutError, ClientDisconnected) as exc:
        # The serve worker's body deadline (serve_worker.py) cut a slow body short; werkzeug
        # reports the short read as a disconnect. Nobody hears a real disconnect's answer.
        raise RequestTimeout("the request body was not received in time") from exc
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8 JSON: {exc.reason} at byte "
                                   f"{exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc.msg} at line {exc.lineno} "
                                   f"column {exc.colno}") from exc
    except RecursionError as exc:
        raise BadRequest("body is not acceptable JSON: nested too deeply") from exc
    except _NonFinite as exc:
        raise BadRequest(f"a number in the body overflows: {exc}") from None
    except ValueError as exc:  # Python's int/str limit: an integer of more than 4300 digits
        raise BadRequest("a number in the body has too many digits") from exc
    _reject_unstorable_strings(text, data)
    return data, text


class _NonFinite(ValueError):
    """A JSON number too large for a float (1e999 would become inf)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NonFinite(f"{text[:40]} is out of range")
    return value


def to_utc(value: datetime | None) -> datetime | None:
    """Aware UTC; a naive value is taken as UTC. ValueError when UTC cannot represent it
    (year 1 with a +01:00 offset is before datetime.min once converted)."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range once converted to UTC") from None


def parse_id(text: str, what: str = "id") -> int:
    """A path id: decimal, 1..2^63-1, or 400."""
    if not _ID.match(text) or not 1 <= int(text) <= MAX_ID:
        raise BadRequest(f"{what} must be an integer from 1 to {MAX_ID}")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _reject_unstorable_strings(text: str, data: Any) -> None:
    """NUL and unpaired surrogates cannot be stored (PostgreSQL text/JSONB refuses them).

    Only a body that escapes one of them needs the full walk, so normal traffic pays a
    single regex scan."""
    if not _SUSPECT_ESCAPE.search(text):
        return
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise BadRequest("strings must not contain NUL characters")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadRequest("strings must not contain unpaired UTF-16 surrogates") from exc


def validation_message(error: ValidationError, limit: int = 5) -> tuple[str, list[dict[str, Any]]]:
    problems = []
    for item in error.errors()[:limit]:
        field = ".".join(str(part) for part in item["loc"]) or "(body)"
        problems.append({"field": field, "message": item["msg"]})
    first = problems[0] if problems else {"field": "(body)", "message": "invalid"}
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"invalid field {first['field']}: {first['message']}{more}", problems


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, problems = validation_message(exc)
        raise BadRequest(message, fields=problems) from exc
    except RecursionError as exc:
        raise BadRequest("body is nested too deeply") from exc
