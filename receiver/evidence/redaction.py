"""Redaction: every piece of evidence passes through here before it is stored or sent.

Container logs and health-check outputs routinely carry credentials (a connection string
logged at start, an `Authorization:` header in a debug line). The default patterns cover
the common shapes; AUTOFIX_REDACT_PATTERNS adds a site's own (validated at startup).
A pattern with a group named `keep` keeps that part (e.g. `password=`) and masks the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_PATTERNS", "MASK", "Redactor", "compile_patterns"]

MASK = "[redacted]"

DEFAULT_PATTERNS: tuple[str, ...] = (
    # PEM private keys, the whole block (or its start when the log cut the end off).
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.|\n)*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    # Authorization headers and bare bearer/basic tokens.
    r"(?i)(?P<keep>\b(?:bearer|basic)\s+)[A-Za-z0-9\-._~+/=]{8,}",
    # key=value / key: value pairs whose key names a secret.
    r"(?i)(?P<keep>\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credentials?)[\w.-]*[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]+",
    # AWS access key ids and secret keys named as such.
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
    r"(?i)(?P<keep>aws.{0,20}?['\"]?\s*[:=]?\s*['\"]?)[A-Za-z0-9/+=]{40}\b",
    # URLs with userinfo: scheme://user:password@host keeps the scheme and host.
    r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@:]*(?::[^\s/@]*)?(?=@)",
    # Slack and GitHub tokens, JSON web tokens.
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
)


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Compile each pattern; ValueError names the first bad one and why."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {pattern!r}: {exc}") from None
    return compiled


class Redactor:
    """Masks every match of the default and the configured patterns."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        self._patterns = compile_patterns((*DEFAULT_PATTERNS, *extra_patterns))

    def text(self, value: str) -> str:
        for pattern in self._patterns:
            value = pattern.sub(self._replacement, value)
        return value

    def tree(self, value: Any) -> Any:
        """The same structure with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.tree(k): self.tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(item) for item in value]
        return value

    @staticmethod
    def _replacement(match: re.Match[str]) -> str:
        keep = match.groupdict().get("keep")
        return f"{keep}{MASK}" if keep else MASK
