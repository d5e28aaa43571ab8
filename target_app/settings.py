"""Environment-driven settings for target_app, read once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_BIND", "Settings", "parse_bind"]

# All interfaces: inside a container loopback alone is unreachable from Prometheus.
DEFAULT_BIND = "0.0.0.0:8000"


def parse_bind(bind: str) -> tuple[str, int]:
    """Split ``host:port`` (``TARGET_APP_BIND``); a bad value fails early with a clear message."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"TARGET_APP_BIND must look like HOST:PORT, got {bind!r}")
    return host or "0.0.0.0", int(port)  # noqa: S104


@dataclass(frozen=True)
class Settings:
    bind: str = DEFAULT_BIND
    # Empty means fault injection is open (local demos and tests); set it anywhere shared.
    fault_token: str = ""
    # Requests per second the app sends to itself so ratio/latency alerts have traffic.
    self_traffic_rps: float = 0.0
    # Seconds to wait before serving: models an app that boots slowly, so that a crash
    # handled by Docker's restart policy is still visible to Prometheus as up == 0.
    startup_delay_s: float = 0.0

    @classmethod
    def from_env(cls) -> Settings:
        rps = _env_seconds("TARGET_APP_SELF_TRAFFIC_RPS")
        bind = os.environ.get("TARGET_APP_BIND", DEFAULT_BIND) or DEFAULT_BIND
        parse_bind(bind)
        token = os.environ.get("TARGET_APP_FAULT_TOKEN", "")
        token_file = os.environ.get("TARGET_APP_FAULT_TOKEN_FILE", "")
        if token_file:  # Docker secrets: the token never appears in `docker inspect`
            with open(token_file) as handle:
                token = handle.read().strip()
        return cls(bind=bind, fault_token=token, self_traffic_rps=rps,
                   startup_delay_s=_env_seconds("TARGET_APP_STARTUP_DELAY_S"))


def _env_seconds(name: str) -> float:
    """A non-negative number from the environment (0 when unset), or a clear error."""
    raw = os.environ.get(name, "0") or "0"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value
