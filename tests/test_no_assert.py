"""No control flow by `assert` in receiver/ (#29): `python -O` strips asserts, and a guard
or a check that vanishes under -O would let a run act on what it should have refused."""

from __future__ import annotations

import ast
from pathlib import Path

RECEIVER = Path(__file__).resolve().parents[1] / "receiver"


def test_receiver_has_no_assert_statement() -> None:
    found = [f"{path.relative_to(RECEIVER.parent)}:{node.lineno}"
             for path in sorted(RECEIVER.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Assert)]
    assert not found, f"assert in receiver/ (raise or handle instead): {found}"
