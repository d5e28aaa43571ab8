"""``python -m target_app``: exec gunicorn with the bundled config (same PID, so signals work)."""

import os
import sys
from pathlib import Path

CONF = Path(__file__).with_name("gunicorn_conf.py")


def main() -> None:
    argv = [sys.executable, "-m", "gunicorn", "-c", str(CONF), *sys.argv[1:]]
    os.execv(sys.executable, argv)  # noqa: S606 (fixed argv, no shell)


if __name__ == "__main__":
    main()
