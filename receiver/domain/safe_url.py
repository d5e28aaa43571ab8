"""The `http` action's URLs: one strict parser decides, and the request is rebuilt from it.

`urlsplit` and the HTTP client disagree about odd URLs (urllib3 ends the host at a
backslash, `urlsplit` does not), so checking one parser's idea of the host and handing the
original string to the other let `http://127.0.0.1:PORT\\@allowed.invalid/` through. Here
the URL must be in one canonical form that every parser reads the same way, and the
string sent is rebuilt from the parsed parts:

- only `http`/`https`, no userinfo (`@` in the authority), no backslash, no whitespace
  or control characters, no percent-escapes in the host, no fragment;
- the host is a lower-case DNS name without a trailing dot, a dotted-quad IPv4 address
  with no leading zeros (`127.0.0.1`; not `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`),
  or an IPv6 address in brackets in its compressed form (IPv4-mapped/compatible forms
  and zone ids are refused);
- the port, when given, is decimal without leading zeros, 1-65535.

Allowlist entries (AUTOFIX_HTTP_ALLOWED_HOSTS) are `host` (any port) or `host:port`
(`[v6]:port` for IPv6), written in the same canonical form.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["AllowedHost", "SafeUrl", "UnsafeUrl", "is_allowed", "parse_allowed_host",
           "parse_safe_url"]

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
# Characters allowed in the path and query: RFC 3986 unreserved, sub-delims, ":", "@",
# "/", "?" and percent-escapes. No backslash, space, control character, quote or brace.
_PATH_QUERY = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL = 8192


class UnsafeUrl(ValueError):
    """The URL is not in the one canonical form the http action accepts."""


@dataclass(frozen=True)
class SafeUrl:
    scheme: str
    host: str  # canonical; IPv6 without brackets
    port: int  # effective port (default filled in)
    explicit_port: bool
    path_query: str  # starts with "/"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def url(self) -> str:
        """The string that is sent: rebuilt from the parts that were checked."""
        return f"{self.scheme}://{self.netloc}{self.path_query}"


@dataclass(frozen=True)
class AllowedHost:
    host: str
    port: int | None  # None: any port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def canonical_host(host: str) -> str:
    """The host itself if it is canonical; UnsafeUrl (saying why) otherwise."""
    if not host:
        raise UnsafeUrl("the host is empty")
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if "%" in inner:
            raise UnsafeUrl(f"IPv6 zone ids are not accepted: {host!r}")
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise UnsafeUrl(f"not an IPv6 address: {host!r}") from None
        if address.ipv4_mapped is not None or "." in inner:
            raise UnsafeUrl(f"IPv4-mapped or -compatible IPv6 is not accepted: {host!r}; "
                            "write the IPv4 address")
        if address.compressed != inner:
            raise UnsafeUrl(f"IPv6 address must be written compressed and lower case: "
                            f"{address.compressed!r}, not {inner!r}")
        return inner
    if host != host.lower():
        raise UnsafeUrl(f"the host must be lower case: {host!r}")
    if host.endswith("."):
        raise UnsafeUrl(f"the host must not end with a dot: {host!r}")
    labels = host.split(".")
    if any(_NUMERIC_LABEL.match(label) for label in labels):
        # Looks numeric: only the plain dotted quad is accepted (no 2130706433, 0177.0.0.1,
        # 0x7f.0.0.1, 127.1); ipaddress refuses leading zeros and short forms.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeUrl(f"not a canonical IPv4 address: {host!r} (write a.b.c.d in "
                            "decimal without leading zeros)") from None
        return host
    if not _DNS_NAME.match(host) or len(host) > 253:
        raise UnsafeUrl(f"not a valid host name: {host!r}")
    return host


def _split_host_port(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UnsafeUrl(f"unterminated IPv6 literal: {authority!r}")
        host, rest = authority[:end + 1], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise UnsafeUrl(f"unexpected text after the IPv6 literal: {authority!r}")
        return host, rest[1:] if rest else None
    if authority.count(":") > 1:
        raise UnsafeUrl(f"IPv6 addresses must be in brackets: {authority!r}")
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if not _PORT.match(text) or int(text) > 65535:
        raise UnsafeUrl(f"not a port: {text!r} (decimal 1-65535, no leading zeros)")
    return int(text)


def parse_safe_url(url: str) -> SafeUrl:
    """Parse `url` strictly; UnsafeUrl says what is wrong."""
    if len(url) > _MAX_URL:
        raise UnsafeUrl(f"URL is longer than {_MAX_URL} characters")
    if "\\" in url:
        raise UnsafeUrl("URL must not contain a backslash")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7f for c in url):
        raise UnsafeUrl("URL must not contain whitespace, control or non-ASCII characters")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _DEFAULT_PORTS:
        raise UnsafeUrl(f"not an http(s) URL (lower-case scheme): {url[:100]!r}")
    if "#" in rest:
        raise UnsafeUrl("URL must not contain a fragment")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path_query = rest[:cut], rest[cut:]
    if "@" in authority:
        raise UnsafeUrl("URL must not contain userinfo (user@ or user:password@)")
    if "%" in authority:
        raise UnsafeUrl("the host must not contain percent-escapes")
    host_text, port_text = _split_host_port(authority)
    host = canonical_host(host_text)
    port = _port(port_text)
    if path_query.startswith("?") or not path_query:
        path_query = "/" + path_query
    if not _PATH_QUERY.match(path_query):
        raise UnsafeUrl("the path or query contains characters that must be percent-encoded")
    return SafeUrl(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme],
                   port is not None, path_query)


def parse_allowed_host(entry: str) -> AllowedHost:
    """One AUTOFIX_HTTP_ALLOWED_HOSTS entry: `host` or `host:port` (`[v6]:port`)."""
    text = entry.strip()
    if any(c in text for c in "/@\\%?#") or not text:
        raise UnsafeUrl(f"allowed host {entry!r} must be host or host:port")
    host_text, port_text = _split_host_port(text)
    return AllowedHost(canonical_host(host_text), _port(port_text))


def is_allowed(url: SafeUrl, allowed: list[AllowedHost]) -> bool:
    """Host and port must both match an entry (an entry without a port allows any)."""
    return any(entry.host == url.host and entry.port in (None, url.port) for entry in allowed)
