"""One exception tree; the HTTP layer maps it to JSON errors in one place (app.py)."""

from __future__ import annotations

__all__ = [
    "AutofixError", "BackendUnavailable", "BadRequest", "ConfigError", "Conflict",
    "DatabaseUnavailable", "Forbidden", "NotFound", "PayloadTooLarge", "RequestTimeout",
    "Unauthorized", "Unprocessable", "UnsupportedMediaType",
]


class AutofixError(Exception):
    """Base of every error autofix raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.details}


class BadRequest(AutofixError):
    """The request is malformed or fails validation."""

    status, code = 400, "bad_request"


class Unauthorized(AutofixError):
    """Missing or wrong credentials."""

    status, code = 401, "unauthorized"


class Forbidden(AutofixError):
    """Authenticated, but the target is not allowed."""

    status, code = 403, "forbidden"


class NotFound(AutofixError):
    """No such resource."""

    status, code = 404, "not_found"


class Conflict(AutofixError):
    """A guard (cooldown, breaker) refuses the run for now."""

    status, code = 409, "conflict"

    def __init__(self, message: str, retry_after_s: float | None = None, **details: object):
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s

    def to_dict(self) -> dict[str, object]:
        """With `retry_after_s` (a float, like every duration) when a retry can pass."""
        body = super().to_dict()
        if self.retry_after_s is not None:
            body["retry_after_s"] = float(self.retry_after_s)
        return body


class Unprocessable(AutofixError):
    """Well-formed, but what it asks for cannot be done (a maintenance window that would
    hold everything, end before it starts, or last too long)."""

    status, code = 422, "unprocessable"


class PayloadTooLarge(AutofixError):
    """The body is over AUTOFIX_MAX_BODY_BYTES."""

    status, code = 413, "payload_too_large"


class RequestTimeout(AutofixError):
    """The client did not send its body within AUTOFIX_BODY_TIMEOUT_S."""

    status, code = 408, "request_timeout"


class UnsupportedMediaType(AutofixError):
    """The body is not JSON."""

    status, code = 415, "unsupported_media_type"


class DatabaseUnavailable(AutofixError):
    """The database cannot be reached; Alertmanager should retry."""

    status, code = 503, "database_unavailable"


class BackendUnavailable(AutofixError):
    """The backend (dockerd, Swarm) cannot be reached to answer; retry."""

    status, code = 503, "backend_unavailable"


class ConfigError(AutofixError):
    """The playbooks file or the settings are invalid."""

    status, code = 400, "invalid_config"
