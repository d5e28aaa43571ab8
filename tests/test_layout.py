"""Test code layout: helpers shared between test modules live in tests/harness/ (or in
conftest fixtures), never in a test module another one imports."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # `from .test_x import y` or `from . import test_x`
                found += [(node.lineno, f"tests.{module}" if module else f"tests.{alias.name}")
                          for alias in node.names]
            else:
                found.append((node.lineno, module))
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_no_file_under_tests_or_bench_imports_a_test_module() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for folder in ("tests", "bench") for path in sorted((REPO / folder).rglob("*.py"))
        for line, module in _imported_modules(ast.parse(path.read_text(), str(path)))
        if module.startswith("tests.test_")
    ]
    assert offenders == [], "move shared helpers to tests/harness/:\n" + "\n".join(offenders)


def test_the_check_sees_every_form_of_import() -> None:
    forms = ["from tests.test_x import y", "import tests.test_x as x", "from tests import test_x",
             "from .test_x import y"]
    for source in forms:
        assert any(m.startswith("tests.test_") for _, m in _imported_modules(ast.parse(source))), \
            source
