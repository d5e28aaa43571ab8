"""`autofix serve` refuses bad arguments and a wrong AUTOFIX_* environment with one line
each, before it touches the database; `serve --help` shows the defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.ops.env_check import environment_problems, known_variables

REPO = Path(__file__).resolve().parents[1]
TOKENS = {"AUTOFIX_WEBHOOK_TOKEN": "wh-test-token-5b1f", "AUTOFIX_API_TOKEN": "api-test-token-9c2e"}


def autofix(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFIX_")}
    return subprocess.run([sys.executable, "-m", "receiver.ops.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})}, cwd=REPO)


@pytest.mark.parametrize(("args", "line"), [
    (("--workers", "0"), "autofix: serve --workers: must be from 1 to 64, got 0"),
    (("--workers", "two"), "autofix: serve --workers: must be a whole number, got 'two'"),
    (("--bind", "nonsense"), "autofix: serve --bind: must be HOST:PORT (e.g. 127.0.0.1:8080) "
     "or unix:PATH, got 'nonsense'"),
    (("--bind", "127.0.0.1:99999"), "autofix: serve --bind: must be HOST:PORT (e.g. "
     "127.0.0.1:8080) or unix:PATH, got '127.0.0.1:99999'"),
])
def test_bad_serve_arguments_are_one_line(args: tuple[str, ...], line: str,
                                          tmp_path: Path) -> None:
    done = autofix("serve", *args, env={**TOKENS,
                                        "AUTOFIX_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [line]
    assert not (tmp_path / "a.db").exists()  # refused before anything started


def test_serve_help_shows_the_defaults() -> None:
    text = " ".join(autofix("serve", "--help").stdout.split())
    assert "(default: 0.0.0.0:8080)" in text and "(default: 2)" in text


def test_a_misspelt_variable_stops_the_start_naming_the_closest(tmp_path: Path) -> None:
    done = autofix("serve", "--bind", "127.0.0.1:1", env={
        **TOKENS, "AUTOFIX_DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
        "AUTOFIX_DRYRUN": "true"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "autofix: AUTOFIX_DRYRUN is not an autofix setting; did you mean AUTOFIX_DRY_RUN? "
        "(unset it or fix its name)"]


def test_a_secret_and_its_file_together_stop_the_start(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("api-file-token-0123456789")
    done = autofix("db", "upgrade", env={**TOKENS, "AUTOFIX_API_TOKEN_FILE": str(secret),
                                         "AUTOFIX_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "autofix: AUTOFIX_API_TOKEN and AUTOFIX_API_TOKEN_FILE are both set; keep one (the "
        "file is the safer place for a secret)"]


def test_empty_values_and_other_prefixes_are_not_problems() -> None:
    assert environment_problems({"AUTOFIX_API_TOKEN": "", "AUTOFIX_API_TOKEN_FILE": "/x",
                                 "AUTOFIXER": "1", "PATH": "/bin",
                                 "AUTOFIX_REQUIRE_COMPONENTS": "1"}) == []
    [problem] = environment_problems({"AUTOFIX_ZZZ": "1"})
    assert problem == "AUTOFIX_ZZZ is not an autofix setting (unset it or fix its name)"


def test_every_variable_the_repository_sets_is_known() -> None:
    """The demo, compose files, docs, benchmarks and tests must start with the check on."""
    name = re.compile(r"\bAUTOFIX_[A-Z0-9_]*[A-Z0-9]\b")
    patterns = ("docker-compose*.yml", "Makefile", "README.md", "docs/*.md", "docs/*.sh",
                "bench/*.py", "tests/**/*.py", "tests/**/*.yml", "receiver/**/*.py", ".ci/*")
    sources = [path for pattern in patterns for path in REPO.glob(pattern) if path.is_file()]
    examples = {Path(__file__).name, "env_check.py"}  # they name misspellings on purpose
    found = {(match, path.name) for path in sources if path.name not in examples
             for match in name.findall(path.read_text(errors="replace"))}
    unknown = sorted((variable, where) for variable, where in found
                     if variable not in known_variables()
                     and not variable.startswith("AUTOFIX_KUBERNETES"))  # a future group
    assert unknown == []
