"""Redaction: everything that leaves the process (evidence, action errors, API answers,
Slack text, log lines) passes through the one Redactor, built once by `autofix serve`
(shared by its log formatter and create_app) or by create_app, never a module global.

Container logs and health-check outputs routinely carry credentials (a connection string
logged at start, an `Authorization:` header in a debug line). The default shapes cover the
common ones and the families of Yelp's detect-secrets (tests/test_redaction_detect_secrets.py
checks ours against its plugins; we do not run its plugins here: they scan line by line with
per-plugin Python filters, far over our time budget, and report rather than mask).
Its high-entropy-string family is left out on purpose: it would mask container ids, digests
and hashes, which are the evidence an operator needs.
AUTOFIX_REDACT_PATTERNS adds a site's own (validated at startup). A pattern with a group
named `keep` keeps that part (e.g. `password=`) and masks the rest of the match; one with a
group named `secret` masks from that group's start to the end of the match.

Cost is linear in the length of the text (tests/test_redaction_cost.py): a pattern may only
scan far when it starts at the beginning of a run of what it scans (a look-behind rules out
every later start), otherwise its scan is bounded by a small constant; the URL userinfo rule,
which must find the last `@` of a run, is plain code that never rescans. Callers cap every
field with `text(value, limit)` before it is redacted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["DEFAULT_PATTERNS", "MASK", "TRUNCATED", "Redactor", "compile_patterns",
           "url_userinfo_spans"]

MASK = "[redacted]"
TRUNCATED = "…[truncated]"
DEFAULT_LIMIT = 64 * 1024  # chars of any one field when the caller names no cap
# Texts this short are redacted once per Redactor and remembered: a log line's keys, level,
# logger and message recur on every line (scanning them was most of a webhook log line).
_REMEMBERED_CHARS = 256
_REMEMBERED = 4096

_TOKEN_CHARS = "[A-Za-z0-9_-]"  # noqa: S105 (a character class, not a password)


def _token(prefixes: Iterable[str], body: str, before: str = _TOKEN_CHARS) -> str:
    """Literal prefixes, then `body`; a prefix counts only at the start of a run of token
    characters (the look-behinds come after the literal, so the regex engine can skip
    ahead to the literal, and a run of repeated prefixes is scanned once)."""
    escaped = [re.escape(prefix) for prefix in prefixes]
    boundaries = "".join(f"(?<!{before}{prefix})" for prefix in escaped)
    return f"(?:{'|'.join(escaped)}){boundaries}{body}"


# Keys that name a secret. Long names may sit anywhere in a key (DB_PASSWORD, client_secret);
# short ones only as a word of their own (DB_PASS, REDIS_AUTH, STRIPE_KEY, but not "passed").
_LONG_KEYS = ("password", "passwd", "passphrase", "pwd", "secret", "token", "credential",
              *(f"{name}[_-]?key" for name in (
                  "api", "access", "private", "account", "auth", "client", "service", "db",
                  "database", "encryption", "signing", "master")),
              "db[_-]?pass", "database[_-]?pass", "key[_-]?pass", "contrasena",
              # cloud providers' key names, as detect-secrets knows them (clkey, sl_apikey)
              *(rf"{provider}[_-]?(?:api)?[_-]?(?:key|pwd|pw|pass|token)" for provider in (
                  "cloudant", "clou", "cl", "softlayer", "sl", "ibm", "iam", "cloud", "cos",
                  "hmac")))
_SHORT = ("pass", "pw", "auth", "key", "sas", "sig")


def _by_first_letter(branches: list[str]) -> str:
    """`(?:a(?:pi…|ccess…)|p(?:assword…|wd…)…)`: literal-led branches grouped by their first
    letter, so the engine skips ahead to a candidate and tries few branches there."""
    groups: dict[str, list[str]] = {}
    for branch in branches:
        groups.setdefault(branch[0], []).append(branch[1:])
    return "(?:" + "|".join(f"{first}(?:{'|'.join(rests)})"
                            for first, rests in groups.items()) + ")"


_KEY = _by_first_letter([rf"{name}[\w.-]{{0,32}}+" for name in _LONG_KEYS]
                        + [rf"{word}(?<![a-z0-9]{word})(?![a-z0-9])" for word in _SHORT])
# A value: quoted (spaces allowed), or an unquoted run; an unterminated quote masks the run.
_VALUE = r"(?:\"[^\"\r\n]{0,256}\"|'[^'\r\n]{0,256}'|[\"']?[^\s\"'&,;]+)"
# The timestamp Docker puts before each line of a log tail (lowercased: a `t` and a `z`).
_LOG_TIME = r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}t[0-9:.]{8,20}(?:z|[+-][0-9:]{5}) )"
_HEADER_VALUE = r"[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?)[^\r\n\"']+"

# Written in lower case: they run on an ASCII-lowercased copy (same length, same offsets).
_CASELESS: dict[str, str] = {
    # An Authorization header masks its whole value, whatever the scheme (Bearer, Basic,
    # Token, ApiKey, Digest …); cookies likewise.
    "authorization": r"(?P<keep>authorization" + _HEADER_VALUE,
    "cookie": r"(?P<keep>cookie(?<![a-z0-9_]cookie)" + _HEADER_VALUE,
    "bare_bearer": r"(?P<keep>(?:bearer|basic)(?<![a-z0-9_]bearer)(?<![a-z0-9_]basic)[ \t]+)"
                   r"[a-z0-9\-._~+/=]{8,}",
    "digest": r"(?P<keep>digest(?<![a-z0-9_]digest)[ \t]+)(?=[a-z]+=)[^\r\n]+",
    # key=value, key: value, "key": "value", key => value, key := value and YAML's value
    # on the next line, when the key names a secret.
    "keyword": rf"(?P<keep>{_KEY}[\"']?\]?[ \t]*+(?:=>|:=|::|==?|:[ \t]*(?:[|>][-+]?)?"
               rf"[ \t]*\r?\n{_LOG_TIME}?[ \t]{{1,64}}|:)[ \t]*+){_VALUE}",
    # Cloud providers' keys may be followed by spaces alone (detect-secrets' Cloudant and
    # SoftLayer plugins): only values of their key shapes then.
    "provider_key": r"(?P<keep>(?:cloudant|clou|cl|softlayer|sl)(?<![a-z0-9]cloudant)"
                    r"(?<![a-z0-9]clou)(?<![a-z0-9]cl)(?<![a-z0-9]softlayer)(?<![a-z0-9]sl)"
                    r"[_-]?(?:api)?[_-]?(?:key|pwd|pw|password|pass|token)"
                    r"[\"'\]]{0,3}[ \t]++[\"']?)"
                    r"[a-z0-9]{24,64}(?![a-z0-9])",
    # Command-line flags: --password x (--password=x is the keyword shape).
    "flag": r"(?P<keep>-(?<![\w-]-)-?(?:password|passwd|pass|passphrase|token|secret"
            r"|api-?key|auth-token|access-key|secret-key)(?![\w-])[ \t]+)" + _VALUE,
    # An AWS secret key named as such.
    "aws_secret": r"(?P<keep>aws(?<![a-z0-9]aws)[\w.-]{0,30}+[^\w\r\n]{1,8}+)"
                  r"[a-z0-9/+=]{40}(?![a-z0-9/+=])",
    "aws_secret_quoted": r"(?P<keep>aws[^\r\n]{0,45}?['\"])[a-z0-9/+]{40}(?=['\"])",
    "softlayer_url": r"(?P<keep>api.softlayer.com/soap/v3(?:.1)?/)[a-z0-9]+",
    # Slack and Discord webhook paths, Slack bot/user/app tokens.
    "webhook_path": r"(?P<keep>hooks\.slack\.com/(?:services|workflows|triggers)/"
                    r"|discord(?:app)?\.com/api/webhooks/)[a-z0-9_/+-]+",
    "slack_token": _token([f"xox{c}" for c in "abposre"] + ["xapp"], r"-[a-z0-9-]{3,}",
                          "[a-z0-9_-]"),
}

_CASED: dict[str, str] = {
    # PEM, OpenSSH and PGP private keys, the whole block (or its start when the log cut the
    # end off); PuTTY key files from their private lines.
    "private_key": r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                   r"(?:-----END[A-Z0-9 ]{0,40}-----|\Z)",
    "putty_key": r"Private-Lines:[\s\S]*?(?:Private-MAC:[ \t]*\S+|\Z)",
    "aws_key_id": _token(["A3T", "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA",
                          "ANPA", "ANVA", "AIPA"], "[A-Z0-9]{16,17}(?![A-Za-z0-9])"),
    # Code hosts and registries.
    "github": _token([f"gh{c}_" for c in "pousr"] + ["github_pat_"], "[A-Za-z0-9_]{22,}"),
    "gitlab": _token(["glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "glcbt-", "glimt-",
                      "glptt-", "glagent-", "gloas-", "GR1348941"], "[A-Za-z0-9_-]{20,}"),
    "npm": _token(["npm_"], "[A-Za-z0-9]{30,}"),
    "pypi": _token(["pypi-AgE"], "[A-Za-z0-9_-]{50,}"),
    "artifactory": _token(["AKC"], "[a-zA-Z0-9]{10,}(?![A-Za-z0-9])", "[A-Za-z0-9]")
                   + "|" + _token([f"AP{c}" for c in "0123456789ABCDEF"],
                                  "[a-zA-Z0-9]{8,}(?![A-Za-z0-9])", "[A-Za-z0-9]"),
    # Payment, mail, chat and AI providers.
    "stripe": _token([f"{k}k_{mode}_" for k in "rsp" for mode in ("live", "test")],
                     "[A-Za-z0-9]{10,}"),
    "google_api": _token(["AIza"], "[0-9A-Za-z_-]{30,}"),
    "sendgrid": _token(["SG."], r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    "square": _token(["sq0csp-", "sq0atp-", "EAAA"], r"[0-9A-Za-z\\_-]{22,}"),
    "twilio": _token(["AC", "SK"], "[a-z0-9]{32}(?![a-z0-9])", "[A-Za-z0-9]"),
    "openai": _token(["sk-"], "[A-Za-z0-9_-]{20,}"),
    "jwt": _token(["eyJ"], r"[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_.+/=-]*)?"),
    # Secrets whose fixed part is in the middle: the `secret` group, inside a look-behind,
    # widens the mask backwards.
    "mailchimp": r"-us(?<=(?P<secret>[0-9a-z]{32})-us)[0-9]{1,2}(?![0-9])",
    "telegram": r":(?<=(?P<secret>[0-9]{8}):)[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])",
    "discord_bot": r"\.(?<=(?P<secret>[a-zA-Z0-9_-]{23})\.)[a-zA-Z0-9_-]{6}"
                   r"\.[a-zA-Z0-9_-]{27}",
}

DEFAULT_PATTERNS: dict[str, str] = {**_CASELESS, **_CASED}

# A dict key naming a secret: its value is masked whatever it looks like (http step headers).
_SECRET_KEY = re.compile(rf"{_KEY}|authorization|cookie")
_RUN_END = re.compile(r"\s")
_USERINFO_SCAN = 1024  # how far after `scheme://` the last `@` of a userinfo may be

Span = tuple[int, int]


def compile_patterns(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Compile each pattern; ValueError names the first bad one and why."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {pattern!r}: {exc}") from None
    return compiled


def url_userinfo_spans(text: str) -> list[Span]:
    """scheme://user:pass@host masks user:pass; the password may hold `/`, `@` or `#`
    unencoded (the last `@` of the run ends it). Each run is scanned once."""
    spans: list[Span] = []
    position = 0
    while (separator := text.find("://", position)) >= 0:
        start = separator + 3
        end_match = _RUN_END.search(text, start)
        end = end_match.start() if end_match else len(text)
        at = text.rfind("@", start, min(end, start + _USERINFO_SCAN))
        if at > start and ":" in text[start:at]:
            spans.append((start, at))
        position = max(end, start)
    return spans


def _spans(pattern: re.Pattern[str], text: str) -> list[Span]:
    """What each match masks: after the `keep` group, from the `secret` group, or all."""
    if "keep" in pattern.groupindex:
        return [(match.end("keep") if match.start("keep") >= 0 else match.start(), match.end())
                for match in pattern.finditer(text)]
    if "secret" in pattern.groupindex:
        return [(match.start("secret") if match.start("secret") >= 0 else match.start(),
                 match.end()) for match in pattern.finditer(text)]
    return [match.span() for match in pattern.finditer(text)]


def _ascii_lower(text: str) -> str:
    """Lower case with every offset kept (str.lower may change the length of non-ASCII)."""
    if text.isascii():
        return text.lower()
    return text.encode("ascii", "replace").decode("ascii").lower()


def _masked(text: str, spans: list[Span]) -> str:
    """`text` with each span (merged where they touch or overlap) replaced by MASK."""
    out: list[str] = []
    position = 0
    for start, end in sorted(spans):
        if out and start <= position:  # overlaps the mask just written: widen it
            position = max(position, end)
            continue
        out.extend((text[position:start], MASK))
        position = end
    out.append(text[position:])
    return "".join(out)


class Redactor:
    """Masks every match of the default and the configured patterns."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        # One pattern per shape: each starts with a literal the engine skips ahead to
        # (measured: one alternation of every shape is two to three times slower).
        self._caseless = compile_patterns(_CASELESS.values())
        self._cased = compile_patterns((*_CASED.values(), *extra_patterns))
        # Per instance (its patterns), bounded, thread-safe: same text in, same text out.
        self._remembered = functools.lru_cache(maxsize=_REMEMBERED)(self._redact)

    def text(self, value: str, limit: int = DEFAULT_LIMIT) -> str:
        """`value` cut to `limit` characters (its start kept), then redacted."""
        if len(value) <= _REMEMBERED_CHARS and len(value) <= limit:
            return self._remembered(value)
        if len(value) > limit:
            value = value[:limit] + TRUNCATED
        return self._redact(value)

    def _redact(self, value: str) -> str:
        spans = url_userinfo_spans(value)
        lowered = _ascii_lower(value)
        for pattern in self._caseless:
            spans.extend(_spans(pattern, lowered))
        for pattern in self._cased:
            spans.extend(_spans(pattern, value))
        return _masked(value, spans) if spans else value

    def url(self, value: str, limit: int = DEFAULT_LIMIT) -> str:
        """A URL whose query values are redacted decoded (a generatorURL's `g0.expr` holds
        the rule's expression percent-encoded), then the whole as text."""
        value = value[:limit]
        try:
            parts = urlsplit(value)
            pairs = parse_qsl(parts.query, keep_blank_values=True)
        except ValueError:
            return self.text(value, limit)
        redacted = [(key, self.text(item, limit)) for key, item in pairs]
        if redacted != pairs:
            value = urlunsplit(parts._replace(query=urlencode(redacted)))
        return self.text(value, limit + len(TRUNCATED))

    def tail(self, value: str, limit: int) -> str:
        """`value` cut to its last `limit` characters (for logs and outputs), then redacted."""
        if len(value) > limit:
            value = TRUNCATED + value[-limit:]
        return self.text(value, limit + len(TRUNCATED))

    def tree(self, value: Any, limit: int = DEFAULT_LIMIT) -> Any:
        """The same structure with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value, limit)
        if isinstance(value, dict):
            return {self.tree(k, limit): self.tree(v, limit) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(item, limit) for item in value]
        return value

    def params(self, value: Any, limit: int = DEFAULT_LIMIT) -> Any:
        """A step's parameters: as `tree`, and the value of every key that names a secret
        (an http step's `Authorization` or `X-Api-Key` header, a `password`) masked whole.
        Only for parameters: elsewhere a key like `group_key` names no secret."""
        if isinstance(value, dict):
            return {self.tree(k, limit): (MASK if self._names_secret(k) and v not in (None, "")
                                          and not isinstance(v, dict | list | bool)
                                          else self.params(v, limit))
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.params(item, limit) for item in value]
        return self.tree(value, limit)

    @staticmethod
    def _names_secret(key: Any) -> bool:
        return (isinstance(key, str) and len(key) <= 128
                and _SECRET_KEY.search(_ascii_lower(key)) is not None)
