"""bench/render.py publishes only results that say where they come from (#29): every file
names its commit, date and command, none was measured on a dirty tree, all on one commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import render


def write(results: Path, name: str, **meta: str) -> None:
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps({"name": name, "meta": meta}))


GOOD = {"autofix_git": "abc1234", "date": "2026-12-06T20:00:00+00:00",
        "command": ".venv/bin/python -m bench.run"}


def test_results_from_one_clean_commit_with_their_command_pass(tmp_path: Path) -> None:
    write(tmp_path, "webhook_ack", **GOOD)
    write(tmp_path, "storm", **GOOD)
    assert render.provenance_problems(tmp_path) == []


@pytest.mark.parametrize("key", ["autofix_git", "date", "command"])
def test_a_file_without_its_commit_date_or_command_is_refused(tmp_path: Path,
                                                              key: str) -> None:
    write(tmp_path, "storm", **{k: v for k, v in GOOD.items() if k != key})
    [problem] = render.provenance_problems(tmp_path)
    assert "storm.json" in problem and key in problem


def test_a_file_without_any_meta_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("ttr.json").write_text(json.dumps({"name": "ttr"}))
    assert render.provenance_problems(tmp_path) == [
        "ttr.json lacks autofix_git, date, command in its meta"]


def test_a_dirty_tree_and_mixed_commits_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "webhook_ack", **GOOD)
    write(tmp_path, "hang_ttr", **{**GOOD, "autofix_git": "def5678-dirty"})
    problems = render.provenance_problems(tmp_path)
    assert any("uncommitted" in p and "hang_ttr.json" in p for p in problems), problems
    assert any("mix commits" in p and "abc1234" in p and "def5678" in p for p in problems)


def test_render_refuses_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    write(tmp_path, "storm", **GOOD)
    write(tmp_path, "ttr", **{**GOOD, "autofix_git": "0000000"})
    out = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(render, "RESULTS", tmp_path)
    monkeypatch.setattr(render, "OUT", out)
    with pytest.raises(render.RenderRefused, match="mix commits"):
        render.render()
    assert not out.exists()
