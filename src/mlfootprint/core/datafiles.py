"""Loading the package's data files (catalogs are data, never code).

Every catalog lives in a TOML or JSON file inside the package; users add their
own files with the same layout. Values carry a source and a date.
"""
from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UserError
from .validate import parse_json, read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def load_file(path: str | os.PathLike[str]) -> Any:
    """Parse one TOML or JSON data file (UTF-8, with or without a byte-order mark), with a one-line error naming
    the file when it cannot be read, is not UTF-8 text, is malformed or is nested absurdly deep."""
    p = Path(path)
    text = read_text(p, "data file")
    if p.suffix != ".toml":
        return parse_json(text, f"data file {p}")
    try:
        return tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"data file {p} is malformed ({exc}); fix its syntax or remove it") from None
    except RecursionError:
        raise UserError(f"data file {p} is nested too deeply; fix it or remove it") from None


def package_data_dir(subpackage: str) -> Path:
    """The `data/` folder of a subpackage, e.g. package_data_dir('hardware')."""
    return Path(str(resources.files(f"mlfootprint.{subpackage}"))) / "data"


def user_data_dirs(kind: str) -> list[Path]:
    """Folders searched for user-supplied catalog files of one kind.

    `MLFOOTPRINT_<KIND>_PATH` (os.pathsep-separated) first, then
    `$XDG_CONFIG_HOME/mlfootprint/<kind>/` (default ~/.config).
    """
    dirs: list[Path] = []
    env = os.environ.get(f"MLFOOTPRINT_{kind.upper()}_PATH")
    if env:
        dirs.extend(Path(d) for d in env.split(os.pathsep) if d)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    dirs.append(Path(base) / "mlfootprint" / kind)
    return dirs


def check_ours_to_overwrite(target: Path, generator: str) -> None:
    """Refuse to replace a file that mlfootprint's `generator` did not write (user data is never clobbered)."""
    if not target.exists():
        return
    try:
        existing = load_file(target)
    except UserError:
        existing = None
    if not isinstance(existing, dict) or existing.get("generator") != generator:
        raise UserError(f"refusing to overwrite {target}: it was not written by '{generator}'; "
                        "move it away or save elsewhere")



class SourcedConstants:
    """Modelling constants from a data file: ``[section] key = { value = ..., source = "...", date = "..." }``.

    The package file comes first; files of the same layout in the user folders of ``user_kind`` (see
    :func:`user_data_dirs`) override values key by key. Loaded once, on first use.
    """

    def __init__(self, subpackage: str, filename: str, user_kind: str) -> None:
        self.subpackage = subpackage
        self.filename = filename
        self.user_kind = user_kind
        self._tables: dict[str, dict[str, dict[str, Any]]] | None = None

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._tables is not None:
            return self._tables
        files = [package_data_dir(self.subpackage) / self.filename]
        for d in user_data_dirs(self.user_kind):
            if d.is_dir():
                files.extend(sorted(d.glob("*.toml")))
        merged: dict[str, dict[str, dict[str, Any]]] = {}
        for path in files:
            data = load_file(path)
            if not isinstance(data, dict):
                raise UserError(f"data file {path} must be a TOML table of sections")
            for section, entries in data.items():
                if section == "schema" or not isinstance(entries, dict):
                    continue
                for key, entry in entries.items():
                    if not isinstance(entry, dict) or "value" not in entry:
                        raise UserError(f"data file {path}: [{section}].{key} must be an inline table with a 'value' "
                                        "and its 'source'")
                    merged.setdefault(section, {})[key] = dict(entry, _file=str(path))
        self._tables = merged
        return merged

    def reload(self) -> None:
        self._tables = None

    def value(self, section: str, key: str) -> Any:
        try:
            return self._load()[section][key]["value"]
        except KeyError:
            raise UserError(f"data file {self.subpackage.replace('.', '/')}/data/{self.filename} has no "
                            f"[{section}].{key}; reinstall mlfootprint or restore the file") from None

    def has(self, section: str, key: str) -> bool:
        """Whether the data files give ``[section].key``."""
        return key in self._load().get(section, {})

    def source(self, section: str, key: str) -> str:
        entry = self._load().get(section, {}).get(key, {})
        date = f" ({entry['date']})" if entry.get("date") else ""
        return f"{entry.get('source', '?')}{date}"
