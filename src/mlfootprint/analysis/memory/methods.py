"""Constants of memory-saving methods (block sizes, DeepSpeed defaults, ...), read from ``data/methods.toml``.

Each value has its source and date; a user file of the same layout in ``$MLFOOTPRINT_MEMORY_PATH`` or
``$XDG_CONFIG_HOME/mlfootprint/memory/`` overrides values key by key.
"""
from __future__ import annotations

from ...core.datafiles import SourcedConstants

_CONSTANTS = SourcedConstants("analysis.memory", "methods.toml", "memory")
value = _CONSTANTS.value
has = _CONSTANTS.has
source = _CONSTANTS.source
reload = _CONSTANTS.reload
