"""Functions over a model's base path: which version folders exist, and what a version
folder's ``mapping_config.json`` renames."""

from __future__ import annotations

from pathlib import Path

from ..config import MAPPING_FILE, ConfigError, TensorMapping, parse_mapping_config

__all__ = ["read_mapping", "scan_versions"]


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


def read_mapping(version_dir: Path) -> TensorMapping | None:
    """The version folder's ``mapping_config.json``; None when it has none.

    Raises:
        ConfigError: the file cannot be read or is not a valid mapping (one line naming it).
    """
    path = version_dir / MAPPING_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"{MAPPING_FILE}: cannot read: {reason}") from None
    return parse_mapping_config(text)
