"""The redactor's cost is linear: a 100 KB worst-case line (repeated prefixes and near
misses of every shape) stays under a fixed time per KB. The bound here is loose (shared,
noisy CI machines); bench/redaction_cost.py holds the strict 50 ms figure. The quadratic
patterns of issue #26 took seconds on 12 KB."""

from __future__ import annotations

import time

from receiver.domain.redaction import Redactor
from tests.redaction_worst import worst_case_inputs

SIZE = 100_000
MS_PER_KB = 5.0  # 500 ms for 100 KB: ten times the strict figure, far below quadratic


def _fastest_ms(redactor: Redactor, text: str, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        redactor.text(text, limit=len(text))
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def test_every_worst_case_input_stays_under_a_fixed_time_per_kb() -> None:
    redactor = Redactor()
    bound_ms = MS_PER_KB * SIZE / 1000
    slow = {what: ms for what, text in worst_case_inputs(SIZE)  # a slow one gets a second try
            if _fastest_ms(redactor, text) > bound_ms
            and (ms := _fastest_ms(redactor, text, 2)) > bound_ms}
    assert not slow, slow


def test_cost_grows_linearly_with_length() -> None:
    """Four times the text costs about four times the time, not sixteen."""
    redactor = Redactor()
    line = "a." * (SIZE // 2)
    short, long = _fastest_ms(redactor, line[: SIZE // 4], 3), _fastest_ms(redactor, line, 3)
    assert long < max(12 * short, 20.0), (short, long)


def test_fields_are_cut_to_their_cap_before_redaction() -> None:
    redactor = Redactor()
    text = redactor.text("password=x " + "a" * 10_000, limit=100)
    assert len(text) < 130 and "password=[redacted]" in text and text.endswith("[truncated]")
    assert redactor.tail("a" * 10_000 + " token=abc", 50).endswith("token=[redacted]")
