"""The installed autofix version (no heavy imports: the CLI reads it before anything else)."""

from __future__ import annotations

__all__ = ["build_version"]


def build_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autofix")
    except PackageNotFoundError:
        return "0+unknown"
