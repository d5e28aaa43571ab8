"""Our redactor against Yelp's detect-secrets (a dev dependency): for every regex of every
regex-based plugin, hypothesis draws strings the regex matches, and whatever the plugin
finds in a log line holding one must be gone once the line is redacted.

Why test against it instead of running its plugins in the receiver: they scan with
per-plugin Python filters (over the evidence budget), report rather than mask, and its
high-entropy family would mask container ids and digests. Its private-key plugin only
looks for the header text, so private keys are checked by the corpus (whole blocks) and
IP addresses are not secrets here.
"""

from __future__ import annotations

import inspect
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.domain.redaction import MASK, Redactor

plugins = pytest.importorskip("detect_secrets.plugins")
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class  # noqa: E402
from detect_secrets.plugins.base import RegexBasedDetector  # noqa: E402

_NOT_OURS = {"IPPublicDetector", "PrivateKeyDetector"}
_DETECTORS = sorted(
    (cls for cls in get_mapping_from_secret_type_to_class().values()
     if inspect.isclass(cls) and issubclass(cls, RegexBasedDetector)
     and cls.__name__ not in _NOT_OURS), key=lambda cls: cls.__name__)
_CASES = [(cls, regex) for cls in _DETECTORS for regex in cls().denylist]
_PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
REDACTOR = Redactor()


@pytest.mark.parametrize(("detector", "regex"), _CASES,
                         ids=[f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(_CASES)])
@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_what_detect_secrets_finds_is_redacted(detector: type[RegexBasedDetector],
                                               regex: re.Pattern[str], data: st.DataObject) -> None:
    example = data.draw(st.from_regex(regex, fullmatch=True, alphabet=_PRINTABLE))
    line = f"2026-12-06 worker: {example}\n"
    found = [secret for secret in detector().analyze_string(line)
             if len(secret) >= 6 and secret not in MASK]
    redacted = REDACTOR.text(line)
    for secret in found:
        assert secret not in redacted, (example, redacted)
