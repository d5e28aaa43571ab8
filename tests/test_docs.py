"""The README's configuration and action reference are generated from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from receiver.reference import SECTIONS, refresh

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_reference_sections_match_the_code() -> None:
    text = README.read_text()
    for name in SECTIONS:
        assert f"<!-- reference:{name} -->" in text, f"README lacks the {name} reference"
    assert refresh(text) == text, "README is out of date: run `autofix docs --write`"


def test_every_setting_and_action_is_documented() -> None:
    from receiver.actions.builtin import build_registry
    from receiver.settings import Settings

    text = README.read_text()
    for name in Settings.model_fields:
        assert f"`AUTOFIX_{name.upper()}`" in text
    for spec in build_registry().specs():
        assert f"#### `{spec.name}`" in text


def test_docs_command_checks() -> None:
    done = subprocess.run([sys.executable, "-m", "receiver.cli", "docs"], capture_output=True,
                          text=True, cwd=README.parent, timeout=60)
    assert done.returncode == 0, done.stderr
