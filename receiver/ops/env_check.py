"""Startup checks of the AUTOFIX_* environment that pydantic-settings cannot make: it
ignores a variable it does not know (a misspelt AUTOFIX_DATABSE_URL would silently leave
the default), and it would quietly prefer AUTOFIX_X over AUTOFIX_X_FILE.

Known names come from the Settings class itself, so a new setting is known at once; the
few variables autofix reads elsewhere are listed here, each with who reads it."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from receiver.config.settings import SECRET_FIELDS, Settings

__all__ = ["NOT_SETTINGS", "environment_problems", "known_variables"]

PREFIX = "AUTOFIX_"
# Read by something other than Settings; allowed in the receiver's environment.
NOT_SETTINGS = {
    "AUTOFIX_URL": "the operator commands (autofix runs, approve, ...): the receiver's URL",
    "AUTOFIX_REQUIRE_COMPONENTS": "test harness (CI): a missing component fails, not skips",
    "AUTOFIX_COMPOSE_HOLD_S": "test harness: keep the compose stack up for a look",
    "AUTOFIX_FUZZ_EXAMPLES": "test harness: hypothesis examples of tests/test_fuzz.py",
    "AUTOFIX_STATEFUL_EXAMPLES": "test harness: examples of tests/test_lifecycle_stateful.py",
    "AUTOFIX_DB_PASSWORD_FILE": "docker-compose.yml: the postgres container's init script",
    "AUTOFIX_COMPOSE": "test harness: which Compose the compose tests run",
    "AUTOFIX_STACK_HARNESSES_AT_ONCE": "test harness: how many stack harnesses start at once",
    "AUTOFIX_SECRETS_IN_USERNS": "docs/compose-secrets.sh: re-run inside a rootless "
    "Docker's user namespace",
    # The socket proxies' HAProxy configs (socket-proxy/*.cfg), in the proxies' containers.
    "AUTOFIX_PROXY_BIND": "socket-proxy/*.cfg: the plain HTTP address (default :2375)",
    "AUTOFIX_PROXY_TLS_BIND": "socket-proxy/*.cfg: set, a TLS address with client certificates",
    "AUTOFIX_PROXY_TLS_CERT": "socket-proxy/*.cfg: the server certificate and key (one PEM)",
    "AUTOFIX_PROXY_TLS_CA": "socket-proxy/*.cfg: the CA a client certificate must come from",
    "AUTOFIX_PROXY_TLS_CLIENT": "socket-proxy/*.cfg: the one client name (CN) let in over TLS",
}


def known_variables() -> frozenset[str]:
    settings = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    files = {f"{PREFIX}{name.upper()}_FILE" for name in SECRET_FIELDS}
    return frozenset(settings | files | set(NOT_SETTINGS))


def environment_problems(environ: Mapping[str, str]) -> list[str]:
    """One line per unknown AUTOFIX_* variable (with the closest known name) and per
    secret given both as AUTOFIX_X and AUTOFIX_X_FILE; empty when the start may go on."""
    known = known_variables()
    problems = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in known:
            continue
        # Compared without the prefix, which every name shares and would make all close.
        close = difflib.get_close_matches(name[len(PREFIX):],
                                          sorted(k[len(PREFIX):] for k in known), n=1,
                                          cutoff=0.6)
        hint = f"; did you mean {PREFIX}{close[0]}?" if close else ""
        problems.append(f"{name} is not an autofix setting{hint} (unset it or fix its name)")
    for field in SECRET_FIELDS:
        variable = f"{PREFIX}{field.upper()}"
        if environ.get(variable) and environ.get(f"{variable}_FILE"):
            problems.append(f"{variable} and {variable}_FILE are both set; keep one (the "
                            "file is the safer place for a secret)")
    return problems
