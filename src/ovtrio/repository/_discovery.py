"""Pure functions over a model's base path: which version folders exist."""

from __future__ import annotations

from pathlib import Path

__all__ = ["scan_versions"]


def scan_versions(base_path: Path) -> dict[int, Path]:
    """Map version number -> folder for every positive-integer folder under ``base_path``.

    Other entries are ignored, as in OVMS. A missing or unreadable base path has no versions.
    """
    found: dict[int, Path] = {}
    try:
        entries = list(base_path.iterdir())
    except OSError:
        return found
    for entry in entries:
        name = entry.name
        if name.isascii() and name.isdigit() and entry.is_dir():
            number = int(name)
            if number > 0:
                found[number] = entry
    return found
