"""Alertmanager-style label matchers: name="v", name!="v", name=~"re", name!~"re".

As in Alertmanager, regexes are anchored at both ends and a missing label equals "".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Matcher", "parse_matcher"]

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    # A bare value may not contain = ! ~ either: `severity==critical` is a typo for `=`, not
    # a match on the value "=critical".
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^"\s,{}=!~]*))\s*$"""
)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        # parse_matcher compiles every regex matcher; a bare Matcher(=~) compiles here.
        regex = self._regex or re.compile(self.value)
        found = regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = (self.value.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n"))
        return f'{self.name}{self.op}"{escaped}"'


def _unquote(quoted: str) -> str:
    r"""Alertmanager's unescaping: `\\`, `\"` and `\n` only; any other backslash stays, so
    `shop-\d+` keeps its `\d` (dropping it would make a window match less than written)."""
    return re.sub(r'\\(.)', lambda m: {"n": "\n", '"': '"', "\\": "\\"}.get(
        m.group(1), m.group(0)), quoted, flags=re.S)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; ValueError says what is wrong with it."""
    found = _MATCHER.match(text)
    if found is None:
        if re.match(r"^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*==", text):
            raise ValueError(f"not a matcher: {text!r}: equality is a single = "
                             "(alertname=\"TargetDown\")")
        raise ValueError(f"not a matcher: {text!r} (expected e.g. alertname=\"TargetDown\" "
                         "with one of = != =~ !~)")
    quoted = found.group("quoted")
    value = _unquote(quoted) if quoted is not None else found.group("bare") or ""
    op: Op = found.group("op")  # type: ignore[assignment]
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex in {text!r}: {exc}") from exc
    return Matcher(found.group("name"), op, value, regex)
