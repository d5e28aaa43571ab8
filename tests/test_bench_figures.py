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


# Numbers in the section that are settings, not measurements, and why.
NOT_MEASURED = {"0.8": "the CPU spike rule's threshold (0.8 cores)"}


def table_rows_with(text: str, figure: str) -> list[str]:
    """BENCHMARKS.md table rows holding `figure` as a whole number: not "1.05" inside
    "11.05" or "1.050", and not a coincidence in prose."""
    number = re.compile(rf"(?<![\d.,]){re.escape(figure)}(?!\d|[.,]\d)")
    return [line for line in text.splitlines()
            if line.lstrip().startswith("|") and number.search(line)]


def test_every_figure_the_readme_quotes_is_in_a_benchmarks_md_table_row() -> None:
    benchmarks = (ROOT / "BENCHMARKS.md").read_text()
    # Figures with a decimal point or a thousands separator: counts like "5 runs" are prose.
    figures = set(re.findall(r"\d[\d,]*\.\d+", measured_section()))
    assert set(NOT_MEASURED) <= figures, "NOT_MEASURED lists a figure the README dropped"
    missing = sorted(f for f in figures - set(NOT_MEASURED)
                     if not table_rows_with(benchmarks, f))
    assert not missing, f"README figures in no BENCHMARKS.md table row: {missing}"


def test_a_figure_matches_only_a_whole_number_in_a_table_row() -> None:
    text = "| a | 11.05 s |\n| b | 1.050 |\nprose with 1.05 s\n| c | 1.05 s | PASS |\n"
    assert table_rows_with(text, "1.05") == ["| c | 1.05 s | PASS |"]
    assert table_rows_with("| x | 1,050.7 /s |", "1,050.7") and \
        not table_rows_with("| x | 21,050.7 /s |", "1,050.7")
