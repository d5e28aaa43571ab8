"""A small client of the receiver's HTTP API, for the operator commands (ops_cli.py).

Standard library only. Every failure is one ApiClientError whose message is a single line
an operator can act on: connection refused, a TLS problem, 401/403 with the token to
check, or the API's own `message`."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_URL", "ApiClient", "ApiClientError", "resolve_token"]

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiClientError(Exception):
    """One line for the operator; `status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def resolve_token(token: str | None, token_file: str | None) -> str | None:
    """--token, else --token-file, else AUTOFIX_API_TOKEN, else AUTOFIX_API_TOKEN_FILE."""
    if token:
        return token
    path = token_file or (None if os.environ.get("AUTOFIX_API_TOKEN")
                          else os.environ.get("AUTOFIX_API_TOKEN_FILE"))
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise ApiClientError(f"cannot read the token file {path}: {exc.strerror}") from exc
    return os.environ.get("AUTOFIX_API_TOKEN") or None


class ApiClient:
    def __init__(self, url: str, token: str | None, cacert: str | None = None,
                 timeout_s: float = 10.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ApiClientError(f"--url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._context = ssl.create_default_context(cafile=cacert) if cacert else None

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._call("GET", f"{path}{suffix}", None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # The scheme is http or https (checked in __init__).
        request = urllib.request.Request(f"{self.url}{path}", data=data,  # noqa: S310
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s,  # noqa: S310
                                        context=self._context) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise ApiClientError(self._describe_status(error), error.code) from None
        except urllib.error.URLError as error:
            reason = error.reason
            text = getattr(reason, "strerror", None) or str(reason)
            raise ApiClientError(f"cannot reach {self.url}: {text}") from None
        except (TimeoutError, OSError) as error:
            raise ApiClientError(f"cannot reach {self.url}: {error}") from None
        except ValueError as error:
            raise ApiClientError(f"{self.url}{path} did not answer JSON: {error}") from None

    def _describe_status(self, error: urllib.error.HTTPError) -> str:
        try:
            message = str(json.loads(error.read()).get("message", ""))
        except (ValueError, AttributeError, OSError):
            message = ""
        status = f"HTTP {error.code}"
        if error.code == 401:
            hint = ("no token: pass --token, --token-file or set AUTOFIX_API_TOKEN"
                    if not self._token else "the token was refused: check --token, "
                    "--token-file or AUTOFIX_API_TOKEN")
            return f"{status} from {self.url}: {hint}"
        if error.code == 403:
            return f"{status} from {self.url}: {message or 'forbidden'} (the operator " \
                   "token, AUTOFIX_API_TOKEN, is needed for changes)"
        return f"{status} from {self.url}: {message or error.reason}"
