"""The README's configuration and action reference are generated from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from receiver.ops.reference import SECTIONS, refresh

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_reference_sections_match_the_code() -> None:
    text = README.read_text()
    for name in SECTIONS:
        assert f"<!-- reference:{name} -->" in text, f"README lacks the {name} reference"
    assert refresh(text) == text, "README is out of date: run `autofix docs --write`"


def test_every_setting_and_action_is_documented() -> None:
    from receiver.actions.builtin import build_registry
    from receiver.config.settings import Settings

    text = README.read_text()
    for name in Settings.model_fields:
        assert f"`AUTOFIX_{name.upper()}`" in text
    for spec in build_registry().specs():
        assert f"#### `{spec.name}`" in text


def test_docs_command_checks() -> None:
    done = subprocess.run([sys.executable, "-m", "receiver.ops.cli", "docs"], capture_output=True,
                          text=True, cwd=README.parent, timeout=60)
    assert done.returncode == 0, done.stderr


def _decision_order_table() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Guards: the decision order", 1)[1].split("\n### ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("| "))


def test_the_decision_order_names_every_reason_a_guard_can_stop_a_run_with() -> None:
    """Every skip reason in the code (a GuardStop, an operator-intent rule, the blast
    radius, the preconditions) has its row in the README's decision order (#30)."""
    from receiver.engine.preconditions import PRECONDITION_FAILED
    from receiver.intent.decide import TABLE
    from receiver.telemetry.metrics import SKIP_REASONS_SHOWN

    code = "\n".join(path.read_text() for path in (ROOT / "receiver").rglob("*.py"))
    reasons = set(re.findall(r'GuardStop\(\s*"([a-z_]+)"', code))
    reasons |= set(re.findall(r'Exceeded\(\s*"([a-z_]+)"', code))
    reasons |= {rule.reason for rule in TABLE if rule.reason}
    reasons |= set(SKIP_REASONS_SHOWN) | {PRECONDITION_FAILED}
    assert {"maintenance", "host_storm", "budget_exhausted", "paused"} <= reasons
    table = _decision_order_table()
    assert not [r for r in sorted(reasons) if f"`{r}`" not in table]


def test_the_decision_order_lists_the_guards_in_the_issue_s_order() -> None:
    table = _decision_order_table().lower()
    guards = ["kill switch", "maintenance window", "**target**", "operator intent",
              "cooldown", "circuit breaker", "action budgets", "host storm",
              "preconditions", "approval"]
    positions = [table.index(g) for g in guards]
    assert positions == sorted(positions)
