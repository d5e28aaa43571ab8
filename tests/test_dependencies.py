"""Dependencies that cannot move under us (issue #29): every package the receiver imports is
declared, and every declared one is pinned in the constraints file CI installs from."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Import name → distribution name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml", "docker": "docker", "psycopg2": "psycopg2-binary",
                 "prometheus_client": "prometheus-client", "slack_sdk": "slack-sdk",
                 "pydantic_settings": "pydantic-settings"}


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert found, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _declared() -> set[str]:
    project = _project()
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def test_every_declared_dependency_is_pinned_in_the_constraints_file() -> None:
    pinned = {_name(line) for line in (REPO / ".ci/constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert _declared() - pinned == set()


def test_every_third_party_import_of_the_receiver_is_declared() -> None:
    runtime = {_name(r) for r in _project()["dependencies"]}
    imported: set[str] = set()
    for path in (REPO / "receiver").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported
                   if name not in sys.stdlib_module_names and name not in ("receiver",)}
    missing = {name for name in third_party
               if _name(DISTRIBUTIONS.get(name, name)) not in runtime}
    assert missing == set(), f"imported by receiver/ but not declared: {sorted(missing)}"
