"""The user's cache folder, and small values remembered there across runs.

The trace cache (``trace/cache.py``) keeps its entries in :func:`cache_dir`. :func:`recall` and :func:`remember`
keep one short text value per key in a subfolder of it (a config's task, which transformers decides): written
atomically (a temporary file ``os.replace``-d into place, so a reader sees the old value or the new one), read back
only when the file holds the same key, and never raising on a folder problem (an unwritable folder only means
nothing is remembered).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """``$MLFOOTPRINT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlfootprint/traces`` (default ``~/.cache/…``)."""
    override = os.environ.get("MLFOOTPRINT_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlfootprint" / "traces"


def _path(namespace: str, key: Any) -> tuple[Path, str]:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return cache_dir() / namespace / (hashlib.sha256(text.encode()).hexdigest()[:40] + ".json"), text


def recall(namespace: str, key: Any) -> str | None:
    """The value remembered for ``key`` (any JSON-able value), or None."""
    path, text = _path(namespace, key)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != text or not isinstance(entry.get("value"), str):
        return None
    return entry["value"]


def remember(namespace: str, key: Any, value: str) -> bool:
    """Keep ``value`` for ``key``; False where the folder cannot be written."""
    path, text = _path(namespace, key)
    try:
        replace_atomically(path, json.dumps({"key": text, "value": value}).encode())
    except OSError:
        return False
    return True


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in its folder (``.tmp-*`` with the same suffix), renamed
    into place: a concurrent reader sees the old file or the new one, never part of one. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
