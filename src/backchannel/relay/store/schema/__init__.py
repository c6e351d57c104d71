"""Versioned schema files, one folder per backend: ``NNN_name.sql`` applied in order."""

from __future__ import annotations

from importlib import resources

__all__ = ["migrations"]


def migrations(backend: str) -> list[tuple[int, str]]:
    """The schema migrations of `backend` ("sqlite" or "postgres"), oldest first.

    Args:
        backend: the folder name.

    Returns:
        ``(version, sql)`` pairs sorted by version.
    """
    folder = resources.files(__package__).joinpath(backend)
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text(encoding="utf-8")))
    return sorted(found)
