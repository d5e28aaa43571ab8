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
        rps_raw = os.environ.get("TARGET_APP_SELF_TRAFFIC_RPS", "0") or "0"
        try:
            rps = float(rps_raw)
        except ValueError:
            raise ValueError(
                f"TARGET_APP_SELF_TRAFFIC_RPS must be a number, got {rps_raw!r}") from None
        if rps < 0:
            raise ValueError("TARGET_APP_SELF_TRAFFIC_RPS must be >= 0")
        bind = os.environ.get("TARGET_APP_BIND", DEFAULT_BIND) or DEFAULT_BIND
        parse_bind(bind)
        token = os.environ.get("TARGET_APP_FAULT_TOKEN", "")
        token_file = os.environ.get("TARGET_APP_FAULT_TOKEN_FILE", "")
        if token_file:  # Docker secrets: the token never appears in `docker inspect`
            with open(token_file) as handle:
                token = handle.read().strip()
        delay_raw = os.environ.get("TARGET_APP_STARTUP_DELAY_S", "0") or "0"
        try:
            delay = float(delay_raw)
        except ValueError:
            raise ValueError(
                f"TARGET_APP_STARTUP_DELAY_S must be a number, got {delay_raw!r}") from None
        return cls(bind=bind, fault_token=token, self_traffic_rps=rps, startup_delay_s=delay)
