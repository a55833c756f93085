"""The bundled model catalog: one JSON file per model in models/data/, plus user files.

A user adds a model by dropping a file of the same layout into
``$XDG_CONFIG_HOME/mlfootprint/models/`` or a folder listed in
``MLFOOTPRINT_MODELS_PATH``; a user file with a catalog name overrides it.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.datafiles import load_file, package_data_dir, user_data_dirs
from ..core.errors import UserError, suggest

REQUIRED = ("name", "config", "source")


def _files() -> list[Path]:
    files = sorted(package_data_dir("models").glob("*.json"))
    for d in user_data_dirs("models"):
        if d.is_dir():
            files.extend(sorted(d.glob("*.json")))
    return files


@lru_cache(maxsize=1)
def _load_all() -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    bundled = package_data_dir("models")
    for path in _files():
        data = load_file(path)
        if not isinstance(data, dict) or any(k not in data for k in REQUIRED):
            raise UserError(f"model file {path} must be a JSON object with keys {', '.join(REQUIRED)}")
        if not isinstance(data["config"], dict) or "model_type" not in data["config"]:
            raise UserError(f"model file {path}: 'config' must be a Hugging Face config with a 'model_type'")
        entry = dict(data)
        entry["_file"] = str(path)
        # where it came from, as a reader can find it: bundled files by their place in the package
        entry["_origin"] = f"mlfootprint/models/data/{path.name}" if path.parent == bundled else str(path)
        entries[str(data["name"]).lower()] = entry
    return entries


def reload() -> None:
    _load_all.cache_clear()


def names() -> list[str]:
    return sorted(e["name"] for e in _load_all().values())


def find(name: str) -> dict[str, Any] | None:
    return _load_all().get(name.lower())


def get(name: str) -> dict[str, Any]:
    entry = find(name)
    if entry is None:
        raise UserError(f"unknown model {name!r}: not in the catalog (see 'mlfootprint models list'), "
                        f"not a config.json path and not a module:callable.{suggest(name, names())}")
    return entry
