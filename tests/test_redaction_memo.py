"""The redactor's memo of short texts and the log formatter's shortcuts change no output."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.domain.redaction import MASK, TRUNCATED, Redactor
from receiver.telemetry.logs import JsonFormatter

CORPUS = Path(__file__).with_name("redaction_corpus")


def _corpus() -> list[str]:
    lines = []
    for name in ("secrets.txt", "clean.txt"):
        for line in (CORPUS / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                lines.append(line.replace("\\n", "\n").replace("<<S>>", "")
                             .replace("<</S>>", ""))
    return lines


def test_a_remembered_text_is_redacted_as_a_first_one() -> None:
    remembering, fresh = Redactor(), Redactor()
    lines = _corpus()
    first = [remembering.text(line) for line in lines]
    again = [remembering.text(line) for line in lines]
    assert first == again == [fresh._redact(line) for line in lines]


@pytest.mark.parametrize("size", [255, 256, 257, 300])
def test_around_the_memo_length_and_the_limit(size: int) -> None:
    secret = "password=" + "s" * (size - len("password="))
    redactor = Redactor()
    for _ in range(2):
        assert redactor.text(secret) == f"password={MASK}"
        # Over the caller's limit: cut first, never the memo's uncut answer.
        assert redactor.text(secret, limit=20) == f"password={MASK}"
        assert redactor.text("x" * size, limit=200) == "x" * 200 + TRUNCATED


def test_each_redactor_remembers_with_its_own_patterns() -> None:
    plain, configured = Redactor(), Redactor([r"customer-\d{6}"])
    assert plain.text("customer-123456") == "customer-123456"
    assert configured.text("customer-123456") == MASK
    assert plain.text("customer-123456") == "customer-123456"


def _line(formatter: JsonFormatter, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("autofix.webhook", logging.INFO, __file__, 1,
                               "notification recorded", (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(formatter.format(record))  # type: ignore[no-any-return]


def test_log_lines_are_redacted_whatever_their_values() -> None:
    formatter = JsonFormatter([], Redactor())
    plain = _line(formatter, group_key="{}:{password=hunter22}", alerts=1, db_ms=2.5,
                  ok=True, none=None)
    assert list(plain) == ["ts", "level", "logger", "event", "group_key", "alerts", "db_ms",
                           "ok", "none"]
    assert datetime.fromisoformat(str(plain["ts"])).tzinfo is not None
    assert plain["group_key"] == Redactor().text("{}:{password=hunter22}")
    assert "hunter22" not in str(plain["group_key"])
    assert (plain["alerts"], plain["db_ms"], plain["ok"], plain["none"]) == (1, 2.5, True, None)
    # Values JSON has no type for are turned into JSON first, then redacted.
    when = datetime(2026, 12, 7, tzinfo=UTC)
    other = _line(formatter, headers={"X": "password=hunter22"}, ids=(1, 2), when=when)
    assert other["headers"] == {"X": f"password={MASK}"}
    assert other["ids"] == [1, 2] and other["when"] == str(when)
    # A secret-shaped key is masked like any text, twice alike (the memo).
    for _ in range(2):
        assert f"password={MASK}" in _line(formatter, **{"password=hunter22": 1})
