"""Constants of memory-saving methods (block sizes, DeepSpeed defaults, ...), read from data files.

The package file ``memory/data/methods.toml`` gives each value with its source
and date; a user file of the same layout in ``$MLFOOTPRINT_MEMORY_PATH`` or
``$XDG_CONFIG_HOME/mlfootprint/memory/`` overrides values key by key.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..core.datafiles import load_file, package_data_dir, user_data_dirs
from ..core.errors import UserError


@lru_cache(maxsize=1)
def _tables() -> dict[str, dict[str, dict[str, Any]]]:
    files = [package_data_dir("memory") / "methods.toml"]
    for d in user_data_dirs("memory"):
        if d.is_dir():
            files.extend(sorted(d.glob("*.toml")))
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for path in files:
        data = load_file(path)
        for section, entries in data.items():
            if section == "schema" or not isinstance(entries, dict):
                continue
            for key, entry in entries.items():
                if not isinstance(entry, dict) or "value" not in entry:
                    raise UserError(f"memory methods file {path}: [{section}].{key} must be an inline table with a 'value'")
                merged.setdefault(section, {})[key] = dict(entry, _file=str(path))
    return merged


def reload() -> None:
    _tables.cache_clear()


def value(section: str, key: str) -> Any:
    try:
        return _tables()[section][key]["value"]
    except KeyError:
        raise UserError(f"memory methods data has no [{section}].{key}; restore src/mlfootprint/memory/data/methods.toml") from None


def source(section: str, key: str) -> str:
    entry = _tables().get(section, {}).get(key, {})
    date = f" ({entry['date']})" if entry.get("date") else ""
    return f"{entry.get('source', '?')}{date}"
