"""Names of containers a rollback set aside (pure): the failing one is stopped and renamed
`<name>.autofix-quarantine-<stamp>`, a copy that failed to start `<name>.autofix-rollback-
failed-<stamp>`. They keep their labels, so whatever reads labels must skip them."""

from __future__ import annotations

__all__ = ["FAILED_SUFFIX", "QUARANTINE_SUFFIX", "is_set_aside"]

QUARANTINE_SUFFIX = ".autofix-quarantine-"
FAILED_SUFFIX = ".autofix-rollback-failed-"


def is_set_aside(name: str) -> bool:
    """A container a rollback renamed out of the way (never a dependent, never rolled back)."""
    return QUARANTINE_SUFFIX in name or FAILED_SUFFIX in name
