"""The `autofix` command: serve, db upgrade, db prune, check-config."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from .errors import ConfigError
from .settings import Settings

__all__ = ["main"]


def _settings() -> Settings:
    """The settings, or one clear line per problem on stderr and exit 2 (no traceback;
    never the offending value, which may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        print("invalid settings:", file=sys.stderr)
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ").splitlines()[0]
            if error["loc"]:
                name = "AUTOFIX_" + str(error["loc"][0]).upper()
                print(f"  {name}: {message}", file=sys.stderr)
            else:
                print(f"  {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _parse_age(text: str) -> timedelta:
    from .playbooks.config import parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def cmd_check_config(args: argparse.Namespace) -> int:
    from .actions.builtin import build_registry
    from .actions.check_actions import static_http_problems
    from .playbooks.config import load_playbooks

    settings = _settings()
    for warning in settings.secret_file_warnings():
        print(f"warning: {warning}", file=sys.stderr)
    try:
        loaded = load_playbooks(Path(args.file), build_registry().params_models())
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        errors = exc.details.get("errors", [])
        for line in errors if isinstance(errors, list) else []:
            print(f"  {line}", file=sys.stderr)
        return 1
    problems = static_http_problems(loaded, settings.allowed_http_hosts())
    if problems:
        print(f"{args.file}: {len(problems)} error(s)", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK, {len(loaded.playbooks)} playbook(s)")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .db.migrate import upgrade

    settings = _settings()
    # A migration's warnings (e.g. SQL only a superuser can run) must reach the terminal.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    upgrade(settings.database_url)
    print("database at head")
    return 0


def cmd_db_prune(args: argparse.Namespace) -> int:
    from .db.engine import Database
    from .db.migrate import prune

    settings = _settings()
    counts = prune(Database(settings.database_url), args.older_than)
    print(" ".join(f"{table}={count}" for table, count in counts.items()))
    return 0


def prepare_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR must exist, be empty, and be set before prometheus_client is
    imported (it picks its value store at import time), as client_python's docs say."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="autofix-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    else:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    prepare_metrics_dir()
    from .actions.builtin import build_registry
    from .actions.check_actions import static_http_problems
    from .app import create_app
    from .db.migrate import upgrade
    from .logs import configure_logging
    from .notify.channels import secret_fragments
    from .playbooks.config import load_playbooks
    from .serve import serve

    settings = _settings()
    configure_logging(settings.log_level, secret_fragments(settings))
    log = logging.getLogger("autofix.serve")
    problems = settings.check_serving()
    if problems:
        for problem in problems:
            log.error("refusing to start: %s", problem)
        return 2
    for warning in settings.secret_file_warnings():
        log.warning("secret file readable by every user: %s", warning)
    if settings.allow_unauthenticated and not (settings.secret("webhook_token")
                                               and settings.secret("api_token")):
        log.warning("AUTOFIX_ALLOW_UNAUTHENTICATED=true: anyone who can reach this port can "
                    "trigger remediation")
    try:
        loaded = load_playbooks(settings.playbooks, build_registry().params_models())
    except ConfigError as exc:
        log.error("refusing to start: %s", exc.message, extra={"errors": exc.details})
        return 2
    for problem in static_http_problems(loaded, settings.allowed_http_hosts()):
        log.error("refusing to start: %s", problem)
        return 2
    upgrade(settings.database_url)
    app = create_app(settings)
    services = app.extensions["autofix"]
    serve(settings, args.bind, args.workers, services)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from .reference import refresh, write

    path = Path(args.file)
    if args.write:
        print(f"{path}: {'updated' if write(path) else 'already current'}")
        return 0
    if refresh(path.read_text()) != path.read_text():
        print(f"{path} is out of date: run `autofix docs --write`", file=sys.stderr)
        return 1
    print(f"{path}: reference sections match the code")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autofix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver under gunicorn")
    serve.add_argument("--bind", default="0.0.0.0:8080")
    serve.add_argument("--workers", type=int, default=2)
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", help="validate a playbooks file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)
    docs = sub.add_parser("docs", help="check or refresh the generated README reference")
    docs.add_argument("--file", default="README.md")
    docs.add_argument("--write", action="store_true")
    docs.set_defaults(func=cmd_docs)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    prune_cmd = db_sub.add_parser("prune", help="delete old rows")
    prune_cmd.add_argument("--older-than", type=_parse_age, required=True,
                           help="age such as 180d")
    prune_cmd.set_defaults(func=cmd_db_prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
