"""The README quotes only figures that BENCHMARKS.md (generated from bench/results) holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench import render

ROOT = Path(__file__).resolve().parent.parent


def measured_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Measured figures", 1)[1].split("\n## ", 1)[0]


def test_the_readme_ttr_table_is_rendered_from_the_results() -> None:
    ttr = json.loads((ROOT / "bench" / "results" / "ttr.json").read_text())
    assert render.readme_ttr_block(ttr) in measured_section()


def test_every_figure_the_readme_quotes_is_in_benchmarks_md() -> None:
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    # Figures with a decimal point or a thousands separator: counts like "5 runs" are prose.
    figures = set(re.findall(r"\d[\d,]*\.\d+", measured_section()))
    missing = sorted(f for f in figures if f not in benchmarks)
    assert not missing, f"README figures absent from BENCHMARKS.md: {missing}"
