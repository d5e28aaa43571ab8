"""The `autofix` command: serve, db upgrade, db prune, check-config, and the operator
commands over the HTTP API: incidents, runs, approve, deny, pause, resume."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from receiver.config.settings import SECRET_FIELDS, Settings
from receiver.domain.errors import ConfigError
from receiver.ops.api_client import ApiClientError
from receiver.serving.serve_args import DEFAULT_BIND, DEFAULT_WORKERS

if TYPE_CHECKING:
    from receiver.playbooks.rules_check import AlertRules

__all__ = ["main"]


class CliError(Exception):
    """A problem the operator must fix: printed as one line per problem, exit code 2."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = [line for line in lines if line]


def version() -> str:
    # Not from .metrics: prometheus_client must not be imported before prepare_metrics_dir.
    from receiver.domain.version import build_version

    return build_version()


def _settings() -> Settings:
    from pydantic_settings import SettingsError

    from receiver.ops.env_check import environment_problems

    problems = environment_problems(os.environ)
    if problems:
        raise CliError(*problems)
    try:
        return Settings()
    except ValidationError as exc:
        raise CliError(*(_describe_setting_error(error) for error in exc.errors())) from exc
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"AUTOFIX_{found.group(1).upper()}" if found else "AUTOFIX_*"
        raise CliError(f"{name}: cannot parse the value: {exc}") from exc


