"""Structured JSON logs: one line per event; secrets never leave this process in a log."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from gunicorn.glogging import Logger

from receiver.domain.redaction import Redactor

__all__ = ["GunicornJsonLogger", "JsonFormatter", "configure_logging"]

_LINE_CHARS = 16 * 1024  # any one value of a log line, cut before it is redacted
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Values JSON keeps as they are: an entry of only these needs no dumps/loads to become
# what the redactor walks (exact types: a str or int subclass may encode otherwise).
_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """One JSON line per record: the configured secrets replaced, then the redactor's
    shapes masked in every value (a URL with a password, a token in an error)."""

    def __init__(self, secrets: list[str], redactor: Redactor | None = None) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        # The time is this process's clock, never a secret: not scanned (it was new text on
        # every line, so the redactor's memo never had it).
        ts = datetime.fromtimestamp(record.created, UTC).isoformat()
        entry: dict[str, Any] = {
            "level": record.levelname.lower(), "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if self._redactor is not None:  # before encoding: JSON escapes would hide a shape
            if not all(type(value) in _PLAIN for value in entry.values()):
                entry = json.loads(json.dumps(entry, default=str))
            entry = self._redactor.tree(entry, _LINE_CHARS)
        line = json.dumps({"ts": ts, **entry}, default=str)
        for secret in self._secrets:  # a last line of defence, e.g. a token inside a URL
            line = line.replace(secret, "[redacted]")
        return line


def configure_logging(level: str, secrets: list[str], redactor: Redactor | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets, redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "docker", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class GunicornJsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with its error and access logs sent through the root logger, so
    every line on stderr is the same JSON. Access lines carry fields, not a format string."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True  # to the root's JSON handler (configure_logging)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.cfg.accesslog:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        self.access_log.info("request", extra={
            "remote": atoms["h"], "method": atoms["m"], "path": atoms["U"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"], "duration_s": float(atoms["L"]), "user_agent": atoms["a"]})

    def refused(self, remote: str, method: str, path: str, status: int, size: int,
                duration_s: float, user_agent: str) -> None:
        """The access line of a request the serve worker answered itself, before any
        thread saw it (serve_worker.py: 401 before the body, 408, 413)."""
        if not self.cfg.accesslog:
            return
        self.access_log.info("request", extra={
            "remote": remote, "method": method, "path": path, "status": status,
            "bytes": size, "duration_s": duration_s, "user_agent": user_agent})
