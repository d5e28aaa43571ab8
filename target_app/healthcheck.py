"""Docker HEALTHCHECK: ``python -m target_app.healthcheck`` exits 0 if /healthz answers 200.

Talks to 127.0.0.1 on TARGET_APP_BIND's port, with a short timeout so a hung app is
reported unhealthy instead of stalling the check.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from target_app.settings import DEFAULT_BIND, parse_bind

TIMEOUT_S = 2.0


def main() -> int:
    _host, port = parse_bind(os.environ.get("TARGET_APP_BIND", DEFAULT_BIND) or DEFAULT_BIND)
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure means unhealthy
        print(f"unhealthy: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