def _describe_setting_error(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a cross-field check; its message names the variables itself
        return message
    name = "AUTOFIX_" + "_".join(str(p) for p in error["loc"][:1]).upper()
    shown = ""
    field = str(error["loc"][0])
    if field not in SECRET_FIELDS and isinstance(error.get("input"), str | int | float):
        shown = f" (got {error['input']!r})"
    return f"{name}: {message}{shown}"


def _database_ready(url: str) -> None:
    """Connect once, so that a wrong host, port, password or name is one clear line."""
    from receiver.store.engine import check_connection

    problem = check_connection(url)
    if problem is not None:
        raise CliError(problem)


def _upgrade(url: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from receiver.store.engine import describe_connection_error
    from receiver.store.migrate import upgrade

    _database_ready(url)
    try:
        upgrade(url)
    except SQLAlchemyError as exc:  # connected, then refused (e.g. no CREATE permission)
        raise CliError(describe_connection_error(url, exc).replace(
            "cannot connect to", "cannot migrate")) from exc


def _parse_age(text: str) -> timedelta:
    from receiver.playbooks.config import parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _rules_for(playbooks: Path, args: argparse.Namespace) -> AlertRules:
    """The rules and prometheus.yml to check against: named, or found in a documented
    layout (rules_check.RULE_LAYOUTS). Not found is an error: a check that silently
    skipped the timing contract would pass a guide-made config that restarts on one
    failed scrape."""
    from receiver.playbooks.rules_check import (
        find_prometheus_config,
        find_rules,
        load_alert_rules,
        prometheus_candidates,
        rule_candidates,
    )

    rules_paths = [Path(p) for p in args.rules or []] or find_rules(playbooks)
    if not rules_paths:
        raise CliError(f"check-config: no Prometheus rules found for {playbooks} (looked for "
                       f"{', '.join(str(p) for p in rule_candidates(playbooks))}); name them "
                       "with --rules and --prometheus-config, or skip the rules and timing "
                       "checks with --no-rules")
    prometheus = (Path(args.prometheus_config) if args.prometheus_config
                  else find_prometheus_config(rules_paths[0]))
    if prometheus is None:
        raise CliError(f"check-config: no prometheus.yml found for {rules_paths[0]} (looked "
                       f"for {', '.join(str(p) for p in prometheus_candidates(rules_paths[0]))})"
                       "; name it with --prometheus-config, or skip the rules and timing "
                       "checks with --no-rules")
    try:
        return load_alert_rules(rules_paths, prometheus)
    except ConfigError as exc:
        raise CliError(exc.message) from exc


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem of the file in one run, each as file:line:column: path: message.
    Exit 1 for problems in the file, 2 for bad settings or an unreadable rules file."""
    from receiver.actions.builtin import build_registry
    from receiver.executor.registry import playbook_backends
    from receiver.playbooks.config import load_playbooks

    settings = _settings()  # the http allowlist is part of what a playbook must respect
    for warning in settings.secret_file_warnings():
        print(f"warning: {warning}", file=sys.stderr)
    path = Path(args.file) if args.file else settings.playbooks
    rules = None if args.no_rules else _rules_for(path, args)
    try:
        registry = build_registry()
        loaded = load_playbooks(path, registry.params_models(),
                                allowed_hosts=settings.http_allowed_hosts, rules=rules,
                                backends=playbook_backends(settings, registry.backend_limits()))
    except ConfigError as exc:
        errors = exc.details.get("errors")
        for line in errors if isinstance(errors, list) and errors else [exc.message]:
            print(line, file=sys.stderr)
        if isinstance(errors, list) and len(errors) > 1:
            print(f"{path}: {len(errors)} errors", file=sys.stderr)
        return 1
    for warning in [*loaded.skipped, *loaded.warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    against = (f", checked against {', '.join(rules.sources)}"
               f" and {rules.timing.source}" if rules and rules.timing else "")
    print(f"{path}: OK, {len(loaded.playbooks)} playbook(s){against}")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings()
    # A migration's warnings (e.g. SQL only a superuser can run) must reach the terminal.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    _upgrade(settings.database_url)
    print("database at head")
    return 0


def cmd_db_prune(args: argparse.Namespace) -> int:
    from receiver.store.engine import Database
    from receiver.store.migrate import prune

    settings = _settings()
    _database_ready(settings.database_url)
    counts = prune(Database(settings.database_url), args.older_than,
                   new_image_window=timedelta(seconds=settings.new_image_window))
    print(" ".join(f"{table}={count}" for table, count in counts.items()))
    return 0


def prepare_metrics_dir() -> tuple[str, bool]:
    """PROMETHEUS_MULTIPROC_DIR must exist, be empty, and be set before prometheus_client is
    imported (it picks its value store at import time), as client_python's docs say.
    Returns the path and whether autofix created it (then `serve` removes it at exit)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="autofix-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        return path, True
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path, False


def cmd_serve(args: argparse.Namespace) -> int:
    from receiver.serving.serve_args import bind_address, worker_count

    for option, check, value in (("--bind", bind_address, args.bind),
                                 ("--workers", worker_count, args.workers)):
        try:
            setattr(args, option[2:], check(value))
        except ValueError as exc:
            raise CliError(f"serve {option}: {exc}") from None
    path, created = prepare_metrics_dir()
    master = os.getpid()
    try:
        return _serve(args)
    finally:
        # gunicorn's forked workers unwind through here too: only the master cleans up.
        if created and os.getpid() == master:
            shutil.rmtree(path, ignore_errors=True)


def _serve(args: argparse.Namespace) -> int:
    from receiver.actions.builtin import build_registry
    from receiver.app import create_app
    from receiver.domain.redaction import Redactor
    from receiver.executor.registry import playbook_backends
    from receiver.notify.channels import secret_fragments
    from receiver.playbooks.config import load_playbooks
    from receiver.serving.serve import serve
    from receiver.telemetry.logs import configure_logging

    settings = _settings()
    # The one redactor of this process: its log lines, then the app (create_app) share it.
    redactor = Redactor(settings.redact_patterns)
    configure_logging(settings.log_level, secret_fragments(settings), redactor)
    log = logging.getLogger("autofix.serve")
    problems = settings.check_serving()
    if problems:
        for problem in problems:
            log.error("refusing to start: %s", problem)
        return 2
    from receiver.config.tls import check_tls_files

    tls_problem = check_tls_files(settings)
    if tls_problem is not None:
        log.error("refusing to start: %s", tls_problem)
        return 2
    for warning in settings.secret_file_warnings():
        log.warning("secret file readable by every user: %s", warning)
    if settings.allow_unauthenticated and not (settings.secret("webhook_token")
                                               and settings.secret("api_token")):
        log.warning("AUTOFIX_ALLOW_UNAUTHENTICATED=true: anyone who can reach this port can "
                    "trigger remediation")
    try:
        registry = build_registry()
        load_playbooks(settings.playbooks, registry.params_models(),
                       allowed_hosts=settings.http_allowed_hosts,
                       backends=playbook_backends(settings, registry.backend_limits()))
    except ConfigError as exc:
        log.error("refusing to start: %s", exc.message, extra={"errors": exc.details})
        return 2
    try:
        _upgrade(settings.database_url)
    except CliError as exc:
        for line in exc.lines:
            log.error("refusing to start: %s", line)
        return 2
    app = create_app(settings, redactor=redactor)
    services = app.extensions["autofix"]
    serve(settings, args.bind, args.workers, services)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from receiver.ops.reference import refresh, write

    path = Path(args.file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path} ({exc.strerror}): run `autofix docs` in the "
                       "repository's root, or pass --file path/to/README.md") from exc
    if "<!-- reference:" not in text:
        raise CliError(f"{path} has no <!-- reference:... --> sections to check or write")
    if args.write:
        print(f"{path}: {'updated' if write(path) else 'already current'}")
        return 0
    if refresh(text) != text:
        print(f"{path} is out of date: run `autofix docs --write`", file=sys.stderr)
        return 1
    print(f"{path}: reference sections match the code")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autofix", description=__doc__)
    parser.add_argument("--version", action="version", version=f"autofix {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver under gunicorn",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           description="Settings come from AUTOFIX_* variables (README.md, "
                           "Configuration reference); an unknown one stops the start.")
    serve.add_argument("--bind", default=DEFAULT_BIND,
                       help="HOST:PORT or unix:PATH to listen on (127.0.0.1:8080 keeps it "
                       "on this host)")
    serve.add_argument("--workers", default=str(DEFAULT_WORKERS),
                       help="gunicorn worker processes, 1 to 64 (SQLite: always 1)")
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", help="validate a playbooks file")
    check.add_argument("file", nargs="?",
                       help="playbooks file (default: AUTOFIX_PLAYBOOKS, the one serve loads)")
    check.add_argument("--rules", action="append", metavar="RULES_YML",
                       help="Prometheus rule file(s) to cross-check matchers, template "
                       "labels and timing against (default: rules/alert_rules.yml and "
                       "rules/autofix_self.yml beside the file or one directory up, else "
                       "../prometheus/autofix_rules.yml and autofix_self_rules.yml, i.e. "
                       "/etc/prometheus for /etc/autofix/playbooks.yml); none found is an "
                       "error")
    check.add_argument("--no-rules", action="store_true",
                       help="skip the rules cross-check and the timing contract")
    check.add_argument("--prometheus-config", metavar="PROMETHEUS_YML",
                       help="prometheus.yml whose scrape configs attach target labels and "
                       "set the scrape and evaluation intervals (default: "
                       "prometheus/prometheus.yml beside the rules directory, else "
                       "prometheus.yml beside the rules file); none found is an error")
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
    from receiver.ops.ops_cli import add_commands

    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        for line in exc.lines:
            print(f"autofix: {line}", file=sys.stderr)
        return 2
    except ApiClientError as exc:
        print(f"autofix: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
