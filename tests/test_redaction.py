"""Redaction against a corpus of secret-shaped lines (tests/redaction_corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from receiver.config.settings import Settings
from receiver.domain.redaction import MASK, Redactor

CORPUS = Path(__file__).with_name("redaction_corpus")


def _lines(name: str) -> list[str]:
    """Each line of a corpus file, with `\\n` standing for a line break."""
    return [line.replace("\\n", "\n") for line in (CORPUS / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("line", _lines("secrets.txt"))
def test_every_secret_shaped_line_loses_its_secret(line: str) -> None:
    secret = line.split("<<S>>", 1)[1].split("<</S>>", 1)[0]
    plain = line.replace("<<S>>", "").replace("<</S>>", "")
    redacted = Redactor().text(plain)
    assert secret not in redacted and MASK in redacted, redacted


@pytest.mark.parametrize("line", _lines("clean.txt"))
def test_lines_without_secrets_are_left_alone(line: str) -> None:
    assert Redactor().text(line) == line


def test_configured_patterns_are_applied_too() -> None:
    redactor = Redactor([r"customer-\d{6}"])
    assert redactor.text("order for customer-123456 shipped") == f"order for {MASK} shipped"
    assert redactor.tree({"log": ["id customer-654321"], "n": 3}) == {
        "log": [f"id {MASK}"], "n": 3}


def test_a_kept_group_keeps_the_key() -> None:
    assert Redactor().text("password=abc12345") == f"password={MASK}"


def test_a_bad_pattern_is_a_clear_settings_error() -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        Settings(redact_patterns='["ok", "(unclosed"]')
    assert Settings(redact_patterns="a{1,2}b\n c").redact_patterns == ["a{1,2}b", "c"]


def test_step_params_mask_the_values_of_keys_that_name_a_secret() -> None:
    params = {"url": "http://api/x", "headers": {"Authorization": "Bearer abcdefghij",
                                                 "X-Api-Key": "k1", "Accept": "json"},
              "body": {"password": "p", "group_key": "g"}}
    assert Redactor().params(params) == {
        "url": "http://api/x", "headers": {"Authorization": MASK, "X-Api-Key": MASK,
                                           "Accept": "json"},
        "body": {"password": MASK, "group_key": MASK}}
    assert Redactor().tree({"group_key": "g"}) == {"group_key": "g"}  # not parameters


def test_a_url_query_is_redacted_decoded() -> None:
    url = "http://prom/graph?g0.expr=up%7Bpassword%3D%22s3cr3t-v%22%7D&g0.tab=1"
    shown = Redactor().url(url)
    assert "s3cr3t-v" not in shown and "g0.tab=1" in shown
