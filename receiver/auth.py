"""Credentials: bearer tokens or basic auth, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from flask import Request

from .errors import Unauthorized

__all__ = ["require_token"]


def _presented_secret(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]  # the password carries the token
    return None


def require_token(request: Request, expected: str | None, realm: str) -> None:
    """Raise Unauthorized unless the request carries `expected`. None means auth is off."""
    if expected is None:
        return
    presented = _presented_secret(request)
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized(f"missing or invalid credentials for {realm}",
                           hint="send 'Authorization: Bearer <token>'")
