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


# --- receiver/: the folders are the layers (CONTRIBUTING.md) ------------------------------

RECEIVER = REPO / "receiver"
ROOT_MODULES_ALLOWED = {"__init__.py", "__main__.py", "app.py"}


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _packages() -> list[str]:
    return sorted(p.name for p in RECEIVER.iterdir()
                  if p.is_dir() and (p / "__init__.py").exists())


def test_the_root_of_receiver_holds_only_its_face_and_the_composition_root() -> None:
    modules = {p.name for p in RECEIVER.glob("*.py")}
    assert modules <= ROOT_MODULES_ALLOWED, sorted(modules - ROOT_MODULES_ALLOWED)
    assert len(modules) <= 3


def test_every_folder_of_receiver_says_what_it_is_in_one_line() -> None:
    missing = []
    for package in [RECEIVER, *(RECEIVER / name for name in _packages())]:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        if not doc or len(doc.splitlines()[0]) > 100:
            missing.append(package.relative_to(REPO).as_posix())
    assert missing == []


def test_every_folder_is_in_the_layers_and_the_map() -> None:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    named = {part.strip() for layer in layers for part in layer.split("|")}
    folders = {f"receiver.{name}" for name in _packages()}
    assert folders - named == set(), "add the new folder to [tool.importlinter] layers"
    assert named - folders - {"receiver.app"} == set(), "a layer names no folder"
    guide = (REPO / "CONTRIBUTING.md").read_text()
    assert [name for name in _packages() if f"`{name}/`" not in guide] == []


def test_the_layer_contracts_hold() -> None:
    """The same check `make lint` runs, so `pytest` alone catches an import up the layers."""
    import subprocess
    import sys

    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
